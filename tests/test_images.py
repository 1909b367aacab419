from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from imprinting.runtime import PreprocessSpec, load_image, preprocess  # noqa: E402
from imprinting.runtime.preprocess import normalize, resize_for_crop  # noqa: E402


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The textbook reference: the central size x size window of an (H, W, C) array."""
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]

from tiny import pattern_image  # noqa: E402


def test_file_bytes_and_array_inputs_agree(tmp_path):
    rgb = pattern_image(0, 0)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(load_image(path), rgb)
    np.testing.assert_array_equal(load_image(str(path)), rgb)
    np.testing.assert_array_equal(load_image(path.read_bytes()), rgb)
    np.testing.assert_array_equal(load_image(rgb[..., ::-1].copy(), color_order="BGR"), rgb)


def test_grayscale_files_become_colour(tmp_path):
    path = tmp_path / "g.png"
    cv2.imwrite(str(path), np.full((20, 30), 77, np.uint8))
    img = load_image(path)
    assert img.shape == (20, 30, 3) and (img == 77).all()


@pytest.mark.parametrize(
    "arr, message",
    [
        (np.zeros((10, 10), np.uint8), "grayscale"),
        (np.zeros((10, 10, 1), np.uint8), "grayscale"),
        (np.zeros((10, 10, 4), np.uint8), "alpha"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10, 5), np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
    ],
)
def test_bad_arrays(arr, message):
    with pytest.raises(ValueError, match=message):
        load_image(arr)


def test_bad_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff this is not really a jpeg" * 10)
    with pytest.raises(ValueError, match="is empty"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(ValueError, match="cannot decode"):
        load_image(tmp_path / "bad.jpg")
    with pytest.raises(ValueError, match="does not exist"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(ValueError, match="color_order"):
        load_image(pattern_image(0, 0), color_order="rgb")
    with pytest.raises(ValueError, match="expected a file path"):
        load_image(12)


def test_preprocess_is_resize_shorter_side_center_crop_and_normalize():
    spec = PreprocessSpec(input_size=4, resize_size=4, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    img = np.zeros((4, 8, 3), np.uint8)
    img[:, 2:6] = 255  # the central 4 columns are white
    x = preprocess(img, spec)
    assert x.shape == (1, 3, 4, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x, 1.0)  # white maps to +1 with mean 0.5, std 0.5
    y = preprocess([img, img], spec, layout="NHWC")
    assert y.shape == (2, 4, 4, 3)


def test_resize_keeps_aspect_and_stretch_does_not():
    img = np.zeros((480, 640, 3), np.uint8)
    assert resize_for_crop(img, PreprocessSpec()).shape == (256, 341, 3)
    assert resize_for_crop(img, PreprocessSpec(resize_mode="stretch")).shape == (256, 256, 3)
    small = np.zeros((100, 50, 3), np.uint8)
    assert resize_for_crop(small, PreprocessSpec()).shape == (512, 256, 3)


def test_spec_validation():
    with pytest.raises(ValueError, match="resize_size"):
        PreprocessSpec(input_size=224, resize_size=200)
    with pytest.raises(ValueError, match="resize_mode"):
        PreprocessSpec(resize_mode="fill")
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        PreprocessSpec.from_dict({"input_size": 224, "colour": "RGB"})


def test_bgr_frames_need_no_conversion():
    rgb = cv2.resize(pattern_image(1, 0), (640, 480))
    spec = PreprocessSpec()
    for layout in ("NCHW", "NHWC"):
        np.testing.assert_array_equal(preprocess(rgb[..., ::-1], spec, layout, color_order="BGR"), preprocess(rgb, spec, layout))


def test_crop_then_resize_matches_resize_then_crop():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (384, 512, 3), dtype=np.uint8), (0, 0), 4)
    spec = PreprocessSpec()
    fast = preprocess(img, spec)
    slow = normalize(center_crop(resize_for_crop(img, spec), 224)[None], spec)
    assert np.abs(fast - slow).mean() < 0.02  # same geometry, interpolation differs slightly
    square = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)  # the paper's setting is exactly a crop
    np.testing.assert_array_equal(preprocess(square, spec), normalize(center_crop(square, 224)[None], spec))


def test_header_sizes_of_common_formats_are_read_without_decoding():
    import cv2

    from imprinting.runtime.images import image_size

    im = np.zeros((37, 53, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".webp"):
        ok, buf = cv2.imencode(ext, im)
        assert ok and image_size(buf.tobytes()) == (53, 37), ext
    assert image_size(b"not an image") is None


def test_decompression_bombs_devices_and_fifos_are_refused_before_decoding(tmp_path):
    import os
    import struct
    import zlib

    from imprinting.runtime.images import load_image

    # A PNG that declares 20000 x 20000 pixels: only its header is read.
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    with pytest.raises(ValueError, match="20000 x 20000 pixels.*refused"):
        load_image(png)
    with pytest.raises(ValueError, match="not a regular file"):
        load_image("/dev/zero")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        load_image(fifo)


def test_large_jpegs_decode_at_a_reduced_scale_that_still_covers_the_model_input():
    import cv2

    from imprinting.runtime.images import decode_image

    img = np.random.default_rng(0).integers(0, 255, (1536, 2048, 3), dtype=np.uint8)
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    png = cv2.imencode(".png", img)[1].tobytes()
    assert decode_image(jpg).shape == (1536, 2048, 3)
    assert decode_image(jpg, min_side=256).shape == (768, 1024, 3)  # 1/2: the shorter side stays >= 2 x 256
    assert decode_image(jpg, min_side=600).shape == (1536, 2048, 3)  # 1/2 would leave less than 2 x 600
    assert decode_image(png, min_side=256).shape == (1536, 2048, 3)  # only JPEG decodes at reduced scale
