"""Loss-curve charts: shape, where lines land (via chart_axes().to_pixel), colours, gaps, log axis, PNG."""

import numpy as np
import pytest
from PIL import Image

from stylekd_jax.charts import GRID, PALETTE, WHITE, chart_axes, line_chart, save_line_chart


def colour_mask(image, colour):
    return (image == np.array(colour, np.uint8)).all(-1)


def pixel(ax, x, y):
    col, row = ax.to_pixel(x, y)
    return int(round(float(col))), int(round(float(row)))


def dot_centre(image, colour, near, radius=8):
    """Centroid (col, row) of `colour` pixels within `radius` of `near`, or None."""
    c, r = near
    rows, cols = np.nonzero(colour_mask(image, colour)[r - radius:r + radius + 1, c - radius:c + radius + 1])
    return None if rows.size == 0 else (c - radius + cols.mean(), r - radius + rows.mean())


def test_output_shape_and_dtype():
    image = line_chart({"a": ([0, 1, 2], [3.0, 1.0, 2.0])}, title="t", ylabel="y", width=320, height=200)
    assert image.shape == (200, 320, 3) and image.dtype == np.uint8
    assert colour_mask(image, WHITE).mean() > 0.5  # white background
    assert colour_mask(image, PALETTE[0]).sum() > 100


def test_constant_series_is_drawn_mid_plot_along_its_row():
    series = {"flat": (np.arange(50), np.full(50, 0.7))}
    image, ax = line_chart(series), chart_axes(series)
    l, t, r, b = ax.box
    (c0, row), (c1, _) = pixel(ax, 0, 0.7), pixel(ax, 49, 0.7)
    assert abs(row - (t + b) / 2) <= 2  # the y range is padded so the flat line sits mid-plot
    mask = colour_mask(image, PALETTE[0])
    assert mask[row - 2:row + 3, c0 + 2:c1 - 1].any(0).all()  # every column of the line is drawn
    rows, cols = np.nonzero(mask)
    far = np.abs(rows - row) > 4
    # away from the line only the legend swatch (a short 2-px line) carries the colour
    assert far.sum() < 60
    if far.any():
        assert np.ptp(rows[far]) <= 3 and np.ptp(cols[far]) <= 24


def test_two_series_get_two_distinct_palette_colours():
    x = np.linspace(0.0, 1.0, 100)
    image = line_chart({"a": (x, x), "b": (x, 1 - x)})
    assert PALETTE[0] != PALETTE[1]
    assert colour_mask(image, PALETTE[0]).sum() > 300 and colour_mask(image, PALETTE[1]).sum() > 300
    assert colour_mask(image, PALETTE[2]).sum() == 0


@pytest.mark.parametrize("smooth", [1, 5])
def test_non_finite_points_are_skipped_and_break_the_line(smooth):
    x, y = np.arange(100.0), np.arange(100.0)
    y[40:60] = np.nan
    y[45], x[50] = np.inf, np.nan  # a finite y at a NaN x is skipped as well
    series = {"a": (x, y)}
    image, ax = line_chart(series, smooth=smooth), chart_axes(series)
    l, t, r, b = ax.box
    assert colour_mask(image[:, :pixel(ax, 39, 0)[0] + 1], PALETTE[0]).sum() > 100
    assert colour_mask(image[:, pixel(ax, 60, 0)[0]:], PALETTE[0]).sum() > 100
    gap = image[t + 1:b, pixel(ax, 39, 0)[0] + 3:pixel(ax, 60, 0)[0] - 2].reshape(-1, 3)
    assert {tuple(p) for p in gap} <= {WHITE, GRID}  # nothing drawn in the gap, raw or smoothed


@pytest.mark.parametrize("series, kwargs", [
    ({}, {}),
    ({"a": ([], [])}, {}),
    ({"a": ([0, 1], [np.nan, np.inf]), "b": ([np.nan], [1.0])}, {}),
    ({"a": ([0, 1], [0.0, -1.0])}, {"log_y": True}),
])
def test_no_finite_data_raises(series, kwargs):
    with pytest.raises(ValueError, match="no finite data"):
        line_chart(series, **kwargs)


def test_mismatched_lengths_raise_naming_the_series():
    with pytest.raises(ValueError, match="'loss'"):
        line_chart({"loss": ([0, 1, 2], [1.0, 2.0])})


def test_single_point_is_a_dot_at_the_centre():
    series = {"a": ([3.0], [5.0])}
    image, ax = line_chart(series), chart_axes(series)
    l, t, r, b = ax.box
    centre = dot_centre(image, PALETTE[0], pixel(ax, 3.0, 5.0))
    assert centre is not None and colour_mask(image, PALETTE[0]).sum() >= 20
    assert abs(centre[0] - (l + r) / 2) <= 1.5 and abs(centre[1] - (t + b) / 2) <= 1.5


def test_log_y_places_decades_at_equally_spaced_rows():
    series = {"one": ([0.0], [1.0]), "ten": ([1.0], [10.0]), "hundred": ([2.0], [100.0])}
    image, ax = line_chart(series, log_y=True), chart_axes(series, log_y=True)
    rows = []
    for colour, (x, y) in zip(PALETTE, series.values()):
        centre = dot_centre(image, colour, pixel(ax, x[0], y[0]))
        assert centre is not None, f"no dot for y={y[0]}"
        assert abs(centre[1] - float(ax.to_pixel(x[0], y[0])[1])) <= 1.5
        rows.append(centre[1])
    assert rows[0] - rows[1] > 50  # larger values higher up
    assert abs((rows[0] - rows[1]) - (rows[1] - rows[2])) <= 1.5
    linear = chart_axes(series)  # control: on a linear axis 10 is nowhere near halfway
    lin_rows = [float(linear.to_pixel(0.0, v)[1]) for v in (1.0, 10.0, 100.0)]
    assert (lin_rows[0] - lin_rows[1]) < 0.2 * (lin_rows[1] - lin_rows[2])


def test_smoothing_draws_the_moving_average():
    x, y = np.arange(200.0), np.tile([0.0, 2.0], 100)  # zig-zag whose 10-point mean is 1
    series = {"z": (x, y)}
    image, ax = line_chart(series, smooth=10), chart_axes(series)
    l, t, r, b = ax.box
    middle = colour_mask(image, PALETTE[0])[:, pixel(ax, 50, 0)[0]:pixel(ax, 150, 0)[0]]
    rows = np.nonzero(middle)[0]
    assert rows.size > 100 and np.abs(rows - pixel(ax, 0, 1.0)[1]).max() <= 2
    faint = (~colour_mask(image, WHITE) & ~colour_mask(image, GRID) & ~colour_mask(image, PALETTE[0]))
    assert np.ptp(np.nonzero(faint[t + 1:b, l + 1:r])[0]) > 0.8 * (b - t)  # raw data underneath


def test_save_line_chart_writes_a_png(tmp_path):
    path = str(tmp_path / "loss.png")
    series = {"g": ([0, 1, 2, 3], [4.0, 2.0, 1.5, 1.0])}
    assert save_line_chart(path, series, width=300, height=200, title="loss") == path
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (300, 200)
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")),
                                      line_chart(series, width=300, height=200, title="loss"))
