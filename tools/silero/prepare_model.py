#!/usr/bin/env python3
"""Prepares Silero VAD v6 for tract-onnx (run once, offline afterwards; the result is committed as
engine/models/silero_vad_v6_16k.onnx).

Silero's `silero_vad_op18_ifless.onnx` (PyPI wheel silero-vad, MIT) takes a dynamic `sr` input
and dynamic shapes, which tract cannot plan. This script pins the sample rate to 16 kHz (the `sr`
input becomes a constant), fixes the shapes to one 512-sample chunk plus Silero's 64 samples of
context (input [1, 576], state [2, 1, 128]) and lets onnxsim fold what that makes constant.

Usage: prepare_model.py OUT.onnx   (needs: pip install onnx onnxsim; downloads silero-vad==6.2.3)
"""
import os
import sys

import numpy as np
import onnx
import onnxsim
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import wheel_member  # noqa: E402

VERSION = "6.2.3"
MEMBER = "silero_vad/data/silero_vad_op18_ifless.onnx"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    model = onnx.load_from_string(wheel_member.read("silero-vad", VERSION, MEMBER))
    g = model.graph
    sr = [i for i in g.input if i.name == "sr"][0]
    g.input.remove(sr)
    g.initializer.append(numpy_helper.from_array(np.array(16000, dtype=np.int64), "sr"))
    for i in g.input:
        dims = {"input": [1, 576], "state": [2, 1, 128]}[i.name]
        shape = i.type.tensor_type.shape
        for d, v in zip(shape.dim, dims):
            d.ClearField("dim_param")
            d.dim_value = v
    simple, ok = onnxsim.simplify(model)
    if not ok:
        sys.exit("onnxsim could not validate the simplified model")
    simple.doc_string = (f"Silero VAD v6 ({VERSION}, MIT, github.com/snakers4/silero-vad), "
                         "16 kHz, input [1,576] = 64 context + 512 new samples, state [2,1,128]; "
                         "prepared by tools/silero/prepare_model.py")
    onnx.save(simple, sys.argv[1])
    print(f"wrote {sys.argv[1]} ({os.path.getsize(sys.argv[1])} bytes)")


if __name__ == "__main__":
    main()
