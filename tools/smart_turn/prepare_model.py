#!/usr/bin/env python3
"""Takes Pipecat's Smart Turn v3.2 end-of-turn model out of the pipecat-ai wheel (run once, offline
afterwards; the result is committed as engine/models/smart_turn_v3_2.onnx).

The model (BSD-2-Clause, Daily; github.com/pipecat-ai/smart-turn) is a Whisper-tiny encoder with a
classifier head, int8 weights in QDQ form (opset 18). Input `input_features` [batch, 80, 800]: the
Whisper log-mel features of the last 8 s of 16 kHz audio (zero-padded at the front); output
`logits` [batch, 1]: the probability (after its own sigmoid) that the turn is complete.

What this script changes, and why:
- tract-onnx 0.22 applies a per-channel DequantizeLinear (int8 weights with a scale per output
  channel: 33 of them, on the convolutions, projections and classifier) with one scale for every
  channel, which silently changes the answer. Each becomes Cast -> Sub(zero point) -> Mul(scale),
  broadcast along its axis: the same arithmetic, the weights still stored as int8 (tract folds
  them to float once at load).
- The 78 QuantizeLinear -> DequantizeLinear pairs on activations are removed, so activations stay
  float. Two reasons: tract's optimizer turns Softmax -> QuantizeLinear(uint8) into 255 everywhere,
  and the int8 activation rounding makes the model fragile: onnxruntime itself gives 0.70 or 0.37
  on the same clip depending only on whether it fuses the pairs (ORT_DISABLE_ALL vs ENABLE_ALL).
  Without them the model is the trained float model with int8-compressed weights; onnxruntime with
  and without optimizations then agrees to 1e-4, and tract to onnxruntime to the test's tolerance.
  The reference file records how far this lands from Pipecat's own figures (same clips, the
  original file, Pipecat's onnxruntime settings).

Usage: prepare_model.py OUT.onnx   (needs: pip install onnx onnxruntime numpy; downloads
pipecat-ai==1.14.0 with pip)
"""
import hashlib
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import wheel_member  # noqa: E402

VERSION = "1.14.0"
MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    data = wheel_member.read("pipecat-ai", VERSION, MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"{MEMBER} in pipecat-ai {VERSION} has sha256 {digest}, expected {SHA256}")
    model = onnx.load_from_string(data)
    rewritten = per_channel_to_broadcast(model)
    dropped = drop_activation_qdq(model)
    model.doc_string = (f"Smart Turn v3.2 (pipecat-ai {VERSION}, BSD-2-Clause, Daily), sha256 {digest}; "
                        f"{rewritten} per-channel weight DequantizeLinear rewritten as Cast/Sub/Mul, "
                        f"{dropped} activation QuantizeLinear/DequantizeLinear pairs removed by "
                        "tools/smart_turn/prepare_model.py")
    out = model.SerializeToString()
    check_stable(out)
    with open(sys.argv[1], "wb") as f:
        f.write(out)
    print(f"wrote {sys.argv[1]} ({len(out)} bytes; {rewritten} weight nodes rewritten, "
          f"{dropped} activation pairs removed)")


def per_channel_to_broadcast(model):
    g = model.graph
    init = {i.name: i for i in g.initializer}
    nodes, count = [], 0
    for n in g.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in init or n.input[1] not in init:
            nodes.append(n)
            continue
        axis = [a.i for a in n.attribute if a.name == "axis"]
        scale = numpy_helper.to_array(init[n.input[1]])
        if scale.size == 1:
            nodes.append(n)
            continue
        x = numpy_helper.to_array(init[n.input[0]])
        ax = axis[0] if axis else 1
        shape = [1] * x.ndim
        shape[ax] = scale.size
        zp = (numpy_helper.to_array(init[n.input[2]]) if len(n.input) > 2 and n.input[2]
              else np.zeros(scale.size))
        base = n.output[0]
        g.initializer.append(numpy_helper.from_array(
            scale.reshape(shape).astype(np.float32), base + "_scale_b"))
        g.initializer.append(numpy_helper.from_array(
            zp.reshape(shape).astype(np.float32), base + "_zp_b"))
        nodes += [
            helper.make_node("Cast", [n.input[0]], [base + "_f"], to=onnx.TensorProto.FLOAT),
            helper.make_node("Sub", [base + "_f", base + "_zp_b"], [base + "_c"]),
            helper.make_node("Mul", [base + "_c", base + "_scale_b"], [base]),
        ]
        count += 1
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return count


def drop_activation_qdq(model):
    """Removes the QuantizeLinear -> DequantizeLinear pairs on activations: their consumers read
    the float value the pair was given."""
    g = model.graph
    init = {i.name for i in g.initializer}
    quantized = {n.output[0]: n.input[0] for n in g.node
                 if n.op_type == "QuantizeLinear" and n.input[0] not in init}
    alias, kept = {}, []
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.output[0] in quantized:
            continue
        if n.op_type == "DequantizeLinear" and n.input[0] in quantized:
            alias[n.output[0]] = quantized[n.input[0]]
            continue
        kept.append(n)
    for n in kept:
        for k, name in enumerate(n.input):
            n.input[k] = alias.get(name, name)
    for o in g.output:
        o.name = alias.get(o.name, o.name)
    del g.node[:]
    g.node.extend(kept)
    del g.value_info[:]
    return len(alias)


def check_stable(rewritten):
    """The rewritten model gives the same answers with and without onnxruntime's graph
    optimizations (the original does not: see above)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.0, 1.5, size=(2, 80, 800)).astype(np.float32)
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    a = ort.InferenceSession(rewritten, plain).run(None, {"input_features": x})[0]
    b = ort.InferenceSession(rewritten).run(None, {"input_features": x})[0]
    if not np.allclose(a, b, atol=1e-3):
        sys.exit(f"rewritten model is not stable: {a.ravel()} vs {b.ravel()}")


if __name__ == "__main__":
    main()
