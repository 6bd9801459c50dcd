"""What Slurm's pending reasons and sbatch's refusals mean, in words a researcher reads.

Pure tables and text (no I/O): ``explain_reason`` / ``queue_note`` for a job that waits,
the reasons that never clear by waiting (``NEVER_CLEARS``), and ``classify_sbatch_error``,
which decides whether a refused submission is the host's fault (its settings), the job's (its
request) or a passing one (the controller did not answer). ``slurm_state.judge`` uses these.
"""

from __future__ import annotations

import re
from enum import StrEnum

EMPTY = frozenset({"", "None", "none", "(null)", "N/A", "n/a", "None assigned", "Unknown"})
"""How Slurm writes "nothing here" in its various outputs."""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Pending reasons that never clear by waiting: the request itself breaks a per-job limit or
# names something that does not exist for this user.
NEVER_CLEARS = _words(
    "BadConstraints PartitionConfig PartitionTimeLimit InvalidAccount InvalidQOS"
    " AccountNotAllowed QOSNotAllowed MaxMemPerLimit"
)
NEVER_CLEARS_RE = re.compile(r"(QOS|Assoc)Max\w*PerJob\w*|QOSMin\w+|DependencyNeverSatisfied\w*")

_REASONS = {
    "Priority": "waiting behind higher-priority jobs",
    "Resources": "waiting for free GPUs or nodes",
    "BeginTime": "waiting for its start time (Slurm holds a requeued job about 2 minutes)",
    "Dependency": "waiting for the jobs it depends on",
    "DependencyNeverSatisfied": "a job it depends on failed: it can never start",
    "JobHeldUser": "held by its user (scontrol release)",
    "JobHeldAdmin": "held by an administrator",
    "ReqNodeNotAvail": "the nodes it needs are down, drained or reserved",
    "NodeDown": "a node it needs is down",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "PartitionNodeLimit": "asks more nodes than the partition allows or has up",
    "PartitionTimeLimit": "asks more --time than the partition allows",
    "PartitionConfig": "asks for something the partition does not allow",
    "BadConstraints": "no node can satisfy the request",
    "InvalidAccount": "the account is not valid",
    "InvalidQOS": "the QOS is not valid",
    "AccountNotAllowed": "the account may not use this partition",
    "QOSNotAllowed": "the QOS may not be used in this partition",
    "MaxMemPerLimit": "asks more memory than the per-CPU/per-node limit",
    "Reservation": "waiting for its reservation",
    "Licenses": "waiting for licenses",
    "JobArrayTaskLimit": "at the array's running-task limit",
    "QOSMaxJobsPerUserLimit": "at the QOS limit on running jobs per user",
    "AssocMaxJobsLimit": "at the account's limit on running jobs",
    "AssocGrpGRES": "the account's GPU share is in use",
    "QOSGrpGRES": "the QOS's GPU share is in use",
}
_REASON_FAMILIES = (  # (pattern, words) for the long tail of limit reasons
    (re.compile(r"(QOS|Assoc)Max\w*PerJob\w*"), "asks more than a per-job {who} limit allows"),
    (re.compile(r"QOSMin\w+"), "asks less than the QOS's per-job minimum"),
    (re.compile(r"(QOS|Assoc)Max\w*PerUser\w*"), "at a per-user {who} limit"),
    (re.compile(r"(QOS|Assoc)Max\w*PerAccount\w*"), "at a per-account {who} limit"),
    (re.compile(r"(QOS|Assoc)Grp\w*"), "the {who}'s shared limit is in use"),
)


def reason_key(reason: str) -> str:
    """The reason's code: "ReqNodeNotAvail, UnavailableNodes:n1" -> "ReqNodeNotAvail"."""
    return re.split(r"[,:\s]", reason.strip(), maxsplit=1)[0]


def explain_reason(reason: str | None) -> str | None:
    """A pending reason in words a researcher reads at a glance ("waiting for free GPUs")."""
    if reason is None or reason.strip() in EMPTY:
        return None
    key = reason_key(reason)
    if key in _REASONS:
        return _REASONS[key]
    for pattern, words in _REASON_FAMILIES:
        if pattern.fullmatch(key):
            who = "account" if key.startswith("Assoc") else "QOS"
            return words.format(who=who)
    return reason.strip()


def queue_note(reason: str) -> str:
    """What a job waiting in Slurm's queue shows (``helm job ls``, the TUI): the reason as
    Slurm names it, and in words ("Slurm: Resources (waiting for free GPUs or nodes)")."""
    words = explain_reason(reason)
    key = reason.strip()
    return f"Slurm: {key}" + (f" ({words})" if words and words != key else "")


class SbatchRefusal(StrEnum):
    """Why ``sbatch`` refused a submission, which decides what happens to the job."""

    HOST = "host"  # the host's settings are wrong (partition, account, QOS, no sbatch): the
    # job goes back to the queue untouched and the host takes no jobs until it is fixed
    JOB = "job"  # this request cannot run there (too many GPUs or nodes, a QOS limit): fails
    TRANSIENT = "transient"  # the controller did not answer: try again later


# (kind, what Slurm says, the setting to fix), tried in this order.
_SBATCH_RULES = tuple(
    (kind, re.compile(pattern, re.I), setting)
    for kind, pattern, setting in (
        (SbatchRefusal.HOST, r"invalid partition", "the host's --partition"),
        (SbatchRefusal.HOST, r"invalid account", "the host's --account"),
        (SbatchRefusal.HOST, r"invalid qos", "the host's --qos"),
        (SbatchRefusal.HOST, r"invalid (generic resource|gres)", "the host's --gpus-per-node"),
        (SbatchRefusal.HOST, r"access.{0,12}denied|invalid user", "the login node's user"),
        (SbatchRefusal.JOB, r"node configuration is not available", "the job's GPUs / nodes"),
        (SbatchRefusal.JOB, r"violates accounting/qos policy", "the job's size (QOS limits)"),
        (SbatchRefusal.JOB, r"(QOS|Assoc)Max\w*", "the job's size (QOS limits)"),
        (SbatchRefusal.JOB, r"time limit is invalid", "the job's or the host's --time"),
        (SbatchRefusal.JOB, r"node count specification invalid", "the job's node count"),
        (SbatchRefusal.JOB, r"more processors requested than permitted", "the job's size"),
        (SbatchRefusal.JOB, r"memory required by task is not available", "the job's memory"),
        (
            SbatchRefusal.TRANSIENT,
            r"unable to contact slurm controller|socket timed out|temporarily unable"
            r"|zero bytes were transmitted|connection refused|communication connection failure"
            r"|resource temporarily unavailable",
            "",
        ),
    )
)
_NO_SBATCH = "sbatch not found on the login node (install Slurm's client or fix PATH)"


def _sbatch_line(stderr: str) -> str:
    """Slurm's own words: the last "Batch job submission failed: ..." line, else the last
    "sbatch: error: ..." line, else the last line; one line, never a dump."""
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
    for prefix in ("Batch job submission failed:", "sbatch: error:"):
        hits = [ln for ln in lines if prefix.lower() in ln.lower()]
        if hits:
            last = hits[-1]
            said = last[last.lower().index(prefix.lower()) + len(prefix) :].strip()
            return said[:300] or last[:300]
    return lines[-1][:300] if lines else ""


def _named_value(stderr: str, what: str) -> str | None:
    """The value sbatch named in an earlier line ("invalid partition specified: nope")."""
    m = re.search(rf"invalid {what}\w* specified: (\S+)", stderr or "", re.I)
    return m.group(1) if m else None


def classify_sbatch_error(exit_status: int, stderr: str) -> tuple[SbatchRefusal, str]:
    """(kind, one clear line) for a failed ``sbatch`` (exit 127: sbatch is not installed).

    An error no rule knows counts as the host's: the job keeps its place in helm's queue and
    the host pauses until someone reads the line, rather than every queued job failing on a
    cluster-wide problem one after another.
    """
    text = stderr or ""
    if exit_status == 127 or re.search(r"sbatch: (command )?not found|command not found", text):
        return SbatchRefusal.HOST, _NO_SBATCH
    line = _sbatch_line(text)
    if not line:
        return SbatchRefusal.HOST, f"sbatch failed (exit {exit_status}) and said nothing"
    for source in (line, text):  # Slurm's last words first, then anything it said before
        for kind, pattern, setting in _SBATCH_RULES:
            if pattern.search(source):
                return kind, _refusal_line(kind, line, setting, text)
    return SbatchRefusal.HOST, f"Slurm: {line}"


def _refusal_line(kind: SbatchRefusal, line: str, setting: str, text: str) -> str:
    if kind == SbatchRefusal.TRANSIENT:
        return f"Slurm: {line} (will try again)"
    for what in ("partition", "account", "qos"):
        value = _named_value(text, what) if f"--{what}" in setting else None
        if value:
            setting = f"{setting} ({value})"
    return f"Slurm: {line}: check {setting}"
