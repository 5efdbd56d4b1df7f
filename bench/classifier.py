"""Classifier throughput and latency on chat-length messages, per backend and batch size.

    python bench/classifier.py [--backends torch onnx] [--messages 512] [--repeats 3] [--no-context] [--model-dir DIR]

Prints one JSON object: for each backend and batch size 1, 8, 32, 128, messages/s and per-batch latency
p50/p99 in milliseconds, and the token-length range of the messages. Each configuration is warmed up with
one full pass (a running scorer has long since seen every batch shape) and then measured `--repeats`
times; the median run is reported with the lowest and highest messages/s, because this 2-vCPU machine's
speed varies by tens of percent from minute to minute.

By default each message is scored as the scorer scores it (`score_turns`): alone and in context, with the two
messages before it in the stream as its conversation's earlier user turns (their embeddings, as the scorer keeps
them). `--no-context` scores each message alone (`predict`), as before context scoring. Every text is normalised
(models.normalise) inside the classifier, and each batch's languages are identified as the scorer does
(`--no-languages` leaves that out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import chat_messages  # noqa: E402

from models.classifier import CrisisClassifier  # noqa: E402
from models.language import LanguageIdentifier  # noqa: E402


def bench(clf: CrisisClassifier, texts: list[str], batch: int, repeats: int, context: bool,
          lid: LanguageIdentifier | None = None) -> dict[str, float]:
    clf.batch_size = batch
    once(clf, texts, batch, context, lid)  # warm-up: every batch shape once
    runs = sorted((once(clf, texts, batch, context, lid) for _ in range(repeats)), key=lambda r: r["messages_per_s"])
    median = runs[len(runs) // 2]
    return {**median, "messages_per_s_min": runs[0]["messages_per_s"],
            "messages_per_s_max": runs[-1]["messages_per_s"], "repeats": repeats}


def once(clf: CrisisClassifier, texts: list[str], batch: int, context: bool,
         lid: LanguageIdentifier | None = None) -> dict[str, float]:
    latencies = []
    done = 0
    earlier: list[np.ndarray] = []  # embeddings of the stream's last messages before this chunk
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        chunk = texts[i:i + batch]
        t0 = time.perf_counter()
        if context:
            histories = [([*earlier, *range(k)])[-2:] for k in range(len(chunk))]
            scored = clf.score_turns(chunk, histories)
            if scored.embeddings is not None:
                earlier = [*earlier, *scored.embeddings][-2:]
        else:
            clf.predict(chunk)
        if lid is not None:  # the scorer identifies every user turn's language in the same batch
            lid.identify(chunk)
        latencies.append(time.perf_counter() - t0)
        done += len(chunk)
    elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {"messages_per_s": done / elapsed, "batch_p50_ms": float(np.percentile(ms, 50)),
            "batch_p99_ms": float(np.percentile(ms, 99)), "batches": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--messages", type=int, default=512)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-context", action="store_true", help="score each message alone (predict)")
    parser.add_argument("--model-dir", type=Path, default=None, help="a model directory (default: the shipped model)")
    parser.add_argument("--no-languages", action="store_true",
                        help="leave out the language identification the scorer runs on every user turn")
    args = parser.parse_args()
    texts = chat_messages(args.messages)
    results: dict[str, object] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "backends": {}}
    lid = None if args.no_languages else LanguageIdentifier()
    results["languages"] = lid is not None
    for backend in args.backends:
        clf = CrisisClassifier.load(args.model_dir, backend=backend)
        lengths = [len(t) for t in clf._tok(texts, add_special_tokens=True)["input_ids"]]
        results["tokens_min_max"] = [min(lengths), max(lengths)]
        results["model_version"] = clf.info.model_version
        if backend == "onnx":  # signed where this machine sums them exactly, else unsigned (models/backends.py)
            results["int8_weights"] = getattr(clf.backend, "weights", None)
        results["context"] = {"turns": clf.info.context_turns, "aggregate": clf.info.context_aggregate,
                              "used": clf.uses_context and not args.no_context}
        results["backends"][backend] = {  # type: ignore[index]
            str(b): bench(clf, texts, b, args.repeats, not args.no_context, lid) for b in args.batches}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
