"""Face backends: dlib (default, models from PyPI) and ONNX models loaded from configured paths."""
