"""Hand-written inline SVG: the swimlane timeline and the bytes-per-source plot.

Both share one time scale, so a kill on the lab lane, the failover on the client's lane and the
bend in the sources' byte curves line up vertically. Marks carry their whole record as a
`<title>` tooltip; labels are drawn where they do not overlap and skipped where they would.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from html import escape

from harness.report.timeline import Lane, Mark, SourcePlot, Timeline

GUTTER = 150  # lane names
MARGIN = 12  # between the gutter and time's start
GAP = 0.8  # seconds of quiet that are squeezed
GAP_PX = 46  # the width of a squeezed gap
PAD_S = 0.12  # seconds drawn either side of a busy stretch
MAX_WIDTH = 9000.0
PAD = 200  # right margin, for the last marks' labels
AXIS = 28  # time axis height
ROW = 13  # one label row
MAX_ROWS = 8  # label rows per lane at most
CHAR = 6.3  # estimated width of one label character (11px sans-serif)
QUIET = frozenset({"progress", "result", "query"})  # marks drawn short and never labelled
CONNECTED = frozenset({"start", "restart", "kill", "throttle", "file", "failed"})
PRIORITY = {"bad": 0, "error": 0, "failed": 0, "kill": 0, "restart": 0, "mesh": 2, "local": 3}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@dataclass(frozen=True)
class Scale:
    """Time to x, with idle stretches squeezed: a scenario spends seconds starting containers
    and then does its work in a burst; each stretch where something happened is drawn at
    `density` px/s, each quiet gap longer than `GAP` s as a fixed `GAP_PX` band."""

    pieces: tuple[tuple[float, float, float], ...]  # (t from, t to, x from) per busy stretch
    density: float  # px per second inside a stretch
    width: float  # of the drawing, without the gutter

    def x(self, t: float) -> float:
        previous: tuple[float, float] | None = None  # the last stretch's (t, x) at its end
        for start, end, x0 in self.pieces:
            if t < start:
                if previous is None:
                    return x0
                (pt, px) = previous  # in the squeezed gap before this stretch
                return px + (t - pt) / (start - pt) * (x0 - px)
            if t <= end:
                return x0 + (t - start) * self.density
            previous = (end, x0 + (end - start) * self.density)
        return previous[1] if previous else GUTTER + MARGIN

    def gaps(self) -> list[tuple[float, float, float]]:
        """Each squeezed gap: (x from, x to, seconds left out)."""
        return [
            (x0 + (end - start) * self.density, nx, nstart - end)
            for (start, end, x0), (nstart, _, nx) in itertools.pairwise(self.pieces)
        ]


def fit(times: list[float], density: float = 180.0) -> Scale:
    """A scale for marks at `times`: busy stretches at `density` px/s (less if the drawing
    would pass `MAX_WIDTH`), quiet gaps squeezed."""
    ts = sorted(set(times)) or [0.0]
    stretches = [[ts[0] - PAD_S, ts[0] + PAD_S]]
    for t in ts[1:]:
        if t - stretches[-1][1] > GAP:
            stretches.append([t - PAD_S, t + PAD_S])
        else:
            stretches[-1][1] = t + PAD_S
    stretches[0][0] = max(stretches[0][0], 0.0)
    busy = sum(end - start for start, end in stretches)
    density = min(density, (MAX_WIDTH - GAP_PX * (len(stretches) - 1)) / max(busy, 0.1))
    pieces: list[tuple[float, float, float]] = []
    x = float(GUTTER + MARGIN)
    for start, end in stretches:
        pieces.append((start, end, x))
        x += (end - start) * density + GAP_PX
    return Scale(tuple(pieces), density, x - GAP_PX - GUTTER)


def _step(density: float) -> float:
    """A 1/2/5 x 10^k tick interval at least 70 px wide."""
    raw = 70.0 / density
    base = 10 ** math.floor(math.log10(raw))
    return float(next(m * base for m in (1, 2, 5, 10) if m * base >= raw))


def _axis(scale: Scale, height: float) -> tuple[list[str], list[str]]:
    """The time ticks and the squeezed gaps (both drawn under the lanes' see-through backgrounds),
    and the gaps' labels."""
    step = _step(scale.density)
    gaps = scale.gaps()
    out, over = [], []
    for start, end, _ in scale.pieces:
        for i in range(math.ceil(start / step), math.floor(end / step) + 1):
            x = scale.x(i * step)
            if any(x0 - 36 < x < x1 for x0, x1, _ in gaps):
                continue  # the gap's own label is there
            out.append(
                f'<line class="grid" x1="{x:.1f}" y1="{AXIS - 6}" x2="{x:.1f}" y2="{height}"/>'
            )
            out.append(f'<text class="tick" x="{x:.1f}" y="{AXIS - 10}">{i * step:g} s</text>')
    for x0, x1, seconds in gaps:
        out.append(
            f'<rect class="gap" x="{x0 + 4:.1f}" y="{AXIS - 6}" width="{x1 - x0 - 8:.1f}" '
            f'height="{height - AXIS + 6}"><title>{seconds:.1f} s with nothing recorded</title>'
            "</rect>"
        )
        over.append(f'<text class="tick" x="{x0 + 6:.1f}" y="{AXIS - 10}">+{seconds:.1f}s</text>')
    return out, over


def _rows(marks: tuple[Mark, ...], scale: Scale, rows: int) -> list[int | None]:
    """The label row of each mark, None if it gets no label: the most telling kinds are placed
    first, each in the first row where it overlaps no label already there."""
    taken: list[list[tuple[float, float]]] = [[] for _ in range(rows)]
    placed: list[int | None] = [None] * len(marks)
    order = sorted(
        (i for i, m in enumerate(marks) if m.kind not in QUIET),
        key=lambda i: (PRIORITY.get(marks[i].kind, 1), marks[i].t),
    )
    for i in order:
        x0 = scale.x(marks[i].t)
        x1 = x0 + 4 + len(marks[i].label) * CHAR
        for row, spans in enumerate(taken):
            if all(x1 <= a or b <= x0 for a, b in spans):
                spans.append((x0, x1))
                placed[i] = row
                break
    return placed


def _lane(lane: Lane, top: float, scale: Scale) -> tuple[list[str], float]:
    """One lane, as tall as its labels need (up to `MAX_ROWS` rows; later labels are dropped)."""
    marks = tuple(sorted(lane.marks, key=lambda m: m.t))
    placed = _rows(marks, scale, MAX_ROWS)
    used = max((r + 1 for r in placed if r is not None), default=0)
    height = 30 + max(used, 3) * ROW
    out = [
        f'<g class="lane" data-lane="{escape(lane.name)}">',
        f'<rect class="lane-bg" x="0" y="{top}" width="{GUTTER + scale.width + PAD}" '
        f'height="{height}"/>',
        f'<text class="lane-name" x="8" y="{top + 18}">{escape(lane.name)}</text>',
        f'<text class="lane-addr" x="8" y="{top + 32}">{escape(lane.addr)}</text>',
    ]
    for mark, row in zip(marks, placed, strict=True):
        x = scale.x(mark.t)
        short = mark.kind in QUIET
        y1, y2 = top + (12 if short else 6), top + 22
        out.append(
            f'<g class="mark k-{escape(mark.kind)}" data-t="{mark.t:.3f}">'
            f"<title>{mark.t:.3f} s {escape(mark.detail)}</title>"
            f'<line x1="{x:.1f}" y1="{y1}" x2="{x:.1f}" y2="{y2}"/>'
        )
        if not short:
            out.append(f'<circle cx="{x:.1f}" cy="{top + 14}" r="3.5"/>')
        if row is not None:
            ty = top + 36 + row * ROW
            out.append(
                f'<line class="leader" x1="{x:.1f}" y1="{y2}" x2="{x:.1f}" y2="{ty - 9}"/>'
                f'<text x="{x + 3:.1f}" y="{ty}">{escape(mark.label)}</text>'
            )
        out.append("</g>")
    out.append("</g>")
    return out, height


def swimlanes(timeline: Timeline, scale: Scale) -> str:
    """One lane per peer (the lab's own first), marks on one time axis, the failure marked;
    in a sideways scrolling box, with the lane names kept in view."""
    parts: list[str] = []
    tops: dict[str, float] = {}
    heights: dict[str, float] = {}
    y = float(AXIS)
    for lane in timeline.lanes:
        tops[lane.name] = y
        drawn, height = _lane(lane, y, scale)
        heights[lane.name] = height
        parts += drawn
        y += height + 4
    total = y
    bands = []
    for band in timeline.bands:
        x0, x1 = scale.x(band.start), scale.x(band.end)
        covered = [
            lane.name for lane in timeline.lanes[1:] if not band.peers or lane.name in band.peers
        ]
        for name in covered:
            top, bottom = tops[name], heights[name]
            bands.append(
                f'<rect class="band b-{escape(band.kind)}" x="{x0:.1f}" y="{top:.1f}" '
                f'width="{max(x1 - x0, 2):.1f}" height="{bottom:.1f}">'
                f"<title>{band.start:.3f}-{band.end:.3f} s {escape(band.label)}</title></rect>"
            )
    links = []
    for mark in timeline.lanes[0].marks if timeline.lanes else ():
        if mark.kind in CONNECTED and mark.target in tops:
            x = scale.x(mark.t)
            links.append(
                f'<line class="link k-{mark.kind}" x1="{x:.1f}" y1="{AXIS + 22}" '
                f'x2="{x:.1f}" y2="{tops[mark.target] + 22}"/>'
            )
    failure = []
    f = timeline.failure
    if f is not None:
        x = scale.x(f.t)
        if f.wait_peer in tops:
            x0, top = scale.x(f.wait_from), tops[f.wait_peer]
            failure.append(
                f'<rect class="waiting" x="{x0:.1f}" y="{top + 2}" width="{max(x - x0, 2):.1f}" '
                f'height="24"><title>waiting for {escape(f.wait_what)}</title></rect>'
            )
        failure.append(
            f'<line id="failure" class="failure" x1="{x:.1f}" y1="{AXIS - 6}" x2="{x:.1f}" '
            f'y2="{total}"/>'
        )
    width = GUTTER + scale.width + PAD
    under, over = _axis(scale, total)
    return (
        '<div class="lanes"><div class="scroll">'
        f'<svg class="swimlanes" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
        f'height="{total:.0f}" viewBox="0 0 {width:.0f} {total:.0f}">'
        + "".join([*under, *parts, *bands, *links, *failure, *over])
        + "</svg></div>"
        + _names(timeline, tops, total)
        + "</div>"
    )


def _names(timeline: Timeline, tops: dict[str, float], total: float) -> str:
    """The lane names again, in an overlay that stays put while the lanes scroll sideways."""
    parts = [f'<rect class="names-bg" x="0" y="0" width="{GUTTER}" height="{total:.0f}"/>']
    for lane in timeline.lanes:
        top = tops[lane.name]
        parts.append(
            f'<text class="lane-name" x="8" y="{top + 18}">{escape(lane.name)}</text>'
            f'<text class="lane-addr" x="8" y="{top + 32}">{escape(lane.addr)}</text>'
        )
    return (
        f'<svg class="names" xmlns="http://www.w3.org/2000/svg" width="{GUTTER}" '
        f'height="{total:.0f}">' + "".join(parts) + "</svg>"
    )


def sources_plot(plot: SourcePlot, scale: Scale, kills: tuple[float, ...] = ()) -> str:
    """Cumulative bytes per source of one multi-source download, as step lines."""
    height, top, bottom = 170.0, 12.0, 30.0
    peak = max((p[1] for s in plot.series for p in s.points), default=0) or 1
    mib = peak / 2**20

    def y(value: float) -> float:
        return top + (1 - value / peak) * (height - top - bottom)

    parts = [
        f'<line class="grid" x1="{GUTTER}" y1="{y(0):.1f}" x2="{GUTTER + scale.width}" '
        f'y2="{y(0):.1f}"/>',
        f'<text class="tick" x="{GUTTER - 6}" y="{y(peak) + 4:.1f}" text-anchor="end">'
        f"{mib:.0f} MiB</text>",
        f'<text class="tick" x="{GUTTER - 6}" y="{y(0) + 4:.1f}" text-anchor="end">0</text>',
    ]
    parts += [
        f'<line class="link k-kill" x1="{scale.x(t):.1f}" y1="{top}" x2="{scale.x(t):.1f}" '
        f'y2="{y(0):.1f}"><title>kill at {t:.3f} s</title></line>'
        for t in kills
    ]
    for i, series in enumerate(plot.series):
        colour = PALETTE[i % len(PALETTE)]
        coords: list[str] = []
        for t, value in series.points:
            if coords:
                coords.append(f"{scale.x(t):.1f},{float(coords[-1].split(',')[1]):.1f}")
            coords.append(f"{scale.x(t):.1f},{y(value):.1f}")
        final = series.points[-1][1] if series.points else 0
        parts.append(
            f'<polyline class="series" data-source="{escape(series.source)}" fill="none" '
            f'stroke="{colour}" stroke-width="2" points="{" ".join(coords)}"/>'
        )
        parts.append(
            f'<text class="legend" x="{GUTTER + 8 + i * 200}" y="{height - 8}" '
            f'style="fill:{colour}">'
            f"■ {escape(series.source)}: {final / 2**20:.1f} MiB</text>"
        )
    width = GUTTER + scale.width + PAD
    return (
        f'<svg class="sources" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">' + "".join(parts) + "</svg>"
    )
