import colorsys

import numpy as np

from explain.images import concept_highlight, decode_png, encode_png


def test_png_round_trip_is_lossless_and_deterministic():
    image = np.random.default_rng(0).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    data = encode_png(image)
    assert data == encode_png(image)
    np.testing.assert_array_equal(decode_png(data), image)


def _hsv(pixel: np.ndarray) -> tuple[float, float, float]:
    return colorsys.rgb_to_hsv(*(pixel.astype(float) / 255.0))


def test_highlight_keeps_colors_where_the_concept_is_and_only_fades_them_elsewhere():
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[:4] = (200, 60, 40)  # a red object in the top half
    image[4:] = (40, 90, 210)  # a blue background in the bottom half
    heat = np.zeros((4, 4))
    heat[:2, :2] = 1.0  # the concept is present in the top-left quarter only
    out = concept_highlight(image, heat, out_size=32, vmax=1.0)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out[:8, :8] == (200, 60, 40)).all()  # full strength: untouched
    for absent, color in ((out[12, 28], (200, 60, 40)), (out[28, 28], (40, 90, 210))):
        hue, saturation, value = _hsv(absent)
        hue0, saturation0, value0 = _hsv(np.array(color))
        assert abs(hue - hue0) < 0.01  # same hue: no tint
        assert saturation < saturation0 - 0.2 and value < value0 - 0.2  # grayer and darker
