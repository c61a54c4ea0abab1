"""Triton Python-backend model for the side-by-side benchmark: onnxruntime on the same model.onnx file.

Copied into a temporary Triton model repository by bench/anchor.py (never imported by pixelserve). The stub
process starts with a bare interpreter, so the site-packages of the benchmark environment (numpy,
onnxruntime) come from the `site_packages` parameter of config.pbtxt. Like pixelserve's defaults: one
session, one intra-op thread, spinning off.
"""

import json
import sys

import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        sys.path.insert(0, config["parameters"]["site_packages"]["string_value"])
        import numpy
        import onnxruntime

        self.np = numpy
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(config["parameters"]["intra_op_threads"]["string_value"])
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = f"{args['model_repository']}/{args['model_version']}/model.onnx"
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        name = self.inputs[0]
        arrays = [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
        results = self.session.run(self.outputs, {name: self.np.concatenate(arrays)})
        responses, start = [], 0
        for array in arrays:
            end = start + len(array)
            tensors = [pb_utils.Tensor(n, r[start:end]) for n, r in zip(self.outputs, results, strict=True)]
            responses.append(pb_utils.InferenceResponse(tensors))
            start = end
        return responses
