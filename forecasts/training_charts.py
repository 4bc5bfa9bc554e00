"""Small server-drawn SVG charts for the training pages (no script, no CDN): a loss curve and a backtest band."""

from __future__ import annotations

import math
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 640, 220, 28


def _scale(values: list[float], size: float, flip: bool = False) -> Any:
    low, high = min(values), max(values)
    span = (high - low) or 1.0

    def at(value: float) -> float:
        fraction = (value - low) / span
        return PAD + (1 - fraction if flip else fraction) * (size - 2 * PAD)

    return at


def _points(xs: list[float], ys: list[float], x_at: Any, y_at: Any) -> str:
    return " ".join(f"{x_at(x):.1f},{y_at(y):.1f}" for x, y in zip(xs, ys, strict=True))


def loss_svg(losses: list[float | None]) -> SafeString:
    """Return an SVG line of the training loss per epoch ('' when no epoch has finished)."""
    pairs = [(index + 1, loss) for index, loss in enumerate(losses) if loss is not None and math.isfinite(loss)]
    if not pairs:
        return mark_safe("")
    xs, ys = [float(p[0]) for p in pairs], [float(p[1]) for p in pairs]
    x_at, y_at = _scale(xs if len(xs) > 1 else [0.0, *xs], WIDTH), _scale(ys, HEIGHT, flip=True)
    return format_html(
        '<svg class="train-chart" viewBox="0 0 {} {}" role="img" aria-label="training loss per epoch">'
        '<polyline fill="none" stroke="#0969da" stroke-width="2" points="{}"/>'
        '<text x="{}" y="14" class="axis">loss {} → {}</text><text x="{}" y="{}" class="axis">epoch {}</text></svg>',
        WIDTH, HEIGHT, _points(xs, ys, x_at, y_at), PAD, f"{ys[0]:.4g}", f"{ys[-1]:.4g}", WIDTH - 90, HEIGHT - 6,
        int(xs[-1]),
    )  # fmt: skip


def backtest_svg(backtest: dict[str, Any]) -> SafeString:
    """Return an SVG of the first series' backtest windows: actuals against the p10-p90 band and the median."""
    windows = [w for w in (backtest or {}).get("plot", []) if w.get("series") == 0]
    if not windows:
        return mark_safe("")
    actual, p10, p50, p90 = [], [], [], []
    for window in windows:
        actual += window["actual"]
        p10 += window["p10"]
        p50 += window["p50"]
        p90 += window["p90"]
    xs = [float(i) for i in range(len(p50))]
    seen = [v for v in actual if v is not None] + p10 + p90
    x_at, y_at = _scale(xs, WIDTH), _scale(seen, HEIGHT, flip=True)
    band = _points(xs + xs[::-1], p90 + p10[::-1], x_at, y_at)
    observed = [(x, v) for x, v in zip(xs, actual, strict=True) if v is not None]
    dots = format_html_join("", '<circle cx="{}" cy="{}" r="2.5" fill="#1f2328"/>',
                            ((f"{x_at(x):.1f}", f"{y_at(v):.1f}") for x, v in observed))  # fmt: skip
    return format_html(
        '<svg class="train-chart" viewBox="0 0 {} {}" role="img" aria-label="backtest: actuals and p10-p90 band">'
        '<polygon fill="#0969da" fill-opacity=".18" points="{}"/>'
        '<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="{}"/>{}</svg>',
        WIDTH, HEIGHT, band, _points(xs, p50, x_at, y_at), dots,
    )  # fmt: skip
