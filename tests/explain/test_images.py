import numpy as np

from explain.images import decode_png, encode_png, heatmap_overlay


def test_png_round_trip_is_lossless_and_deterministic():
    image = np.random.default_rng(0).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    data = encode_png(image)
    assert data == encode_png(image)
    np.testing.assert_array_equal(decode_png(data), image)


def test_overlay_upscales_and_leaves_cold_regions_untouched():
    image = np.full((8, 8, 3), 100, dtype=np.uint8)
    heat = np.zeros((2, 2))
    out = heatmap_overlay(image, heat, out_size=32, vmax=1.0)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, 100)
    heat[0, 0] = 1.0
    hot = heatmap_overlay(image, heat, out_size=32, vmax=1.0)
    assert np.abs(hot[:4, :4].astype(int) - 100).sum() > 0
    np.testing.assert_array_equal(hot[-4:, -4:], 100)
