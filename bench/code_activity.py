"""Code activity (training.analysis.code_activity) of exported autoencoders, from the ONNX latent output on the
real MNIST test split. Usage: python bench/code_activity.py models/<name>/<version> ..."""

import json
import sys

import numpy as np
import onnxruntime as ort

from pixelserve.training.analysis import code_activity
from pixelserve.training.data import load_dataset

x = load_dataset("mnist", None).x_test
for model_dir in sys.argv[1:]:
    session = ort.InferenceSession(f"{model_dir}/model.onnx", providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    codes = np.concatenate([session.run(["latent"], {"image": x[i : i + 500]})[0] for i in range(0, len(x), 500)])
    print(json.dumps({"model": model_dir, "code_units": codes.shape[1], **code_activity(codes)}))
