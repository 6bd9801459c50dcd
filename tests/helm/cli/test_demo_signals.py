"""How ``helm demo`` takes the signals that stop it, in this process (no demo is started).

A hang-up (the terminal closed) brings the session leader SIGHUP and then SIGCONT. Textual's
driver answers SIGCONT by starting its application mode again (its Ctrl-Z resume), input
thread and all: arriving while the demo unwinds its TUI after the SIGHUP, that restarted a
TUI nobody would stop, and its input thread, spinning on the dead terminal, kept the demo
process from ever exiting (CI saw the hang-up test time out on a demo that had stopped its
agents, jobs and daemon).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from helm.cli.demo_cmd import STOP_SIGNALS, _stoppable


def _deliver(sig: signal.Signals) -> None:
    """Send ``sig`` to this process and let its Python handler run."""
    os.kill(os.getpid(), sig)
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        time.sleep(0.01)  # handlers run between bytecodes of the main thread


@pytest.mark.parametrize("stop", STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_stop_signal_then_sigcont_does_not_resume_the_tui(stop: signal.Signals) -> None:
    before = signal.getsignal(signal.SIGCONT)
    resumed: list[int] = []
    with pytest.raises(KeyboardInterrupt), _stoppable():
        # what Textual's driver installs once the TUI runs
        signal.signal(signal.SIGCONT, lambda *_: resumed.append(1))
        _deliver(stop)
    _deliver(signal.SIGCONT)  # the kernel sends it right after a hang-up's SIGHUP
    assert resumed == []
    assert signal.getsignal(signal.SIGCONT) == before  # and the process's own is back


def test_without_a_stop_signal_sigcont_still_reaches_the_tui() -> None:
    """Ctrl-Z and ``fg`` while the demo's TUI runs: its resume is Textual's, untouched."""
    resumed: list[int] = []
    with _stoppable():
        signal.signal(signal.SIGCONT, lambda *_: resumed.append(1))
        _deliver(signal.SIGCONT)
    assert resumed == [1]
