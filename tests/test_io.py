"""Frame decoding: OpenCV gives Pillow's pixels on every common JPEG variant; damaged files are errors."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from omama.io import FrameError, load_frame


def photo(h: int = 61, w: int = 83) -> np.ndarray:
    """A smooth colour image with edges (odd sizes exercise the chroma upsampling's borders)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, ((x // 9 + y // 7) % 2) * 200 + 20], -1).astype(np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 1.2)


def pillow(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def exif_rotated(path, img):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(img).save(path, quality=90, exif=exif.tobytes())


WRITERS = {
    "opencv q95 4:2:0": lambda p, img: cv2.imwrite(str(p), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]),
    "pillow q75": lambda p, img: Image.fromarray(img).save(p, quality=75),
    "pillow 4:4:4": lambda p, img: Image.fromarray(img).save(p, quality=95, subsampling=0),
    "pillow 4:2:2": lambda p, img: Image.fromarray(img).save(p, quality=95, subsampling=1),
    "pillow progressive": lambda p, img: Image.fromarray(img).save(p, quality=90, progressive=True, optimize=True),
    "pillow greyscale": lambda p, img: Image.fromarray(img).convert("L").save(p, quality=90),
    "pillow EXIF orientation 6": exif_rotated,
}


@pytest.mark.parametrize("variant", WRITERS)
def test_frames_decode_to_pillows_pixels(tmp_path, variant):
    path = tmp_path / "0.jpg"
    WRITERS[variant](path, photo())
    got = load_frame(path, "t", "cam01", 0)
    assert got.dtype == np.uint8 and got.shape == (61, 83, 3)  # EXIF orientation not applied, as Pillow
    np.testing.assert_array_equal(got, pillow(path))


def test_bytes_after_the_end_marker_are_accepted(tmp_path):
    path = tmp_path / "0.jpg"
    WRITERS["pillow progressive"](path, photo())
    path.write_bytes(path.read_bytes() + b"\x00" * 32)  # padding some cameras write
    np.testing.assert_array_equal(load_frame(path, "t", "cam01", 0), pillow(io.BytesIO(path.read_bytes())))


@pytest.mark.parametrize("variant", ["opencv q95 4:2:0", "pillow progressive"])
def test_jpeg_cut_short_is_an_error_naming_the_frame(tmp_path, variant):
    path = tmp_path / "30.jpg"
    WRITERS[variant](path, photo(200, 300))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.8)])  # OpenCV 4 alone returns a partly grey frame, 5 fails
    with pytest.raises(FrameError, match="take 't', camera 'cam01', frame 30: .*(truncated JPEG|OpenCV can)"):
        load_frame(path, "t", "cam01", 30)


@pytest.mark.parametrize("content", [b"", b"this is not a jpeg"])
def test_empty_or_garbage_file_is_an_error_naming_the_frame(tmp_path, content):
    path = tmp_path / "30.jpg"
    path.write_bytes(content)
    with pytest.raises(FrameError, match="cannot decode frame image for take 't', camera 'cam01', frame 30: .*OpenCV can"):
        load_frame(path, "t", "cam01", 30)


def test_cut_jpeg_is_caught_even_when_the_decoder_returns_a_frame(tmp_path, monkeypatch):
    """OpenCV 4 decodes a cut JPEG to a partly grey frame with only a warning: the marker check stops it."""
    path = tmp_path / "30.jpg"
    WRITERS["pillow progressive"](path, photo(200, 300))
    path.write_bytes(path.read_bytes()[:-100])
    monkeypatch.setattr(cv2, "imdecode", lambda data, flags: np.full((200, 300, 3), 128, np.uint8))
    with pytest.raises(FrameError, match="frame 30: .*truncated JPEG"):
        load_frame(path, "t", "cam01", 30)
