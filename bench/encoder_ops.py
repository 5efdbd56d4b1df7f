"""Where the encoder's time goes: onnxruntime's own profile of the served int8 graph, by operator type.

    python bench/encoder_ops.py [--messages 128] [--model-dir DIR] [--graph PATH]

Each message's window is run alone on one thread, as a scorer's worker runs it (`models.backends.OnnxBackend`), with
onnxruntime's profiler on; prints one JSON object: for each operator type its share of the graph's node time and
its milliseconds a message, and the node time a message in all. `--graph` profiles another ONNX file with the same
inputs (an fp32 export, a graph quantised another way) on the same messages.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import chat_messages  # noqa: E402

from models.classifier import CrisisClassifier  # noqa: E402


def profile(graph: str, rows: list[np.ndarray]) -> dict[str, object]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "encoder")
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        for ids in rows:
            session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        with open(session.end_profiling(), encoding="utf-8") as fh:
            events = json.load(fh)
    by_op: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]  # microseconds
    total = sum(by_op.values())
    return {
        "graph": Path(graph).name,
        "node_ms_per_message": round(total / len(rows) / 1000, 3),
        "by_operator": {op: {"share": round(t / total, 3), "ms_per_message": round(t / len(rows) / 1000, 3)}
                        for op, t in by_op.most_common()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=128)
    parser.add_argument("--model-dir", type=Path, default=None, help="a model directory (default: the shipped model)")
    parser.add_argument("--graph", type=Path, default=None, help="an ONNX file to profile instead of the served one")
    args = parser.parse_args()
    clf = CrisisClassifier.load(args.model_dir, backend="onnx")
    windows, _ = clf._windows(chat_messages(args.messages))
    rows = [np.asarray(w, dtype=np.int64).reshape(1, -1) for w in windows]
    graph = str(args.graph or clf.backend.path)
    print(json.dumps({"model": clf.info.model_version, "messages": len(rows),
                      "mean_tokens": round(float(np.mean([r.shape[1] for r in rows])), 1),
                      **profile(graph, rows)}, indent=1))


if __name__ == "__main__":
    main()
