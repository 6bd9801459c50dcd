"""SQLModel tables: the one shared state of a campaign.

Everything the operator, the agents and the daemon say to each other goes through these rows,
so that any process can die and the next one picks up exactly where it stopped. Times are
UTC floats (``time.time()``): cheap to compare in SQL and free of timezone surprises across
boxes. Free-form structures (environment, GPU lists, tags) are JSON text columns so that the
schema stays portable between SQLite and PostgreSQL.
"""

from __future__ import annotations

import time

from sqlalchemy import BigInteger, Index
from sqlmodel import Field, SQLModel, UniqueConstraint

from helm.models.version import CLAIM_TTL_S  # noqa: F401  (re-exported)


def now() -> float:
    """Seconds since the epoch; the one clock every row uses."""
    return time.time()


class Meta(SQLModel, table=True):
    """Key/value facts about the store itself, chiefly ``schema_version``."""

    __tablename__ = "helm_meta"
    key: str = Field(primary_key=True)
    value: str


class Host(SQLModel, table=True):
    """Where jobs run: this machine (``local``), a box over SSH (``ssh``), or a Slurm cluster
    (``slurm``: ``slurm_json`` holds its settings; ``ssh_*`` name its login node, if any)."""

    __tablename__ = "host"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    kind: str = "ssh"  # ssh | local | slurm
    ssh_user: str | None = None
    ssh_host: str | None = None
    ssh_port: int = 22
    identity: str | None = None
    gpus: int = 8
    workdir: str = "~/helm-jobs"
    data_dir: str | None = None
    python: str | None = None
    launcher: str | None = None
    env_json: str = "{}"
    enabled: bool = True
    created_at: float = Field(default_factory=now)
    checked_at: float | None = None
    reachable: bool | None = None
    check_json: str = "{}"  # last `host check`: gpus, versions, disk, data presence, error
    slurm_json: str = "{}"  # a Slurm host's settings (helm.remote.slurm_conf.SlurmSettings)
    price_per_gpu_hour: float | None = None  # USD per GPU-hour; None: unknown (money "-")


class Agent(SQLModel, table=True):
    """A supervised research agent with its own worktree and branch."""

    __tablename__ = "agent"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    driver: str = "sweep"
    state: str = "starting"  # starting | thinking | training | waiting | stalled | stopped
    desired: str = "up"  # up | down: what the operator asked for; the supervisor converges
    worktree: str | None = None
    branch: str | None = None
    pid: int | None = None
    base_pin_id: int | None = None
    current_run_id: int | None = None
    restarts: int = 0
    created_at: float = Field(default_factory=now)
    last_seen_at: float | None = None
    last_output_at: float | None = None
    note: str | None = None
    # Added by helm/agents: the agent's fixed environment, beneath the worktree's run.env
    # (the demo puts the tiny CPU preset here), and when its process was last started.
    env_json: str = "{}"
    started_at: float | None = None


class Run(SQLModel, table=True):
    """One experiment: a commit plus an environment, and what it scored.

    Lower val_bpb is better; the leaderboard ranks finished runs that carry a score.
    """

    __tablename__ = "run"
    __table_args__ = (
        Index("ix_run_status_val_bpb", "status", "val_bpb"),  # the leaderboard
        Index("ix_run_agent_base_pin", "agent", "base_pin_id"),  # reference, branch best
    )
    id: int | None = Field(default=None, primary_key=True)
    agent: str | None = Field(default=None, index=True)
    parent_id: int | None = Field(default=None, index=True)
    branch: str | None = None
    commit: str | None = None
    code_hash: str | None = Field(default=None, index=True)
    description: str = ""
    status: str = Field(default="queued", index=True)
    # queued | running | keep | discard | crash | cancelled | done (finished, no verdict asked)
    env_json: str = "{}"
    seed: int | None = Field(default=None, sa_type=BigInteger)  # any uint32 seed and more
    gpus: int = 1
    val_bpb: float | None = None
    val_loss: float | None = None
    score_line: str | None = None
    bytes_total: int | None = None
    bytes_code: int | None = None
    bytes_model: int | None = None
    train_time_ms: float | None = None
    steps: int | None = None
    step_avg_ms: float | None = None
    host: str | None = None
    gpu_type: str | None = None
    job_id: int | None = Field(default=None, index=True)
    tail: str | None = None  # last log lines, kept for crashes
    created_at: float = Field(default_factory=now)
    finished_at: float | None = None
    # Added by helm/agents: the base the run was made on, whether it is a reference run (the
    # first on a base, or after a `set` directive: kept unless it crashes, and the point the
    # branch's best is measured from), and why the verdict was what it was.
    base_pin_id: int | None = None
    baseline: bool = False
    verdict_note: str | None = None
    # Screening (helm.agents.screen): a screen is a short, small run of a candidate (or of
    # the code it changes) that is never ranked; a full run it earned points to it, and a
    # candidate's screen points to the base's screen it was judged against.
    screen: bool = False
    screen_run_id: int | None = Field(default=None, index=True)
    screen_ref_id: int | None = None


class Job(SQLModel, table=True):
    """A unit of GPU work: a code snapshot, an environment and a GPU count, placed on a host.

    queued -> staging -> running -> succeeded | failed | cancelled | lost; ``lost`` jobs are
    requeued up to ``max_attempts``. Live progress parsed from the streamed log sits here so
    that the TUI can read it without touching the network.
    """

    __tablename__ = "job"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, index=True)
    agent: str | None = Field(default=None, index=True)
    state: str = Field(default="queued", index=True)
    code_dir: str = ""  # snapshot of the files to run, inside the workspace
    entry: str = "train_gpt.py"
    env_json: str = "{}"
    gpus: int = 1
    seed: int | None = Field(default=None, sa_type=BigInteger)  # any uint32 seed and more
    time_limit_s: float = 1800.0
    priority: int = 0
    host: str | None = Field(default=None, index=True)
    gpu_ids_json: str = "[]"
    remote_dir: str | None = None
    pid: int | None = None
    backend_id: str | None = None  # the id the host's scheduler gave this try (Slurm job id)
    queue_reason: str | None = None  # why the host's scheduler keeps it waiting (Slurm reason)
    attempts: int = 0
    max_attempts: int = 3
    cancel_requested: bool = False
    exit_code: int | None = None
    error: str | None = None
    log_offset: int = 0
    step: int | None = None
    total_steps: int | None = None
    train_loss: float | None = None
    val_bpb: float | None = None
    eta_s: float | None = None
    # After the last step: what runs (eval, quantize, round trip, sliding, ttt, done; None
    # while training) and since when, so the progress cell does not sit at 100% for a minute.
    phase: str | None = None
    phase_at: float | None = None
    queued_at: float = Field(default_factory=now)
    staged_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    # GPU-seconds held over every try (helm.models.costs.try_gpu_seconds, added as each try
    # ends) and what they cost at their hosts' prices: None once any try had no price.
    # (gpu_seconds has a server default, as the migration's: a row written by plain SQL
    # starts at zero; cost has none, so that an ORM insert of None stores NULL, not 0)
    gpu_seconds: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    cost: float | None = 0.0


class JobEvent(SQLModel, table=True):
    """One transition or incident in a job's life (placed, launched, lost, requeued ...).

    The Job row holds only the latest state; this history is what tells the operator why a job
    ran three times, and what tests and the TUI read to show retries.
    """

    __tablename__ = "job_event"
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(index=True)
    state: str
    host: str | None = None
    message: str = ""
    created_at: float = Field(default_factory=now)


class FeedPost(SQLModel, table=True):
    """The insight feed: agents' findings, automatic run results, acks, audit verdicts."""

    __tablename__ = "feed_post"
    id: int | None = Field(default=None, primary_key=True)
    agent: str | None = Field(default=None, index=True)
    kind: str = "insight"  # insight | result | ack | verification | system
    text: str
    run_id: int | None = None
    tags_json: str = "[]"
    created_at: float = Field(default_factory=now, index=True)


class Directive(SQLModel, table=True):
    """An instruction from the operator to some or all agents."""

    __tablename__ = "directive"
    id: int | None = Field(default=None, primary_key=True)
    text: str
    sender: str = "operator"
    targets_json: str = "null"  # null: every agent, at send time and any started later
    created_at: float = Field(default_factory=now)


class DirectiveDelivery(SQLModel, table=True):
    """Per-agent delivery and acknowledgement of one directive."""

    __tablename__ = "directive_delivery"
    __table_args__ = (
        UniqueConstraint("directive_id", "agent"),
        Index("ix_delivery_agent_acked", "agent", "acked_at"),  # an agent's pending ones
    )
    id: int | None = Field(default=None, primary_key=True)
    directive_id: int = Field(index=True, foreign_key="directive.id")
    agent: str = Field(index=True)
    delivered_at: float | None = None
    acked_at: float | None = None


class Pin(SQLModel, table=True):
    """One entry in the history of the base that every agent builds on."""

    __tablename__ = "pin"
    id: int | None = Field(default=None, primary_key=True)
    kind: str  # init | pr | run | file
    ref: str
    commit: str | None = None
    pinned_by: str = "operator"
    note: str | None = None
    created_at: float = Field(default_factory=now)


class Claim(SQLModel, table=True):
    """ "I am trying X": lets agents avoid duplicating each other; expires after its TTL."""

    __tablename__ = "claim"
    id: int | None = Field(default=None, primary_key=True)
    agent: str = Field(index=True)
    text: str
    created_at: float = Field(default_factory=now)
    expires_at: float = Field(index=True)


class Submission(SQLModel, table=True):
    """A records folder written by ``helm promote``."""

    __tablename__ = "submission"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=True)
    name: str
    track: str = "record"
    path: str
    seeds_json: str = "[]"
    val_bpb: float | None = None
    val_bpb_std: float | None = None
    status: str = "written"  # written | failed
    report_json: str = "{}"
    created_at: float = Field(default_factory=now)


class Audit(SQLModel, table=True):
    """The verdict on a community pull request (or a folder), with its evidence."""

    __tablename__ = "audit"
    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(index=True)  # "owner/name#N" or a folder path
    claimed_bpb: float | None = None
    reproduced_bpb: float | None = None
    verdict: str = "pending"  # real | not_reproduced | copy | invalid | unverified
    evidence_json: str = "{}"
    created_at: float = Field(default_factory=now)
