"""pixelserve: train small Keras image models, export them to ONNX, serve them."""

__version__ = "0.1.0"
