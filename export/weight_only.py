"""Weight-only INT8 rewrites of an ONNX graph: MatMul weights as 8-bit blocks (onnxruntime's MatMulNBits, fp32
activations) and embedding tables as per-row INT8 (only the looked-up rows are dequantised, so RAM stays small).

Dynamic quantisation of a text tower's feed-forward projections costs it most of its accuracy (the activations
after GELU have outliers); its word-embedding table, which onnxruntime's quantisers leave in fp32, is most of its
size. These rewrites keep activations in fp32 and store every large weight in 8 bits (docs/quantisation.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto, TensorProto

TABLE_MIN_ROWS = 256  # Gather tables at least this long are stored per-row INT8 (word and position embeddings)
Rewrite = tuple[int, list["NodeProto"], list["TensorProto"]]  # node index, its replacement, new initializers


def _matmul_nbits(index: int, node: NodeProto, weight: np.ndarray, block: int) -> Rewrite:
    """MatMul `node` (weight (K, N)) as MatMulNBits: 8-bit symmetric blocks of `block` rows along K."""
    from onnx import helper, numpy_helper
    from onnxruntime.capi._pybind_state import quantize_matmul_8bits

    rows, cols = weight.shape
    k_blocks = -(-rows // block)
    padded = np.zeros((k_blocks * block, cols), np.float32)
    padded[:rows] = weight
    packed = np.zeros((cols, k_blocks, block), np.uint8)
    scales = np.zeros((cols, k_blocks), np.float32)
    quantize_matmul_8bits(packed, padded, scales, np.zeros((cols, k_blocks), np.uint8), block, cols, rows, True)
    name = node.input[1]
    inits = [numpy_helper.from_array(packed, f"{name}_q8"), numpy_helper.from_array(scales, f"{name}_scales")]
    replacement = helper.make_node(
        "MatMulNBits", [node.input[0], inits[0].name, inits[1].name], list(node.output), name=f"{node.name}_q8",
        domain="com.microsoft", K=rows, N=cols, bits=8, block_size=block,
    )  # fmt: skip
    return index, [replacement], inits


def _int8_table_lookup(index: int, node: NodeProto, table: np.ndarray) -> Rewrite:
    """Gather `node` on `table` (V, D) as: gather INT8 rows and their scales, multiply in fp32."""
    from onnx import TensorProto, helper, numpy_helper

    scale = (np.maximum(np.abs(table).max(axis=1, keepdims=True), 1e-12) / 127.0).astype(np.float32)
    quantized = np.clip(np.rint(table / scale), -127, 127).astype(np.int8)
    name, ids, out = node.input[0], node.input[1], node.output[0]
    inits = [numpy_helper.from_array(quantized, f"{name}_i8"), numpy_helper.from_array(scale, f"{name}_row_scale")]
    nodes = [
        helper.make_node("Gather", [inits[0].name, ids], [f"{out}_i8"], name=f"{node.name}_i8", axis=0),
        helper.make_node("Cast", [f"{out}_i8"], [f"{out}_f32"], name=f"{node.name}_cast", to=TensorProto.FLOAT),
        helper.make_node("Gather", [inits[1].name, ids], [f"{out}_scale"], name=f"{node.name}_scale", axis=0),
        helper.make_node("Mul", [f"{out}_f32", f"{out}_scale"], [out], name=f"{node.name}_dequantize"),
    ]
    return index, nodes, inits


def _rewrites(graph: GraphProto, matmul_block: int | None, tables: bool) -> Iterator[Rewrite]:
    from onnx import numpy_helper

    inits = {init.name: init for init in graph.initializer}
    for index, node in enumerate(graph.node):
        weight = node.input[1] if node.op_type == "MatMul" else None
        if matmul_block and weight in inits and len(inits[weight].dims) == 2:
            yield _matmul_nbits(index, node, numpy_helper.to_array(inits[weight]).astype(np.float32), matmul_block)
        elif tables and node.op_type == "Gather" and node.input[0] in inits:
            table = numpy_helper.to_array(inits[node.input[0]])
            if table.ndim == 2 and len(table) >= TABLE_MIN_ROWS and table.dtype == np.float32:
                yield _int8_table_lookup(index, node, table)


def int8_weights(model: ModelProto, matmul_block: int | None = None, tables: bool = True) -> ModelProto:
    """Rewrite `model` in place: MatMuls with a 2-D constant weight as 8-bit MatMulNBits in blocks of
    `matmul_block` rows (None: leave them), large fp32 Gather tables as per-row INT8. An fp32 weight that another
    node still reads is kept."""
    from onnx import helper

    graph = model.graph
    replaced: dict[int, list[NodeProto]] = {}
    added: dict[str, TensorProto] = {}
    for index, nodes, new in _rewrites(graph, matmul_block, tables):
        replaced[index] = nodes
        added |= {init.name: init for init in new}
    kept_nodes = [n for index, node in enumerate(graph.node) for n in replaced.get(index, [node])]
    read = {name for node in kept_nodes for name in node.input}
    kept_inits = [init for init in graph.initializer if init.name in read] + list(added.values())
    del graph.node[:]
    graph.node.extend(kept_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model
