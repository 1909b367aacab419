"""imprinting: few-shot image recognition by weight imprinting.

`imprinting.runtime` is the device side (numpy + one inference runtime + OpenCV);
`imprinting.export` is the training and export side (PyTorch).
"""

import os

__version__ = "0.1.0"

# One BLAS thread unless the user chose otherwise. The classifier's matrix-vector products are too small to
# gain from threads, and OpenBLAS's idle threads spin for a while after each call, taking the cores that the
# extractor's own threads need: with 1000 classes, LiteRT at 2 threads ran 9.8 ms per frame instead of 5.3 ms
# (benchmarks/latency.py). Effective when imprinting is imported before numpy, as by the `imprint` command.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
