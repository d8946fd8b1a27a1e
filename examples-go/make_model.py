#!/usr/bin/env python3
"""Writes the Go example's two ONNX models, built by the Python example's own code
(examples-python/onnx_loop.py: build_model and build_cnn, seeded numpy RNGs), so both examples
run the very same models:

  sensor.onnx  sensor-mlp 1.0.0: a 2-layer MLP (16 sensor inputs -> 32 hidden, ReLU -> 4
               classes, softmax). Input "x" float32 [batch, 16], output "probs" [batch, 4].
  camera.onnx  camera-cnn 1.0.0: a small CNN (3 x Conv3x3+Relu+MaxPool2 with 24, 48, 96
               channels, GlobalAveragePool, Gemm -> 10, softmax). Input "x" float32
               [batch, 3, 128, 128], output "probs" [batch, 10].

    make_model.py OUT_DIR       writes OUT_DIR/sensor.onnx and OUT_DIR/camera.onnx
    make_model.py OUT.onnx      writes the sensor model only (the former usage)

Run it with the python of scripts/onnx-venv.sh (onnx, onnxruntime, numpy).
"""

import importlib.util
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ONNX_LOOP = os.path.join(HERE, "..", "examples-python", "onnx_loop.py")


def load_builders():
    """Imports examples-python/onnx_loop.py for its model builders. Only they are used, so the
    module is imported with a placeholder for the edgebuf Python binding (which it imports at
    the top but needs only to log): building a model needs no edgebuf library."""
    spec = importlib.util.spec_from_file_location("onnx_loop", ONNX_LOOP)
    mod = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("edgebuf")
    sys.modules["edgebuf"] = types.ModuleType("edgebuf")
    try:
        spec.loader.exec_module(mod)
    finally:
        if saved is None:
            del sys.modules["edgebuf"]
        else:
            sys.modules["edgebuf"] = saved
    return mod


def write(path, model_bytes):
    with open(path, "wb") as f:
        f.write(model_bytes)


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: make_model.py OUT_DIR   (or OUT.onnx: the sensor model only)")
    out = argv[1]
    loop = load_builders()
    if out.endswith(".onnx") and not os.path.isdir(out):
        write(out, loop.build_model())
        return
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "sensor.onnx"), loop.build_model())  # sensor-mlp 1.0.0
    write(os.path.join(out, "camera.onnx"), loop.build_cnn())  # camera-cnn 1.0.0


if __name__ == "__main__":
    main(sys.argv)
