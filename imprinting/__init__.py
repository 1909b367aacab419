"""imprinting: few-shot image recognition by weight imprinting.

`imprinting.runtime` is the device side (numpy + one inference runtime + OpenCV);
`imprinting.export` is the training and export side (PyTorch).
"""

__version__ = "0.1.0"
