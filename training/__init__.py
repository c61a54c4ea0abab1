"""The training side: datasets, recipes, Keras models, evaluation and ONNX export into a model repository."""
