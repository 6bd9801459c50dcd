"""The one vocabulary of run statuses and job states, and the sets of them that matter.

Every module that asks "is this run finished?" or "can this job still change?" imports the
answer from here, so that the leaderboard, the experiment loop, the TUI, promotion and the
dispatcher can never disagree about it. Values are ``StrEnum`` members, so they compare equal
to the plain strings stored in the database and printed in ``--json``.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's life: queued -> running -> one verdict (or crash / cancelled)."""

    QUEUED = "queued"
    RUNNING = "running"
    KEEP = "keep"  # finished and kept by the keep rule (or a reference run)
    DISCARD = "discard"  # finished, scored, and not better than the branch best
    DONE = "done"  # finished and scored, no verdict asked (helm job run, promotion seeds)
    CRASH = "crash"  # ended without a score
    CANCELLED = "cancelled"
    ABORTED = "aborted"  # stopped early by the early-abort rule: hopeless, like a discard
    # screens (helm.agents.screen): short, small runs that are never ranked
    SCREENED = "screened"  # a screen that ran to the end with a score (a base's stays so)
    SCREEN_PASS = "screen-pass"  # a candidate's screen that beat the base's: full run queued
    SCREEN_FAIL = "screen-fail"  # one that did not: no full run, like a discard


class JobState(StrEnum):
    """A job's life: queued -> staging -> running -> one terminal state."""

    QUEUED = "queued"
    STAGING = "staging"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # set only once every try is spent: a lost try is requeued instead


FINISHED_RUN = frozenset({RunStatus.KEEP, RunStatus.DISCARD, RunStatus.DONE})
"""Runs that ran to the end and carry the verdict of a scored run (ranked when they have a
score; a run with a score is always in one of these)."""

SCREEN_RUN = frozenset({RunStatus.SCREENED, RunStatus.SCREEN_PASS, RunStatus.SCREEN_FAIL})
"""Screens that ran to the end with a score: their scores are at a fraction of the steps, so
they are compared only with other screens (never ranked, never a best, never a seed of a
full run's spread)."""

IN_FLIGHT_RUN = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
"""Runs whose job has not ended yet."""

ENDED_RUN = frozenset(set(RunStatus) - IN_FLIGHT_RUN)
"""Runs that will not change again (finished, crashed, cancelled, aborted). An aborted run is
ended but not finished: it has no score, so it is never ranked (not in ``FINISHED_RUN``)."""

ACTIVE_JOB = frozenset({JobState.STAGING, JobState.RUNNING})
"""Jobs that hold GPUs on a host."""

LIVE_JOB = frozenset({JobState.QUEUED}) | ACTIVE_JOB
"""Jobs that have not ended: waiting for a place, or holding one."""

TERMINAL_JOB = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST})
"""Jobs that will not change again."""

JOB_GPU_COUNTS = (1, 2, 4, 8, 16, 32, 64)
"""GPUs one job may take: checked by ``submit_job`` and the CLI. More than 8 span several
nodes, which only a Slurm host runs (16 = 2 nodes x 8); the scheduler says so for a fleet of
boxes."""
