"""``helm host check`` on a Slurm host: the parsing and the report, on text this cluster cannot
print.

``test_slurm_check.py`` runs the check script against the real test cluster; this file feeds
``parse_slurm_check`` text shaped as other Slurm versions and larger sites document it (other
GRES and state shapes, a partition with many nodes, association limits on a real site), so
those shapes are tested without a cluster that prints them. Each test says which shape it is.
"""

from __future__ import annotations

import pytest

from helm.remote.slurm_check import render_lines, slurm_problems
from helm.remote.slurm_check_parse import gres_gpus, parse_slurm_check, slurm_duration
from helm.remote.slurm_conf import SlurmSettings


def _text(**sections: list[str]) -> str:
    """Check output with the given sections (as the script prints them), and a work folder
    with room (df -P lines as this machine prints them)."""
    sections = {
        "diskdir": ["/shared/work"],
        "disk": ["/dev/vda 263174212 29000000 77403172 28% /shared"],
        "inodes": ["/dev/vda 16777216 517000 16260216 4% /shared"],
        "write": [],
        **sections,
    }
    return "".join(f"@@{k}\n" + "".join(f"{x}\n" for x in v) for k, v in sections.items())


@pytest.mark.parametrize(
    ("gres", "expected"),
    [
        ("gpu:2", (2, None)),
        ("gpu:h100:8(S:0-1)", (8, "h100")),  # 21.08+ print the sockets the GPUs hang off
        ("gpu:a100:4(S:0,1),gpu:v100:2(S:1)", (6, "a100")),  # a comma inside the sockets
        ("gpu:tesla:2,mps:200", (2, "tesla")),
        ("shard:8,gpu:4", (4, None)),
        ("gpu", (1, None)),
        ("(null)", (0, None)),
        ("", (0, None)),
    ],
)
def test_gres_shapes(gres: str, expected: tuple[int, str | None]) -> None:
    """GRES as sinfo's %G prints them across versions (sinfo(1), gres.conf(5))."""
    assert gres_gpus(gres) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2-00:00:00", 172800),
        ("1-12", 129600),
        ("04:00:00", 14400),
        ("30:00", 1800),
        ("45", 2700),
        ("UNLIMITED", None),
        ("INFINITE", None),
        ("", None),
        ("soon", None),
    ],
)
def test_slurm_durations(text: str, seconds: int | None) -> None:
    """Slurm's time formats (sbatch(1) --time, sacctmgr(1) MaxWall)."""
    assert slurm_duration(text) == seconds


def test_a_large_mixed_partition() -> None:
    """Node lines as sinfo prints them on a site with typed GRES and nodes in many states
    (down*: not responding, idle~: powered down, can boot); this cluster has one node."""
    settings = SlurmSettings(partition="gpu", gpus_per_node=8, max_nodes=5)
    nodes = [
        "g001|gpu:h100:8(S:0-1)|mixed|64|512000",
        "g002|gpu:h100:8(S:0-1)|idle|64|512000",
        "g003|gpu:h100:8(S:0-1)|down*|64|512000",
        "g004|gpu:h100:8(S:0-1)|idle~|64|512000",
        "g005|gpu:a100:4(S:0)|drained|32|256000",
        "slurm_load_node: garbage that is not a node line",
    ]
    check = parse_slurm_check(
        _text(missing=[], partitions=["gpu*", "cpu"], nodes=nodes, srun=["rc=0", "helm:node=g001",
              "helm:python=3.12.3", "helm:torch=2.5.1+cu124 True"]),
        settings,
        has_data=False,
    )  # fmt: skip
    s = check["slurm"]
    assert s["partition_exists"] is True and s["partitions"] == ["gpu", "cpu"]
    assert [(n["name"], n["gpus"], n["gpu_type"], n["up"]) for n in s["nodes"]] == [
        ("g001", 8, "h100", True),
        ("g002", 8, "h100", True),
        ("g003", 8, "h100", False),
        ("g004", 8, "h100", True),
        ("g005", 4, "a100", False),
    ]
    assert (s["partition_nodes"], s["nodes_up"], s["max_gpus_per_node"]) == (5, 3, 8)
    assert (check["torch"], check["cuda"]) == ("2.5.1+cu124", True)
    assert slurm_problems(check, settings) == [
        "only 4 nodes in partition gpu have 8 GPUs; this host allows jobs of up to 5 nodes"
        " (lower --max-nodes to 4)"
    ]
    lines = render_lines(check)
    assert (
        "nodes:     4 x gpu:h100:8(S:0-1) (8 GPUs h100; 64 CPUs, 512000 MB)"
        " [mixed 1, idle 1, down* 1, idle~ 1] g001,g002,g003,g004"
    ) in lines
    assert (
        "nodes:     1 x gpu:a100:4(S:0) (4 GPUs a100; 32 CPUs, 256000 MB) [drained] g005" in lines
    )


def test_site_association_and_qos_limits() -> None:
    """sacctmgr -n -P rows in the shape 22.05 prints them here (seen on the accounting lab),
    with what a site sets and this lab does not: two clusters, a partition's own association,
    typed TRES, per-node and node limits, day-long times."""
    settings = SlurmSettings(
        partition="gpu", account="lab", qos="high", gpus_per_node=8, max_nodes=2,
        time_limit_s=3 * 86400, max_submitted=10,
    )  # fmt: skip
    text = _text(
        missing=[],
        partitions=["gpu"],
        partition=["PartitionName=gpu AllowAccounts=ALL AllowQos=ALL MaxNodes=UNLIMITED"
                   " MaxTime=UNLIMITED State=UP TotalNodes=4"],
        nodes=[f"g00{i}|gpu:h100:8|idle|64|512000" for i in range(4)],
        config=["ClusterName             = alpha",
                "AccountingStorageEnforce = associations,limits,qos,safe"],
        user=["ada"],
        acct=["ok"],
        defaccount=["lab"],
        assoc=["beta|lab|gpu|normal|normal|gres/gpu=1|||||",
               "alpha|lab||normal,high|normal|cpu=128,gres/gpu=32||7-00:00:00|||",
               "alpha|lab|gpu|normal,high|normal|cpu=64,gres/gpu:h100=4,node=2||2-00:00:00|20|40",
               "alpha|other||normal|normal|||||"],
        qos=["normal||||||", "high|gres/gpu=16,node=1|gres/gpu=8|gres/gpu=32|1-00:00:00|4|8"],
        srun=["rc=0", "helm:node=g000", "helm:python=3.12.3", "helm:torch=2.5.1 False"],
    )  # fmt: skip
    check = parse_slurm_check(text, settings, has_data=False)
    limits = check["slurm"]["limits"]
    assert (limits["cluster"], limits["account"], limits["qos"]) == ("alpha", "lab", "high")
    assert limits["accounts"] == ["lab", "other"]  # the beta cluster's rows are not ours
    assert limits["qos_allowed"] == ["normal", "high"]  # the partition's own association
    assoc, qos = "the association of account 'lab'", "the QOS 'high'"
    assert limits["caps"] == {
        "gpus_per_job": {"value": 4, "by": assoc},  # typed: gres/gpu:h100=4
        "nodes_per_job": {"value": 1, "by": qos},
        "gpus_per_node": {"value": 8, "by": qos},
        "gpus_per_user": {"value": 32, "by": qos},
        "wall_s": {"value": 86400, "by": qos},
        "running_jobs": {"value": 4, "by": qos},
        "submitted_jobs": {"value": 8, "by": qos},
    }
    assert slurm_problems(check, settings) == [
        f"{assoc} allows 4 GPUs per job; jobs here ask up to 16 (--gpus-per-node x --max-nodes):"
        " lower them, or use another --qos",
        f"{qos} allows 1 node per job; this host allows 2 (lower --max-nodes)",
        f"{qos} allows jobs of at most 1-00:00:00; this host asks --time 3-00:00:00",
        f"{qos} allows 8 submitted jobs per user; this host keeps up to 10 submitted (lower"
        " --max-submitted)",
    ]
    assert (
        "limits:    account lab, QOS high: GPUs/job 4, GPUs/node 8, GPUs/user 32, nodes/job 1,"
        " running jobs 4, submitted jobs 8, time 1-00:00:00;"
        " enforced: associations,limits,qos,safe"
    ) in render_lines(check)
    # Without enforcement, Slurm takes any account and QOS: nothing to say about them.
    lax = text.replace("associations,limits,qos,safe", "none")
    stray = SlurmSettings(partition="gpu", account="nobody", qos="nope", gpus_per_node=8)
    assert slurm_problems(parse_slurm_check(lax, stray, has_data=False), stray) == []


@pytest.mark.parametrize(
    ("lines", "srun"),
    [
        # Older Slurm's words when --immediate expires (srun(1) of 17.x-20.x).
        (["rc=1", "srun: error: Unable to allocate resources: Immediate execution impossible,"
          " insufficient priority"], "timeout"),
        (["rc=124", "srun: job 12 queued and waiting for resources"], "timeout"),  # timeout(1)
        (["rc=1", "srun: error: Unable to allocate resources: Job violates accounting/QOS policy"
          " (job submit limit, user's size and/or time limits)"],
         "Unable to allocate resources: Job violates accounting/QOS policy (job submit limit,"
         " user's size and/or time limits)"),
    ],
)  # fmt: skip
def test_srun_answers_of_other_versions(lines: list[str], srun: str) -> None:
    settings = SlurmSettings(partition="gpu", gpus_per_node=8)
    text = _text(missing=[], partitions=["gpu"], nodes=["g1|gpu:8|idle|64|512000"], srun=lines)
    check = parse_slurm_check(text, settings, has_data=False)
    assert check["slurm"]["srun"] == srun
    expected = [] if srun == "timeout" else [f"srun on partition gpu failed: {srun}"]
    assert slurm_problems(check, settings) == expected


def test_empty_output_claims_nothing() -> None:
    """A script cut off before any section: no facts, and no made-up problems about them."""
    settings = SlurmSettings(partition="gpu")
    check = parse_slurm_check("", settings, has_data=True)
    s = check["slurm"]
    assert (s["partition_exists"], s["limits"], s["nodes"], check["python"]) == (
        None, None, [], None,
    )  # fmt: skip
    assert check["data_ok"] is False and check["disk_free_gb"] is None
    problems = slurm_problems(check, settings)
    assert s["srun"] == "no answer"
    assert [p.split(" (")[0] for p in problems] == [
        "dataset or tokenizer missing under --data",
        "free disk space unknown",
    ]
