"""A Slurm host's settings, the shape of a request, the sbatch command line and the wrapper
lines that take torchrun's rendezvous from Slurm; and placement onto cluster queues."""

from __future__ import annotations

import shlex

import pytest

from helm.remote.scheduler import HostSlots, Pending, QueueSlots, place
from helm.remote.slurm import TIME_GRACE_S, sbatch_argv, slurm_command, submit_script
from helm.remote.slurm_conf import SlurmSettings, format_time, parse_time


def test_time_round_trips_through_slurms_format() -> None:
    assert parse_time("01:30:00") == 5400
    assert parse_time("2-00:00:05") == 2 * 86400 + 5
    assert format_time(61) == "00:02:00"  # whole minutes, rounded up: never cut short
    assert format_time(2 * 86400 + 60) == "2-00:01:00"
    for bad in ("90", "1:2", "00:61:00", "x"):
        with pytest.raises(ValueError, match="bad --time"):
            parse_time(bad)


def test_shape_fills_whole_nodes_and_says_why_not() -> None:
    s = SlurmSettings("gpu", gpus_per_node=8, max_nodes=2)
    assert s.shape(1) == (1, 1) and s.shape(8) == (1, 8) and s.shape(16) == (2, 8)
    assert s.max_gpus == 16
    with pytest.raises(ValueError, match="multiple of 8"):
        s.shape(12)
    with pytest.raises(ValueError, match="at most 2 node"):
        s.shape(32)
    assert SlurmSettings("cpu", gpus_per_node=0).shape(4) == (1, 0)  # a CPU partition


@pytest.mark.parametrize(
    ("field", "value"),
    [("partition", "gpu; rm -rf ~"), ("account", "a b"), ("qos", "$(id)")],
)
def test_names_that_reach_sbatch_must_be_plain_words(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"bad --{field}"):
        SlurmSettings(**{"partition": "gpu", field: value})


def test_settings_survive_the_host_row() -> None:
    s = SlurmSettings("gpu", account="lab", qos="high", sbatch_args=("--constraint=h100",))
    assert SlurmSettings.from_json(s.to_json()) == s
    assert SlurmSettings.from_json("{}") is None  # an SSH or local host


def test_sbatch_argv_asks_for_whole_nodes_and_a_limit_past_helms_own() -> None:
    s = SlurmSettings("gpu", account="lab", qos="high", gpus_per_node=8, max_nodes=2,
                      sbatch_args=("--constraint=h100",))  # fmt: skip
    argv = sbatch_argv(s, name="helm-x-3", rdir="/s/jobs/3", gpus=16, time_limit_s=600,
                       script="helm-run.sh")  # fmt: skip
    assert argv[:2] == ["sbatch", "--parsable"]
    assert "--nodes=2" in argv and "--gres=gpu:8" in argv and "--ntasks-per-node=1" in argv
    assert f"--time={format_time(600 + TIME_GRACE_S)}" in argv  # helm's kill comes first
    assert "--account=lab" in argv and "--qos=high" in argv and "--partition=gpu" in argv
    assert argv[-2:] == ["--constraint=h100", "/s/jobs/3/helm-run.sh"]
    fixed = SlurmSettings("gpu", time_limit_s=3600)
    one = sbatch_argv(fixed, name="n", rdir="/d", gpus=1, time_limit_s=60, script="r.sh")
    assert "--time=01:00:00" in one and "--gres=gpu:1" in one


def test_submit_script_quotes_every_word() -> None:
    rdir = "/shared/it's here/jobs/1"
    argv = ["sbatch", "--parsable", f"--chdir={rdir}", "--comment=$(touch /tmp/x)", "r.sh"]
    script = submit_script(rdir, argv, "helm-a-1")
    assert shlex.quote(f"--chdir={rdir}") in script
    assert "'--comment=$(touch /tmp/x)'" in script  # never expanded by the login shell


def test_multi_gpu_command_is_srun_and_torchrun_at_slurms_rendezvous() -> None:
    prelude, cmd = slurm_command("/v/bin/python", None, 2, 8, "train_gpt.py")
    assert cmd.startswith('srun --nodes="$HELM_NNODES" --ntasks-per-node=1')
    assert "--nproc_per_node=8" in cmd and "--rdzv_backend=c10d" in cmd
    assert '--rdzv_endpoint="$HELM_RDZV_HOST:$HELM_RDZV_PORT"' in cmd
    assert any("SLURM_JOB_NODELIST" in line for line in prelude)
    assert slurm_command("/v/bin/python", None, 1, 1, "train_gpt.py") == (
        [],
        "/v/bin/python train_gpt.py",
    )
    _, custom = slurm_command("py", "torchrun --nproc_per_node={nproc}", 1, 4, "t.py")
    assert custom.endswith("torchrun --nproc_per_node=4 t.py")


def _q(name: str = "slurm", free: int = 2, counts=(1, 2, 4, 8, 16), usable: bool = True):
    return QueueSlots(name, free, frozenset(counts), usable)


def test_a_box_that_fits_now_goes_first_then_the_cluster_up_to_its_bound() -> None:
    box = HostSlots("box", 2)
    jobs = [Pending(i, 1, queued_at=i) for i in range(1, 6)]
    plan = place(jobs, [box], queues=[_q(free=2)])
    where = {p.job_id: p.host for p in plan.placements}
    assert where == {1: "box", 2: "box", 3: "slurm", 4: "slurm"}  # job 5 waits in helm
    assert all(p.gpu_ids == () for p in plan.placements if p.host == "slurm")


def test_multi_node_jobs_only_go_where_they_fit() -> None:
    plan = place([Pending(1, 16)], [HostSlots("box", 8)], queues=[_q()])
    assert [(p.job_id, p.host) for p in plan.placements] == [(1, "slurm")]
    plan = place([Pending(1, 16)], [HostSlots("box", 8)], queues=[_q(counts=(1, 2, 4, 8))])
    assert plan.placements == [] and "16 GPUs" in plan.impossible[1]
    plan = place([Pending(1, 32, host="slurm")], [], queues=[_q()])
    assert "cannot run 32 GPUs" in plan.impossible[1]


def test_a_paused_or_full_cluster_takes_nothing_and_pins_wait_for_it() -> None:
    jobs = [Pending(1, 1, host="slurm"), Pending(2, 1)]
    assert place(jobs, [], queues=[_q(usable=False)]).placements == []
    plan = place(jobs, [], queues=[_q(free=0)])
    assert plan.placements == [] and not plan.impossible  # waiting, not impossible
    plan = place(jobs, [HostSlots("box", 1)], queues=[_q(free=0)])
    assert [(p.job_id, p.host) for p in plan.placements] == [(2, "box")]  # the pin waits
