# -*- test-case-name: tests.test_webrender -*-
"""
The page's chart: connections per minute over the last hour, stacked by
outcome category, as an SVG drawn on the server (no script, no library).
Pure: counts in, markup out; no peer string reaches it.
"""

from __future__ import annotations

import time

from dicomecho.observability.history import Category

__all__ = ["chartSVG"]

_WIDTH, _HEIGHT = 720, 160
_LEFT, _BOTTOM, _TOP = 36, 20, 10
#: Bottom to top: successes first.
_ORDER = (
    Category.ACCEPTED, Category.REJECTED, Category.ABORTED, Category.REFUSED,
    Category.NO_ASSOCIATION,
)


def _scale(peak: int) -> int:
    """A round top for the axis, at least C{peak}."""
    for top in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        if peak <= top:
            return top
    return peak


def chartSVG(minutes: list[tuple[int, dict[Category, int]]]) -> str:
    """
    Stacked bars, one per minute (oldest left), a class per category for
    the colours, a title per bar for the numbers.
    """
    peak = max((sum(counts.values()) for _, counts in minutes), default=0)
    top = _scale(peak)
    plotHeight = _HEIGHT - _BOTTOM - _TOP
    step = (_WIDTH - _LEFT) / max(len(minutes), 1)
    bars = []
    for index, (minute, counts) in enumerate(minutes):
        x = _LEFT + index * step
        y = _TOP + plotHeight
        label = time.strftime("%H:%M", time.localtime(minute * 60))
        parts = ", ".join(f"{counts[c]} {c.value}" for c in _ORDER if counts.get(c))
        bars.append(f"<g><title>{label}: {parts or 'none'}</title>")
        for category in _ORDER:
            count = counts.get(category, 0)
            if not count:
                continue
            height = plotHeight * count / top
            y -= height
            bars.append(
                f'<rect class="{category.value}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{max(step - 1, 1):.1f}" height="{height:.1f}"/>'
            )
        bars.append("</g>")
    first = time.strftime("%H:%M", time.localtime(minutes[0][0] * 60)) if minutes else ""
    axis = (
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + plotHeight}" x2="{_WIDTH}" '
        f'y2="{_TOP + plotHeight}"/>'
        f'<text class="label" x="{_LEFT - 4}" y="{_TOP + 8}" text-anchor="end">{top}</text>'
        f'<text class="label" x="{_LEFT - 4}" y="{_TOP + plotHeight}" text-anchor="end">0</text>'
        f'<text class="label" x="{_LEFT}" y="{_HEIGHT - 4}">{first}</text>'
        f'<text class="label" x="{_WIDTH}" y="{_HEIGHT - 4}" text-anchor="end">now</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="chart" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="Connections per minute by outcome, last hour">'
        f"{axis}{''.join(bars)}</svg>"
    )
