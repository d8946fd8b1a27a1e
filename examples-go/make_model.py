#!/usr/bin/env python3
"""Writes the example's model: a 2-layer MLP (16 sensor inputs -> 32 hidden, ReLU -> 4 classes,
softmax) as an ONNX file, with deterministic weights from a seeded numpy RNG (the same model as
examples-python/onnx_loop.py). Input "x" float32 [batch, 16], output "probs" float32 [batch, 4].

    make_model.py OUT.onnx      (run it with the python of scripts/onnx-venv.sh: onnx, numpy)
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_IN, N_HIDDEN, N_OUT = 16, 32, 4
SEED = 20240808


def build_model(seed=SEED):
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, 1.0 / np.sqrt(N_IN), (N_IN, N_HIDDEN)).astype(np.float32)
    b1 = rng.normal(0.0, 0.1, N_HIDDEN).astype(np.float32)
    w2 = rng.normal(0.0, 1.0 / np.sqrt(N_HIDDEN), (N_HIDDEN, N_OUT)).astype(np.float32)
    b2 = rng.normal(0.0, 0.1, N_OUT).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        "sensor_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", N_IN])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", N_OUT])],
        initializer=[
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(b2, "b2"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgebuf-onnx-loop"
    )
    model.ir_version = 8  # readable by every onnxruntime of the last years
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_model.py OUT.onnx")
    onnx.save(build_model(), sys.argv[1])
