"""The served int8 graph computes the same integers on every x86 CPU: its weights are stored unsigned, and served
signed only where a probe shows the machine sums them exactly.

onnxruntime multiplies unsigned activations by signed weights, on a CPU without VNNI, with an instruction that adds
pairs of products into 16 bits and saturates; the same graph on a VNNI CPU sums exactly. The models' cards were
measured on one, a scorer may run on the other (bench/RESULTS.md, "Unsigned int8 weights").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from models import backends  # noqa: E402
from models.backends import (  # noqa: E402
    INT8_GRAPH,
    PROBE_GRAPH,
    SIGNED_GRAPH,
    OnnxBackend,
    export_onnx_int8,
    probe_graph,
    served_graph,
    signed_sums_exact,
    signed_weights,
    unsigned_weights,
)

K, N, M = 64, 8, 3


def _matmul_integer(weights: np.ndarray, zero_points: np.ndarray, reader: str = "MatMulInteger") -> onnx.ModelProto:
    """y = a @ (weights - zero_points), a unsigned: one MatMulInteger (and, with `reader`, a second node reading the
    weights)."""
    nodes = [helper.make_node("MatMulInteger", ["a", "w", "a_zp", "w_zp"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.INT32, [M, N])]
    if reader != "MatMulInteger":
        nodes.append(helper.make_node(reader, ["w"], ["w_too"]))
        outputs.append(helper.make_tensor_value_info("w_too", TensorProto.INT8, [K, N]))
    graph = helper.make_graph(
        nodes, "one_matmul", [helper.make_tensor_value_info("a", TensorProto.UINT8, [M, K])], outputs,
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.uint8(0), "a_zp"),
         numpy_helper.from_array(zero_points, "w_zp")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, a: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"a": a})[0]


def test_unsigned_weights_give_the_exact_products_where_signed_ones_saturate_on_some_cpus():
    # the activations at the top of their range against the weights at theirs: each pair of products is 64,770,
    # which a 16-bit sum clips to 32,767 (signed weights on an AVX2 CPU: this machine's onnxruntime gave 1,048,544
    # for the first column, the exact sum is 2,072,640)
    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 128, (K, N)).astype(np.int8)
    weights[:, 0], weights[:, 1], weights[::2, 2] = 127, -127, -128
    a = np.full((M, K), 255, dtype=np.uint8)
    a[1] = rng.integers(0, 256, K)
    exact = a.astype(np.int64) @ weights.astype(np.int64)
    model = _matmul_integer(weights, np.zeros(N, dtype=np.int8))

    assert unsigned_weights(model) == 1
    w, zp = (numpy_helper.to_array(t) for t in model.graph.initializer if t.name in ("w", "w_zp"))
    assert w.dtype == np.uint8 and zp.dtype == np.uint8 and (zp == 128).all()
    # the same integers: weight minus zero point is what it was
    assert np.array_equal(w.astype(np.int64) - zp.astype(np.int64), weights.astype(np.int64))
    assert np.array_equal(_run(model, a), exact)
    assert unsigned_weights(model) == 1 and np.array_equal(_run(model, a), exact)  # a second pass changes nothing


def _saturating() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, activations at the top of their range, and their exact products."""
    rng = np.random.default_rng(1)
    weights = rng.integers(-128, 128, (K, N)).astype(np.int8)
    weights[:, 0], weights[:, 1] = 127, -128
    a = np.full((M, K), 255, dtype=np.uint8)
    return weights, a, a.astype(np.int64) @ weights.astype(np.int64)


def _unsigned_graph_file(folder: Path, stem: str, weights: np.ndarray) -> Path:
    """The one-MatMulInteger graph of `weights`, stored unsigned as an export writes it (`stem` + INT8_GRAPH)."""
    model = _matmul_integer(weights, np.zeros(N, dtype=np.int8))
    unsigned_weights(model)
    path = folder / (stem + INT8_GRAPH)
    onnx.save(model, str(path))
    return path


def test_signed_weights_are_the_inverse_of_unsigned_ones():
    weights, _, _ = _saturating()
    model = _matmul_integer(weights, np.zeros(N, dtype=np.int8))
    before = model.SerializeToString()
    unsigned_weights(model)
    assert model.SerializeToString() != before
    assert signed_weights(model) == 1 and model.SerializeToString() == before


def test_the_probe_says_whether_this_machine_sums_signed_weights_exactly():
    # on this machine's onnxruntime, signed weights against saturating activations give the exact products exactly
    # when the probe says so (an AVX2-only CPU: neither; a VNNI or AMX one: both)
    weights, a, exact = _saturating()
    signed = _run(_matmul_integer(weights, np.zeros(N, dtype=np.int8)), a)
    assert np.array_equal(signed, exact) == signed_sums_exact()


@pytest.mark.parametrize("exact_here", [True, False])
def test_a_machine_serves_signed_weights_only_where_it_sums_them_exactly(tmp_path, monkeypatch, exact_here):
    weights, a, exact = _saturating()
    path = _unsigned_graph_file(tmp_path, "embeddings", weights)
    monkeypatch.setattr(backends, "signed_sums_exact", lambda graph=None: exact_here)

    served, weights_held = served_graph(path)
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(served)).graph.initializer}
    if exact_here:
        assert (served.name, weights_held) == ("embeddings" + SIGNED_GRAPH, "signed")
        assert np.array_equal(stored["w"], weights) and stored["w"].dtype == np.int8
        written = served.stat().st_mtime_ns
        assert served_graph(path) == (served, "signed") and served.stat().st_mtime_ns == written  # written once
    else:
        assert (served, weights_held) == (path, "unsigned") and stored["w"].dtype == np.uint8
        assert not (tmp_path / ("embeddings" + SIGNED_GRAPH)).exists()
    monkeypatch.undo()
    if weights_held == "unsigned" or signed_sums_exact():  # what this machine would serve: the exact products
        assert np.array_equal(_run(onnx.load(str(served)), a), exact)


def test_a_weight_read_by_another_node_is_not_moved():
    model = _matmul_integer(np.ones((K, N), dtype=np.int8), np.zeros(N, dtype=np.int8), reader="Identity")
    with pytest.raises(ValueError, match="read by more than MatMulInteger"):
        unsigned_weights(model)


def _tiny_module():
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.embed = torch.nn.Embedding(50, 32)
            self.dense = torch.nn.Linear(32, 16)

        def forward(self, input_ids, attention_mask):
            return (self.dense(self.embed(input_ids)) * attention_mask.unsqueeze(-1)).mean(dim=1)

    return Tiny()


def test_the_exported_graph_holds_unsigned_weights_only_and_scores_as_its_fp32_module(tmp_path):
    import torch

    module = _tiny_module()
    path = export_onnx_int8(module, tmp_path / ("model" + INT8_GRAPH))
    graph = onnx.load(str(path))
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    matmuls = [n for n in graph.graph.node if n.op_type == "MatMulInteger"]
    assert matmuls and all(initializers[n.input[1]].dtype == np.uint8 for n in matmuls)
    ids = np.arange(1, 13, dtype=np.int64).reshape(1, -1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    with torch.inference_mode():
        want = module(torch.from_numpy(ids), torch.from_numpy(np.ones_like(ids))).numpy()
    assert np.allclose(got, want, atol=0.05)


def test_a_cache_the_scorer_cannot_write_serves_the_unsigned_graph(tmp_path, monkeypatch):
    path = _unsigned_graph_file(tmp_path, "model", _saturating()[0])
    monkeypatch.setattr(backends, "signed_sums_exact", lambda graph=None: True)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(backends.tempfile, "NamedTemporaryFile", read_only)
    assert served_graph(path) == (path, "unsigned")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_an_export_writes_the_probe_beside_it_and_a_scorer_then_probes_without_onnx(tmp_path):
    """The probe's graph is written with the export (where `onnx` is loaded anyway): a scorer serving from that cache
    asks its question with onnxruntime alone and never imports `onnx` (0.3 s and about 16 MB a process)."""
    path = export_onnx_int8(_tiny_module(), tmp_path / ("model" + INT8_GRAPH))
    probe = tmp_path / PROBE_GRAPH
    assert probe.read_bytes() == probe_graph()
    assert signed_sums_exact(probe.read_bytes()) == signed_sums_exact()  # the same answer as the graph built here
    serve = ("import sys\nfrom pathlib import Path\nfrom models.backends import OnnxBackend\n"
             f"backend = OnnxBackend(Path({str(path)!r}), threads=1)\n"
             "print(backend.weights, 'onnx' in sys.modules)")
    root = Path(__file__).resolve().parents[2]
    # the first start on a machine that sums signed weights exactly writes their graph (with onnx); none after it
    runs = [subprocess.run([sys.executable, "-c", serve], cwd=root, capture_output=True, text=True, check=True)
            for _ in range(2)]
    weights, onnx_loaded = runs[-1].stdout.split()
    assert weights == ("signed" if signed_sums_exact() else "unsigned")
    assert onnx_loaded == "False"


def test_a_cache_from_before_the_probe_file_gets_it_at_its_first_serve(tmp_path):
    path = _unsigned_graph_file(tmp_path, "model", _saturating()[0])
    assert not (tmp_path / PROBE_GRAPH).exists()
    served_graph(path)
    assert (tmp_path / PROBE_GRAPH).read_bytes() == probe_graph()
    assert not list(tmp_path.glob("*.tmp"))


def test_a_damaged_probe_file_is_probed_around(tmp_path):
    path = _unsigned_graph_file(tmp_path, "model", _saturating()[0])
    (tmp_path / PROBE_GRAPH).write_bytes(b"not a graph")
    served, weights = served_graph(path)
    assert weights == ("signed" if signed_sums_exact() else "unsigned")


def test_rows_run_by_two_workers_come_back_in_their_batch_order_each_as_run_alone(tmp_path):
    path = export_onnx_int8(_tiny_module(), tmp_path / ("model" + INT8_GRAPH))
    rng = np.random.default_rng(0)
    lengths = [3, 12, 1, 7, 12, 5, 9, 2, 11]  # the workers take the longest first: the order they finish is not this
    ids = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(1, 50, n)
    mask = (np.arange(ids.shape[1]) < np.asarray(lengths)[:, None]).astype(np.int64)
    alone = OnnxBackend(path, threads=1)
    want = np.concatenate([alone.outputs(ids[i:i + 1, :n], mask[i:i + 1, :n]) for i, n in enumerate(lengths)])
    got = OnnxBackend(path, threads=2).outputs(ids, mask)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert len({row.tobytes() for row in want}) == len(lengths)  # every row differs: a row out of place would show
