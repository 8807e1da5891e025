"""Image modes (issue #18): every PIL mode the reader accepts arrives as the 8-bit RGB image it shows, high bit
depths scaled (a 16-bit PNG is not clipped to white); every other mode is refused with a message saying why."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_datasets_layouts import write_csv

from data import DataError, ExampleProcessor, create_dataset
from data.images import ACCEPTED_MODES, REFUSED_MODES, to_rgb

# mode -> (fill value of a new image, the RGB pixel it must become)
EXPECTED = {
    "1": (1, (255, 255, 255)),
    "L": (128, (128, 128, 128)),
    "LA": ((128, 200), (128, 128, 128)),
    "P": (3, (30, 60, 90)),  # palette entry 3 (see _palette)
    "PA": ((3, 200), (30, 60, 90)),
    "RGB": ((128, 64, 32), (128, 64, 32)),
    "RGBA": ((128, 64, 32, 200), (128, 64, 32)),
    "RGBa": ((100, 50, 25, 200), (128, 64, 32)),  # premultiplied by alpha 200/255
    "RGBX": ((128, 64, 32, 0), (128, 64, 32)),
    "CMYK": ((0, 0, 0, 0), (255, 255, 255)),
    "YCbCr": ((128, 128, 128), (128, 128, 128)),
    "HSV": ((0, 0, 128), (128, 128, 128)),
    "I;16": (32896, (128, 128, 128)),  # 16-bit: 32896 / 65535 of full scale = 128 / 255
    "I;16B": (32896, (128, 128, 128)),
    "I;16L": (32896, (128, 128, 128)),
    "I;16N": (32896, (128, 128, 128)),
    "I": (32896, (128, 128, 128)),  # 32-bit integers holding 16-bit values (16-bit PNG/TIFF in older Pillow)
    "F": (0.5, (128, 128, 128)),  # floats in [0, 1]
}


def _palette(image: Image.Image) -> Image.Image:
    image.putpalette([v for i in range(256) for v in ((30, 60, 90) if i == 3 else (0, 0, 0))])
    return image


def test_every_pil_mode_is_accepted_or_refused():
    assert set(ACCEPTED_MODES) | set(REFUSED_MODES) == set(Image.MODES)
    assert set(EXPECTED) == set(ACCEPTED_MODES)


@pytest.mark.parametrize("mode", sorted(ACCEPTED_MODES))
def test_accepted_mode_becomes_the_rgb_it_shows(mode):
    fill, rgb = EXPECTED[mode]
    image = Image.new(mode, (4, 4), fill)
    if mode in ("P", "PA"):
        image = _palette(image)
    out = to_rgb(image)
    assert out.mode == "RGB" and out.size == (4, 4)
    assert np.abs(np.asarray(out).astype(int) - rgb).max() <= 1, np.asarray(out)[0, 0]


@pytest.mark.parametrize("mode", sorted(REFUSED_MODES))
def test_refused_mode_says_why(mode):
    with pytest.raises(ValueError, match=f"mode {mode}"):
        to_rgb(Image.new(mode, (4, 4)))


def test_out_of_range_high_bit_depth_is_refused():
    with pytest.raises(ValueError, match="values 0..70000"):
        to_rgb(Image.fromarray(np.array([[0, 70000]], np.int32)))
    with pytest.raises(ValueError, match=r"values -1.0..3.0"):
        to_rgb(Image.fromarray(np.array([[-1.0, 3.0]], np.float32)))


def test_palette_transparency_is_read_without_a_warning(recwarn):
    image = _palette(Image.new("P", (4, 4), 3))
    image.info["transparency"] = bytes([0] * 256)
    assert np.asarray(to_rgb(image))[0, 0].tolist() == [30, 60, 90] and not recwarn.list


def test_16_bit_pngs_keep_their_brightness(tmp_path):
    """A dark and a light 16-bit greyscale PNG were both read as pure white (mean 255)."""
    for name, value in (("dark", 1000), ("light", 60000)):
        Image.fromarray(np.full((8, 8), value, np.uint16)).save(tmp_path / f"{name}.png")
    write_csv(tmp_path / "train.csv", ["image", "label"], [["dark.png", "a"], ["light.png", "b"]])
    ds = create_dataset("table", str(tmp_path), "train", modalities=["image"], check_images=True)
    means = [np.asarray(ExampleProcessor().load_image(r)).mean() for r in ds]
    assert means == pytest.approx([1000 / 257, 60000 / 257], abs=0.6)


def test_refused_image_is_a_row_error_found_by_check_images(tmp_path):
    Image.fromarray(np.full((4, 4), 3.5, np.float32)).save(tmp_path / "depth.tif")
    write_csv(tmp_path / "train.csv", ["image", "label"], [["depth.tif", "a"]])
    with pytest.raises(DataError, match=r"train\.csv:2: unreadable image: .*depth\.tif.*mode F"):
        create_dataset("table", str(tmp_path), "train", modalities=["image"], check_images=True)
    ds = create_dataset("table", str(tmp_path), "train", modalities=["image"])
    with pytest.raises(DataError, match=r"train\.csv:2: unreadable image: .*mode F"):
        ExampleProcessor().load_image(ds[0])
