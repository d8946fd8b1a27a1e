#!/usr/bin/env python3
"""The models and inputs of the ONNX Runtime examples (examples-python and examples-go).

Two models, built with onnx.helper from a seeded numpy RNG (nothing is downloaded):

  sensor.onnx  sensor-mlp 1.0.0: a tiny classifier (16 sensor inputs -> 32 hidden, ReLU -> 4
               classes, softmax); about 10 µs per inference. Input "x" float32 [batch, 16],
               output "probs" [batch, 4].
  camera.onnx  camera-cnn 1.0.0: a small CNN (1x3x128x128 input; 3 x Conv 3x3 + Relu +
               MaxPool 2x2 with 24, 48, 96 channels; GlobalAveragePool; Gemm to 10 classes;
               softmax); a few ms per inference, like an edge vision model. Input "x" float32
               [batch, 3, 128, 128], output "probs" [batch, 10].

and their synthetic inputs (Sensors: readings; Frames: 128x128 RGB uint8 frames, scaled to
[-1, 1] float32), the same sequence on every run.

    models.py OUT_DIR       writes OUT_DIR/sensor.onnx and OUT_DIR/camera.onnx
    models.py OUT.onnx      writes the sensor model only

Run it with the python of scripts/onnx-venv.sh (onnx, onnxruntime, numpy).
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_IN, N_HIDDEN, N_OUT = 16, 32, 4  # the sensor model
CAM_H = CAM_W = 128  # the camera model: 128x128 RGB frames
CAM_CHANNELS = (24, 48, 96)  # three Conv3x3+Relu+MaxPool2 stages
CAM_CLASSES = 10
SEED = 20240808


def _finish_model(graph):
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgebuf-onnx-loop"
    )
    model.ir_version = 8  # what every onnxruntime of the last years reads
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build_model(seed=SEED):
    """A 2-layer MLP as an ONNX model (bytes): Gemm, Relu, Gemm, Softmax, opset 17."""
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
    return _finish_model(graph)


def build_cnn(seed=SEED + 2):
    """A small image classifier as an ONNX model (bytes), opset 17: input 1x3x128x128 float32,
    three stages of Conv 3x3 (pad 1) + Relu + MaxPool 2x2 (24, 48, 96 channels: 128 -> 64 -> 32
    -> 16), GlobalAveragePool, Flatten, Gemm to 10 classes, Softmax. He-initialised weights from
    a seeded RNG: the scores mean nothing, the cost (about 60 M multiply-adds) is a real one."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    cur, cin = "x", 3
    for i, c in enumerate(CAM_CHANNELS):
        w = rng.normal(0.0, np.sqrt(2.0 / (cin * 9)), (c, cin, 3, 3)).astype(np.float32)
        b = rng.normal(0.0, 0.05, c).astype(np.float32)
        inits += [numpy_helper.from_array(w, "conv%d_w" % i),
                  numpy_helper.from_array(b, "conv%d_b" % i)]
        nodes += [
            helper.make_node("Conv", [cur, "conv%d_w" % i, "conv%d_b" % i], ["conv%d" % i],
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv%d" % i], ["relu%d" % i]),
            helper.make_node("MaxPool", ["relu%d" % i], ["pool%d" % i], kernel_shape=[2, 2],
                             strides=[2, 2]),
        ]
        cur, cin = "pool%d" % i, c
    wf = rng.normal(0.0, 1.0 / np.sqrt(cin), (cin, CAM_CLASSES)).astype(np.float32)
    bf = rng.normal(0.0, 0.1, CAM_CLASSES).astype(np.float32)
    inits += [numpy_helper.from_array(wf, "fc_w"), numpy_helper.from_array(bf, "fc_b")]
    nodes += [
        helper.make_node("GlobalAveragePool", [cur], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["feat"], axis=1),
        helper.make_node("Gemm", ["feat", "fc_w", "fc_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "camera_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, CAM_H, CAM_W])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", CAM_CLASSES])],
        initializer=inits,
    )
    return _finish_model(graph)


class Sensors:
    """Synthetic readings: four regimes (centroids) plus noise, generated in chunks. next()
    returns (model input, the bytes its input_hash is of): here both are the reading."""

    def __init__(self, seed=SEED + 1):
        self.rng = np.random.default_rng(seed)
        self.centroids = self.rng.normal(0.0, 1.0, (N_OUT, N_IN)).astype(np.float32)
        self.chunk = np.empty((0, 1, N_IN), np.float32)
        self.i = 0

    def next(self):
        if self.i == len(self.chunk):
            k = self.rng.integers(0, N_OUT, 1024)
            x = self.centroids[k] + self.rng.normal(0.0, 0.6, (1024, N_IN)).astype(np.float32)
            self.chunk = np.ascontiguousarray(x.reshape(1024, 1, N_IN), dtype=np.float32)
            self.i = 0
        x = self.chunk[self.i]
        self.i += 1
        return x, x


class Frames:
    """Synthetic camera frames, as a camera delivers them: 128x128 RGB, uint8, HWC (48 KiB).
    A pool of POOL frames (a coarse random colour field, upsampled 8x, plus pixel noise) is
    made once from a seeded RNG and cycled through; each frame gets a 32-bit frame counter in
    its first 4 bytes, so no two frames are equal. next() returns (the model input: the frame
    scaled to [-1, 1], 1x3x128x128 float32 CHW; the captured frame, whose bytes input_hash is
    of). Like reading the sensors, this happens before an iteration's clock starts."""

    POOL = 16

    def __init__(self, seed=SEED + 3):
        rng = np.random.default_rng(seed)
        p, h, w = self.POOL, CAM_H, CAM_W
        coarse = rng.integers(0, 256, (p, h // 8, w // 8, 3)).astype(np.int16)
        img = coarse.repeat(8, axis=1).repeat(8, axis=2) + rng.integers(-24, 25, (p, h, w, 3))
        self.pool = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
        # The first 4 bytes of each frame as one little-endian uint32: the frame counter.
        self.counter = self.pool.reshape(p, -1)[:, :4].view("<u4")
        self.x = np.empty((1, 3, h, w), np.float32)
        self.n = 0

    def next(self):
        k = self.n % self.POOL
        self.n += 1
        self.counter[k, 0] = self.n & 0xFFFFFFFF
        frame = self.pool[k]
        x = self.x  # reused: sess.run has returned by the next call
        np.multiply(frame.transpose(2, 0, 1), np.float32(1.0 / 127.5), out=x[0],
                    dtype=np.float32)
        x -= np.float32(1.0)
        return x, frame


def write(path, model_bytes):
    with open(path, "wb") as f:
        f.write(model_bytes)


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: models.py OUT_DIR   (or OUT.onnx: the sensor model only)")
    out = argv[1]
    if out.endswith(".onnx") and not os.path.isdir(out):
        write(out, build_model())
        return
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "sensor.onnx"), build_model())  # sensor-mlp 1.0.0
    write(os.path.join(out, "camera.onnx"), build_cnn())  # camera-cnn 1.0.0


if __name__ == "__main__":
    main(sys.argv)
