"""What Slurm's pending reasons and sbatch's refusals mean (``helm.remote.slurm_words``):
the words shown for a waiting job, and which refusals are the host's fault, the job's, or
a passing one. The real cluster's refusals are read in test_slurm_state.py."""

from __future__ import annotations

import pytest

from helm.remote.slurm_words import SbatchRefusal, classify_sbatch_error, explain_reason, queue_note


def test_queue_note_names_the_reason_and_says_it_in_words() -> None:
    assert queue_note("Resources") == "Slurm: Resources (waiting for free GPUs or nodes)"
    assert queue_note("SomeNewReason") == "Slurm: SomeNewReason"


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("Priority", "waiting behind higher-priority jobs"),
        ("Resources", "waiting for free GPUs or nodes"),
        ("Dependency", "waiting for the jobs it depends on"),
        ("BeginTime", "waiting for its start time (Slurm holds a requeued job about 2 minutes)"),
        ("QOSMaxJobsPerUserLimit", "at the QOS limit on running jobs per user"),
        ("AssocGrpGRES", "the account's GPU share is in use"),
        ("ReqNodeNotAvail, UnavailableNodes:n1", "the nodes it needs are down, drained or reserved"),
        ("QOSMaxGRESPerJob", "asks more than a per-job QOS limit allows"),
        ("AssocMaxNodePerJobLimit", "asks more than a per-job account limit allows"),
        ("QOSMaxGRESPerUser", "at a per-user QOS limit"),
        ("AssocGrpMemLimit", "the account's shared limit is in use"),
        ("SomethingNew", "SomethingNew"),
        ("None", None),
        (None, None),
    ],
)  # fmt: skip
def test_explain_reason(reason: str | None, words: str | None) -> None:
    assert explain_reason(reason) == words


# --- sbatch refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "stderr", "kind", "line"),
    [
        (127, "sh: 1: sbatch: not found\n", SbatchRefusal.HOST,
         "sbatch not found on the login node (install Slurm's client or fix PATH)"),
        (1, "bash: sbatch: command not found\n", SbatchRefusal.HOST,
         "sbatch not found on the login node (install Slurm's client or fix PATH)"),
        (1, "sbatch: error: invalid partition specified: nope\n"
            "sbatch: error: Batch job submission failed: Invalid partition name specified\n",
         SbatchRefusal.HOST,
         "Slurm: Invalid partition name specified: check the host's --partition (nope)"),
        (1, "sbatch: error: Batch job submission failed: Invalid account or account/partition"
            " combination specified\n", SbatchRefusal.HOST,
         "Slurm: Invalid account or account/partition combination specified:"
         " check the host's --account"),
        (1, "sbatch: error: Batch job submission failed: Invalid qos specification\n",
         SbatchRefusal.HOST, "Slurm: Invalid qos specification: check the host's --qos"),
        (1, "sbatch: error: Batch job submission failed: Requested node configuration is not"
            " available\n", SbatchRefusal.JOB,
         "Slurm: Requested node configuration is not available: check the job's GPUs / nodes"),
        (1, "sbatch: error: QOSMaxGRESPerJob\nsbatch: error: Batch job submission failed: Job"
            " violates accounting/QOS policy (job submit limit, user's size and/or time limits)\n",
         SbatchRefusal.JOB,
         "Slurm: Job violates accounting/QOS policy (job submit limit, user's size and/or time"
         " limits): check the job's size (QOS limits)"),
        (1, "sbatch: error: QOSMaxGRESPerJob\n", SbatchRefusal.JOB,
         "Slurm: QOSMaxGRESPerJob: check the job's size (QOS limits)"),
        (1, "sbatch: error: Batch job submission failed: Unable to contact slurm controller"
            " (connect failure)\n", SbatchRefusal.TRANSIENT,
         "Slurm: Unable to contact slurm controller (connect failure) (will try again)"),
        (1, "sbatch: error: Batch job submission failed: Socket timed out on send/recv"
            " operation\n", SbatchRefusal.TRANSIENT,
         "Slurm: Socket timed out on send/recv operation (will try again)"),
        (1, "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\n"
            "sbatch: error: Batch job submission failed: Resource temporarily unavailable\n",
         SbatchRefusal.TRANSIENT, "Slurm: Resource temporarily unavailable (will try again)"),
        (1, "sbatch: error: Batch job submission failed: Something helm has never seen\n",
         SbatchRefusal.HOST, "Slurm: Something helm has never seen"),
        (1, "", SbatchRefusal.HOST, "sbatch failed (exit 1) and said nothing"),
    ],
)  # fmt: skip
def test_sbatch_errors(status: int, stderr: str, kind: SbatchRefusal, line: str) -> None:
    assert classify_sbatch_error(status, stderr) == (kind, line)


def test_sbatch_error_is_one_line_from_a_long_dump() -> None:
    dump = "".join(f"sbatch: debug: line {i}\n" for i in range(200))
    dump += "sbatch: error: Batch job submission failed: Invalid qos specification\n"
    dump += "srun: warning: trailing noise\n"
    kind, line = classify_sbatch_error(1, dump)
    assert kind == SbatchRefusal.HOST and "\n" not in line and len(line) < 120
    assert line.startswith("Slurm: Invalid qos specification")
