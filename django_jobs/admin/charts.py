"""Bar charts as inline SVG, drawn on the server: no script, no request to another site.

Colours are CSS classes (``admin.css``) built on the admin's own variables, so a chart follows
the light and the dark theme like the rest of the page. Every text goes through
``format_html``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

#: Drawing units of the viewBox; the SVG scales to the width of its box.
WIDTH, HEIGHT = 600, 170
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 22


@dataclass(frozen=True)
class Bar:
    """One period of a chart: runs finished in it, by outcome."""

    start: datetime
    succeeded: int = 0
    failed: int = 0
    other: int = 0  # cancelled and skipped

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.other


def _n(value: float) -> str:
    """A coordinate as text (``format_html`` escapes its arguments to text first)."""
    return f"{value:.1f}"


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above ``value``: round grid lines."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return int(math.ceil(step * power))
    return value  # not reached: 10 x power is always >= value


def bar_chart(
    bars: Sequence[Bar], *, title: str, label: Callable[[datetime], str], tick_every: int,
) -> SafeString:
    """Stacked bars (succeeded, other, failed from the bottom) with a grid and time labels.

    ``label`` turns a period's start into the text under the axis (every ``tick_every`` bars)
    and into each bar's tooltip.
    """
    top = nice_ceiling(max((bar.total for bar in bars), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(bars), 1)
    width = max(slot * 0.8, 1.0)

    def y(value: float) -> float:
        return TOP + plot_h - plot_h * value / top

    grid = format_html_join("", (
        '<line class="dj-chart-grid" x1="{}" x2="{}" y1="{}" y2="{}"></line>'
        '<text class="dj-chart-axis" x="{}" y="{}" text-anchor="end">{}</text>'
    ), (
        (LEFT, WIDTH - RIGHT, _n(y(value)), _n(y(value)), LEFT - 4, _n(y(value) + 3),
         f"{value:g}")
        for value in (0, top / 2, top)
    ))
    columns = []
    ticks = []
    for index, bar in enumerate(bars):
        x = LEFT + index * slot + (slot - width) / 2
        parts = []
        base = 0
        for css, value in (("ok", bar.succeeded), ("other", bar.other), ("fail", bar.failed)):
            if value:
                parts.append(format_html(
                    '<rect class="dj-chart-{}" x="{}" y="{}" width="{}" '
                    'height="{}"></rect>', css, _n(x), _n(y(base + value)), _n(width),
                    _n(y(base) - y(base + value)),
                ))
            base += value
        tip = f"{label(bar.start)}: {bar.succeeded} succeeded, {bar.failed} failed"
        if bar.other:
            tip += f", {bar.other} cancelled or skipped"
        # A transparent full-height hit area carries the tooltip, even for an empty period.
        columns.append(format_html(
            '<g><title>{}</title><rect class="dj-chart-hit" x="{}" y="{}" width="{}" '
            'height="{}"></rect>{}</g>',
            tip, _n(LEFT + index * slot), TOP, _n(slot), plot_h, SafeString("".join(parts)),
        ))
        if index % tick_every == 0:
            ticks.append(format_html(
                '<text class="dj-chart-axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                _n(LEFT + index * slot + slot / 2), HEIGHT - 6, label(bar.start),
            ))
    return format_html(
        '<svg class="dj-chart" viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        '<title>{}</title>{}{}{}</svg>',
        WIDTH, HEIGHT, title, title, grid, SafeString("".join(columns)),
        SafeString("".join(ticks)),
    )
