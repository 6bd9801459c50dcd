"""Reading Slurm's job reports of every version, and what helm makes of each state.

The Slurm 22.05 tests read a real cluster (``helm.remote.slurmlab``): jobs that complete,
fail with exit 3, die by SIGKILL, pend forever on ``-N 2``, get requeued by ``scontrol
requeue`` and get cancelled, read through the real ``squeue --json`` and ``squeue -O``, and
real ``sbatch`` refusals. Other versions are not installed here: their ``squeue --json`` is
sample JSON written as their OpenAPI schemas document it (v0.0.39 for 23.02, v0.0.40 for
23.11, v0.0.41 for 24.05), and ``sacct`` text is written as sacct documents it, because this
cluster keeps no accounting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from helm.remote.slurm_state import (
    Judgement,
    Outcome,
    SlurmJob,
    judge,
    parse_duration,
    parse_sacct,
    parse_squeue_json,
    parse_squeue_text,
    sacct_fields,
    squeue_text_format,
)
from helm.remote.slurm_words import SbatchRefusal, classify_sbatch_error
from helm.remote.slurmlab import LocalSlurm, slurm_available


@dataclass
class Live:
    lab: LocalSlurm
    ids: dict[str, str]  # role -> Slurm job id
    json_text: str
    text: str
    text_stderr: str
    refusals: dict[str, tuple[int, str]]  # sbatch (exit status, stderr) by what was asked


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    why = slurm_available()
    if why is not None:
        pytest.fail(f"test Slurm cluster unavailable: {why}")
    root = tmp_path_factory.mktemp("slurm_state")
    lab = LocalSlurm.start(root)
    try:
        yield _run_jobs(lab, root)
    finally:
        lab.stop()


def _run_jobs(lab: LocalSlurm, root: Path) -> Live:
    def sbatch(*args: str) -> str:
        out = lab.command("sbatch", "--parsable", f"--output={root}/%j.out", *args)
        return out.stdout.strip().split(";")[0]

    ids = {
        "ok": sbatch("--wrap", "true"),
        "fail": sbatch("--wrap", "exit 3"),
        "killed": sbatch("--wrap", "kill -KILL $$"),
        "never": sbatch("-N", "2", "--wrap", "true"),
        "requeued": sbatch("--wrap", "sleep 60"),
        "cancelled": sbatch("--wrap", f"touch {root}/cancelled.started; sleep 60"),
    }

    def states() -> dict[str, tuple[str, str]]:
        out = lab.command("squeue", "-h", "-t", "all", "-O", "JobID:|,State:|,RestartCnt:|")
        rows = [line.split("|") for line in out.stdout.splitlines()]
        return {r[0]: (r[1], r[2]) for r in rows if len(r) > 2}

    def wait(done: Callable[[dict[str, tuple[str, str]]], bool]) -> None:
        deadline = time.monotonic() + 20
        while not done(now := states()):
            assert time.monotonic() < deadline, f"Slurm did not get there: {now}"
            time.sleep(0.1)

    wait(
        lambda s: (
            all(s[ids[r]][0] in ("COMPLETED", "FAILED") for r in ("ok", "fail", "killed"))
            and all(s[ids[r]][0] == "RUNNING" for r in ("requeued", "cancelled"))
        )
    )
    # its shell really runs (RUNNING can precede the step's process on a loaded machine, and
    # a job cancelled before then records no signal)
    wait(lambda s: (root / "cancelled.started").exists())
    lab.command("scontrol", "requeue", ids["requeued"])
    lab.command("scancel", ids["cancelled"])
    wait(lambda s: s[ids["requeued"]] == ("PENDING", "1") and s[ids["cancelled"]][0] == "CANCELLED")
    refusals = {}
    for what, args in {"gres": ["--gres=gpu:3"], "partition": ["-p", "nope"]}.items():
        res = lab.command("sbatch", f"--output={root}/%j.out", *args, "--wrap", "true", check=False)
        refusals[what] = (res.returncode, res.stderr)
    text = lab.command("squeue", "-h", "-t", "all", "-O", squeue_text_format())
    return Live(
        lab=lab,
        ids=ids,
        json_text=lab.command("squeue", "--json", "-t", "all").stdout,
        text=text.stdout,
        text_stderr=text.stderr,
        refusals=refusals,
    )


def test_real_22_05_json_is_read(live: Live) -> None:
    doc = json.loads(live.json_text)
    assert doc["meta"]["plugin"]["type"] == "openapi/v0.0.38"  # job_state a string, plain ints
    jobs = parse_squeue_json(live.json_text)
    by = {role: jobs[sid] for role, sid in live.ids.items()}
    now = time.time()
    ok = by["ok"]
    assert (ok.state, ok.exit_code, ok.signal, ok.reason, ok.restarts) == (
        "COMPLETED", 0, None, None, 0,
    )  # fmt: skip
    assert (ok.nodes, ok.node_count, ok.flags) == (live.lab.node, 1, ())
    assert ok.start_time is not None and now - 120 < ok.start_time <= now
    assert ok.elapsed_s is not None and 0 <= ok.elapsed_s < 30
    fail = by["fail"]  # 22.05 prints the raw wait status, 768: return code 3
    assert (fail.state, fail.exit_code, fail.signal, fail.reason) == (
        "FAILED", 3, None, "NonZeroExitCode",
    )  # fmt: skip
    assert (by["killed"].state, by["killed"].signal) == ("FAILED", 9)
    never = by["never"]
    assert (never.state, never.reason, never.node_count) == ("PENDING", "PartitionNodeLimit", 2)
    assert (never.nodes, never.start_time, never.elapsed_s, never.exit_code) == (None,) * 4
    rq = by["requeued"]  # back in the queue: its start_time is only Slurm's estimate
    assert (rq.state, rq.reason, rq.restarts, rq.start_time) == ("PENDING", "BeginTime", 1, None)
    cancelled = by["cancelled"]  # scancel's TERM, where Slurm recorded one (22.05 does not
    assert cancelled.state == "CANCELLED"  # always: a loaded node can report 0:0)
    assert cancelled.signal in (15, None) and cancelled.exit_code in (0, None)
    # sbatch refused --gres=gpu:3 and printed no id, yet the controller keeps a record of it.
    (left,) = [j for sid, j in jobs.items() if sid not in live.ids.values()]
    assert (left.state, left.reason) == ("FAILED", "BadConstraints")


def test_real_22_05_text_agrees_with_json(live: Live) -> None:
    assert live.text_stderr == ""  # 22.05's squeue -O knows every field asked for
    text = parse_squeue_text(live.text)
    jobs = parse_squeue_json(live.json_text)
    assert set(text) == set(jobs) and set(live.ids.values()) < set(jobs)
    for sid, j in jobs.items():
        t = text[sid]
        assert (t.state, t.reason, t.restarts, t.nodes, t.node_count) == (
            j.state, j.reason, j.restarts, j.nodes, j.node_count,
        )  # fmt: skip
        if j.start_time is None:
            assert t.start_time is None
        else:
            assert t.start_time == pytest.approx(j.start_time, abs=1)
    assert text[live.ids["never"]].reason == "PartitionNodeLimit"
    assert text[live.ids["ok"]].elapsed_s is not None


def test_real_22_05_states_are_judged(live: Live) -> None:
    jobs = parse_squeue_json(live.json_text)
    got = {role: judge(jobs[sid], partition_nodes=1) for role, sid in live.ids.items()}
    assert got["ok"].outcome == Outcome.ENDED and got["ok"].message == "Slurm COMPLETED (exit 0)"
    assert got["fail"].outcome == Outcome.ENDED and "exit 3" in got["fail"].message
    assert got["killed"].outcome == Outcome.ENDED and "signal 9" in got["killed"].message
    assert got["never"] == Judgement(
        Outcome.REFUSED,
        "Slurm will never start it: PartitionNodeLimit (asks 2 nodes; partition has 1)",
    )
    assert got["requeued"].outcome == Outcome.RETRY
    assert got["cancelled"].outcome == Outcome.CANCELLED
    # Without the partition's size, or with room for 2, the limit may yet clear.
    assert judge(jobs[live.ids["never"]]).outcome == Outcome.WAITING
    assert judge(jobs[live.ids["never"]], partition_nodes=2).outcome == Outcome.WAITING


def test_real_sbatch_refusals(live: Live) -> None:
    kind, line = classify_sbatch_error(*live.refusals["gres"])
    assert kind == SbatchRefusal.JOB
    assert "Requested node configuration is not available" in line and "\n" not in line
    kind, line = classify_sbatch_error(*live.refusals["partition"])
    assert kind == SbatchRefusal.HOST
    assert "Invalid partition name specified" in line and "--partition (nope)" in line


# --- squeue --json of other versions (sample JSON as their schemas document it) ---------


def _env(n: int) -> dict:
    return {"set": True, "infinite": False, "number": n}


UNSET = {"set": False, "infinite": False, "number": 0}


def _verbose(status: str, rc: int, sig: int = 0, name: str = "") -> dict:
    return {
        "status": [status],
        "return_code": _env(rc),
        "signal": {"id": _env(sig) if sig else UNSET, "name": name},
    }


def _doc(plugin: str, *jobs: dict) -> str:
    return json.dumps({"meta": {"plugin": {"type": plugin}}, "errors": [], "jobs": list(jobs)})


def test_v0_0_39_23_02_string_state_enveloped_numbers() -> None:
    text = _doc(
        "openapi/v0.0.39",
        {"job_id": 7, "job_state": "FAILED", "state_reason": "NonZeroExitCode",
         "exit_code": _env(3 << 8), "restart_cnt": 0, "start_time": 1700000000,
         "end_time": 1700000042, "nodes": "gpu01", "node_count": _env(1)},
        {"job_id": 8, "job_state": "PENDING", "state_reason": "Priority",
         "exit_code": _env(0), "start_time": 0, "nodes": "", "node_count": _env(2)},
    )  # fmt: skip
    jobs = parse_squeue_json(text)
    assert jobs["7"] == SlurmJob(
        "7", "FAILED", "NonZeroExitCode", 0, 3, None, "gpu01", 1, 1700000000.0, 42.0
    )
    assert jobs["8"] == SlurmJob("8", "PENDING", "Priority", node_count=2)


def test_v0_0_40_23_11_state_lists_and_verbose_exit_codes() -> None:
    text = _doc(
        "openapi/v0.0.40",
        {"job_id": 11, "job_state": ["PENDING", "REQUEUED"], "state_reason": "BeginTime",
         "restart_cnt": 1, "exit_code": _verbose("PENDING", 0), "start_time": _env(0),
         "nodes": "", "node_count": _env(1)},
        {"job_id": 12, "job_state": ["RUNNING", "COMPLETING"], "state_reason": "None",
         "exit_code": _verbose("PENDING", 0), "start_time": _env(int(time.time()) - 5),
         "end_time": UNSET, "nodes": "gpu[01-02]", "node_count": _env(2)},
        {"job_id": 13, "job_state": ["CANCELLED"], "state_reason": "None",
         "exit_code": _verbose("SIGNALED", 0, 15, "TERM"), "start_time": _env(1700000000),
         "end_time": _env(1700000100), "nodes": "gpu01", "node_count": _env(1)},
        {"job_id": 14, "job_state": ["COMPLETED"], "exit_code": _verbose("SUCCESS", 0),
         "start_time": _env(1700000000), "end_time": _env(1700000010), "node_count": UNSET},
    )  # fmt: skip
    jobs = parse_squeue_json(text)
    rq = jobs["11"]
    assert (rq.state, rq.flags, rq.restarts, rq.reason, rq.start_time) == (
        "PENDING", ("REQUEUED",), 1, "BeginTime", None,
    )  # fmt: skip
    cg = jobs["12"]
    assert (cg.state, cg.flags, cg.reason, cg.exit_code, cg.nodes) == (
        "RUNNING", ("COMPLETING",), None, None, "gpu[01-02]",
    )  # fmt: skip
    assert cg.elapsed_s == pytest.approx(5, abs=3)  # still running: as of reading
    ca = jobs["13"]
    assert (ca.state, ca.exit_code, ca.signal, ca.elapsed_s) == ("CANCELLED", 0, 15, 100.0)
    done = jobs["14"]
    assert (done.exit_code, done.signal, done.node_count, done.elapsed_s) == (0, None, None, 10)


def test_v0_0_41_24_05_same_shapes_more_flags() -> None:
    text = _doc(
        "openapi/v0.0.41",
        {"job_id": 21, "job_state": ["TIMEOUT", "COMPLETING"], "state_reason": "None",
         "exit_code": _verbose("SIGNALED", 0, 9, "KILL"), "start_time": _env(1700000000),
         "end_time": _env(1700003600), "nodes": "gpu03", "node_count": _env(1)},
        {"job_id": 22, "job_state": ["OUT_OF_MEMORY"], "state_reason": "OutOfMemory",
         "exit_code": _verbose("ERROR", 125), "start_time": _env(1700000000),
         "end_time": _env(1700000060), "nodes": "gpu03", "node_count": _env(1)},
        {"job_id": 23, "job_state": ["NODE_FAIL"], "state_reason": "NodeDown",
         "exit_code": {"status": ["ERROR"], "return_code": 1, "signal": {"id": 0, "name": ""}},
         "start_time": _env(1700000000), "end_time": _env(1700000005), "node_count": _env(1)},
    )  # fmt: skip
    jobs = parse_squeue_json(text)
    assert (jobs["21"].state, jobs["21"].flags, jobs["21"].signal) == (
        "TIMEOUT", ("COMPLETING",), 9,
    )  # fmt: skip
    assert judge(jobs["21"]).outcome == Outcome.RUNNING  # the final state is still to come
    assert (jobs["22"].state, jobs["22"].exit_code, jobs["22"].reason) == (
        "OUT_OF_MEMORY", 125, "OutOfMemory",
    )  # fmt: skip
    assert (jobs["23"].exit_code, jobs["23"].signal, jobs["23"].nodes) == (1, None, None)
    assert judge(jobs["23"]).message == (
        "Slurm NODE_FAIL (NodeDown): the node failed; a fresh try follows"
    )


def test_json_errors_are_short_value_errors() -> None:
    with pytest.raises(ValueError, match="printed no JSON: squeue: unrecognized option"):
        parse_squeue_json("squeue: unrecognized option '--json'\nTry \"squeue --help\"\n")
    with pytest.raises(ValueError, match="no JSON: nothing"):
        parse_squeue_json("")
    with pytest.raises(ValueError, match="no jobs list: Unable to contact slurm controller"):
        parse_squeue_json(json.dumps({"errors": [{"error": "Unable to contact slurm controller"}]}))
    with pytest.raises(ValueError, match="no jobs list"):
        parse_squeue_json("[1, 2]")
    assert parse_squeue_json(json.dumps({"jobs": []})) == {}


# --- squeue -O text, sacct text -----------------------------------------------------------


def test_squeue_text_format_puts_reason_last() -> None:
    fmt = squeue_text_format()
    fields = fmt.split(",")
    assert all(f.endswith(":|") for f in fields) and fields[-1] == "Reason:|"
    assert "ExitCode:|" not in fields  # 22.05's squeue -O does not know it


def test_squeue_text_reasons_with_spaces_commas_colons() -> None:
    start = "2024-03-01T10:00:00"
    text = (
        "5|PENDING|0|2024-03-02T00:00:00|0:00||1|ReqNodeNotAvail, UnavailableNodes:n1,n2|\n"
        f"6|RUNNING|0|{start}|1-02:03:04|gpu[01-02]|2|None|\n"
        "7|PENDING|2|N/A|0:00||1|BeginTime|\n"
        f"8|COMPLETING|0|{start}|3:04|gpu01|1|None|\n"
        "garbage line\n\n"
    )
    jobs = parse_squeue_text(text)
    assert set(jobs) == {"5", "6", "7", "8"}
    assert jobs["5"].reason == "ReqNodeNotAvail, UnavailableNodes:n1,n2"
    assert jobs["5"].start_time is None  # a pending job's StartTime is an estimate
    run = jobs["6"]
    assert (run.nodes, run.node_count, run.elapsed_s) == ("gpu[01-02]", 2, 93784.0)
    assert run.start_time == datetime.fromisoformat(start).timestamp()
    assert (jobs["7"].restarts, judge(jobs["7"]).outcome) == (2, Outcome.RETRY)
    assert (jobs["8"].state, jobs["8"].elapsed_s) == ("COMPLETING", 184.0)
    assert judge(jobs["8"]).outcome == Outcome.RUNNING


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0:00", 0), ("3:04", 184), ("1:02:03", 3723), ("00:00:05", 5), ("1-02:03:04", 93784),
     ("2-00:00:00", 172800), ("INVALID", None), ("UNLIMITED", None), ("N/A", None), ("x:1", None)],
)  # fmt: skip
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_sacct_text() -> None:
    assert sacct_fields().split(",")[0] == "JobIDRaw" and sacct_fields().endswith(",Reason")
    # -P: no trailing "|"; -p (parsable) ends each line in one: both read.
    text = (
        "31|CANCELLED by 0|0:15|2024-03-01T10:00:00|00:01:40|gpu01|1|None\n"
        "31.batch|CANCELLED|0:15|2024-03-01T10:00:00|00:01:40|gpu01|1|None\n"
        "32|FAILED|3:0|2024-03-01T10:00:00|00:00:05|gpu01|1|NonZeroExitCode|\n"
        "33|PENDING|0:0|Unknown|00:00:00|None assigned|2|PartitionNodeLimit\n"
        "34|TIMEOUT|0:0|2024-03-01T10:00:00|1-00:00:01|gpu[01-02]|2|TimeLimit\n"
        "35|OUT_OF_MEMORY|0:125|2024-03-01T10:00:00|00:10:00|gpu01|1|OutOfMemory\n"
    )
    jobs = parse_sacct(text)
    assert set(jobs) == {"31", "32", "33", "34", "35"}  # the step line is left out
    ca = jobs["31"]
    assert (ca.state, ca.exit_code, ca.signal, ca.elapsed_s, ca.reason) == (
        "CANCELLED", 0, 15, 100.0, None,
    )  # fmt: skip
    assert (jobs["32"].exit_code, jobs["32"].signal, jobs["32"].reason) == (
        3,
        None,
        "NonZeroExitCode",
    )
    pd = jobs["33"]
    assert (pd.nodes, pd.node_count, pd.start_time, pd.exit_code) == (None, 2, None, None)
    assert (jobs["34"].elapsed_s, jobs["34"].nodes) == (86401.0, "gpu[01-02]")
    assert judge(jobs["34"]).outcome == judge(jobs["35"]).outcome == Outcome.FAILED


def test_a_failed_job_whose_code_is_0_has_no_known_code() -> None:
    """FAILED with ExitCode 0:0: accounting records the state a moment before the code (CI
    read this between the two), and a job that failed before its script ran has none. Said
    as "exit 0", it would claim the script succeeded."""
    early = parse_sacct("6|FAILED|0:0|2024-03-01T10:00:00|00:00:00|vm|1|None\n")["6"]
    assert (early.state, early.exit_code, early.signal) == ("FAILED", None, None)
    assert judge(early).message == "Slurm FAILED"
    late = parse_sacct("6|FAILED|3:0|2024-03-01T10:00:00|00:00:00|vm|1|NonZeroExitCode\n")["6"]
    assert late.exit_code == 3 and "exit 3" in judge(late).message
    ok = parse_sacct("7|COMPLETED|0:0|2024-03-01T10:00:00|00:00:09|vm|1|None\n")["7"]
    assert ok.exit_code == 0  # a completed job's 0 is its code
    item = {"job_id": 6, "job_state": ["FAILED"], "exit_code": {"status": ["SUCCESS"],
            "return_code": {"set": True, "infinite": False, "number": 0}}}  # fmt: skip
    doc = json.dumps({"jobs": [item]})
    assert parse_squeue_json(doc)["6"].exit_code is None


# --- judge: every row of the mapping ------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "outcome"),
    [
        (SlurmJob("1", "PENDING", "Priority"), Outcome.WAITING),
        (SlurmJob("1", "PENDING", "Resources"), Outcome.WAITING),
        (SlurmJob("1", "PENDING", None), Outcome.WAITING),
        (SlurmJob("1", "PENDING", "AssocGrpGRES"), Outcome.WAITING),
        (SlurmJob("1", "PENDING", "QOSMaxJobsPerUserLimit"), Outcome.WAITING),
        (SlurmJob("1", "PENDING", "ReqNodeNotAvail, UnavailableNodes:n1"), Outcome.WAITING),
        (SlurmJob("1", "PENDING", "BeginTime", restarts=1), Outcome.RETRY),
        (SlurmJob("1", "PENDING", "BeginTime", flags=("REQUEUED",)), Outcome.RETRY),
        (SlurmJob("1", "REQUEUED"), Outcome.RETRY),
        (SlurmJob("1", "REQUEUE_FED"), Outcome.RETRY),
        (SlurmJob("1", "REQUEUE_HOLD", "JobHeldUser"), Outcome.RETRY),
        (SlurmJob("1", "RUNNING", restarts=1), Outcome.RETRY),  # Slurm's second start
        (SlurmJob("1", "COMPLETED", restarts=2, exit_code=0), Outcome.RETRY),
        *[(SlurmJob("1", s), Outcome.RUNNING) for s in
          ("CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING",
           "STAGE_OUT", "RESIZING")],
        (SlurmJob("1", "RUNNING", flags=("CONFIGURING",)), Outcome.RUNNING),
        (SlurmJob("1", "COMPLETED", flags=("COMPLETING",)), Outcome.RUNNING),
        (SlurmJob("1", "FAILED", flags=("STAGE_OUT",)), Outcome.RUNNING),
        (SlurmJob("1", "COMPLETED", exit_code=0), Outcome.ENDED),
        (SlurmJob("1", "FAILED", "NonZeroExitCode", exit_code=1), Outcome.ENDED),
        (SlurmJob("1", "CANCELLED"), Outcome.CANCELLED),
        (SlurmJob("1", "NODE_FAIL", "NodeDown"), Outcome.RETRY),
        (SlurmJob("1", "PREEMPTED"), Outcome.RETRY),
        (SlurmJob("1", "BOOT_FAIL"), Outcome.RETRY),
        (SlurmJob("1", "TIMEOUT"), Outcome.FAILED),
        (SlurmJob("1", "OUT_OF_MEMORY"), Outcome.FAILED),
        (SlurmJob("1", "DEADLINE"), Outcome.FAILED),
        (None, Outcome.GONE),
        (SlurmJob("1", "SOMETHING_NEW"), Outcome.WAITING),  # a newer Slurm's state: wait
    ],
)  # fmt: skip
def test_judge_rows(job: SlurmJob | None, outcome: Outcome) -> None:
    got = judge(job)
    assert got.outcome == outcome
    assert got.message.startswith("Slurm") and "\n" not in got.message


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (SlurmJob("1", "NODE_FAIL", "NodeDown"),
         "Slurm NODE_FAIL (NodeDown): the node failed; a fresh try follows"),
        (SlurmJob("1", "PREEMPTED"),
         "Slurm PREEMPTED: a higher-priority job took its nodes; a fresh try follows"),
        (SlurmJob("1", "BOOT_FAIL"), "Slurm BOOT_FAIL: its node failed to boot; a fresh try follows"),
        (SlurmJob("1", "TIMEOUT"), "Slurm TIMEOUT: the job reached its --time limit"),
        (SlurmJob("1", "OUT_OF_MEMORY"), "Slurm OUT_OF_MEMORY: the job ran out of memory"),
        (SlurmJob("1", "DEADLINE"), "Slurm DEADLINE: the job passed its --deadline"),
        (SlurmJob("1", "PENDING", "BeginTime", restarts=1),
         "Slurm requeued it (restart 1, BeginTime): a fresh try follows"),
        (SlurmJob("1", "PENDING", "Priority"),
         "Slurm PENDING (Priority): waiting behind higher-priority jobs"),
        (SlurmJob("1", "RUNNING", nodes="gpu01"), "Slurm RUNNING on gpu01"),
        (SlurmJob("1", "RUNNING", flags=("COMPLETING",), nodes="gpu01"),
         "Slurm COMPLETING on gpu01: waiting for its final state"),
        (SlurmJob("1", "FAILED", "NonZeroExitCode", exit_code=3),
         "Slurm FAILED (exit 3, NonZeroExitCode)"),
        (SlurmJob("1", "CANCELLED"), "Slurm CANCELLED"),
        (None, "Slurm no longer knows the job (purged, no accounting)"),
    ],
)  # fmt: skip
def test_judge_messages(job: SlurmJob | None, message: str) -> None:
    assert judge(job).message == message


@pytest.mark.parametrize(
    "reason",
    ["BadConstraints", "PartitionConfig", "PartitionTimeLimit", "InvalidAccount", "InvalidQOS",
     "QOSMaxGRESPerJob", "QOSMaxCpuPerJobLimit", "QOSMaxWallDurationPerJobLimit",
     "QOSMaxNodePerJobLimit", "AssocMaxCpuPerJobLimit", "AssocMaxNodePerJobLimit",
     "AssocMaxWallDurationPerJobLimit", "AssocMaxGRESPerJob", "QOSMinGRES",
     "DependencyNeverSatisfied", "AccountNotAllowed", "QOSNotAllowed", "MaxMemPerLimit"],
)  # fmt: skip
def test_reasons_that_never_clear_are_refused(reason: str) -> None:
    got = judge(SlurmJob("1", "PENDING", reason), partition_nodes=4)
    assert got.outcome == Outcome.REFUSED
    assert got.message.startswith(f"Slurm will never start it: {reason}")


def test_partition_node_limit_is_refused_only_beyond_the_partition() -> None:
    job = SlurmJob("1", "PENDING", "PartitionNodeLimit", node_count=2)
    assert judge(job, partition_nodes=1).message == (
        "Slurm will never start it: PartitionNodeLimit (asks 2 nodes; partition has 1)"
    )
    assert judge(job, partition_nodes=2).outcome == Outcome.WAITING  # nodes down or draining
    assert judge(job).outcome == Outcome.WAITING  # the partition's size is not known
    unknown = SlurmJob("1", "PENDING", "PartitionNodeLimit")
    assert judge(unknown, partition_nodes=1).outcome == Outcome.WAITING
    # A per-user or aggregate limit clears as other jobs end: never a refusal.
    for reason in ("QOSMaxGRESPerUser", "AssocGrpGRES", "QOSGrpNodeLimit", "Dependency"):
        assert judge(SlurmJob("1", "PENDING", reason)).outcome == Outcome.WAITING


# --- explain_reason -----------------------------------------------------------------------
