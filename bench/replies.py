"""The response-safety model's speed, and what it adds to a scorer's memory (issue 33).

    python bench/replies.py [--replies 400] [--repeats 3]

In one process, as `vigil score` holds them: loads the crisis classifier (its default backend) and scores a batch of
chat messages, reads the peak resident memory (VmHWM), then loads the response-safety model, scores replies in
context at batches of 1, 8 and 32 (median of `--repeats` passes over `--replies` written (context, reply) pairs
drawn from data/response_safety/), and reads the peak again. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import chat_messages  # noqa: E402

from models.response_safety import ResponseSafetyModel  # noqa: E402
from models.training.response_safety_train import PAIRS, WRITTEN  # noqa: E402
from pipeline.commands import load_resilient_scorer  # noqa: E402
from vigil_core.settings import Settings  # noqa: E402


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scorer = load_resilient_scorer(Settings())
    scorer.score(chat_messages(256))
    before = peak_mb()
    rows = [(r["context"], r["response"]) for path in (PAIRS, WRITTEN)
            for r in csv.DictReader(path.open(encoding="utf-8"))]
    rows = (rows * (args.replies // len(rows) + 1))[: args.replies]
    model = ResponseSafetyModel.load()
    started = time.perf_counter()
    model.score([rows[0][0]], [rows[0][1]])
    first_s = time.perf_counter() - started

    def rate(batch: int) -> float:
        runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            for i in range(0, len(rows), batch):
                chunk = rows[i:i + batch]
                model.score([c for c, _ in chunk], [r for _, r in chunk])
            runs.append(len(rows) / (time.perf_counter() - started))
        return sorted(runs)[len(runs) // 2]

    speeds = {b: round(rate(b), 1) for b in (1, 8, 32)}
    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus", "model": model.version,
        "first_call_s (int8 graph exported or read, tokenizer)": round(first_s, 2),
        "replies_per_s_at_batch": speeds,
        "peak_mb_classifier_only": round(before, 1), "peak_mb_with_reply_model": round(peak_mb(), 1),
    }, indent=1))


if __name__ == "__main__":
    main()
