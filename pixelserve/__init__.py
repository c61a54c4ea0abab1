"""pixelserve: train small Keras image models, export them to ONNX, serve them."""

# The one place the version is written: pyproject.toml reads it (tool.setuptools.dynamic), `pixelserve --version`
# prints it, and installed metadata (importlib.metadata.version("pixelserve")) is built from it.
__version__ = "0.1.0"
