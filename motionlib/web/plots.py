"""Server-side pictures for the web app: the AMF loss curve as inline SVG (numbers only, no user text)."""

from __future__ import annotations

import math


def _flat(loss) -> list[list[float]]:
    """Loss history as one list of finite floats per guided step (a flat list counts as one step)."""
    if not isinstance(loss, list) or not loss:
        return []
    steps = loss if isinstance(loss[0], list) else [loss]
    out = []
    for step in steps:
        vals = [float(v) for v in (step if isinstance(step, list) else [step]) if isinstance(v, (int, float))]
        out.append([v for v in vals if math.isfinite(v)])
    return [s for s in out if s]


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def loss_svg(loss, width: int = 560, height: int = 220) -> str:
    """The AMF loss (eq. 8) of every optimisation step, one segment per guided step, as an SVG element.

    x: optimisation steps in order (guided steps separated by dashed lines), y: loss, linear axis."""
    steps = _flat(loss)
    if not steps:
        return (f'<svg class="plot" viewBox="0 0 {width} {height}" role="img" aria-label="no loss recorded">'
                f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no loss recorded</text></svg>')
    left, right, top, bottom = 56, 12, 12, 34
    w, h = width - left - right, height - top - bottom
    values = [v for s in steps for v in s]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * abs(lo or 1), hi + 0.5 * abs(hi or 1)
    n = len(values)

    def x(i: int) -> float:
        return left + (w * i / (n - 1) if n > 1 else w / 2)

    def y(v: float) -> float:
        return top + h * (hi - v) / (hi - lo)

    parts = [f'<svg class="plot" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="AMF loss from {values[0]:.4g} to {values[-1]:.4g} over {len(steps)} guided steps">',
             f'<rect x="{left}" y="{top}" width="{w}" height="{h}" class="frame"/>']
    for t in _ticks(lo, hi):
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(t):.1f}" y2="{y(t):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:.3g}</text>')
    i = 0
    for k, s in enumerate(steps):
        if k:
            parts.append(f'<line x1="{x(i) - 0.5 * w / max(n - 1, 1):.1f}" x2="{x(i) - 0.5 * w / max(n - 1, 1):.1f}" '
                         f'y1="{top}" y2="{top + h}" class="sep"/>')
        pts = " ".join(f"{x(i + j):.1f},{y(v):.1f}" for j, v in enumerate(s))
        parts.append(f'<polyline points="{pts}" class="line"/>' if len(s) > 1
                     else f'<circle cx="{x(i):.1f}" cy="{y(s[0]):.1f}" r="2.5" class="dot"/>')
        i += len(s)
    parts.append(f'<text x="{left + w / 2}" y="{height - 6}" text-anchor="middle">optimisation step '
                 f'({len(steps)} guided steps × {max(len(s) for s in steps)})</text>')
    parts.append(f'<text x="14" y="{top + h / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + h / 2})">AMF loss</text></svg>')
    return "".join(parts)
