"""A small braille chart: points, lines and step lines with labels, drawn in the terminal.

Each character cell holds a 2×4 grid of braille dots, so a 60×15 chart has 120×60 dots:
enough to show 10,000 runs as a cloud and a running-best step line. We draw it ourselves
(no plotting dependency) and render the whole chart as one ``Text`` only when its data or
size changes; Textual caches it between refreshes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.text import Text
from textual.widget import Widget

from helm.tui.fmt import Palette

_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))  # [dx][dy]


class Canvas:
    """A character grid with braille sub-cells and one colour per cell (the highest layer wins)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = max(1, width), max(1, height)
        self.bits = [[0] * self.width for _ in range(self.height)]
        self.color: list[list[tuple[int, str] | None]] = [
            [None] * self.width for _ in range(self.height)
        ]
        self.chars: list[list[tuple[str, str] | None]] = [
            [None] * self.width for _ in range(self.height)
        ]

    def dot(self, x: int, y: int, color: str, layer: int = 0) -> None:
        """Set the dot at dot coordinates (x right, y down); off-canvas dots are dropped."""
        if not (0 <= x < self.width * 2 and 0 <= y < self.height * 4):
            return
        cx, cy = x // 2, y // 4
        self.bits[cy][cx] |= _DOT[x % 2][y % 4]
        current = self.color[cy][cx]
        if current is None or layer >= current[0]:
            self.color[cy][cx] = (layer, color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: str, layer: int = 0) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.dot(x0, y0, color, layer)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, col: int, row: int, s: str, color: str) -> None:
        for i, ch in enumerate(s):
            if 0 <= col + i < self.width and 0 <= row < self.height:
                self.chars[row][col + i] = (ch, color)

    def free(self, col: int, row: int, length: int) -> bool:
        """True when no text is already written in that span (labels must not overlap)."""
        if not (0 <= row < self.height) or col < 0 or col + length > self.width:
            return False
        return all(self.chars[row][c] is None for c in range(col, col + length))

    def rows(self) -> list[Text]:
        out = []
        for cy in range(self.height):
            line = Text()
            for cx in range(self.width):
                if self.chars[cy][cx] is not None:
                    ch, color = self.chars[cy][cx]  # type: ignore[misc]
                    line.append(ch, style=color)
                elif self.bits[cy][cx]:
                    c = self.color[cy][cx]
                    line.append(chr(0x2800 + self.bits[cy][cx]), style=c[1] if c else None)
                else:
                    line.append(" ")
            out.append(line)
        return out


@dataclass
class Series:
    """Data for the chart; ``kind`` is points, line (joined) or step (holds until the next x)."""

    xs: Sequence[float]
    ys: Sequence[float]
    role: str = "text"
    kind: str = "points"
    layer: int = 0


@dataclass
class Label:
    x: float
    y: float
    text: str
    role: str = "text"


@dataclass
class ChartData:
    series: list[Series] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)  # placed in order; overlaps are skipped
    y_range: tuple[float, float] | None = None
    x_range: tuple[float, float] | None = None
    y_format: str = "{:.4f}"
    x_format: str = "{:.0f}"
    title: str = ""
    empty: str = "no data yet"


def render_chart(data: ChartData, width: int, height: int, pal: Palette) -> Text:
    """The chart as text: y labels on the left, an x axis at the bottom."""
    xs = [x for s in data.series for x in s.xs]
    ys = [y for s in data.series for y in s.ys]
    if not xs or width < 12 or height < 4:
        return Text(data.empty, style=pal.muted)
    x0, x1 = data.x_range or (min(xs), max(xs))
    y0, y1 = data.y_range or (min(ys), max(ys))
    if x1 <= x0:
        x1 = x0 + 1
    if y1 <= y0:
        y0, y1 = y0 - 0.5 * (abs(y0) * 0.01 or 1), y1 + 0.5 * (abs(y1) * 0.01 or 1)
    y_labels = [data.y_format.format(y1), data.y_format.format(y0)]
    gutter = max(len(s) for s in y_labels) + 1
    plot_w, plot_h = width - gutter, height - 1
    canvas = Canvas(plot_w, plot_h)
    dots_w, dots_h = plot_w * 2 - 1, plot_h * 4 - 1

    def px(x: float) -> int:
        return round((x - x0) / (x1 - x0) * dots_w)

    def py(y: float) -> int:  # clamp: outliers sit on the top or bottom edge
        y = min(max(y, y0), y1)
        return round((y1 - y) / (y1 - y0) * dots_h)

    for s in data.series:
        color = pal.role(s.role)
        pts = [(px(x), py(y)) for x, y in zip(s.xs, s.ys, strict=True)]
        if s.kind == "points":
            for x, y in pts:
                canvas.dot(x, y, color, s.layer)
            continue
        for (ax, ay), (bx, by) in zip(pts, pts[1:], strict=False):
            if s.kind == "step":
                canvas.line(ax, ay, bx, ay, color, s.layer)
                canvas.line(bx, ay, bx, by, color, s.layer)
            else:
                canvas.line(ax, ay, bx, by, color, s.layer)
        if s.kind == "step" and pts:  # hold the last value to the right edge
            canvas.line(pts[-1][0], pts[-1][1], dots_w, pts[-1][1], color, s.layer)
        elif len(pts) == 1:
            canvas.dot(pts[0][0], pts[0][1], color, s.layer)
    for lab in data.labels:
        # Below-right of the point: the step line runs along the point's own row.
        col, row = px(lab.x) // 2 + 1, py(lab.y) // 4 + 1
        text = lab.text[: max(0, plot_w - col)]
        if len(text) >= 4 and canvas.free(col, row, len(text)):
            canvas.text(col, row, text, pal.role(lab.role))
    out = Text()
    axis = pal.muted
    for i, line in enumerate(canvas.rows()):
        label = y_labels[0] if i == 0 else y_labels[1] if i == plot_h - 1 else ""
        out.append(label.rjust(gutter - 1) + "│", style=axis)
        out.append_text(line)
        out.append("\n")
    left, right = data.x_format.format(x0), data.x_format.format(x1)
    middle = data.title[: max(0, plot_w - len(left) - len(right) - 2)]
    pad = plot_w - len(left) - len(right) - len(middle)
    out.append(" " * (gutter - 1) + "└", style=axis)
    out.append(left + " " * (pad // 2) + middle + " " * (pad - pad // 2) + right, style=axis)
    return out


class Chart(Widget):
    """A widget around ``render_chart``; ``data`` is replaced whole, never mutated."""

    DEFAULT_CSS = "Chart { height: 1fr; width: 1fr; }"

    def __init__(
        self, palette: Callable[[], Palette], *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._palette = palette
        self.data = ChartData()

    def set_data(self, data: ChartData) -> None:
        self.data = data
        self.refresh()

    def render(self) -> Text:
        return render_chart(self.data, self.size.width, self.size.height, self._palette())
