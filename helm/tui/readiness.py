"""Whether a host is ready for jobs, in one short word or phrase: the fleet pane's cell.

Defined once, from what the host's last check left on its row (``helm host check``, the
daemon's periodic check, or the end of ``helm host setup``): its verdicts, judged by
``helm.remote.check`` (blockers and warnings), its reachability and whether nvidia-smi was
there. The pane shows the label, the setup key (``S``) offers setup where it is not
``ready``, and the setup dialog lists the verdicts in full, with their fixes.
"""

from __future__ import annotations

from helm.remote.check import BLOCKER  # a verdict's level that stops jobs
from helm.tui.data import HostView

READY = "ready"
CPU_ONLY = "CPU-only"
UNCHECKED = "unchecked"
NOT_READY = "not ready"
MAX_LABEL = 32  # the fleet pane is narrow: a long problem is cut, the dialog has it whole


def short_problem(problem: str) -> str:
    """The head of a problem (``low disk space: 1.5 GB free in /w (...)`` -> ``low disk
    space``): what it is, not its figures, which the setup dialog shows."""
    head = problem.split(" (", 1)[0].split(": ", 1)[0].strip()
    return head or problem.strip()


def _cut(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1].rstrip() + "…"


def blockers(host: HostView) -> list[str]:
    """The problems of the host's last check that stop jobs, in the check's order."""
    return [problem for level, problem, _ in host.verdicts if level == BLOCKER]


def readiness(host: HostView) -> tuple[str, str]:
    """(label, palette role): ``ready`` (success), ``not ready: <first blocker>`` (error),
    ``CPU-only`` (warning: tiny smoke runs only), ``unchecked`` (muted)."""
    if host.checked_at is None:
        return UNCHECKED, "muted"
    if host.reachable is False:
        return f"{NOT_READY}: unreachable", "error"
    found = blockers(host)
    if found:
        return _cut(f"{NOT_READY}: {short_problem(found[0])}"), "error"
    if host.cpu_only:
        return CPU_ONLY, "warning"
    return READY, "success"


def is_ready(host: HostView) -> bool:
    return readiness(host)[0] == READY
