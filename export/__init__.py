"""Training and export side of imprinting (PyTorch): the EfficientNet-Lite0 extractor, the cosine
classifier, base training, and export to ONNX/TFLite model bundles that verify themselves.

Import submodules directly (`from imprinting.export.model import build_extractor`); nothing heavy is
imported here, so `imprinting.cli` can list commands without loading torch.
"""
