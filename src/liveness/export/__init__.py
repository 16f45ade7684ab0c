"""Deployable forms of a model bundle: ``onnx`` exports the scoring graph and scores crops with onnxruntime."""
