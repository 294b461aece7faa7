"""SVG charts drawn by hand, so a card needs no plotting library, no script and nothing from another origin.

Each chart function returns one <svg> element as a string. It is well-formed XML (the tests parse it), sized
by its viewBox alone so it scales to its container, and every chart shares one viewBox width so their text
renders at one size side by side. Every string from a user (feature, class and category names) is escaped
and cleaned of characters XML cannot hold; long ones are shortened for display with the full text kept in a
<title> tooltip. Colours follow the Okabe–Ito palette, which stays distinguishable under the common
colour-vision deficiencies; series beyond it also differ by dash pattern. Missing or non-finite numbers are
skipped, never drawn at zero, so no chart can crash on a null.
"""

from __future__ import annotations

import html
import itertools
import math
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

WIDTH = 520  # viewBox units: at a figure's usual 400–600 px, 12-unit text reads at 10–14 px
FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"
INK = "#1f2933"
MUTED = "#52606d"
GRID = "#e4e7eb"
AXIS = "#7b8794"
BAND = "#f5f7fa"
# Okabe–Ito, reordered so the first pair (the common case) contrasts most; its yellow darkened to read on white.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#4D4D4D", "#A89000")
DASHES = ("", "7 3", "2 3", "9 3 2 3")
# A sequential single-hue ramp (ColorBrewer Blues): ordered by lightness, so it reads in grey too.
_RAMP = ((0.0, (0xF4, 0xF8, 0xFC)), (0.5, (0x6B, 0xAE, 0xD6)), (1.0, (0x08, 0x30, 0x6B)))
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NUMBER_TYPES = (int, float)
_UNKNOWN = object()


# --- text -----------------------------------------------------------------------------------------------


def clean(value: object) -> str:
    """The text of a value as it can be shown: characters XML 1.0 forbids (controls, lone surrogates) would
    make the page invalid, and bidi overrides could make one label visually rewrite its neighbours."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch in _BIDI_CONTROLS:
            continue
        elif ch in "\t\n\r" or unicodedata.category(ch) in ("Zs", "Zl", "Zp"):
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cs") or ch in "\ufffe\uffff":
            out.append("\ufffd")
        else:  # format characters such as joiners, private use, code points newer than this Python's tables
            out.append(ch)
    return "".join(out)


def esc(value: object) -> str:
    """Cleaned and escaped for an HTML/XML text node or a double- or single-quoted attribute."""
    return html.escape(clean(value), quote=True)


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking the cut: a 10,000-character name must not push a
    table or a chart off the page."""
    if len(text) <= limit:
        return text
    return text[: max(1, limit - 1)].rstrip() + "…"


def text_width(text: str, size: float) -> float:
    """An estimate of rendered width, for layout only: no font metrics are available on the server, and
    wide (CJK) characters take about twice the room of Latin ones."""
    wide = sum(1 for ch in text if unicodedata.east_asian_width(ch) in "WF")
    return (len(text) - wide) * size * 0.58 + wide * size


# --- numbers --------------------------------------------------------------------------------------------


def number(value: object) -> float | None:
    """A finite real, or None: JSON may hold null, a string or a boolean where a number was expected."""
    if isinstance(value, bool) or not isinstance(value, _NUMBER_TYPES):
        return None
    try:
        result = float(value)
    except (OverflowError, ValueError):
        return None
    return result if math.isfinite(result) else None


def format_number(value: object) -> str:
    """About four significant digits, thousands separated: enough to compare models, short enough for a
    table cell. Integers stay exact, tiny and huge magnitudes switch to exponent form."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return clean(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e15 or magnitude < 1e-4:
        return f"{value:.3g}"
    if value.is_integer():
        return f"{int(value):,}"
    decimals = max(0, 3 - math.floor(math.log10(magnitude)))
    text = f"{value:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def nice_step(raw: float) -> float:
    """The 1-2-5 step nearest above `raw`: tick labels people can read at a glance."""
    exponent = math.floor(math.log10(raw))
    base = 10.0**exponent
    for factor in (1, 2, 5):
        if raw <= factor * base * (1 + 1e-9):
            return factor * base
    return 10 * base


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` evenly spaced round values covering [low, high]; a degenerate range is widened so a
    chart of one value still has an axis."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high < low:
        low, high = high, low
    if high - low <= 1e-12 * max(1.0, abs(low), abs(high)):
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    span = high - low
    if not math.isfinite(span) or span <= 0:
        return [low, high]
    step = nice_step(span / max(1, count))
    if not math.isfinite(step) or step <= 0:
        return [low, high]
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    if last - first > 4 * count:  # floating-point trouble at extreme magnitudes
        return [low, high]
    digits = max(0, -math.floor(math.log10(step))) + 2
    ticks = []
    for i in range(first, last + 1):
        tick = round(i * step, digits)
        ticks.append(0.0 if tick == 0 else tick)
    return ticks if len(ticks) >= 2 else [low, high]


def format_tick(value: float, step: float) -> str:
    """A tick label with just the decimals its step needs, so 0.2, 0.4, … not 0.2000, 0.4000, …"""
    if value == 0:
        return "0"
    if abs(value) >= 1e9 or step < 1e-5:
        return f"{value:.3g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:,.{decimals}f}"


def _tick_formatter(ticks: Sequence[float]) -> Callable[[float], str]:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    return lambda v: format_tick(v, step or 1.0)


def _n(value: float) -> str:
    """A coordinate: one decimal is below a pixel and keeps the markup small."""
    text = f"{value:.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return "0" if text == "-0" else text


# --- building blocks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scale:
    """A linear map from data to pixels, clamped so a stray value cannot draw outside the plot."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        if self.hi == self.lo:
            return (self.start + self.end) / 2
        t = (value - self.lo) / (self.hi - self.lo)
        t = min(1.0, max(0.0, t)) if math.isfinite(t) else 0.0
        return self.start + t * (self.end - self.start)


def _text(
    x: float,
    y: float,
    value: object,
    *,
    limit: int = 60,
    anchor: str = "start",
    size: float = 12,
    fill: str = INK,
    bold: bool = False,
    rotate: float | None = None,
) -> str:
    """One label; shortened, with the full text as its tooltip when it had to be."""
    full = clean(value)
    shown = shorten(full, limit)
    attrs = f'x="{_n(x)}" y="{_n(y)}" dy="0.35em"'
    if anchor != "start":
        attrs += f' text-anchor="{anchor}"'
    if size != 12:
        attrs += f' font-size="{_n(size)}"'
    if fill != INK:
        attrs += f' fill="{fill}"'
    if bold:
        attrs += ' font-weight="600"'
    if rotate is not None:
        attrs += f' transform="rotate({_n(rotate)} {_n(x)} {_n(y)})"'
    element = f"<text {attrs}>{html.escape(shown)}</text>"
    if shown != full:
        return f"<g><title>{html.escape(full)}</title>{element}</g>"
    return element


def _tip(text: str) -> str:
    """A tooltip for a mark; its labels are already shortened, so a big chart stays a small document."""
    return f"<title>{html.escape(clean(text))}</title>"


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, width: float = 1, dash: str = "") -> str:
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" stroke="{stroke}" '
        f'stroke-width="{_n(width)}"{extra}/>'
    )


def _svg(chart_id: str, title: str, height: float, body: str, defs: str = "") -> str:
    label = html.escape(shorten(clean(title), 300))
    defs = f"<defs>{defs}</defs>" if defs else ""
    return (
        f'<svg class="chart" data-chart="{esc(chart_id)}" role="img" aria-label="{label}" '
        f'viewBox="0 0 {WIDTH} {_n(height)}" width="100%" preserveAspectRatio="xMidYMid meet" '
        f'font-family="{FONT}" font-size="12" fill="{INK}">'
        f"<title>{label}</title>{defs}{body}</svg>"
    )


def _hatch(pattern_id: str) -> str:
    """Diagonal grey hatching: "hidden for privacy" must not look like a count of zero nor like a colour of
    the scale."""
    return (
        f'<pattern id="{esc(pattern_id)}" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#eceff3"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="#aab4bf" stroke-width="2"/></pattern>'
    )


def suppressed_label(min_group_size: object) -> tuple[str, str]:
    """What a suppressed count shows ("<5") and how a tooltip or legend says it ("fewer than 5 rows")."""
    size = number(min_group_size)
    if size is None or size <= 0:
        return "hidden", "too few rows"
    shown = format_number(int(size) if size.is_integer() else size)
    return f"<{shown}", f"fewer than {shown} rows"


def _y_axis_width(labels: Iterable[str], size: float = 11) -> float:
    return max((text_width(label, size) for label in labels), default=0.0)


def _axes(
    left: float,
    top: float,
    width: float,
    height: float,
    x: _Scale | None,
    xticks: Sequence[float],
    y: _Scale,
    yticks: Sequence[float],
    x_label: str,
    y_label: str,
) -> str:
    """Grid lines, tick labels and axis titles of a plot area; x may be absent (a band axis drawn by the
    caller)."""
    parts = []
    y_fmt = _tick_formatter(yticks)
    for tick in yticks:
        py = y(tick)
        parts.append(_line(left, py, left + width, py, GRID))
        parts.append(_text(left - 6, py, y_fmt(tick), anchor="end", size=11, fill=MUTED))
    if x is not None:
        x_fmt = _tick_formatter(xticks)
        for tick in xticks:
            px = x(tick)
            parts.append(_line(px, top, px, top + height, GRID))
            parts.append(_text(px, top + height + 14, x_fmt(tick), anchor="middle", size=11, fill=MUTED))
    parts.append(_line(left, top + height, left + width, top + height, AXIS))
    parts.append(_line(left, top, left, top + height, AXIS))
    if x_label and x is not None:
        parts.append(_text(left + width / 2, top + height + 34, x_label, limit=90, anchor="middle", fill=MUTED))
    if y_label:
        parts.append(_text(14, top + height / 2, y_label, limit=60, anchor="middle", fill=MUTED, rotate=-90))
    return "".join(parts)


@dataclass(frozen=True)
class _LegendItem:
    label: str
    colour: str
    dash: str = ""
    mark: str = "line"  # line, dot, whisker or hatch


def _legend(
    items: Sequence[_LegendItem], left: float, top: float, width: float, hatch_id: str = ""
) -> tuple[str, float]:
    """Swatches flowed into rows under the plot; returns the markup and the height it takes."""
    parts, x, y, row = [], left, top + 8, 18
    for item in items:
        label = shorten(clean(item.label), 44)
        item_width = 26 + text_width(label, 12) + 18
        if x > left and x + item_width > left + width:
            x, y = left, y + row
        if item.mark == "dot":
            parts.append(f'<circle cx="{_n(x + 9)}" cy="{_n(y)}" r="4.5" fill="{item.colour}"/>')
        elif item.mark == "whisker":
            parts.append(_line(x + 9, y - 6, x + 9, y + 6, item.colour, 1.5))
            parts.append(f'<circle cx="{_n(x + 9)}" cy="{_n(y)}" r="4" fill="{item.colour}"/>')
        elif item.mark == "hatch":
            parts.append(f'<rect x="{_n(x + 2)}" y="{_n(y - 6)}" width="14" height="12" fill="url(#{esc(hatch_id)})"/>')
        else:
            parts.append(_line(x, y, x + 18, y, item.colour, 2.5, item.dash))
        parts.append(_text(x + 24, y, item.label, limit=44, size=12))
        x += item_width
    return "".join(parts), (y - top) + row / 2 + 4 if items else 0.0


def _no_data(chart_id: str, title: str) -> str:
    return _svg(chart_id, title, 60, _text(WIDTH / 2, 30, "No data to draw", anchor="middle", fill=MUTED))


def _colour(i: int) -> tuple[str, str]:
    return PALETTE[i % len(PALETTE)], DASHES[(i // len(PALETTE)) % len(DASHES)]


def _ramp(t: float) -> str:
    t = min(1.0, max(0.0, t))
    for (t0, c0), (t1, c1) in itertools.pairwise(_RAMP):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            r, g, b = (round(a + (b - a) * f) for a, b in zip(c0, c1, strict=True))
            return f"#{r:02x}{g:02x}{b:02x}"
    return "#{:02x}{:02x}{:02x}".format(*_RAMP[-1][1])


# --- charts ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One bar of a horizontal bar chart; error is a symmetric whisker (e.g. one standard deviation)."""

    label: object
    value: float | None
    error: float | None = None


def bar_chart(chart_id: str, title: str, bars: Sequence[Bar], *, value_label: str = "") -> str:
    """Horizontal bars from zero, labels on the left: long names stay readable, and negative values (a
    permutation importance below zero) extend to the left of the zero line."""
    if not bars:
        return _no_data(chart_id, title)
    labels = [shorten(clean(b.label), 28) for b in bars]
    label_width = min(max(text_width(s, 12) for s in labels), 190)
    left, right, top = label_width + 16, 64, 8
    row = max(24.0, min(36.0, 120 / len(bars)))  # a chart of one or two bars is not a sliver
    plot_w = WIDTH - left - right
    plot_h = row * len(bars)
    ends = [0.0]
    for b in bars:
        value, error = number(b.value), number(b.error)
        if value is not None:
            ends += [value - abs(error or 0.0), value + abs(error or 0.0)]
    ticks = nice_ticks(min(ends), max(ends))
    x = _Scale(ticks[0], ticks[-1], left, left + plot_w)
    fmt = _tick_formatter(ticks)
    parts = []
    for tick in ticks:
        px = x(tick)
        parts.append(_line(px, top, px, top + plot_h, GRID))
        parts.append(_text(px, top + plot_h + 14, fmt(tick), anchor="middle", size=11, fill=MUTED))
    for i, b in enumerate(bars):
        cy = top + row * i + row / 2
        parts.append(_text(left - 8, cy, b.label, limit=28, anchor="end"))
        value, error = number(b.value), number(b.error)
        if value is None:
            parts.append(_text(x(0) + 4, cy, "not available", size=11, fill=MUTED))
            continue
        x0, x1 = sorted((x(0), x(value)))
        tip = f"{shorten(clean(b.label), 80)}: {format_number(value)}" + (
            f" ± {format_number(abs(error))}" if error else ""
        )
        parts.append(
            f'<rect x="{_n(x0)}" y="{_n(cy - row * 0.32)}" width="{_n(max(x1 - x0, 1))}" height="{_n(row * 0.64)}" '
            f'fill="{PALETTE[0]}" fill-opacity="0.85">{_tip(tip)}</rect>'
        )
        end = x(value)
        if error:
            lo, hi = x(value - abs(error)), x(value + abs(error))
            parts.append(_line(lo, cy, hi, cy, INK, 1.2))
            parts.append(_line(lo, cy - 5, lo, cy + 5, INK, 1.2))
            parts.append(_line(hi, cy - 5, hi, cy + 5, INK, 1.2))
            end = max(end, hi)
        parts.append(_text(max(end, x(0)) + 5, cy, format_number(value), size=11, fill=MUTED))
    parts.append(_line(x(0), top, x(0), top + plot_h, AXIS, 1.2))
    height = top + plot_h + 22
    if value_label:
        parts.append(_text(left + plot_w / 2, height + 6, value_label, limit=90, anchor="middle", fill=MUTED))
        height += 20
    return _svg(chart_id, title, height + 4, "".join(parts))


def heatmap(
    chart_id: str,
    title: str,
    row_labels: Sequence[object],
    column_labels: Sequence[object],
    counts: Sequence[Sequence[object]],
    *,
    min_group_size: object = None,
    row_title: str = "Actual",
    column_title: str = "Predicted",
) -> str:
    """A matrix of counts, shaded by count, every cell numbered. A null count was suppressed for privacy
    (fewer than min_group_size rows): hatched grey with "<N", never a number."""
    rows, columns = len(row_labels), len(column_labels)
    if not rows or not columns:
        return _no_data(chart_id, title)
    row_names = [shorten(clean(v), 18) for v in row_labels]
    column_names = [shorten(clean(v), 18) for v in column_labels]
    label_width = min(max(text_width(s, 12) for s in row_names), 150)
    left = 24 + label_width + 10
    cell = max(12.0, min(96.0, (WIDTH - left - 16) / columns, 400 / max(rows, columns)))
    left += max(0.0, (WIDTH - left - 16 - cell * columns) / 2)  # a small matrix is centred
    column_width = max(text_width(s, 12) for s in column_names)
    rotate = column_width > cell - 6
    top = 8
    grid_w, grid_h = cell * columns, cell * rows
    hatch_id = f"hatch-{chart_id}"
    # Only a null is a suppressed count; a cell that is absent or not a number is unknown, not "few rows".
    cells: list[list[object]] = [
        [counts[i][j] if i < len(counts) and j < len(counts[i]) else _UNKNOWN for j in range(columns)]
        for i in range(rows)
    ]
    values = [[None if c is None else number(c) for c in row] for row in cells]
    highest = max((v for row in values for v in row if v is not None), default=0.0) or 1.0
    suppressed, phrase = suppressed_label(min_group_size)
    parts = []
    for i in range(rows):
        cy = top + cell * i
        parts.append(_text(left - 8, cy + cell / 2, row_labels[i], limit=18, anchor="end"))
        for j in range(columns):
            cx = left + cell * j
            value = values[i][j]
            where = f"{row_title} {shorten(clean(row_labels[i]), 40)}, {column_title.lower()} {shorten(clean(column_labels[j]), 40)}"
            if cells[i][j] is None:
                fill, label, colour = f"url(#{esc(hatch_id)})", suppressed, INK
                tip = f"{where}: {phrase} (hidden for privacy)"
            elif value is None:
                fill, label, colour = "#ffffff", "—", MUTED
                tip = f"{where}: not recorded"
            else:
                t = value / highest
                fill, label = _ramp(t), format_number(int(value) if value.is_integer() else value)
                colour = "#ffffff" if t > 0.5 else INK
                tip = f"{where}: {label} rows"
            stroke = INK if i == j and rows == columns else "#ffffff"
            parts.append(
                f'<rect x="{_n(cx)}" y="{_n(cy)}" width="{_n(cell)}" height="{_n(cell)}" fill="{fill}" '
                f'stroke="{stroke}" stroke-width="{1.5 if stroke == INK else 1}">{_tip(tip)}</rect>'
            )
            font = max(6.0, min(13.0, cell * 0.32, (cell - 3) / (0.6 * max(1, len(label)))))
            parts.append(_text(cx + cell / 2, cy + cell / 2, label, anchor="middle", size=font, fill=colour))
    base = top + grid_h
    if rotate:
        for j in range(columns):
            cx = left + cell * j + cell / 2
            parts.append(_text(cx + 4, base + 8, column_labels[j], limit=18, anchor="end", rotate=-40))
        label_h = min(column_width, 150) * math.sin(math.radians(40)) + 16
    else:
        for j in range(columns):
            cx = left + cell * j + cell / 2
            parts.append(_text(cx, base + 12, column_labels[j], limit=18, anchor="middle"))
        label_h = 24
    parts.append(_text(left + grid_w / 2, base + label_h + 14, column_title, anchor="middle", fill=MUTED, bold=True))
    title_x = max(12.0, left - 8 - label_width - 14)
    parts.append(_text(title_x, top + grid_h / 2, row_title, anchor="middle", fill=MUTED, bold=True, rotate=-90))
    height = base + label_h + 28
    if any(c is None for row in cells for c in row):
        legend, used = _legend(
            [_LegendItem(f"{phrase}, hidden for privacy", INK, mark="hatch")],
            left,
            height,
            WIDTH - left,
            hatch_id,
        )
        parts.append(legend)
        height += used
    return _svg(chart_id, title, height + 4, "".join(parts), _hatch(hatch_id))


@dataclass(frozen=True)
class Series:
    """A named line: points in x order; a point with a null coordinate breaks the line there."""

    name: object
    points: Sequence[tuple[object, object]]


def _segments(points: Sequence[tuple[object, object]]) -> list[list[tuple[float, float]]]:
    segments: list[list[tuple[float, float]]] = [[]]
    for px, py in points:
        fx, fy = number(px), number(py)
        if fx is None or fy is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append((fx, fy))
    return [s for s in segments if s]


def line_chart(
    chart_id: str,
    title: str,
    series: Sequence[Series],
    *,
    x_label: str = "",
    y_label: str = "",
    x_domain: tuple[float, float] | None = None,
    y_domain: tuple[float, float] | None = None,
    reference: Series | None = None,
) -> str:
    """Lines on linear axes with a legend when there is more than one thing drawn; `reference` is a grey
    dashed line for comparison (ROC's chance diagonal). Points are marked, with tooltips, when few."""
    drawn = [(s, _segments(s.points)) for s in series]
    reference_segments = _segments(reference.points) if reference else []
    coordinates = [p for _, segments in drawn for segment in segments for p in segment]
    if not coordinates:
        return _no_data(chart_id, title)
    every = coordinates + [p for segment in reference_segments for p in segment]
    xs, ys = [p[0] for p in every], [p[1] for p in every]
    xticks = nice_ticks(*(x_domain or (min(xs), max(xs))))
    yticks = nice_ticks(*(y_domain or (min(ys), max(ys))))
    y_fmt = _tick_formatter(yticks)
    left = 30 + _y_axis_width(y_fmt(t) for t in yticks) + 8
    top, right = 10, 18
    plot_w, plot_h = WIDTH - left - right, 230
    x = _Scale(xticks[0], xticks[-1], left, left + plot_w)
    y = _Scale(yticks[0], yticks[-1], top + plot_h, top)
    parts = [_axes(left, top, plot_w, plot_h, x, xticks, y, yticks, x_label, y_label)]
    legend: list[_LegendItem] = []
    if reference is not None and reference_segments:
        for segment in reference_segments:
            path = " ".join(f"{'M' if k == 0 else 'L'}{_n(x(px))} {_n(y(py))}" for k, (px, py) in enumerate(segment))
            parts.append(f'<path d="{path}" fill="none" stroke="{AXIS}" stroke-width="1.5" stroke-dasharray="5 4"/>')
    for i, (s, segments) in enumerate(drawn):
        colour, dash = _colour(i)
        name = shorten(clean(s.name), 60)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        for segment in segments:
            path = " ".join(f"{'M' if k == 0 else 'L'}{_n(x(px))} {_n(y(py))}" for k, (px, py) in enumerate(segment))
            parts.append(
                f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2.2" '
                f'stroke-linejoin="round" stroke-linecap="round"{dash_attr}/>'
            )
        points = [p for segment in segments for p in segment]
        if len(points) <= 25:
            for px, py in points:
                parts.append(
                    f'<circle cx="{_n(x(px))}" cy="{_n(y(py))}" r="3.5" fill="{colour}" stroke="#ffffff" '
                    f'stroke-width="1">{_tip(f"{name}: {format_number(px)} → {format_number(py)}")}</circle>'
                )
        legend.append(_LegendItem(str(s.name), colour, dash))
    if reference is not None and reference_segments:
        legend.append(_LegendItem(str(reference.name), AXIS, "5 4"))
    height = top + plot_h + 44
    if len(legend) > 1:
        markup, used = _legend(legend, left, height, plot_w)
        parts.append(markup)
        height += used
    return _svg(chart_id, title, height + 4, "".join(parts))


def category_chart(
    chart_id: str,
    title: str,
    categories: Sequence[object],
    outputs: Sequence[object],
    values: Sequence[Sequence[object]],
    *,
    x_label: str = "",
    y_label: str = "",
) -> str:
    """Dots per category, one colour per output, side by side within the category's band: categories have no
    order, so nothing joins them, and the axis need not start at zero (average predictions rarely do)."""
    n, k = len(categories), max(1, len(outputs))
    found = [
        number(values[i][j]) if i < len(values) and isinstance(values[i], Sequence) and j < len(values[i]) else None
        for i in range(n)
        for j in range(k)
    ]
    present = [v for v in found if v is not None]
    if not n or not present:
        return _no_data(chart_id, title)
    low, high = min(present), max(present)
    pad = (high - low) * 0.08
    yticks = nice_ticks(low - pad, high + pad)
    y_fmt = _tick_formatter(yticks)
    left = 30 + _y_axis_width(y_fmt(t) for t in yticks) + 8
    top, right, plot_h = 16, 18, 220
    plot_w = WIDTH - left - right
    band = plot_w / n
    names = [shorten(clean(c), 20) for c in categories]
    widest = max(text_width(s, 11) for s in names)
    rotate = widest > band - 6
    label_h = min(widest, 120) * math.sin(math.radians(35)) + 14 if rotate else 20
    y = _Scale(yticks[0], yticks[-1], top + plot_h, top)
    parts = []
    for i in range(n):
        if i % 2:
            parts.append(
                f'<rect x="{_n(left + band * i)}" y="{_n(top)}" width="{_n(band)}" height="{_n(plot_h)}" fill="{BAND}"/>'
            )
    parts.append(_axes(left, top, plot_w, plot_h, None, (), y, yticks, "", y_label))
    spread = min(band * 0.6, 14.0 * k)
    for i in range(n):
        centre = left + band * i + band / 2
        if rotate:
            parts.append(
                _text(centre + 3, top + plot_h + 8, categories[i], limit=20, anchor="end", size=11, rotate=-35)
            )
        else:
            parts.append(_text(centre, top + plot_h + 12, categories[i], limit=20, anchor="middle", size=11))
        for j in range(k):
            value = found[i * k + j]
            if value is None:
                continue
            cx = centre + (spread * ((j + 0.5) / k - 0.5) if k > 1 else 0.0)
            colour, _ = _colour(j)
            output = shorten(clean(outputs[j]), 40) if j < len(outputs) else ""
            tip = f"{names[i]}" + (f", {output}" if k > 1 else "") + f": {format_number(value)}"
            parts.append(_line(cx - 7, y(value), cx + 7, y(value), colour, 2.5))
            parts.append(
                f'<circle cx="{_n(cx)}" cy="{_n(y(value))}" r="4.5" fill="{colour}" stroke="#ffffff" '
                f'stroke-width="1">{_tip(tip)}</circle>'
            )
            if k == 1 and n <= 12:
                parts.append(_text(cx, y(value) - 12, format_number(value), anchor="middle", size=10, fill=MUTED))
    height = top + plot_h + label_h
    if x_label:
        parts.append(_text(left + plot_w / 2, height + 8, x_label, limit=90, anchor="middle", fill=MUTED))
        height += 22
    if k > 1:
        items = [_LegendItem(str(outputs[j]) if j < len(outputs) else "", _colour(j)[0], mark="dot") for j in range(k)]
        markup, used = _legend(items, left, height, plot_w)
        parts.append(markup)
        height += used
    return _svg(chart_id, title, height + 6, "".join(parts))


@dataclass(frozen=True)
class BinPoint:
    """A bin of rows ranked by prediction: its median prediction (x), median actual value (y), the actual
    values' quartiles (low, high) and its size."""

    x: object
    y: object
    low: object = None
    high: object = None
    rows: object = None


def predicted_vs_actual(
    chart_id: str, title: str, bins: Sequence[BinPoint], *, x_label: str = "Predicted", y_label: str = "Actual"
) -> str:
    """Binned medians with quartile whiskers against the y = x line: a perfect model's points sit on it, and
    both axes share one range so distance from the line reads the same everywhere."""
    drawn = [b for b in bins if number(b.x) is not None and number(b.y) is not None]
    if not drawn:
        return _no_data(chart_id, title)
    values = [v for b in drawn for v in (number(b.x), number(b.y), number(b.low), number(b.high)) if v is not None]
    ticks = nice_ticks(min(values), max(values))
    fmt = _tick_formatter(ticks)
    left = 30 + _y_axis_width(fmt(t) for t in ticks) + 8
    top, right, plot_h = 10, 18, 260
    plot_w = WIDTH - left - right
    x = _Scale(ticks[0], ticks[-1], left, left + plot_w)
    y = _Scale(ticks[0], ticks[-1], top + plot_h, top)
    parts = [_axes(left, top, plot_w, plot_h, x, ticks, y, ticks, x_label, y_label)]
    parts.append(_line(x(ticks[0]), y(ticks[0]), x(ticks[-1]), y(ticks[-1]), AXIS, 1.5, "5 4"))
    colour = PALETTE[0]
    for b in drawn:
        px, py = x(number(b.x) or 0.0), y(number(b.y) or 0.0)
        low, high = number(b.low), number(b.high)
        if low is not None and high is not None:
            parts.append(_line(px, y(low), px, y(high), colour, 1.5))
            parts.append(_line(px - 3, y(low), px + 3, y(low), colour, 1.5))
            parts.append(_line(px - 3, y(high), px + 3, y(high), colour, 1.5))
        rows = number(b.rows)
        tip = (
            f"predicted {format_number(number(b.x))}, actual median {format_number(number(b.y))}"
            + (
                f", middle half {format_number(low)} to {format_number(high)}"
                if low is not None and high is not None
                else ""
            )
            + (f", {format_number(int(rows))} rows" if rows is not None else "")
        )
        parts.append(
            f'<circle cx="{_n(px)}" cy="{_n(py)}" r="4" fill="{colour}" stroke="#ffffff" stroke-width="1">{_tip(tip)}</circle>'
        )
    height = top + plot_h + 44
    markup, used = _legend(
        [
            _LegendItem("median actual, p25–p75 whisker", colour, mark="whisker"),
            _LegendItem("perfect prediction (y = x)", AXIS, "5 4"),
        ],
        left,
        height,
        plot_w,
    )
    parts.append(markup)
    return _svg(chart_id, title, height + used + 4, "".join(parts))


@dataclass(frozen=True)
class HistogramBin:
    """[low, high) and its row count; a null count was suppressed for privacy."""

    low: object
    high: object
    count: object


def histogram(
    chart_id: str,
    title: str,
    bins: Sequence[HistogramBin],
    *,
    x_label: str = "",
    y_label: str = "Rows",
    min_group_size: object = None,
    reference_x: float | None = 0.0,
) -> str:
    """Adjacent bars over their value range. A suppressed bin is a hatched bar of the height its count could
    at most have been, labelled "<N", so it is neither mistaken for empty nor for a known count."""
    drawn = [b for b in bins if number(b.low) is not None and number(b.high) is not None]
    if not drawn:
        return _no_data(chart_id, title)
    size = number(min_group_size)
    ceiling = (size - 1) if size is not None and size > 1 else None
    counts = [number(b.count) for b in drawn]
    highest = max([c for c in counts if c is not None] + ([ceiling] if ceiling else []) + [1.0])
    xticks = nice_ticks(min(number(b.low) or 0.0 for b in drawn), max(number(b.high) or 0.0 for b in drawn))
    yticks = nice_ticks(0.0, highest)
    y_fmt = _tick_formatter(yticks)
    left = 30 + _y_axis_width(y_fmt(t) for t in yticks) + 8
    top, right, plot_h = 16, 18, 230
    plot_w = WIDTH - left - right
    x = _Scale(xticks[0], xticks[-1], left, left + plot_w)
    y = _Scale(yticks[0], yticks[-1], top + plot_h, top)
    hatch_id = f"hatch-{chart_id}"
    suppressed, phrase = suppressed_label(min_group_size)
    parts = [_axes(left, top, plot_w, plot_h, x, xticks, y, yticks, x_label, y_label)]
    for b, count in zip(drawn, counts, strict=True):
        lo, hi = number(b.low) or 0.0, number(b.high) or 0.0
        x0, x1 = sorted((x(lo), x(hi)))
        span = f"{format_number(lo)} to {format_number(hi)}"
        if b.count is None:
            top_y = min(y(ceiling) if ceiling else y(highest * 0.05), top + plot_h - 14)  # visible however low
            fill, label = f"url(#{esc(hatch_id)})", suppressed
            tip = f"{span}: {phrase} (hidden for privacy)"
        elif count is None:  # not a number: nothing known to draw
            continue
        else:
            top_y, fill, label = y(count), PALETTE[0], format_number(int(count) if count.is_integer() else count)
            tip = f"{span}: {label} rows"
        width = max(x1 - x0 - 1, 1)
        if top_y < top + plot_h:
            parts.append(
                f'<rect x="{_n(x0 + 0.5)}" y="{_n(top_y)}" width="{_n(width)}" height="{_n(top + plot_h - top_y)}" '
                f'fill="{fill}" fill-opacity="{0.85 if count is not None else 1}">{_tip(tip)}</rect>'
            )
        if len(drawn) <= 24:
            parts.append(_text((x0 + x1) / 2, top_y - 8, label, anchor="middle", size=10, fill=MUTED))
    if reference_x is not None and xticks[0] < reference_x < xticks[-1]:
        parts.append(_line(x(reference_x), top, x(reference_x), top + plot_h, INK, 1.2, "4 3"))
    height = top + plot_h + 44
    if any(b.count is None for b in drawn):
        markup, used = _legend(
            [_LegendItem(f"{phrase}, hidden for privacy", INK, mark="hatch")], left, height, plot_w, hatch_id
        )
        parts.append(markup)
        height += used
    return _svg(chart_id, title, height + 4, "".join(parts), _hatch(hatch_id))
