"""Run detail: the live log tail, the loss curve, parameters and results, the diff vs parent.

The log is followed by a thread worker that reads ``jobs/<id>/train.log`` from the last
offset (a ``stat`` every ``TAIL_POLL_S``), hands whole lines in batches to Textual's ``Log``
widget (line-based, renders only the visible lines, keeps at most ``MAX_LINES``) and
updates the curve from the same lines. Batching by read means a burst of thousands of lines
costs one UI update, not thousands (toolong's coalescing).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Footer, Log, RichLog, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from helm import fmt
from helm.tui import commands as cmds
from helm.tui import data, ops
from helm.tui.curve import Curve
from helm.tui.fmt import Palette, size_cell
from helm.tui.screens.base import HelmScreen
from helm.tui.screens.views import render_diff
from helm.tui.widgets.chart import Chart, ChartData, Series

INITIAL_TAIL_BYTES = 512 * 1024  # a long log opens at its end, not its beginning
READ_CHUNK = 1 << 20


class RunDetailScreen(HelmScreen):
    CONTEXT = cmds.DETAIL
    BINDINGS = cmds.bindings_for(cmds.DETAIL)
    AUTO_FOCUS = "#log"  # j/k/g/G scroll the log from the start, not the tab strip
    TABS = ("tab-log", "tab-diff")
    TAIL_POLL_S = 0.1
    MAX_LINES = 20_000
    CURVE_REDRAW_S = 0.5  # the log follows every line; the chart needs no more than 2 fps

    def __init__(self, run_id: int | None, job_id: int | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.job_id = job_id
        self.detail: data.RunDetail | None = None
        self.curve = Curve()
        self.tail_path: Path | None = None
        self._diff_loaded = False
        self._curve_drawn_at = 0.0
        self._curve_dirty = False

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="title", classes="title")
        with Horizontal(id="top"):
            yield Static(id="info")
            yield Chart(lambda: self.helm.palette, id="curve")
        with TabbedContent(id="tabs"):
            # Each tab's label starts with the key that shows it (``tab_log``/``tab_diff``).
            with TabPane(f"{self._key('tab_log')} log", id="tab-log"):
                yield Log(id="log", max_lines=self.MAX_LINES, auto_scroll=True)
            with TabPane(f"{self._key('tab_diff')} diff vs parent", id="tab-diff"):
                yield RichLog(id="diff", wrap=False, max_lines=20_000)
        yield Footer()

    def _key(self, command_id: str) -> str:
        """The key the user presses for a command now (their ``[keys]`` applied)."""
        keymap: dict[str, str] = getattr(self.app, "keymap", {})
        return cmds.display_key(cmds.key_of(cmds.BY_ID[command_id], keymap))

    def _title(self) -> str:
        what = f"run #{self.run_id}" if self.run_id is not None else f"job #{self.job_id}"
        tabs = f"{self._key('prev_tab')} {self._key('next_tab')} tabs"
        return f"{what}  ·  {tabs}  ·  {self._key('zoom')} zoom  ·  {self._key('back')} back"

    def on_mount(self) -> None:
        self.query_one("#curve", Chart).set_data(ChartData(empty="no loss lines yet"))
        self.snapshot_updated()

    # Tabs and zoom --------------------------------------------------------------------------
    def action_show_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    def action_cycle_tab(self, step: int) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        i = self.TABS.index(tabs.active) if tabs.active in self.TABS else 0
        tabs.active = self.TABS[(i + step) % len(self.TABS)]

    @on(TabbedContent.TabActivated)
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        """The shown tab's content takes the focus, so the movement keys scroll it."""
        content = "#log" if event.pane.id == "tab-log" else "#diff"
        self.query_one(content).focus()

    def action_zoom(self) -> None:
        """Maximise the log or the diff (whichever has the focus); again, or esc, restores."""
        if self.maximized is not None:
            self.minimize()
        elif self.focused is not None and self.focused.id in ("log", "diff"):
            self.maximize(self.focused, container=False)

    # Selection for the shared actions -----------------------------------------------------
    def selected_run_id(self) -> int | None:
        return self.run_id

    def selected_job_id(self) -> int | None:
        job = self.detail.job if self.detail else None
        return job["id"] if job else self.job_id

    def action_pin(self) -> None:
        self.flows.pin(self.run_id)

    def action_diff(self) -> None:
        self.flows.diff(self.run_id)

    def action_promote(self) -> None:
        self.flows.promote(self.run_id)

    def action_mark(self) -> None:
        self.flows.mark(self.run_id)

    def action_cancel(self) -> None:
        self.flows.cancel(self.selected_job_id())

    # Loading ------------------------------------------------------------------------------
    def snapshot_updated(self) -> None:
        if self._curve_dirty:  # a redraw held back by the frame limit
            self._draw_curve()
        self._load()

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def _load(self) -> None:
        detail = data.load_detail(self.helm.ws, self.run_id, self.job_id)
        self.app.call_from_thread(self._show, detail)

    def _show(self, detail: data.RunDetail) -> None:
        self.detail = detail
        self.query_one("#info", Static).update(info_text(detail, self.helm.palette))
        job = detail.job
        if job is not None and self.tail_path is None:
            self.tail_path = self.helm.ws.job_dir(job["id"]) / "train.log"
            self._tail(self.tail_path)
        if not self._diff_loaded and detail.run is not None:
            self._diff_loaded = True
            self._load_diff(detail)

    @work(thread=True, exclusive=True, group="detail-diff", exit_on_error=False)
    def _load_diff(self, detail: data.RunDetail) -> None:
        if detail.parent is None:
            text = "no diff available: this run has no parent"
        else:
            _, text = ops.diff_text(self.helm.ws, detail.run["id"], detail.parent["id"])
        self.app.call_from_thread(
            render_diff, self.query_one("#diff", RichLog), text, self.helm.palette
        )

    # The tail -----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="tail", exit_on_error=False)
    def _tail(self, path: Path) -> None:
        worker = get_current_worker()
        offset, pending = 0, b""
        first = True
        while not worker.is_cancelled:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                time.sleep(self.TAIL_POLL_S)
                continue
            if size < offset:  # truncated or replaced: start over
                offset, pending = 0, b""
                self._ui(self._reset_log)
            if size == offset:
                time.sleep(self.TAIL_POLL_S)
                continue
            with open(path, "rb") as fh:
                if first and size > INITIAL_TAIL_BYTES:
                    offset = size - INITIAL_TAIL_BYTES
                    fh.seek(offset)
                    fh.readline()  # drop the partial first line
                    offset = fh.tell()
                fh.seek(offset)
                chunk = fh.read(min(size - offset, READ_CHUNK))
            first = False
            offset += len(chunk)
            pending += chunk
            cut = pending.rfind(b"\n")
            if cut < 0:
                continue
            lines = pending[:cut].decode("utf-8", "replace").replace("\r", "").split("\n")
            pending = pending[cut + 1 :]
            redraw = self.curve.add_lines(lines)
            if not self._ui(self._append, lines, redraw):
                return

    def _ui(self, fn: Any, *args: Any) -> bool:
        """Run ``fn`` on the UI thread; False once the app has gone (stop tailing)."""
        try:
            self.app.call_from_thread(fn, *args)
        except RuntimeError:
            return False
        return True

    def _append(self, lines: list[str], redraw: bool) -> None:
        self.query_one("#log", Log).write_lines(lines)
        self._curve_dirty |= redraw
        if self._curve_dirty and time.monotonic() - self._curve_drawn_at >= self.CURVE_REDRAW_S:
            self._draw_curve()

    def _draw_curve(self) -> None:
        self._curve_drawn_at, self._curve_dirty = time.monotonic(), False
        self.query_one("#curve", Chart).set_data(curve_data(self.curve))

    def _reset_log(self) -> None:
        self.query_one("#log", Log).clear()
        self.curve = Curve()


def curve_data(curve: Curve) -> ChartData:
    series = []
    if curve.train:
        xs, ys = zip(*curve.train, strict=True)
        series.append(Series(xs, ys, "primary", "line", 1))
    if curve.val_loss:
        xs, ys = zip(*curve.val_loss, strict=True)
        series.append(Series(xs, ys, "success", "points", 2))
    ys_all = [y for s in series for y in s.ys]
    return ChartData(
        series=series,
        x_range=(0, curve.total_steps) if curve.total_steps else None,
        y_range=(min(ys_all), max(ys_all)) if ys_all else None,
        y_format="{:.3f}",
        title="train loss · val loss",
        empty="no loss lines yet",
    )


def screen_lines(d: data.RunDetail, line: Any, pal: Palette) -> None:
    """The screen a full run came through (its id, score, Δ against the base's screen), or,
    on a screen, what it was judged against and the full run it earned, or why none."""
    s, r = d.screen, d.run
    assert s is not None and r is not None
    vs = fmt.delta(s["val_bpb"], s["ref_bpb"])
    ref = (
        f" (base's screen #{s['ref_run_id']} {fmt.score(s['ref_bpb'])})" if s["ref_run_id"] else ""
    )
    if not r.get("screen"):  # a full run: the screen that earned it
        line("screen", f"#{s['run_id']} {fmt.score(s['val_bpb'])} {s['status']}", pal.muted)
        if s["ref_run_id"]:
            line("vs base", f"{vs}{ref}")
        return
    line("kind", "screen (a short, small run; never ranked)", pal.muted)
    if s["ref_run_id"]:
        line("vs base", f"{vs}{ref}")
    if d.full_run_id is not None:
        line("full run", f"#{d.full_run_id}", pal.success)
    elif r["status"] == "screen-fail":
        line("full run", f"none: {s['note'] or 'did not beat the base screen'}"[:120], pal.muted)
    elif r["status"] == "screen-pass":
        line("full run", "passed: queued next", pal.muted)
    elif r["status"] == "screened" and not s["ref_run_id"]:
        line("full run", "none: a base's screen (candidates are judged against it)", pal.muted)
    elif s["ref_run_id"]:  # a candidate's screen still running, or not judged yet
        line("full run", "not judged yet", pal.muted)


def info_text(d: data.RunDetail, pal: Palette) -> Text:
    """Parameters and results, one fact per line, for the narrow left column."""
    t = Text()

    def line(label: str, value: object, style: str = "") -> None:
        t.append(f"{label:<9}", style=pal.muted)
        t.append(f"{value}\n", style=style or pal.text)

    r, j = d.run, d.job
    if r is not None:
        line("status", r["status"], pal.status(r["status"]).style.__str__())
        line("agent", r["agent"] or fmt.MISSING)
        if r["description"]:
            line("what", r["description"][:60])
        line("parent", f"#{r['parent_id']}" if r["parent_id"] else fmt.MISSING)
        line("commit", (r["commit"] or fmt.MISSING)[:12])
        env = json.loads(r.get("env_json") or "{}")
        if r["seed"] is not None:
            line("seed", r["seed"])
        for k, v in list(env.items())[:6]:
            line("env", f"{k}={v}"[:40])
        line("val_bpb", fmt.score(r["val_bpb"]), pal.success if r["val_bpb"] else "")
        if r["bytes_total"] is not None:
            line("bytes", size_cell(r["bytes_total"], pal).plain)
        if r["steps"] is not None:
            train_s = r["train_time_ms"] / 1000 if r["train_time_ms"] is not None else None
            line("steps", f"{r['steps']} ({fmt.duration(train_s)})")
        if d.screen is not None:
            screen_lines(d, line, pal)
    if j is not None:
        gpus = ",".join(str(i) for i in json.loads(j.get("gpu_ids_json") or "[]"))
        line("job", f"#{j['id']} {j['state']}", pal.status(j["state"]).style.__str__())
        line("host", f"{j['host'] or fmt.MISSING} [{gpus or j['gpus']}]")
        if j["step"] is not None:
            line("step", f"{j['step']}/{j['total_steps'] or '?'}  eta {fmt.age(j['eta_s'])}")
        if j["train_loss"] is not None:
            line("loss", fmt.loss(j["train_loss"]))
        if j["error"]:
            line("error", j["error"][:80], pal.error)
    return t
