"""Price charts for the email: a small PNG per ticker per issue, shared by every email that shows the ticker.

PNG because Gmail and Outlook show neither SVG nor script. Drawn at twice the size and scaled down, which gives
smooth lines without an antialiasing renderer, then reduced to a small palette so a chart stays well under 20 KB.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable, Sequence

from PIL import Image, ImageDraw

from markets.snapshots import TickerSnapshot

WIDTH, HEIGHT = 600, 160
SCALE = 2  # drawn at 2x, scaled down: the scaling is the antialiasing
PADDING = 6
UP, DOWN, FLAT = (19, 115, 51), (179, 38, 30), (107, 117, 136)
AVERAGE = (154, 163, 178)
BACKGROUND = (255, 255, 255)
PALETTE_COLOURS = 32


def chart_colour(snapshot: TickerSnapshot) -> tuple[int, int, int]:
    """The day's direction, as the change next to the price: green up, red down."""
    change = snapshot.change_pct or 0.0
    return UP if change > 0 else DOWN if change < 0 else FLAT


def chart_drawable(snapshot: TickerSnapshot) -> bool:
    """Whether the ticker has a chart: its data is available and it has at least two closes to join."""
    return not snapshot.unavailable and len(_finite(snapshot.chart_closes)) >= 2


def chart_png(snapshot: TickerSnapshot) -> bytes | None:
    """The last six months of closes with the 50-day average dashed; None when there is nothing to draw."""
    closes = _finite(snapshot.chart_closes)
    if len(closes) < 2:
        return None
    averages = list(snapshot.chart_sma50)
    values = closes + [a for a in averages if a is not None and math.isfinite(a)]
    low, high = min(values), max(values)
    if high == low:
        high, low = high + 1.0, low - 1.0

    width, height, pad = WIDTH * SCALE, HEIGHT * SCALE, PADDING * SCALE
    n = len(snapshot.chart_closes)

    def point(i: int, value: float) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * i / (n - 1)
        y = pad + (height - 2 * pad) * (high - value) / (high - low)
        return x, y

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for segment in _runs((i, a) for i, a in enumerate(averages)):
        _dashed(draw, [point(i, v) for i, v in segment], fill=AVERAGE, width=2 * SCALE, dash=6 * SCALE)
    for segment in _runs(enumerate(snapshot.chart_closes)):
        draw.line([point(i, v) for i, v in segment], fill=chart_colour(snapshot), width=2 * SCALE, joint="curve")

    small = image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    paletted = small.quantize(colors=PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    paletted.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def charts_render(snapshots: Iterable[TickerSnapshot]) -> dict[str, bytes]:
    """One chart per ticker, rendered once for the whole issue."""
    charts = {}
    for snapshot in snapshots:
        png = chart_png(snapshot)
        if png is not None:
            charts[snapshot.symbol] = png
    return charts


def _finite(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _runs(points: Iterable[tuple[int, float | None]]) -> list[list[tuple[int, float]]]:
    """Unbroken stretches of defined values (the average is undefined for its first 49 sessions)."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, value in points:
        if value is None or not math.isfinite(value):
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((i, value))
    return [run for run in runs if len(run) > 1]


def _dashed(draw: ImageDraw.ImageDraw, points: Sequence[tuple[float, float]], *, fill, width: int, dash: int) -> None:
    drawn, on = 0.0, True
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        length = math.hypot(x1 - x0, y1 - y0)
        start = 0.0
        while start < length:
            step = min(dash - drawn, length - start)
            if on:
                t0, t1 = start / length, (start + step) / length
                draw.line(
                    [(x0 + (x1 - x0) * t0, y0 + (y1 - y0) * t0), (x0 + (x1 - x0) * t1, y0 + (y1 - y0) * t1)],
                    fill=fill,
                    width=width,
                )
            start += step
            drawn += step
            if drawn >= dash:
                drawn, on = 0.0, not on
