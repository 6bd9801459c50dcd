"""What Slurm says about a job, read from any Slurm version, and what helm makes of it.

Pure: text in, values out (the commands that produce the text are in ``helm.remote.slurm``).
Slurm's output differs between versions, so every reader here accepts each known form:

- ``squeue --json`` (OpenAPI plugin v0.0.36 .. v0.0.41+): ``job_state`` a string (22.05) or
  a list of flags (23.02 and later, ``["PENDING", "REQUEUED"]``); numbers either plain or in
  ``{"set": bool, "infinite": bool, "number": N}`` envelopes; ``exit_code`` a plain int or
  ``{"status": [...], "return_code": N|envelope, "signal": {...}}``.
- ``squeue -h -t all -O "JobID:|,State:|,Reason:|,RestartCnt:|,..."`` text, for a cluster
  whose squeue has no ``--json`` (no OpenAPI plugin built in).
- ``sacct -X -n -P -o ...`` text, for jobs squeue has forgotten (older than ``MinJobAge``),
  where the cluster keeps accounting.

``judge`` maps a job's Slurm state onto what the watcher does next (see ``Outcome``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from helm.remote.slurm_words import EMPTY, NEVER_CLEARS, NEVER_CLEARS_RE, explain_reason, reason_key


@dataclass(frozen=True)
class SlurmJob:
    """One Slurm job as the watcher needs it, whatever command reported it."""

    slurm_id: str
    state: str  # the base state, upper case: PENDING, RUNNING, COMPLETED, NODE_FAIL ...
    reason: str | None = None  # Slurm's reason (pending reason, or why it ended); None for "None"
    restarts: int = 0  # times Slurm restarted it (a requeue, a node failure): >0 = not our try
    exit_code: int | None = None  # the batch script's return code, when it ended
    signal: int | None = None  # the signal that ended it, when one did
    nodes: str | None = None  # node list ("gpu[01-02]"), None while pending
    node_count: int | None = None
    start_time: float | None = None  # epoch seconds it started running, None if not yet
    elapsed_s: float | None = None  # seconds it has run (or ran)
    flags: tuple[str, ...] = ()  # extra state flags some versions list (REQUEUED, COMPLETING)


class Outcome(StrEnum):
    """What a Slurm state means for helm's try."""

    WAITING = "waiting"  # pending in Slurm's queue; show the reason
    RUNNING = "running"  # started (CONFIGURING, RUNNING, COMPLETING, SUSPENDED ...)
    ENDED = "ended"  # COMPLETED or FAILED: the exit code file tells how
    CANCELLED = "cancelled"  # CANCELLED (by helm's scancel, or by someone else)
    RETRY = "retry"  # not this try's fault: NODE_FAIL, PREEMPTED, BOOT_FAIL, requeued
    FAILED = "failed"  # TIMEOUT, OUT_OF_MEMORY, DEADLINE: failed with that reason
    REFUSED = "refused"  # pending for a reason that never clears (limits, bad constraints)
    GONE = "gone"  # Slurm no longer knows the job (purged, no accounting)


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    message: str  # one line for the job's history / error ("Slurm NODE_FAIL (NodeDown)")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Slurm's base job states (the low byte of job_state). Everything else a version prints in
# the state (a 22.05 string like "COMPLETING", or the extra items of a 23.02+ list) is a flag.
BASE_STATES = _words(
    "PENDING RUNNING SUSPENDED COMPLETED CANCELLED FAILED TIMEOUT NODE_FAIL PREEMPTED"
    " BOOT_FAIL DEADLINE OUT_OF_MEMORY"
)
ENDED_STATES = BASE_STATES - {"PENDING", "RUNNING", "SUSPENDED"}
REQUEUE_MARKS = frozenset({"REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD"})
# Started and not final yet. COMPLETING is here on purpose: the job's processes are being
# reaped and its final state (COMPLETED, FAILED, TIMEOUT ...) is not known until it clears.
RUNNING_MARKS = _words(
    "CONFIGURING RUNNING COMPLETING SUSPENDED STOPPED SIGNALING STAGE_OUT RESIZING"
)


def _split_state(raw: object) -> tuple[str, tuple[str, ...]]:
    """(base state, flags) from a state string ("CANCELLED by 0" too) or a 23.02+ list."""
    items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    names = [str(x).split()[0].upper() for x in items if str(x).strip()]
    if not names:
        return "UNKNOWN", ()
    base = next((n for n in names if n in BASE_STATES), names[0])
    return base, tuple(n for n in names if n != base)


def _number(value: object) -> float | None:
    """A plain number, or the number in a ``{"set", "infinite", "number"}`` envelope; None
    for an unset or infinite envelope and for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        if not value.get("set", True) or value.get("infinite", False):
            return None
        return _number(value.get("number"))
    return None


def _int(value: object) -> int | None:
    n = _number(value)
    return None if n is None else int(n)


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return None if value in EMPTY else value


def _wait_status(status: int) -> tuple[int | None, int | None]:
    """(return code, signal) from the raw wait status older versions print (768 = exit 3)."""
    sig = status & 0x7F
    return (status >> 8) & 0xFF, sig or None


def _exit_code(value: object) -> tuple[int | None, int | None]:
    """(return code, signal) from any version's ``exit_code``: a raw wait status (plain or
    in an envelope, v0.0.36-39) or the verbose form of v0.0.40+ (status, return_code,
    signal), whose PENDING / INVALID status means there is no exit code yet."""
    if isinstance(value, Mapping) and ("status" in value or "return_code" in value):
        status = {str(s).upper() for s in value.get("status") or ()}
        if status & {"PENDING", "INVALID"}:
            return None, None
        rc = _int(value.get("return_code"))
        sig_field = value.get("signal")
        sig = _int(sig_field.get("id")) if isinstance(sig_field, Mapping) else None
        return rc, sig or None
    raw = _int(value)
    return (None, None) if raw is None else _wait_status(raw)


def _known_code(state: str, rc: int | None, sig: int | None) -> tuple[int | None, int | None]:
    """(return code, signal) as far as they are known. FAILED with code 0 and no signal is
    not a script that returned 0: accounting records the state a moment before the code, and
    a job that failed before its script ran (a launch or node failure) has none; "exit 0"
    there would say the script succeeded."""
    if state == "FAILED" and rc == 0 and not sig:
        return None, None
    return rc, sig


def parse_squeue_json(text: str) -> dict[str, SlurmJob]:
    """``squeue --json`` output (any OpenAPI version) -> jobs by id. Raises ValueError."""
    try:
        doc = json.loads(text)
    except (TypeError, ValueError):
        head = (text or "").strip().splitlines()[:1]
        said = head[0][:120] if head else "nothing"
        raise ValueError(f"squeue --json printed no JSON: {said}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("jobs"), list):
        errors = doc.get("errors") if isinstance(doc, Mapping) else None
        said = ""
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            said = f": {errors[0].get('error') or errors[0].get('description') or ''}".rstrip(": ")
        raise ValueError(f"squeue --json gave no jobs list{said}")
    now = time.time()
    jobs: dict[str, SlurmJob] = {}
    for item in doc["jobs"]:
        if not isinstance(item, Mapping):
            continue
        jid = _int(item.get("job_id"))
        if jid is None:
            continue
        job = _json_job(str(jid), item, now)
        jobs[job.slurm_id] = job
    return jobs


def _json_job(sid: str, item: Mapping[str, Any], now: float) -> SlurmJob:
    state, flags = _split_state(item.get("job_state"))
    started = state not in ("PENDING", "UNKNOWN")
    start = _number(item.get("start_time")) if started else None
    start = start or None  # 0: never started (a job cancelled while pending)
    end = _number(item.get("end_time")) or None
    elapsed: float | None = None
    if start is not None:
        if state in ENDED_STATES and end is not None and end >= start:
            elapsed = end - start
        elif state not in ENDED_STATES:
            elapsed = max(0.0, now - start)
    rc, sig = _exit_code(item.get("exit_code")) if state in ENDED_STATES else (None, None)
    rc, sig = _known_code(state, rc, sig)
    return SlurmJob(
        slurm_id=sid,
        state=state,
        reason=_text(item.get("state_reason")),
        restarts=_int(item.get("restart_cnt")) or 0,
        exit_code=rc,
        signal=sig,
        nodes=_text(item.get("nodes")) if started else None,
        node_count=_int(item.get("node_count")),
        start_time=start,
        elapsed_s=elapsed,
        flags=flags,
    )


# The text fallback. Every field ends in "|" (the ":|" suffix sets the separator and, with no
# width, prints the value whole); Reason comes last because it is the one value that may hold
# spaces, commas and colons ("ReqNodeNotAvail, UnavailableNodes:n1"). squeue -O has no exit
# code field (22.05 answers "Invalid job format specification: ExitCode"): the try's own
# exit file tells it.
_SQUEUE_FIELDS = ("JobID", "State", "RestartCnt", "StartTime", "TimeUsed", "NodeList", "NumNodes")


def squeue_text_format() -> str:
    """The ``-O`` field list the text fallback asks for (parsed by ``parse_squeue_text``)."""
    return ",".join(f"{f}:|" for f in (*_SQUEUE_FIELDS, "Reason"))


def parse_duration(text: str | None) -> float | None:
    """Seconds in Slurm's ``[D-][HH:]MM:SS`` (``1-02:03:04``, ``3:04``, ``00:00:05``)."""
    text = _text(text)
    if text is None or text.upper() in ("INVALID", "UNLIMITED"):
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        if not d.isdigit():
            return None
        days = int(d)
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    secs = 0
    for p in parts:
        secs = secs * 60 + int(p)
    return float(days * 86400 + secs)


def parse_time(text: str | None) -> float | None:
    """Epoch seconds from Slurm's local ``YYYY-MM-DDTHH:MM:SS``; None for N/A, Unknown, None."""
    text = _text(text)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _count(text: str | None) -> int | None:
    text = _text(text)
    return int(text) if text is not None and text.isdigit() else None


def _rows(text: str, n: int) -> list[tuple[list[str], str]]:
    """``|``-separated rows of ``n`` fields and a last one, Reason, that may hold anything
    but ``|`` (squeue's ``:|`` and sacct's ``-p`` end it in ``|``; sacct's ``-P`` does not)."""
    rows = []
    for line in text.splitlines():
        parts = line.split("|", n)
        if len(parts) > n and parts[0].strip().isdigit():  # not a step ("12.batch")
            last = parts[n][:-1] if parts[n].endswith("|") else parts[n]
            rows.append(([p.strip() for p in parts[:n]], last))
    return rows


def _text_job(jid: str, state_raw: str, reason: str, **fields: Any) -> SlurmJob:
    """A job from text fields; a pending job's StartTime is only Slurm's estimate and its
    NodeList what it may get, so neither counts until it runs."""
    state, flags = _split_state(state_raw)
    pending = state == "PENDING"
    return SlurmJob(
        slurm_id=jid,
        state=state,
        reason=_text(reason),
        restarts=_count(fields.get("restarts")) or 0,
        exit_code=fields.get("exit_code"),
        signal=fields.get("signal"),
        nodes=None if pending else _text(fields.get("nodes")),
        node_count=_count(fields.get("count")),
        start_time=None if pending else parse_time(fields.get("start")),
        elapsed_s=None if pending else parse_duration(fields.get("used")),
        flags=flags,
    )


def parse_squeue_text(text: str) -> dict[str, SlurmJob]:
    """Output of ``squeue -h -t all -O <squeue_text_format()>`` -> jobs by id."""
    jobs: dict[str, SlurmJob] = {}
    for (jid, state, restarts, start, used, nodes, count), reason in _rows(text, 7):
        jobs[jid] = _text_job(
            jid, state, reason, restarts=restarts, start=start, used=used, nodes=nodes, count=count
        )
    return jobs


_SACCT_FIELDS = ("JobIDRaw", "State", "ExitCode", "Start", "Elapsed", "NodeList", "NNodes")


def sacct_fields() -> str:
    """The ``sacct -o`` field list ``parse_sacct`` reads (Reason last, as in squeue's)."""
    return ",".join((*_SACCT_FIELDS, "Reason"))


def parse_sacct(text: str) -> dict[str, SlurmJob]:
    """Output of ``sacct -X -n -P -j IDS -o <sacct_fields()>`` -> jobs by id. sacct keeps
    no restart count; ExitCode is ``rc:signal`` ("0:15")."""
    jobs: dict[str, SlurmJob] = {}
    for (jid, state, code, start, used, nodes, count), reason in _rows(text, 7):
        rc = sig = None
        m = re.fullmatch(r"(\d+):(\d+)", code)
        base = _split_state(state)[0]
        if m and base in ENDED_STATES:
            rc, sig = _known_code(base, int(m[1]), int(m[2]) or None)
        jobs[jid] = _text_job(
            jid,
            state,
            reason,
            exit_code=rc,
            signal=sig,
            start=start,
            used=used,
            nodes=nodes,
            count=count,
        )
    return jobs


def _never_clears(job: SlurmJob, partition_nodes: int | None) -> str | None:
    """Why the pending job can never start (its refusal line's tail), or None."""
    if job.reason is None:
        return None
    key = reason_key(job.reason)
    if key == "PartitionNodeLimit":
        if partition_nodes is not None and job.node_count and job.node_count > partition_nodes:
            return (
                f"PartitionNodeLimit (asks {job.node_count} nodes; partition has {partition_nodes})"
            )
        return None
    if key in NEVER_CLEARS or NEVER_CLEARS_RE.fullmatch(key):
        words = explain_reason(key)
        return f"{key} ({words})" if words and words != key else key
    return None


def _with_reason(state: str, reason: str | None) -> str:
    return f"Slurm {state} ({reason})" if reason else f"Slurm {state}"


_RETRY_WORDS = {
    "NODE_FAIL": "the node failed",
    "PREEMPTED": "a higher-priority job took its nodes",
    "BOOT_FAIL": "its node failed to boot",
}
_FAILED_WORDS = {
    "TIMEOUT": "the job reached its --time limit",
    "OUT_OF_MEMORY": "the job ran out of memory",
    "DEADLINE": "the job passed its --deadline",
}


def judge(job: SlurmJob | None, *, partition_nodes: int | None = None) -> Judgement:
    """What helm does with a try whose Slurm job is ``job`` (None: Slurm forgot it).

    ``partition_nodes``: how many nodes the partition has in all (from the host's check),
    so that ``PartitionNodeLimit`` is a refusal only when the job asks for more nodes than
    the partition will ever have (it also shows while nodes are down or draining).

    Order matters: a requeue (a restart count above 0, or a REQUEUED mark) wins over every
    other state, because the process that is this try is gone and whatever Slurm runs next
    is a second start helm did not ask for; helm makes that fresh try itself instead.
    """
    if job is None:
        return Judgement(Outcome.GONE, "Slurm no longer knows the job (purged, no accounting)")
    marks = {job.state, *job.flags}
    if job.restarts > 0 or marks & REQUEUE_MARKS:
        why = f", {job.reason}" if job.reason else ""
        return Judgement(
            Outcome.RETRY,
            f"Slurm requeued it (restart {max(job.restarts, 1)}{why}): a fresh try follows",
        )
    if job.state in _RETRY_WORDS:
        return Judgement(
            Outcome.RETRY,
            f"{_with_reason(job.state, job.reason)}: {_RETRY_WORDS[job.state]}"
            "; a fresh try follows",
        )
    if marks & RUNNING_MARKS:
        shown = next((f for f in job.flags if f in RUNNING_MARKS), job.state)
        where = f" on {job.nodes}" if job.nodes else ""
        tail = ": waiting for its final state" if shown == "COMPLETING" else ""
        return Judgement(Outcome.RUNNING, f"Slurm {shown}{where}{tail}")
    if job.state in _FAILED_WORDS:
        return Judgement(Outcome.FAILED, f"Slurm {job.state}: {_FAILED_WORDS[job.state]}")
    if job.state in ("COMPLETED", "FAILED"):
        how = [] if job.exit_code is None else [f"exit {job.exit_code}"]
        how += [f"signal {job.signal}"] if job.signal else []
        how += [job.reason] if job.reason else []
        return Judgement(
            Outcome.ENDED, f"Slurm {job.state}" + (f" ({', '.join(how)})" if how else "")
        )
    if job.state == "CANCELLED":
        return Judgement(Outcome.CANCELLED, _with_reason("CANCELLED", job.reason))
    if job.state == "PENDING":
        never = _never_clears(job, partition_nodes)
        if never is not None:
            return Judgement(Outcome.REFUSED, f"Slurm will never start it: {never}")
        words = explain_reason(job.reason)
        tail = f": {words}" if words and words != job.reason else ""
        return Judgement(Outcome.WAITING, _with_reason("PENDING", job.reason) + tail)
    # A state this table does not know (a newer Slurm's): keep waiting and show it.
    return Judgement(
        Outcome.WAITING, _with_reason(job.state, job.reason) + " (a state helm does not know)"
    )
