"""Styled cells: status colours from the theme, and the TUI's coloured numbers and bars.

Table cells are Rich ``Text``; their colours come from the running theme's variables
(``$success``, ``$error``, ``$warning`` ...) through ``Palette``, so a theme switch recolours
everything and no colour is spelled out in Python. The text of every number (scores, bytes,
deltas, ages) is ``helm.fmt``'s, the same as the command line prints; this module only adds
colour and the shapes a terminal table needs (bars, sparklines).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.color import Color

from helm import fmt

_STATUS_ROLE = {
    # runs
    "keep": "success",
    "done": "text",
    "discard": "muted",
    "crash": "error",
    "cancelled": "muted",
    "aborted": "warning",  # stopped early by the early-abort rule: a discard with no score
    "screened": "muted",  # screens: short, small runs that are never ranked
    "screen-pass": "muted",
    "screen-fail": "muted",
    "running": "accent",
    "queued": "muted",
    # jobs
    "staging": "warning",
    "succeeded": "success",
    "failed": "error",
    "lost": "error",
    # agents
    "thinking": "primary",
    "training": "success",
    "waiting": "muted",
    "stalled": "warning",
    "stopped": "error",
    "starting": "muted",
    # feed kinds
    "insight": "text",
    "result": "success",
    "ack": "primary",
    "verification": "warning",
    "system": "muted",
}


@dataclass(frozen=True)
class Palette:
    """Rich colours for the roles the TUI uses, resolved from the app's theme variables."""

    text: str
    muted: str
    primary: str
    accent: str
    success: str
    warning: str
    error: str

    @classmethod
    def from_variables(cls, v: dict[str, str]) -> Palette:
        fg = Color.parse(v.get("foreground", "#e0e0e0"))
        bg = Color.parse(v.get("background", "#121212"))

        def pick(name: str, default: str) -> str:
            try:
                return Color.parse(v.get(name, default)).hex6
            except Exception:  # a theme variable that is not a plain colour
                return Color.parse(default).hex6

        return cls(
            text=fg.hex6,
            muted=fg.blend(bg, 0.45).hex6,
            primary=pick("primary", "#0178d4"),
            accent=pick("accent", "#fea62b"),
            success=pick("success", "#4ebf71"),
            warning=pick("warning", "#fea62b"),
            error=pick("error", "#b93c5b"),
        )

    def role(self, name: str) -> str:
        return getattr(self, name, self.text)

    def status(self, status: str | None, text: str | None = None) -> Text:
        """``text`` (default: the status itself) coloured by what the status means."""
        label = text if text is not None else (status or fmt.MISSING)
        return Text(label, style=self.role(_STATUS_ROLE.get(status or "", "text")))

    def muted_text(self, text: str) -> Text:
        return Text(text, style=self.muted)


def delta_cell(
    value: float | None, base: float | None, pal: Palette, *, of_base: bool = False
) -> Text:
    """Δ vs the base's mean: negative (better) green, positive red; ``of_base``: the run is
    one of the base's own runs, so there is no Δ to show, only ``◆``."""
    if of_base:
        return Text("◆", style=pal.accent)
    text = fmt.delta(value, base)
    if value is None or base is None:
        return pal.muted_text(text)
    d = value - base
    style = pal.success if d < 0 else pal.error if d > 0 else pal.muted
    return Text(text, style=style)


def size_cell(n: int | None, pal: Palette) -> Text:
    """Artifact bytes with the headroom under the cap: red when over, amber when tight."""
    text = fmt.artifact_size(n)
    if n is None:
        return pal.muted_text(text)
    room = fmt.headroom(n)
    style = pal.error if room < 0 else pal.warning if room < 100_000 else pal.text
    return Text(text, style=style)


def progress(
    step: int | None,
    total: int | None,
    pal: Palette,
    width: int = 10,
    *,
    phase: str | None = None,
    elapsed: float | None = None,
) -> Text:
    """A block progress bar with the step count: ``███▌      42%``.

    After the last step a run still evaluates, quantizes and scores its artifact for 30 s
    to minutes; a bar at 100% all that time looks stuck, so the cell names the ``phase``
    that runs and for how long instead: ``quantize 12s``, ``ttt 1m04s``.
    """
    if phase is not None:
        text = Text(phase, style=pal.primary)
        if elapsed is not None:
            text.append(f" {fmt.duration(elapsed)}", style=pal.text)
        text.pad_right(max(0, width + 5 - text.cell_len))
        return text
    if step is None or not total:
        return pal.muted_text(fmt.MISSING.ljust(width + 5))
    frac = max(0.0, min(1.0, step / total))
    eighths = round(frac * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    text = Text(bar.ljust(width), style=pal.success)
    text.append(f" {frac * 100:3.0f}%", style=pal.text)
    return text


def spark(values: list[float | None], busy: list[bool], pal: Palette) -> Text:
    """One cell per GPU: height is utilisation, colour is busy (a job holds it) or free."""
    blocks = " ▁▂▃▄▅▆▇█"
    out = Text()
    for v, b in zip(values, busy, strict=True):
        ch = "·" if v is None else blocks[max(1, min(8, round(v / 100 * 8)))]
        out.append(ch, style=pal.success if b else pal.muted)
    return out
