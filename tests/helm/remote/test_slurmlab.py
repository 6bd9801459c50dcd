"""The test cluster itself: if it did not really schedule by GRES count, fail nodes, keep
accounts or clean up, every Slurm backend test built on it would prove nothing.

Facts these pin down (Slurm 22.05 from Debian), which the backend's tests rely on:
a job waiting for GPUs shows reason ``Priority`` first and ``Resources`` after the next
scheduler pass (~1-3 s); ``--gres=gpu:3`` on the 2-GPU node is refused at submit; a job
submitted while the node is DOWN pends with the node-unavailable reason and runs once
``resume_node`` returns; with accounting, QOS ``small`` refuses a 2-GPU job at submit and
``sacct`` reports a finished job's state and exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helm.remote.loopback import LoopbackSshd
from helm.remote.slurmlab import LocalSlurm, accounting_available

pytestmark = pytest.mark.timeout(120)


def _submit(lab: LocalSlurm, *args: str) -> str:
    return lab.command("sbatch", "--parsable", *args).stdout.strip().split(";")[0]


def _state(lab: LocalSlurm, job: str) -> tuple[str, str]:
    out = lab.command("squeue", "-h", "-t", "all", "-j", job, "-O", "State:|,Reason:|").stdout
    state, reason = out.strip().split("|")[:2]
    return state, reason


def _until(what: str, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout_s:g}s: {what}")


@pytest.fixture
def lab(slurm_lab: LocalSlurm) -> Iterator[LocalSlurm]:
    """The session cluster, idle at the start and cancelled afterwards (tests share it)."""
    _until("session cluster idle", lambda: not slurm_lab.command("squeue", "-h").stdout.strip())
    yield slurm_lab
    slurm_lab.command("scancel", "--full", "--state=RUNNING", check=False)
    slurm_lab.command("scancel", "--state=PENDING", check=False)
    if slurm_lab.node_state() not in ("idle", "mixed", "allocated", "completing"):
        slurm_lab.resume_node()


def test_gpus_are_scheduled_by_count(lab: LocalSlurm) -> None:
    one, two, three = (_submit(lab, "--gres=gpu:1", "--wrap", "sleep 120") for _ in range(3))
    cpu_only = _submit(lab, "--wrap", "sleep 120")
    _until(
        "two 1-GPU jobs running", lambda: _state(lab, one)[0] == _state(lab, two)[0] == "RUNNING"
    )
    # The third waits for a GPU, not for CPUs: a job without GPUs still starts beside them.
    _until("third job waits on Resources", lambda: _state(lab, three) == ("PENDING", "Resources"))
    _until("CPU-only job running", lambda: _state(lab, cpu_only)[0] == "RUNNING")
    assert _state(lab, three) == ("PENDING", "Resources")
    lab.command("scancel", one)
    _until("third job starts on the freed GPU", lambda: _state(lab, three)[0] == "RUNNING")


def test_more_gpus_than_the_node_has_is_refused(lab: LocalSlurm) -> None:
    r = lab.command("sbatch", "--gres=gpu:3", "--wrap", "true", check=False)
    assert r.returncode == 1
    assert "Requested node configuration is not available" in r.stderr


def test_down_node_holds_jobs_until_resumed(lab: LocalSlurm) -> None:
    lab.down_node("test_slurmlab")
    assert lab.node_state() == "down"
    job = _submit(lab, "--wrap", "true")
    time.sleep(2)  # two scheduler passes: it must still be waiting
    state, reason = _state(lab, job)
    assert state == "PENDING"
    # Two answers, by which scheduler pass looked last: the main scheduler's at submit, then
    # (after ~3 s) the backfill's, whose reason code is plain Resources. ``-O Reason`` prints
    # the description where there is one; only --json tells code and text apart.
    # squeue --json of 22.05 ignores -j (and every other filter): pick the job out.
    listed = json.loads(lab.command("squeue", "--json", "-j", job).stdout)["jobs"]
    (info,) = [j for j in listed if str(j["job_id"]) == job]
    answers = {
        ("ReqNodeNotAvail", f"ReqNodeNotAvail, UnavailableNodes:{lab.node}"),
        (
            "Resources",
            "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority"
            " partitions",
        ),
    }
    assert (info["state_reason"], info["state_description"]) in answers
    assert reason in {text for _, text in answers}
    lab.resume_node()
    assert lab.node_state() == "idle"
    _until("job runs after resume", lambda: _state(lab, job)[0] == "COMPLETED")


def test_resume_of_a_node_already_in_service_is_not_an_error(lab: LocalSlurm) -> None:
    """A node back in service before ``resume_node`` (a DOWN one whose slurmd registered
    again) is what was asked for; Slurm refuses ``State=RESUME`` on it all the same."""
    assert lab.node_state() == "idle"
    r = lab.command("scontrol", "update", f"NodeName={lab.node}", "State=RESUME", check=False)
    assert r.returncode == 1 and "Invalid node state" in r.stderr
    lab.resume_node()
    assert lab.node_state() == "idle"


def test_commands_over_ssh_reach_the_cluster(
    slurm_sshd: LoopbackSshd, slurm_lab: LocalSlurm, tmp_path: Path
) -> None:
    """``SetEnv SLURM_CONF`` on the loopback sshd stands in for a login node's
    /etc/slurm/slurm.conf: a plain SSH command finds the cluster."""
    known = tmp_path / "known_hosts"
    known.write_text(slurm_sshd.known_hosts_line())
    r = subprocess.run(
        ["ssh", "-i", str(slurm_sshd.user_key), "-p", str(slurm_sshd.port)]
        + ["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes"]
        + ["-o", "BatchMode=yes", f"{slurm_sshd.user}@127.0.0.1", "sinfo -h -o '%P %D %G'"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["gpu*", "1", "gpu:2"]


def _sacct(lab: LocalSlurm, job: str) -> str:
    return lab.command(
        "sacct", "-X", "-n", "-P", "-j", job, "-o", "JobIDRaw,State,ExitCode"
    ).stdout.strip()


def test_sacct_reports_finished_jobs(slurm_acct_lab: LocalSlurm) -> None:
    lab = slurm_acct_lab
    ok = _submit(lab, "--wrap", "true")
    bad = _submit(lab, "--wrap", "exit 3")
    # The controller sends job records to slurmdbd asynchronously: sacct lags a moment.
    _until("sacct has the finished job", lambda: _sacct(lab, ok) == f"{ok}|COMPLETED|0:0")
    _until("sacct has the failed job", lambda: _sacct(lab, bad) == f"{bad}|FAILED|3:0")


def test_qos_refuses_two_gpus_at_submit(slurm_acct_lab: LocalSlurm) -> None:
    lab = slurm_acct_lab
    r = lab.command("sbatch", "--qos=small", "--gres=gpu:2", "--wrap", "true", check=False)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "sbatch: error: QOSMaxGRESPerJob",
        "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy"
        " (job submit limit, user's size and/or time limits)",
    ]
    job = _submit(lab, "--qos=small", "--gres=gpu:1", "--wrap", "true")
    _until("1-GPU job under QOS small runs", lambda: _sacct(lab, job) == f"{job}|COMPLETED|0:0")


def test_associations_are_enforced(slurm_acct_lab: LocalSlurm) -> None:
    """Unlike the cluster without accounting, unknown accounts and QOS are refused."""
    lab = slurm_acct_lab
    r = lab.command("sbatch", "--account=nope", "--wrap", "true", check=False)
    assert r.returncode == 1
    assert "Invalid account or account/partition combination specified" in r.stderr
    r = lab.command("sbatch", "--qos=nope", "--wrap", "true", check=False)
    assert r.returncode == 1
    assert "Invalid qos specification" in r.stderr
    job = _submit(lab, "--account=helm", "--wrap", "true")
    out = lab.command("squeue", "-h", "-t", "all", "-j", job, "-O", "Account:|").stdout
    assert out.strip() == "helm|"


def _lab_pids(lab: LocalSlurm) -> set[int]:
    """Every process that carries this cluster's SLURM_CONF: its daemons, slurmctld's
    slurmscriptd, slurmstepd and the job's own processes."""
    marker = f"SLURM_CONF={lab.conf}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            pids.add(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    if (why := accounting_available()) is not None:
        pytest.fail(why)
    lab = LocalSlurm.start(tmp_path / "lab", accounting=True)
    try:
        job = _submit(lab, "--gres=gpu:1", "--wrap", "sleep 300")
        _until("job running", lambda: _state(lab, job)[0] == "RUNNING")
        daemons = {name: p.pid for name, p in lab.procs.items()}
        assert set(daemons) == {"munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"}
        pids = _lab_pids(lab)
        assert set(daemons.values()) <= pids
        assert len(pids) > len(daemons)  # slurmscriptd, slurmstepd, the job's shell and sleep
    finally:
        lab.stop()
    _until("every process of the lab ended", lambda: not [p for p in pids if _alive(p)], 10)
    assert all(p.returncode is not None for p in lab.procs.values())
    assert os.path.exists(lab.conf)  # the folder stays, for its logs
