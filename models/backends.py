"""Inference backends: torch (fp32) and ONNX Runtime (int8). Both map padded token ids to crisis logits."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = ["Backend", "TorchBackend", "OnnxBackend", "export_onnx_int8"]

log = logging.getLogger(__name__)


class Backend(Protocol):
    """Anything that turns a padded batch into one crisis logit per row."""

    name: str

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Crisis logits, shape (batch,)."""
        ...


class TorchBackend:
    """fp32 torch under `inference_mode`."""

    name = "torch"

    def __init__(self, module: object, threads: int = 0) -> None:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        self._torch = torch
        self._module = module
        module.eval()  # type: ignore[attr-defined]

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Crisis logits, shape (batch,)."""
        torch = self._torch
        with torch.inference_mode():
            out = self._module(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))  # type: ignore[operator]
        return out.float().numpy().astype(np.float64)


class OnnxBackend:
    """ONNX Runtime on the CPU, usually with an int8-quantised graph."""

    name = "onnx"

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Crisis logits, shape (batch,)."""
        (out,) = self._session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
        return np.asarray(out, dtype=np.float64).reshape(-1)


def export_onnx_int8(module: object, target: Path) -> Path:
    """Export `module(input_ids, attention_mask) -> logits` to ONNX and quantise its weights to int8.

    Writes to a temporary file first and renames, so concurrent exporters never leave a torn file.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    module.eval()  # type: ignore[attr-defined]
    ids = torch.ones(2, 16, dtype=torch.long)
    mask = torch.ones(2, 16, dtype=torch.long)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fp32 = Path(tmp) / "model.onnx"
        with contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115 - the exporter's warnings
            torch.onnx.export(
                module, (ids, mask), str(fp32),  # type: ignore[arg-type]
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                              "logits": {0: "batch"}},
                opset_version=17, dynamo=False,
            )
        int8 = Path(tmp) / "model.int8.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.WARNING)  # the quantizer logs every tensor at INFO on the root logger
        try:
            # per-channel scales keep recall closer to fp32 than one scale per tensor (measured here)
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.setLevel(level)
        os.replace(int8, target)
    log.info("exported int8 ONNX model to %s", target)
    return target
