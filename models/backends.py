"""Inference backends: torch (fp32) and ONNX Runtime (int8). Both map padded token ids to one output row per text
window (a pooled embedding, or a crisis logit)."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import queue
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["Backend", "TorchBackend", "OnnxBackend", "export_onnx_int8", "unsigned_weights", "signed_weights",
           "signed_sums_exact", "probe_graph", "served_graph", "available_cpus", "INT8_GRAPH", "SIGNED_GRAPH",
           "PROBE_GRAPH"]

log = logging.getLogger(__name__)

# The name an int8 graph file ends with: "u", its weights are stored unsigned (`unsigned_weights`). A cache written
# before, with signed weights (`*.int8.onnx`), is never read: its scores depend on the CPU. Where this machine sums
# signed weights exactly (`signed_sums_exact`), the same graph with them signed is served, from a file beside it.
INT8_GRAPH = ".int8u.onnx"
SIGNED_GRAPH = ".int8s.onnx"
# The probe's one-node graph (`probe_graph`), written beside every exported graph, so that a scorer asks its question
# with onnxruntime alone: building it takes the `onnx` package (0.3 s and about 16 MB a process).
PROBE_GRAPH = "int8-probe.onnx"


def available_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container's `cpus:`).

    A container limited to 2 CPUs on a 32-core host still sees 32 CPUs in its affinity mask; 32 inference
    workers there would only contend for the quota.
    """
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


class Backend(Protocol):
    """Anything that turns a padded batch into one output row per input row: a pooled embedding (the default
    model, whose head runs in numpy) or a crisis logit (a Hugging Face checkpoint)."""

    name: str

    def outputs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The module's outputs, shape (batch, width)."""
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

    def outputs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The module's outputs, shape (batch, width)."""
        torch = self._torch
        with torch.inference_mode():
            out = self._module(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))  # type: ignore[operator]
        return out.float().numpy().astype(np.float64).reshape(len(input_ids), -1)


class OnnxBackend:
    """ONNX Runtime on the CPU with the int8 graph, one row (text window) per run; its weights signed where this
    machine sums them exactly, else unsigned (`served_graph`: the same integers either way, `weights` says which).

    Dynamic int8 quantisation scales each activation tensor by its own range, so in a padded batch a
    text's score would depend on the other texts of the batch (up to ~10% here): the same message
    could be flagged in one batch and not in another, and a replay would not reproduce the scores.
    One unpadded row per run gives every text the score of that text alone. Rows are spread over
    `threads` worker threads calling one shared session (ONNX Runtime releases the GIL; a session is
    safe to run concurrently), each run single-threaded: on a 2-core machine this outruns padded
    batches on two intra-op threads (bench/RESULTS.md).
    """

    name = "onnx"

    def __init__(self, path: Path, threads: int = 0) -> None:
        import concurrent.futures

        import onnxruntime as ort

        self.threads = threads if threads > 0 else available_cpus()
        path, self.weights = served_graph(path)
        log.info("serving %s with its int8 weights %s", path.name, self.weights)

        def session(intra_threads: int) -> ort.InferenceSession:
            options = ort.SessionOptions()
            options.intra_op_num_threads = intra_threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        self._session = session(1)
        # a lone row (one message at low traffic) runs on all threads: lower latency
        self._single = session(self.threads) if self.threads > 1 else self._session
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="vigil-ort")
        self.path = path

    def _row(self, ids: np.ndarray, session: Any = None) -> np.ndarray:
        ids = ids.reshape(1, -1)
        (value,) = (session or self._session).run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        return np.asarray(value, dtype=np.float64).reshape(-1)

    def _work(self, rows: list[np.ndarray], todo: queue.SimpleQueue[int], out: list[np.ndarray | None]) -> None:
        """One worker: run the next row not yet taken until none is left."""
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            out[i] = self._row(rows[i])

    def outputs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The graph's outputs, shape (batch, width); each row is run alone, without its padding.

        The workers take rows as they finish one, the longest first: a batch ends when its last row does, so no
        worker waits long on another (a fixed share each left one idle while the other ran its longer rows)."""
        lengths = np.maximum(attention_mask.sum(axis=1), 1)
        rows = [np.ascontiguousarray(input_ids[i, : lengths[i]]) for i in range(len(input_ids))]
        if len(rows) <= 1 or self.threads == 1:
            return np.stack([self._row(r, self._single) for r in rows]) if rows else np.zeros((0, 1))
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in np.argsort(-lengths, kind="stable"):
            todo.put(int(i))
        out: list[np.ndarray | None] = [None] * len(rows)
        for done in [self._pool.submit(self._work, rows, todo, out) for _ in range(min(self.threads, len(rows)))]:
            done.result()
        return np.stack(out)  # type: ignore[arg-type]


def export_onnx_int8(module: object, target: Path) -> Path:
    """Export `module(input_ids, attention_mask) -> outputs` (one row per input row) to ONNX and quantise its
    weights to int8.

    Writes to a temporary file first and renames, so concurrent exporters never leave a torn file.
    """
    import onnx
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
                output_names=["outputs"],
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                              "outputs": {0: "batch"}},
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
        graph = onnx.load(str(int8))
        unsigned_weights(graph)
        onnx.save(graph, str(int8))
        os.replace(int8, target)
        probe = Path(tmp) / PROBE_GRAPH
        probe.write_bytes(probe_graph())
        os.replace(probe, target.parent / PROBE_GRAPH)
    log.info("exported int8 ONNX model to %s", target)
    return target


def unsigned_weights(graph: Any) -> int:
    """Store the int8 weights of every `MatMulInteger` of an ONNX graph unsigned: w + 128 with zero point + 128, the
    same integers (w - zero point is unchanged), so the graph computes the same products. Returns how many nodes.

    Why: onnxruntime multiplies unsigned activations by signed weights on a CPU without VNNI (AVX2, AVX-512 without
    VNNI) with an instruction that adds pairs of products into 16 bits and saturates (`vpmaddubsw`), so the sums it
    clips differ from a VNNI CPU's exact ones, and a turn's score with them: int8 scores measured on one machine
    moved a conversation across the threshold on another (bench/RESULTS.md, "Unsigned int8 weights"). Unsigned
    weights take the unsigned-by-unsigned kernels, which widen to 16 bits before multiplying and never saturate.
    The signed weights were symmetric (zero point 0): stored unsigned, they are centred on 128.
    """
    return _move_weights(graph, signed=False)


def signed_weights(graph: Any) -> int:
    """The inverse of `unsigned_weights`: w - 128 with zero point - 128, the same integers, signed again (what
    `quantize_dynamic` wrote). For a machine whose signed products are summed exactly (`signed_sums_exact`), where
    onnxruntime's kernels for them are the fastest it has (VNNI, AMX)."""
    return _move_weights(graph, signed=True)


def _move_weights(graph: Any, signed: bool) -> int:
    from onnx import numpy_helper

    source, shift = (np.uint8, -128) if signed else (np.int8, 128)
    target = np.int8 if signed else np.uint8
    initializers = {t.name: t for t in graph.graph.initializer}
    readers: dict[str, set[str]] = {}  # what reads each tensor (op types)
    for node in graph.graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    done = 0
    for node in graph.graph.node:
        if node.op_type != "MatMulInteger" or node.input[1] not in initializers:
            continue
        names = [node.input[1]] + ([node.input[3]] if len(node.input) > 3 and node.input[3] else [])
        if len(names) == 1:
            raise ValueError(f"MatMulInteger {node.name!r} has no weight zero point to move")
        for name in names:
            tensor = initializers[name]
            values = numpy_helper.to_array(tensor)
            if values.dtype == target:
                continue
            if values.dtype != source:
                raise ValueError(f"{name}: {values.dtype} weights, not {np.dtype(source)}")
            if readers[name] != {"MatMulInteger"}:
                raise ValueError(f"{name} is read by more than MatMulInteger: {sorted(readers[name])}")
            tensor.CopyFrom(numpy_helper.from_array((values.astype(np.int16) + shift).astype(target), name))
        done += 1
    return done


_PROBE_K, _PROBE_N = 384, 64  # a layer's width: the kernels a real MatMulInteger of the encoder takes


def _probe_weights() -> np.ndarray:
    """The probe's signed weights at the top of their range: 127 and -128, alternating by column."""
    weights = np.full((_PROBE_K, _PROBE_N), 127, dtype=np.int8)
    weights[:, 1::2] = -128
    return weights


def probe_graph() -> bytes:
    """The probe's graph (`signed_sums_exact`): one `MatMulInteger` of unsigned activations by signed weights at the
    top of their ranges (127 and -128, alternating by column), serialised. Needs the `onnx` package."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w", "a_zp", "w_zp"], ["y"])], "probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, ["m", _PROBE_K])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["m", _PROBE_N])],
        [numpy_helper.from_array(_probe_weights(), "w"),
         numpy_helper.from_array(np.array(0, dtype=np.uint8), "a_zp"),
         numpy_helper.from_array(np.zeros(_PROBE_N, dtype=np.int8), "w_zp")])
    return bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())


@functools.lru_cache(maxsize=4)
def signed_sums_exact(graph: bytes | None = None) -> bool:
    """Whether this machine's onnxruntime sums unsigned activations times signed weights exactly: probed once a
    process, on products that saturate a 16-bit sum of two (255 x 127 twice), for 1 to 64 rows (onnxruntime picks a
    kernel by instruction set, and another for a single row). True where onnxruntime's kernels use VNNI or AMX;
    False on AVX2 or AVX-512 without VNNI (this machine's AMD EPYC). `graph`: `probe_graph()`'s bytes as an export
    wrote them (`PROBE_GRAPH`); without them it is built here."""
    import onnxruntime as ort

    session = ort.InferenceSession(graph or probe_graph(), providers=["CPUExecutionProvider"])
    weights = _probe_weights().astype(np.int64)
    for m in (1, 2, 3, 7, 16, 64):
        a = np.full((m, _PROBE_K), 255, dtype=np.uint8)
        (got,) = session.run(None, {"a": a})
        if not np.array_equal(got, a.astype(np.int64) @ weights):
            return False
    return True


def _probe_beside(path: Path) -> bytes:
    """The probe's graph beside an exported one: written by the export; for a cache from before that, built here
    (with `onnx`) and written for the next start if the cache can be written."""
    probe = path.parent / PROBE_GRAPH
    if probe.is_file():
        return probe.read_bytes()
    graph = probe_graph()
    with contextlib.suppress(OSError):
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as fh:
            fh.write(graph)
        os.replace(fh.name, probe)
    return graph


def served_graph(path: Path) -> tuple[Path, str]:
    """The graph to serve for an exported one (`*.int8u.onnx`, unsigned weights) and which weights it holds: the same
    graph with its weights signed (written beside it once) where `signed_sums_exact`, else itself. The integers are
    the same either way; only the kernels differ (signed: VNNI or AMX, the fastest onnxruntime has)."""
    if not path.name.endswith(INT8_GRAPH):
        return path, "unsigned"
    try:
        exact = signed_sums_exact(_probe_beside(path))
    except Exception as exc:  # noqa: BLE001 - a damaged probe file must not stop a scorer: the probe built here
        log.warning("cannot read %s beside %s (%s): probing with a graph built here", PROBE_GRAPH, path.name, exc)
        exact = signed_sums_exact()
    if not exact:
        return path, "unsigned"
    signed = path.with_name(path.name[: -len(INT8_GRAPH)] + SIGNED_GRAPH)
    if not signed.is_file():
        import onnx

        graph = onnx.load(str(path))
        signed_weights(graph)
        try:  # a cache a scorer may not write: the unsigned graph, the same scores, slower kernels
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as fh:
                fh.write(graph.SerializeToString())
            os.replace(fh.name, signed)
        except OSError as exc:
            log.warning("cannot write %s (%s): serving the unsigned int8 weights", signed, exc)
            return path, "unsigned"
    return signed, "signed"
