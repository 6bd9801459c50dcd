"""Early abort: is a running job so far behind its base's reference runs that it cannot matter?

A job's curve (its step lines, read with golf_task's line grammar) is compared, step by step,
with the curves of the pinned base's reference runs, using the spread those references show
at that step. The rule, and why each part is there:

- **One unit.** A log that prints ``val_loss`` and ``val_bpb`` at a step reveals its
  tokenizer's nats-to-bpb factor; when the candidate and every reference have one, train
  losses are compared as bpb, so a run on another tokenizer (whose per-token loss is larger)
  is not mistaken for a worse one. Otherwise losses are compared as logged, only when the
  logs name the same tokenizer or dataset (or none names any: one script, one format).
  Margins are relative to the base's mean, so they mean the same in either unit.
- **Smoothed.** Train loss jumps from batch to batch; the candidate *and* the references are
  smoothed alike (a trailing median over ``smooth`` logged points), so the lag a smoother adds
  on a falling curve cancels out.
- **The band** at a step is the references' mean ± their spread (sample standard deviation,
  interpolated linearly between logged steps, never extrapolated past a reference's last
  step); the spread has a floor (``spread_floor`` × mean), so one reference, or references
  that agree by chance, do not make a zero band.
- **Worse** means above the band's upper edge by more than ``k`` × spread + ``min_margin`` ×
  mean. The default 5% is there because train loss under-tells what a record gains after
  training (EMA, GPTQ, sliding eval, TTT): in the records' replay a later record trails an
  earlier base's train curve by up to 3%, and 5% leaves none of them even at risk. A check
  is bad only when every signal agrees: the smoothed train loss and, where
  both the candidate and the references printed val_bpb during training (after the warm-up),
  the candidate's latest val_bpb against theirs at its step: validation can only veto, never
  start, an abort, since the train loss is the signal every step carries.
- **For long enough.** Checks are the candidate's logged steps after the warm-up fraction
  (``warmup_frac`` of the run: early curves of better configurations often trail). A run is
  aborted after ``patience`` consecutive bad checks spanning at least ``patience_frac`` of
  the run; fewer is **at risk** (the TUI marks it). Runs flagged ``protected`` (reference
  runs, promotion seeds) are never aborted.

Pure and stateless: ``judge`` replays the whole curve each time it is called, so its answer
depends on the log alone, not on how often the daemon looks. Imports only golf_task.
"""

from __future__ import annotations

import bisect
import codecs
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from golf_task.log_lines import (
    DATASET_RE,
    STEP_AVG_RE,
    STEP_TRAIN_RE,
    STEP_VAL_RE,
    TRAIN_TIME_RE,
    duration_ms,
    strip_ts,
)
from golf_task.logs import LogParser

__all__ = [
    "OK",
    "AT_RISK",
    "ABORT",
    "AbortRule",
    "Band",
    "Curve",
    "CurveReader",
    "Verdict",
    "band_at",
    "first_abort",
    "judge",
    "read_curve",
]

OK, AT_RISK, ABORT = "ok", "at_risk", "abort"


# Curves ---------------------------------------------------------------------------------------
@dataclass
class Curve:
    """One run's step lines: train losses and in-training validations, by step."""

    train: list[tuple[int, float]] = field(default_factory=list)  # (step, train_loss)
    val: list[tuple[int, float, float]] = field(default_factory=list)  # (step, loss, bpb)
    total_steps: int | None = None
    last_step: int = 0
    train_time_ms: float | None = None  # at last_step
    times: list[tuple[int, float]] = field(default_factory=list)  # (step, train_time_ms)
    # what names the run's tokenizer: its file's name and its dataset's, as the header says
    vocab: frozenset[str] = frozenset()

    @property
    def bpb_per_loss(self) -> float | None:
        """val_bpb / val_loss of the latest validation: the tokenizer's nats-to-bpb factor."""
        for _, loss, bpb in reversed(self.val):
            if loss > 0 and math.isfinite(loss) and math.isfinite(bpb):
                return bpb / loss
        return None

    def upto(self, step: int) -> Curve:
        """The curve as it stood when ``step`` was the last step logged (for replays)."""
        times = [(s, t) for s, t in self.times if s <= step]
        return Curve(
            train=[p for p in self.train if p[0] <= step],
            val=[p for p in self.val if p[0] <= step],
            total_steps=self.total_steps,
            last_step=min(step, self.last_step),
            train_time_ms=times[-1][1] if times else None,
            times=times,
            vocab=self.vocab,
        )

    @property
    def step_ms(self) -> float | None:
        """Mean wall time per step so far (None before a timed step line)."""
        if self.train_time_ms and self.last_step > 0:
            return self.train_time_ms / self.last_step
        return None


class CurveReader:
    """Incremental: feed a log as it grows (bytes or text, cut anywhere); ``curve`` is the
    last run in it (a step that goes backwards starts a new run: logs that hold several)."""

    def __init__(self) -> None:
        self.curve = Curve()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""
        self._header = LogParser()  # the hyperparameters (the tokenizer) as golf_task reads them
        self._dataset: str | None = None

    def feed(self, data: bytes | str) -> Curve:
        text = data if isinstance(data, str) else self._decoder.decode(bytes(data))
        self._header.feed(text)
        text = self._tail + text
        cut = text.rfind("\n") + 1
        self._tail = text[cut:]
        for line in text[:cut].split("\n"):
            self._line(line)
        path = self._header.hyperparameters.get("tokenizer_path")
        names = {self._dataset} if self._dataset else set()
        if path:
            names.add(path.replace("\\", "/").rsplit("/", 1)[-1])
        self.curve.vocab = frozenset(names)
        return self.curve

    def _line(self, raw: str) -> None:
        line = strip_ts(raw.strip())
        if "dataset" in line and "{" not in line:  # an echoed f-string names no dataset
            d = DATASET_RE.search(line)
            if d is not None:
                self._dataset = (d.group(1) or d.group(2)).replace("\\", "/").rsplit("/", 1)[-1]
        if not line or not (line[0].isdigit() or line.startswith("step:")):
            return
        train = STEP_TRAIN_RE.match(line)
        val = None if train is not None else STEP_VAL_RE.match(line)
        m = train or val
        if m is None:
            return
        step, total = int(m.group(1)), int(m.group(2))
        c = self.curve
        if step < c.last_step or (c.total_steps is not None and total != c.total_steps):
            c = self.curve = Curve()  # a new run in the same file
        try:
            if train is not None:
                loss = float(m.group(3))
                if math.isfinite(loss):
                    c.train.append((step, loss))
                else:  # a diverged run logs nan: as bad as a loss can be
                    c.train.append((step, math.inf))
                rest = m.group(4)
            else:
                c.val.append((step, float(m.group(3)), float(m.group(4))))
                rest = m.group(5)
        except ValueError:
            return
        c.total_steps, c.last_step = total, step
        t = TRAIN_TIME_RE.search(rest)
        if t is not None:
            c.train_time_ms = float(duration_ms(t.group(1), t.group(2)))
        else:
            a = STEP_AVG_RE.search(rest)
            if a is not None:
                c.train_time_ms = float(a.group(1)) * step
        if c.train_time_ms is not None:
            c.times.append((step, c.train_time_ms))


def read_curve(text: str | bytes) -> Curve:
    """The curve of a whole log (the last complete line included)."""
    reader = CurveReader()
    reader.feed(text)
    return reader.feed("\n")


# The rule -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AbortRule:
    """The knobs; the defaults never abort a record that beat its base (the replay test)."""

    enabled: bool = True
    smooth: int = 5  # trailing median over this many logged train points
    k: float = 2.0  # spreads above the band's upper edge ...
    min_margin: float = 0.05  # ... plus this fraction of the base's mean
    spread_floor: float = 0.005  # the band's half-width is at least this fraction of the mean
    warmup_frac: float = 0.25  # no check before this fraction of the run
    patience: int = 3  # consecutive bad checks before an abort ...
    patience_frac: float = 0.05  # ... spanning at least this fraction of the run


@dataclass(frozen=True)
class Band:
    """The references at one step: their mean, spread (floored) and how many had the step."""

    mean: float
    spread: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.spread

    @property
    def high(self) -> float:
        return self.mean + self.spread


@dataclass(frozen=True)
class Verdict:
    """``state`` (ok | at_risk | abort) and the evidence of the latest check.

    ``value`` is the candidate's smoothed train loss (``unit`` "bpb" or "loss") at ``step``;
    ``band_low``/``band_high`` the base's band there; ``margin`` how far above ``band_high``
    counts as worse; ``bad_checks`` the current streak; ``frac_left`` the fraction of the run
    still to go, and ``gpu_seconds_saved`` its training time (per-step time so far × steps
    left × ``gpus``), what an abort now saves.
    """

    state: str
    reason: str
    step: int | None = None
    value: float | None = None
    band_low: float | None = None
    band_high: float | None = None
    margin: float | None = None
    val_bpb: float | None = None  # the candidate's latest in-training val_bpb, if compared
    val_band_high: float | None = None
    unit: str = "loss"
    bad_checks: int = 0
    frac_left: float | None = None
    gpu_seconds_saved: float | None = None

    @property
    def abort(self) -> bool:
        return self.state == ABORT

    def evidence(self) -> dict[str, object]:
        """The fields the store and the feed keep (None left out)."""
        keys = (
            "state", "reason", "step", "value", "band_low", "band_high", "margin", "val_bpb",
            "val_band_high", "unit", "bad_checks", "frac_left", "gpu_seconds_saved",
        )  # fmt: skip
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


def _smoothed(points: Sequence[tuple[int, float]], window: int) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    for i, (step, _) in enumerate(points):
        chunk = [v for _, v in points[max(0, i - window + 1) : i + 1]]
        out.append((step, statistics.median(chunk)))
    return out


def _interp(points: Sequence[tuple[int, float]], steps: list[int], step: int) -> float | None:
    """Linear interpolation at ``step``; None outside the logged range."""
    if not points or step < steps[0] or step > steps[-1]:
        return None
    i = bisect.bisect_left(steps, step)
    s1, v1 = points[i]
    if s1 == step or i == 0:
        return v1
    s0, v0 = points[i - 1]
    if math.isinf(v0) or math.isinf(v1):
        return math.inf
    return v0 + (v1 - v0) * (step - s0) / (s1 - s0)


def band_at(values: Sequence[float], rule: AbortRule) -> Band | None:
    """The band of the references' values at one step (None when none has the step)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    mean = statistics.fmean(vals)
    spread = statistics.stdev(vals) if len(vals) >= 2 else 0.0
    return Band(mean, max(spread, rule.spread_floor * abs(mean)), len(vals))


class _Series:
    """A curve's points prepared for lookups: smoothed, scaled to the comparison unit."""

    def __init__(self, points: Sequence[tuple[int, float]], scale: float) -> None:
        self.points = [(s, v * scale) for s, v in points]
        self.steps = [s for s, _ in self.points]

    def at(self, step: int) -> float | None:
        return _interp(self.points, self.steps, step)


def _same_vocab(vocabs: Sequence[frozenset[str]]) -> bool:
    """Raw losses compare when no log names its tokenizer (one script, one format) or every
    log names one the others name too; a log that names none among logs that do does not."""
    if not any(vocabs):
        return True
    if not all(vocabs):
        return False
    return bool(frozenset.intersection(*vocabs))


def _expected_end(curve: Curve, time_cap_s: float | None) -> int | None:
    """Where the run will stop: its iterations, or sooner at the wall-clock cap."""
    end = curve.total_steps
    ms = curve.step_ms
    if time_cap_s and ms:
        by_time = int(time_cap_s * 1000.0 / ms)
        end = by_time if end is None else min(end, by_time)
    return end


def judge(
    candidate: Curve,
    references: Sequence[Curve],
    rule: AbortRule = AbortRule(),
    *,
    protected: bool = False,
    time_cap_s: float | None = None,
    gpus: int = 1,
) -> Verdict:
    """The state of ``candidate`` now against ``references`` (the base's reference runs).

    ``protected``: a reference run or promotion seed, never aborted. ``time_cap_s``: the
    run's wall-clock cap (MAX_WALLCLOCK_SECONDS), which may end it before its iterations.
    ``gpus``: how many GPUs the job holds, for the GPU-seconds an abort saves.
    """
    if not rule.enabled:
        return Verdict(OK, "early abort is off")
    if protected:
        return Verdict(OK, "reference run or promotion seed: never aborted")
    refs = [r for r in references if r.train]
    if not refs:
        return Verdict(OK, "no reference curve")
    if not candidate.train:
        return Verdict(OK, "no step yet")
    end = _expected_end(candidate, time_cap_s)
    if not end:
        return Verdict(OK, "run length unknown")
    factors = [c.bpb_per_loss for c in (candidate, *refs)]
    unit = "bpb" if all(f is not None for f in factors) else "loss"
    if unit == "loss" and not _same_vocab([c.vocab for c in (candidate, *refs)]):
        # per-token losses of two tokenizers say nothing about each other until a
        # validation line gives each run its nats-to-bpb factor
        return Verdict(OK, "tokenizer not known to be the base's, and no val_bpb yet")

    def scale(c: Curve) -> float:
        return (c.bpb_per_loss or 1.0) if unit == "bpb" else 1.0

    cand = _Series(_smoothed(candidate.train, rule.smooth), scale(candidate))
    ref_train = [_Series(_smoothed(r.train, rule.smooth), scale(r)) for r in refs]
    cand_val = [(s, b) for s, _, b in candidate.val]
    ref_val = [_Series([(s, b) for s, _, b in r.val], 1.0) for r in refs if r.val]

    streak: list[int] = []
    last: Verdict | None = None
    start = rule.warmup_frac * end
    for step, value in cand.points:
        if step < start:
            continue
        band = band_at([r.at(step) for r in ref_train], rule)
        if band is None:
            continue  # past the references' curves: nothing to compare with
        margin = rule.k * band.spread + rule.min_margin * abs(band.mean)
        bad = value > band.high + margin
        val_bpb = val_high = None
        # the latest validation after the warm-up (one at step 0 says nothing) may veto
        seen = [(s, b) for s, b in cand_val if start <= s <= step]
        if bad and seen and ref_val:
            vstep, val_bpb = seen[-1]
            vband = band_at([r.at(vstep) for r in ref_val], rule)
            if vband is not None:
                val_high = vband.high
                vmargin = rule.k * vband.spread + rule.min_margin * abs(vband.mean)
                bad = val_bpb > vband.high + vmargin
        streak = [*streak, step] if bad else []
        last = Verdict(
            OK,
            "within the base's band",
            step=step,
            value=value,
            band_low=band.low,
            band_high=band.high,
            margin=margin,
            val_bpb=val_bpb,
            val_band_high=val_high,
            unit=unit,
            bad_checks=len(streak),
        )
    if last is None:
        return Verdict(OK, "in warm-up or past the references' curves")
    left = max(0, end - candidate.last_step)
    frac_left = left / end
    saved = left * candidate.step_ms / 1000.0 * gpus if candidate.step_ms else None
    state, reason = OK, last.reason
    if streak:
        span = streak[-1] - streak[0]
        long_enough = len(streak) >= rule.patience and span >= rule.patience_frac * end
        state = ABORT if long_enough else AT_RISK
        reason = f"worse than the base's band for {len(streak)} checks since step {streak[0]}"
    return Verdict(
        state,
        reason,
        **{k: v for k, v in last.evidence().items() if k not in ("state", "reason")},
        frac_left=frac_left,
        gpu_seconds_saved=saved,
    )


def first_abort(
    candidate: Curve,
    references: Sequence[Curve],
    rule: AbortRule = AbortRule(),
    **kwargs: object,
) -> Verdict | None:
    """Replay ``candidate`` step by step as the daemon would have seen it grow: the first
    verdict that aborts, or None when the run would have finished (the tests' and the
    bench's replay). ``kwargs`` are ``judge``'s."""
    for step in sorted({s for s, _ in candidate.train}):
        verdict = judge(candidate.upto(step), references, rule, **kwargs)  # type: ignore[arg-type]
        if verdict.abort:
            return verdict
    return None
