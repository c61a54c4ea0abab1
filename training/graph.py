"""What the export adds to an ONNX graph after the Keras model is converted, as plain ONNX nodes.

- `add_anomaly_map`: for autoencoders, a per-pixel output ``anomaly_map`` [N, H, W]: the squared error between
  the reconstruction and the scaled input, averaged over channels (the per-image mean of it is
  ``reconstruction_error``). The server serves it and the playground draws it, so no client recomputes it.
- `add_temperature`: for classifiers, temperature scaling inside the graph: ``probabilities`` becomes
  softmax(log(max(p, FLOOR)) / T) of the probabilities the network computed (training.calibration.scale, the
  same numbers), so what is served is what the calibration was measured on.

Both edit the file in place and keep the graph's input and the other outputs as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pixelserve.modelspec import INPUT_IMAGE, OUTPUT_ANOMALY_MAP, OUTPUT_PROBABILITIES, OUTPUT_RECONSTRUCTION

from .calibration import FLOOR


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _rename_output(model: onnx.ModelProto, name: str, new_name: str) -> None:
    """The node that produced graph output `name` now produces `new_name` (an internal tensor)."""
    for node in model.graph.node:
        node.output[:] = [new_name if o == name else o for o in node.output]
        node.input[:] = [new_name if i == name else i for i in node.input]
    (output,) = [o for o in model.graph.output if o.name == name]
    model.graph.output.remove(output)


def add_anomaly_map(path: Path) -> None:
    model = onnx.load(str(path))
    graph = model.graph
    if any(o.name == OUTPUT_ANOMALY_MAP for o in graph.output):
        return
    height, width = (d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:3])
    scale = numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "anomaly_map_scale")
    graph.initializer.append(scale)
    nodes = [
        helper.make_node("Cast", [INPUT_IMAGE], ["anomaly_map_pixels"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["anomaly_map_pixels", "anomaly_map_scale"], ["anomaly_map_input"]),
        helper.make_node("Sub", [OUTPUT_RECONSTRUCTION, "anomaly_map_input"], ["anomaly_map_difference"]),
        helper.make_node("Mul", ["anomaly_map_difference", "anomaly_map_difference"], ["anomaly_map_squared"]),
    ]
    if _opset(model) >= 18:
        axes = numpy_helper.from_array(np.array([3], dtype=np.int64), "anomaly_map_axes")
        graph.initializer.append(axes)
        nodes.append(helper.make_node("ReduceMean", ["anomaly_map_squared", "anomaly_map_axes"], [OUTPUT_ANOMALY_MAP],
                                      keepdims=0))  # fmt: skip
    else:
        nodes.append(
            helper.make_node("ReduceMean", ["anomaly_map_squared"], [OUTPUT_ANOMALY_MAP], axes=[3], keepdims=0)
        )
    graph.node.extend(nodes)
    graph.output.append(helper.make_tensor_value_info(OUTPUT_ANOMALY_MAP, TensorProto.FLOAT, ["N", height, width]))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def add_temperature(path: Path, temperature: float) -> None:
    model = onnx.load(str(path))
    graph = model.graph
    (output,) = [o for o in graph.output if o.name == OUTPUT_PROBABILITIES]
    raw = "probabilities_uncalibrated"
    _rename_output(model, OUTPUT_PROBABILITIES, raw)
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(FLOOR, dtype=np.float32), "calibration_floor"),
            numpy_helper.from_array(np.array(1 / temperature, dtype=np.float32), "calibration_inverse_temperature"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Max", [raw, "calibration_floor"], ["calibration_clipped"]),
            helper.make_node("Log", ["calibration_clipped"], ["calibration_log"]),
            helper.make_node("Mul", ["calibration_log", "calibration_inverse_temperature"], ["calibration_scaled"]),
            helper.make_node("Softmax", ["calibration_scaled"], [OUTPUT_PROBABILITIES], axis=-1),
        ]
    )
    graph.output.append(output)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
