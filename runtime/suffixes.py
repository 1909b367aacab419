"""The image files every command reads (folders, calibration, datasets): what OpenCV decodes everywhere."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
