"""The served int8 graph computes the same integers on every x86 CPU: its weights are stored unsigned.

onnxruntime multiplies unsigned activations by signed weights, on a CPU without VNNI, with an instruction that adds
pairs of products into 16 bits and saturates; the same graph on a VNNI CPU sums exactly. The models' cards were
measured on one, a scorer may run on the other (bench/RESULTS.md, "Unsigned int8 weights").
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from models.backends import INT8_GRAPH, export_onnx_int8, unsigned_weights  # noqa: E402

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


def test_a_weight_read_by_another_node_is_not_moved():
    model = _matmul_integer(np.ones((K, N), dtype=np.int8), np.zeros(N, dtype=np.int8), reader="Identity")
    with pytest.raises(ValueError, match="read by more than MatMulInteger"):
        unsigned_weights(model)


def test_the_exported_graph_holds_unsigned_weights_only_and_scores_as_its_fp32_module(tmp_path):
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.embed = torch.nn.Embedding(50, 32)
            self.dense = torch.nn.Linear(32, 16)

        def forward(self, input_ids, attention_mask):
            return (self.dense(self.embed(input_ids)) * attention_mask.unsqueeze(-1)).mean(dim=1)

    module = Tiny()
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
