"""Loss-curve charts (PNG) for training reports, drawn with PIL and numpy only.

The training and evaluation hosts have no matplotlib (and it is not worth adding for a few
line plots), so reports render their curves here: one polyline per series, "nice" ticks,
gridlines, a legend, optional moving-average smoothing and a log10 y axis.
`chart_axes(...).to_pixel` is the data-to-pixel mapping the drawing uses, so tests and
callers can compute exactly where a point lands.
"""

import dataclasses
import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Okabe-Ito colour-blind-friendly palette (yellow last: weakest on white).
PALETTE = [(0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233),
           (213, 94, 0), (0, 0, 0), (240, 228, 66)]
WHITE, GRID, FRAME, TEXT = (255, 255, 255), (228, 228, 228), (120, 120, 120), (30, 30, 30)
MARGINS = (70, 30, 16, 44)  # left, top, right, bottom: room for tick labels, title, axis labels


@dataclasses.dataclass(frozen=True)
class Axes:
    box: tuple[int, int, int, int]   # plot area in pixels: left, top, right, bottom
    xlim: tuple[float, float]
    ylim: tuple[float, float]        # in log10 units when log_y
    log_y: bool = False

    def to_pixel(self, x, y):
        """Data (x, y) -> (column, row) floats; y is raw data (log10 is taken when log_y).
        xlim[0] maps to the box's left edge, ylim[0] to its bottom edge (rows grow downward)."""
        (l, t, r, b), (x0, x1), (y0, y1) = self.box, self.xlim, self.ylim
        y = np.log10(y) if self.log_y else np.asarray(y, np.float64)
        return l + (np.asarray(x, np.float64) - x0) / (x1 - x0) * (r - l), b - (y - y0) / (y1 - y0) * (b - t)


def _finite(series, log_y):
    """name -> (x, y) float arrays with y already in plot units; non-plottable points are NaN."""
    out = {}
    for name, (x, y) in series.items():
        x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
        if x.shape != y.shape:
            raise ValueError(f"series {name!r}: x has {x.size} points but y has {y.size}")
        if log_y:
            y = np.log10(np.where(y > 0, y, np.nan))
        out[name] = (x, np.where(np.isfinite(x), y, np.nan))
    return out


def _limits(values, pad_frac=0.03):
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi)):  # (near-)flat: pad so the line sits mid-plot
        pad = abs(lo) * 0.5 or 1.0
        return lo - pad, hi + pad
    return lo - pad_frac * (hi - lo), hi + pad_frac * (hi - lo)


def chart_axes(series, width=640, height=360, log_y=False) -> Axes:
    """The axes `line_chart` draws for these arguments (limits come from the raw, unsmoothed data)."""
    data = _finite(series, log_y)
    ok = [(x[m], y[m]) for x, y in data.values() for m in [np.isfinite(y)] if m.any()]
    if not ok:
        raise ValueError("line_chart: no finite data to plot (every series is empty or all its points "
                         "are non-finite" + (", or non-positive with log_y)" if log_y else ")"))
    xs, ys = np.concatenate([p[0] for p in ok]), np.concatenate([p[1] for p in ok])
    l, t, r, b = MARGINS
    return Axes((l, t, width - r, height - b), _limits(xs), _limits(ys), log_y)


def nice_ticks(lo, hi, n=5):
    """(values, step): multiples of a 1, 2 or 5 x 10^k step inside [lo, hi], about n of them."""
    mag = 10.0 ** math.floor(math.log10((hi - lo) / n))
    count = lambda s: math.floor(hi / s) - math.ceil(lo / s) + 1
    step = min((m * mag for m in (1, 2, 5, 10)), key=lambda s: abs(count(s) - n))
    return [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)], step


def _fmt(v, step):
    if step >= 1 and abs(v) < 1e6:
        return str(int(round(v)))
    if abs(v) < step * 1e-6:
        return "0"
    digits = max(1, math.floor(math.log10(abs(v))) - math.floor(math.log10(step)) + 1)
    return f"{v:.{digits}g}"


def _ticks(lo, hi, log):
    """(positions in plot units, labels)."""
    if log:
        decades = list(range(math.ceil(lo), math.floor(hi) + 1))
        if len(decades) >= 3:
            decades = decades[::math.ceil(len(decades) / 6)]
            return decades, [f"{10.0 ** k:g}" for k in decades]
        values = [m * 10.0 ** k for k in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]
        values = [v for v in values if lo <= math.log10(v) <= hi]
        if len(values) >= 3:  # 1-2-5 ticks within a couple of decades
            return [math.log10(v) for v in values], [f"{v:g}" for v in values]
        values, step = nice_ticks(10 ** lo, 10 ** hi)  # less than a decade: linear-valued ticks
        values = [v for v in values if v > 0]
        return [math.log10(v) for v in values], [_fmt(v, step) for v in values]
    values, step = nice_ticks(lo, hi)
    return values, [_fmt(v, step) for v in values]


def _text(draw, x, y, s, font, ha="l", va="t", fill=TEXT):
    """Draw s with its bounding box aligned at (x, y): ha in l/m/r, va in t/m/b."""
    l, t, r, b = draw.textbbox((0, 0), s, font=font)
    draw.text((x - {"l": l, "m": (l + r) / 2, "r": r}[ha], y - {"t": t, "m": (t + b) / 2, "b": b}[va]),
              s, font=font, fill=fill)


def _smooth(v, k):
    """Centred moving average over k points (the window shrinks at the ends)."""
    k = min(k, v.size)
    return np.convolve(v, np.ones(k), "same") / np.convolve(np.ones(v.size), np.ones(k), "same")


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str = "",
               xlabel: str = "step", ylabel: str = "", width: int = 640, height: int = 360,
               log_y: bool = False, smooth: int = 1) -> np.ndarray:
    """uint8 [height, width, 3] chart: one polyline per series (name -> (x, y)) in PALETTE order.
    Non-finite points (and non-positive ones with log_y) are skipped and break the line; a run
    of one point is drawn as a dot. smooth > 1 draws the centred moving average over that many
    points, with the raw data as a faint line underneath. Raises ValueError if nothing is finite."""
    ax = chart_axes(series, width, height, log_y)
    font = ImageFont.load_default()
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    l, t, r, b = ax.box
    for pos, label in zip(*_ticks(*ax.xlim, False)):
        col = ax.to_pixel(pos, 1.0)[0]
        draw.line([(col, t), (col, b)], fill=GRID)
        _text(draw, col, b + 5, label, font, "m", "t")
    for pos, label in zip(*_ticks(*ax.ylim, log_y)):
        row = ax.to_pixel(ax.xlim[0], 10.0 ** pos if log_y else pos)[1]
        draw.line([(l, row), (r, row)], fill=GRID)
        _text(draw, l - 6, row, label, font, "r", "m")
    draw.rectangle([l, t, r, b], outline=FRAME)
    before = np.asarray(image).copy()
    for i, (x, y) in enumerate(_finite(series, log_y).values()):
        colour = PALETTE[i % len(PALETTE)]
        mask = np.r_[0, np.isfinite(y).astype(np.int8), 0]
        starts_ends = np.flatnonzero(np.diff(mask)).reshape(-1, 2)
        for s, e in starts_ends:  # runs of consecutive finite points
            cols, rows = ax.to_pixel(x[s:e], 10.0 ** y[s:e] if log_y else y[s:e])
            if e - s == 1:
                draw.ellipse([cols[0] - 3, rows[0] - 3, cols[0] + 3, rows[0] + 3], fill=colour)
                continue
            if smooth > 1:
                faint = tuple(int(255 - 0.3 * (255 - c)) for c in colour)
                draw.line(list(zip(cols, rows)), fill=faint, width=1)
                rows = ax.to_pixel(x[s:e], 10.0 ** _smooth(y[s:e], smooth) if log_y
                                   else _smooth(y[s:e], smooth))[1]
            draw.line(list(zip(cols, rows)), fill=colour, width=2, joint="curve")
    # Legend in the plot-area corner that covers the fewest drawn data pixels.
    names = list(series)
    line_h = 14
    legend_w = max(draw.textlength(str(n), font=font) for n in names) + 34
    legend_h = line_h * len(names) + 8
    changed = (np.asarray(image) != before).any(-1)
    corners = [(r - 8 - legend_w, t + 8), (l + 8, t + 8), (r - 8 - legend_w, b - 8 - legend_h),
               (l + 8, b - 8 - legend_h)]
    lx, ly = min(corners, key=lambda c: changed[int(c[1]):int(c[1] + legend_h),
                                                int(c[0]):int(c[0] + legend_w)].sum())
    draw.rectangle([lx, ly, lx + legend_w, ly + legend_h], fill=WHITE, outline=GRID)
    for i, name in enumerate(names):
        row = ly + 4 + line_h * i + line_h / 2
        draw.line([(lx + 6, row), (lx + 24, row)], fill=PALETTE[i % len(PALETTE)], width=2)
        _text(draw, lx + 30, row, str(name), font, "l", "m")
    try:
        title_font = ImageFont.load_default(size=14)
    except (TypeError, ImportError, OSError):
        title_font = font
    _text(draw, (l + r) / 2, t / 2, title, title_font, "m", "m")
    _text(draw, (l + r) / 2, height - 4, xlabel, font, "m", "b")
    if ylabel:  # rotated text: draw on its own mask, turn it, paste the colour through it
        w, h = (math.ceil(v) for v in draw.textbbox((0, 0), ylabel, font=font)[2:])
        mask = Image.new("L", (w + 2, h + 2), 0)
        ImageDraw.Draw(mask).text((1, 1), ylabel, font=font, fill=255)
        mask = mask.rotate(90, expand=True)
        image.paste(TEXT, (4, int((t + b) / 2 - mask.height / 2)), mask)
    return np.asarray(image, dtype=np.uint8)


def save_line_chart(path: str, series, **kwargs) -> str:
    """Render `line_chart(series, **kwargs)` and write it to path as a PNG; returns path."""
    Image.fromarray(line_chart(series, **kwargs)).save(path, format="PNG")
    return path
