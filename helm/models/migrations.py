"""The schema's history: ``MIGRATIONS[N]`` upgrades a store from version N-1 to N.

Each step receives alembic ``Operations`` in batch mode, so column changes work on SQLite
(which rebuilds the table) and on PostgreSQL (which alters it). ``schema.upgrade`` runs them
with foreign keys off and checks them before commit, so a step may rebuild a table that
other tables reference. A step must leave the store exactly as ``tables.py`` creates a fresh
one (a test compares the two).

To change the schema: edit ``tables.py``, bump ``SCHEMA_VERSION`` in ``version.py`` and add
the step here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.operations import Operations


def _v2_query_indexes(ops: Operations) -> None:
    """Indexes for the query layer's hot reads, and seeds as 64-bit integers.

    The leaderboard (scored runs by status and score), the experiment loop's reference and
    branch-best lookups (an agent's runs on one base) and an agent's pending directives. Seeds
    were 32-bit INTEGER columns, which PostgreSQL refuses for seeds of 2**31 and above (numpy
    takes any uint32); SQLite stores 64 bits either way, but its tables are rebuilt alike, so
    that this step also proves that rebuilding a table works on a populated store.
    """
    for table in ("run", "job"):
        with ops.batch_alter_table(table) as batch:
            batch.alter_column(
                "seed", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=True
            )
    ops.create_index("ix_run_status_val_bpb", "run", ["status", "val_bpb"])
    ops.create_index("ix_run_agent_base_pin", "run", ["agent", "base_pin_id"])
    ops.create_index("ix_delivery_agent_acked", "directive_delivery", ["agent", "acked_at"])


def _v3_slurm(ops: Operations) -> None:
    """Slurm hosts: the host's Slurm settings, and each try's Slurm job id and pending reason.

    Plain added columns with defaults: old rows are SSH and local hosts, and jobs that never
    went through a cluster's scheduler.
    """
    with ops.batch_alter_table("host") as batch:
        batch.add_column(sa.Column("slurm_json", sa.String(), nullable=False, server_default="{}"))
    with ops.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("backend_id", sa.String(), nullable=True))
        batch.add_column(sa.Column("queue_reason", sa.String(), nullable=True))


def _v4_job_phase(ops: Operations) -> None:
    """A job's phase after its last step (eval, quantize, round trip ...) and since when.

    Plain nullable columns: a job written before them was either still training or is over,
    and None reads as "training" (the step bar) for the first and as nothing for the rest.
    """
    with ops.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("phase", sa.String(), nullable=True))
        batch.add_column(sa.Column("phase_at", sa.Float(), nullable=True))


def _v5_costs(ops: Operations) -> None:
    """Cost on everything: a host's price per GPU-hour, and a job's GPU-seconds and money.

    Hosts from before have no price (NULL: money unknown, shown "-", never a guessed zero).
    Jobs from before count zero seconds at zero cost: their earlier tries' times were reset
    when they were requeued, so nothing sound can be rebuilt for them.
    """
    with ops.batch_alter_table("host") as batch:
        batch.add_column(sa.Column("price_per_gpu_hour", sa.Float(), nullable=True))
    with ops.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("gpu_seconds", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("cost", sa.Float(), nullable=True))
    ops.execute("UPDATE job SET cost = 0")  # known: nothing counted, nothing charged


def _v6_screens(ops: Operations) -> None:
    """Screening: a run may be a screen; a full run points to the screen that earned it, a
    candidate's screen to the base's screen it was judged against.

    Old rows were all full runs (``screen`` false) and no run had a screen.
    """
    with ops.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("screen", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("screen_run_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("screen_ref_id", sa.Integer(), nullable=True))
    ops.create_index("ix_run_screen_run_id", "run", ["screen_run_id"])


MIGRATIONS: dict[int, Callable[[Operations], None]] = {
    2: _v2_query_indexes,
    3: _v3_slurm,
    4: _v4_job_phase,
    5: _v5_costs,
    6: _v6_screens,
}
