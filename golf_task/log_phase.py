"""Which phase a run is in after its last training step, from the lines that start each one.

After the last step a run spends 30 s to several minutes in evaluation, export and the extra
scores, with its step count at 100% (issue 16: the TUI's bar sat at ``100% … 0s`` all that
time). Each phase is announced by the line that ends the one before: the last training step
starts the final evaluation, the end of training (the final validation at the last step, a
wallclock stop, the peak-memory line) the export, the artifact's size the round trip, each
score line the next score, the last score the exit. What follows a score comes from the
run's hyperparameters (``eval_stride``, ``ttt`` in our script) when the log printed them;
when it did not, the phase is ``eval`` (more scoring may follow) rather than a guess.

Bulk reading (``golf_task.logs``) skips all but a chunk's last training line, so the state
is built to depend on the last training line only: every step line clears a marker, and
"the final evaluation runs" is read off the last training line itself. A summary is then the
same however the stream was cut, as the parser promises.
"""

from __future__ import annotations

from golf_task.log_lines import (
    DONE,
    EVAL,
    QUANTIZE,
    ROUND_TRIP,
    ROUND_TRIP_DIAGNOSTIC,
    SCORE_LINE_RE,
    SERIALIZED_RE,
    SLIDING,
    SOURCE_CHARS_RE,
    STEP_TRAIN_RE,
    TOTAL_RE,
    TRAIN_END_PREFIXES,
    TTT,
)

__all__ = ["PhaseTracker", "after_score"]

_TRUE = {"true", "1", "yes", "on"}


def _on(hp: dict[str, str], name: str) -> bool:
    """A hyperparameter as a switch: ``True``, ``1``, a positive number are on."""
    value = hp.get(name, "").strip().lower()
    return value in _TRUE or (value.isdigit() and int(value) > 0)


def after_score(name: str, hp: dict[str, str]) -> str:
    """What runs after the score line ``name``: the next score, or the exit.

    Our script scores the round trip, then the sliding window when ``eval_stride`` > 0,
    then test-time training when ``ttt`` is on, and prints both in its header. A log
    without them (the records' scripts have other switches, which do not say which scores
    they print) gets ``eval``: more scoring may follow, and the label does not guess which.
    """
    if "ttt" in name:
        return DONE  # test-time training is scored last
    if "ttt" not in hp or "eval_stride" not in hp:
        return EVAL
    if "sliding" not in name and _on(hp, "eval_stride"):
        return SLIDING
    return TTT if _on(hp, "ttt") else DONE


class PhaseTracker:
    """The phase as of the lines seen so far."""

    def __init__(self) -> None:
        self._marker: str | None = None  # set by a line other than a training step
        self._final_step = False  # the last training line is the run's last step

    def step(self, text: str, step: int, total: int) -> None:
        """A step line (training or validation), its timestamp prefix dropped."""
        self._marker = None
        if STEP_TRAIN_RE.match(text) is not None:
            self._final_step = step >= total > 0
        elif step >= total > 0:  # the final validation is done: the export starts
            self._marker = QUANTIZE

    def line(self, text: str, hp: dict[str, str]) -> None:
        """Any other complete line, its timestamp prefix dropped."""
        first = text[:1]
        if first in "sp" and text.startswith(TRAIN_END_PREFIXES):
            self._marker = QUANTIZE
        elif first in "flq" and text.startswith(("final_", "legal_ttt", "quantized")):
            head = SCORE_LINE_RE.match(text)
            name = head.group(0) if head is not None else "final_eval_mode"
            scored = "val_bpb" in text and SOURCE_CHARS_RE.search(text) is None
            if scored and not name.startswith("final_eval_mode"):
                self._marker = after_score(name, hp)
        elif first == "S" and text.startswith("Serialized model"):
            if SERIALIZED_RE.match(text) is not None:  # the quantized artifact is written
                self._marker = ROUND_TRIP
        elif first == "T" and text.startswith("Total submission size"):
            m = TOTAL_RE.match(text)
            if m is not None and m.group(1):
                self._marker = ROUND_TRIP
        elif first == "b" and text.startswith("budget:"):
            self._marker = ROUND_TRIP
        elif first in "dD" and text.lower().startswith(ROUND_TRIP_DIAGNOSTIC):
            self._marker = EVAL  # the artifact is scored; the records' TTT may follow

    @property
    def phase(self) -> str | None:
        """What runs now; None while training (or before)."""
        if self._marker is not None:
            return self._marker
        return EVAL if self._final_step else None
