"""Reading the Slurm host check's output (``helm.remote.slurm_check``): text in, facts out.

Pure, so that every shape a Slurm version prints can be tested without that version: the
``sinfo -N -o '%N|%G|%T|%c|%m'`` node lines (GRES as ``gpu:2``, ``gpu:h100:8(S:0-1)``,
``gpu:a100:4,gpu:v100:2``, ``(null)``; states with Slurm's ``*~#`` suffixes), ``scontrol -o
show partition`` (``Key=value`` words), ``sacctmgr -n -P`` rows (``|``-separated, TRES limits
as ``cpu=4,gres/gpu=2,node=1``, times as ``D-HH:MM:SS``) and the ``srun`` probe's tagged
lines. A missing or garbled section gives None or an empty value, never an exception.
"""

from __future__ import annotations

import re
from typing import Any

from helm.remote.check import _parse_data, _parse_disk, _sections
from helm.remote.slurm_conf import SlurmSettings

COMMANDS = ("sbatch", "squeue", "sinfo", "scancel", "srun")  # what helm runs on the login node
# The sacctmgr columns the check asks for, in this order (``-n -P``: no header, ``|`` between).
ASSOC_FIELDS = (
    "Cluster,Account,Partition,QOS,DefaultQOS,MaxTRES,MaxTRESPerNode,MaxWall,MaxJobs,MaxSubmit"
)
QOS_FIELDS = "Name,MaxTRES,MaxTRESPerNode,MaxTRESPU,MaxWall,MaxJobsPU,MaxSubmitJobsPU"
_USABLE = {"idle", "mixed", "allocated", "completing", "planned", "reserved"}
_UNLIMITED = {"", "unlimited", "infinite", "none", "n/a", "partition_limit"}


def gres_gpus(gres: str) -> tuple[int, str | None]:
    """(GPU count, GPU type) of a GRES string: ``gpu:2`` -> (2, None), ``gpu:h100:8(S:0-1)``
    -> (8, "h100"), ``gpu:a100:4,gpu:v100:2`` -> (6, "a100"), ``(null)`` -> (0, None)."""
    total, kind = 0, None
    for item in re.split(r",(?![^(]*\))", gres):  # commas outside "(S:0,1)"
        parts = re.sub(r"\(.*?\)", "", item).strip().split(":")
        if parts[0] != "gpu":
            continue
        count = parts[-1] if len(parts) > 1 else "1"  # a bare "gpu" is one
        if count.isdigit():
            total += int(count)
        if len(parts) == 3 and kind is None:
            kind = parts[1]
    return total, kind


def slurm_duration(text: str | None) -> int | None:
    """Seconds of a Slurm time (``D-HH:MM:SS``, ``HH:MM:SS``, ``MM:SS``, ``MM``, ``D-HH``);
    None for UNLIMITED, INFINITE, empty or unreadable."""
    t = (text or "").strip()
    if t.lower() in _UNLIMITED:
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", t)
    if not m:
        return None
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        h, mi, s = a or 0, b or 0, c or 0
    elif c is not None:  # HH:MM:SS
        h, mi, s = a or 0, b or 0, c
    elif b is not None:  # MM:SS
        h, mi, s = 0, a or 0, b
    else:  # MM
        h, mi, s = 0, a or 0, 0
    return (((days or 0) * 24 + h) * 60 + mi) * 60 + s


def _tres_gpus(tres: str) -> int | None:
    """The GPU count of a TRES limit (``cpu=4,gres/gpu=2,node=1``), None when it sets none."""
    found = None
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "gres/gpu" and value.strip().isdigit():
            return int(value)
        if key.strip().startswith("gres/gpu:") and value.strip().isdigit():
            found = max(found or 0, int(value))  # a typed limit only: the most it allows
    return found


def _tres_value(tres: str, name: str) -> int | None:
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if key.strip() == name and value.strip().isdigit():
            return int(value)
    return None


def _int_or_none(text: str) -> int | None:
    m = re.match(r"\d+", text.strip())
    return int(m.group()) if m else None


def _kv(line: str) -> dict[str, str]:
    """``scontrol -o`` output (``Key=value Key=value ...``) as a dict."""
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def _parse_nodes(lines: list[str]) -> list[dict[str, Any]]:
    nodes: dict[str, dict[str, Any]] = {}
    for line in lines:
        parts = line.split("|")
        if len(parts) != 5 or not parts[0]:
            continue
        gpus, kind = gres_gpus(parts[1])
        state = parts[2].strip().lower()
        nodes.setdefault(
            parts[0],
            {
                "name": parts[0],
                "gres": parts[1],
                "gpus": gpus,
                "gpu_type": kind,
                "state": state,
                "up": state.rstrip("~#!%$@^-") in _USABLE,
                "cpus": _int_or_none(parts[3]),
                "memory_mb": _int_or_none(parts[4]),
            },
        )
    return list(nodes.values())


def _parse_partition(lines: list[str], name: str) -> tuple[bool | None, dict[str, Any] | None]:
    line = (lines or [""])[0]
    if line.startswith("PartitionName="):
        kv = _kv(line)
        max_nodes = kv.get("MaxNodes", "")
        info = {
            "state": kv.get("State"),
            "max_nodes": int(max_nodes) if max_nodes.isdigit() else None,
            "max_time_s": slurm_duration(kv.get("MaxTime")),
            "max_time": kv.get("MaxTime"),
            "total_nodes": _int_or_none(kv.get("TotalNodes", "")),
            "allow_accounts": kv.get("AllowAccounts"),
            "allow_qos": kv.get("AllowQos"),
        }
        return kv.get("PartitionName") == name, info
    if "not found" in line.lower():
        return False, None
    return None, None


def _pick_assoc(
    rows: list[list[str]], account: str | None, partition: str, cluster: str | None
) -> list[str] | None:
    """The association a job of this host is charged to: its account on this cluster, the
    partition's own row when there is one."""
    mine = [r for r in rows if not cluster or r[0].lower() == cluster.lower()]
    mine = [r for r in mine if account and r[1].lower() == account.lower()]
    for want in (partition.lower(), ""):
        for r in mine:
            if r[2].lower() == want:
                return r
    return None


def _parse_limits(sec: dict[str, list[str]], settings: SlurmSettings) -> dict[str, Any] | None:
    """Who the jobs are charged to and the caps they meet (None without accounting)."""
    if (sec.get("acct") or [""])[0] != "ok":
        return None
    config = {}
    for line in sec.get("config", []):
        key, _, value = line.partition("=")
        config[key.strip()] = value.strip()
    cluster = config.get("ClusterName")
    default_account = next((x for x in sec.get("defaccount", []) if x), None)
    rows = [r.split("|") for r in sec.get("assoc", [])]
    rows = [r for r in rows if len(r) == ASSOC_FIELDS.count(",") + 1]
    account = settings.account or default_account
    assoc = _pick_assoc(rows, account, settings.partition, cluster)
    qos_rows = {
        r.split("|")[0]: r.split("|")
        for r in sec.get("qos", [])
        if r.count("|") == QOS_FIELDS.count(",")
    }
    allowed = [q for q in (assoc[3].split(",") if assoc else []) if q]
    qos = settings.qos or (assoc[4] if assoc and assoc[4] else None)
    if qos is None and len(allowed) == 1:
        qos = allowed[0]
    caps: dict[str, dict[str, Any]] = {}

    def cap(key: str, value: int | None, by: str) -> None:
        if value is not None and (key not in caps or value < caps[key]["value"]):
            caps[key] = {"value": value, "by": by}

    if assoc:
        by = f"the association of account '{assoc[1]}'"
        cap("gpus_per_job", _tres_gpus(assoc[5]), by)
        cap("nodes_per_job", _tres_value(assoc[5], "node"), by)
        cap("gpus_per_node", _tres_gpus(assoc[6]), by)
        cap("wall_s", slurm_duration(assoc[7]), by)
        cap("running_jobs", _int_or_none(assoc[8]), by)
        cap("submitted_jobs", _int_or_none(assoc[9]), by)
    q = qos_rows.get(qos or "")
    if q:
        by = f"the QOS '{qos}'"
        cap("gpus_per_job", _tres_gpus(q[1]), by)
        cap("nodes_per_job", _tres_value(q[1], "node"), by)
        cap("gpus_per_node", _tres_gpus(q[2]), by)
        cap("gpus_per_user", _tres_gpus(q[3]), by)
        cap("wall_s", slurm_duration(q[4]), by)
        cap("running_jobs", _int_or_none(q[5]), by)
        cap("submitted_jobs", _int_or_none(q[6]), by)
    return {
        "user": (sec.get("user") or [None])[0],
        "cluster": cluster,
        "enforce": config.get("AccountingStorageEnforce"),
        "account": account,
        "accounts": sorted({r[1] for r in rows if not cluster or r[0].lower() == cluster.lower()}),
        "association": assoc is not None,
        "qos": qos,
        "qos_allowed": allowed,
        "qos_known": sorted(qos_rows),
        "caps": caps,
    }


def _parse_srun(lines: list[str]) -> dict[str, Any]:
    rc = next((int(x[3:]) for x in lines if re.fullmatch(r"rc=\d+", x)), None)
    tagged = {}
    for line in lines:
        if line.startswith("helm:"):
            key, _, value = line[5:].partition("=")
            tagged[key] = value
    other = [x for x in lines if not x.startswith(("helm:", "rc="))]
    errors = [x for x in other if "error" in x.lower() or "not found" in x.lower()]
    out: dict[str, Any] = {"node": tagged.get("node"), "python": tagged.get("python")}
    torch = tagged.get("torch", "").split()
    out["torch"] = torch[0] if len(torch) == 2 else None
    out["cuda"] = torch[1] == "True" if len(torch) == 2 else False
    out["torch_error"] = tagged.get("torch-error")
    if not lines:
        out["srun"] = "no answer"  # the script was cut off before the probe
    elif "skipped" in lines:
        out["srun"] = "not tried: the controller did not answer"
    elif "node" in tagged:
        out["srun"] = "ok"
        said = [x for x in other if not x.startswith("srun:")] or other  # the shell's words
        out["python_error"] = None if out["python"] else (said[-1] if said else f"exit {rc}")
        if out["python"] and not out["torch"] and not out["torch_error"]:
            out["torch_error"] = f"no answer: {said[-1] if said else f'exit {rc}'}"  # killed
    elif rc == 124 or any(
        s in x for x in other for s in ("nodes are busy", "Immediate execution impossible")
    ):
        out["srun"] = "timeout"
    elif rc == 127 and not other:
        out["srun"] = "srun not found"
    else:
        line = (errors or other or [f"srun exited {rc}"])[-1]
        out["srun"] = re.sub(r"^srun: (error: )?", "", line)
    return out


def parse_slurm_check(text: str, settings: SlurmSettings, *, has_data: bool) -> dict[str, Any]:
    """The check's result: the box check's keys where they apply, plus ``slurm``."""
    sec = _sections(text)
    missing = [c for c in sec.get("missing", []) if c in COMMANDS]
    partitions = [p.rstrip("*") for p in sec.get("partitions", []) if p]
    exists, part = _parse_partition(sec.get("partition", []), settings.partition)
    controller = (sec.get("controller") or [None])[0]
    if exists is None and "sinfo" not in missing and "partitions" in sec and not controller:
        exists = settings.partition in partitions
    nodes = _parse_nodes(sec.get("nodes", []))
    srun = _parse_srun(sec.get("srun", []))
    acct = (sec.get("acct") or ["error no answer"])[0]
    version = (sec.get("version") or [""])[0].split()
    result: dict[str, Any] = {
        "python": srun["python"],
        "torch": srun["torch"],
        "cuda": srun["cuda"],  # seen without a GPU allocation: not a statement about the GPUs
        "gpus": [],
        **_parse_disk(sec),
        "slurm": {
            "version": version[-1] if version and version[0].startswith("slurm") else None,
            "missing_commands": missing,
            "controller_error": controller,
            "partition": settings.partition,
            "partition_exists": exists,
            "partition_info": part,
            "partitions": partitions,
            "nodes": nodes,
            "partition_nodes": len(nodes) or (part or {}).get("total_nodes") or 0,
            "nodes_up": sum(1 for n in nodes if n["up"]),
            "max_gpus_per_node": max((n["gpus"] for n in nodes), default=0),
            "limits": _parse_limits(sec, settings),
            "accounting": "available" if acct == "ok" else acct.removeprefix("error ").strip(),
            "srun": srun["srun"],
            "srun_node": srun["node"],
            "python_path": (sec.get("pythonpath") or [None])[0],
            "python_error": srun.get("python_error"),
            "torch_error": srun["torch_error"],
        },
    }
    if has_data:
        result.update(_parse_data(sec))
    return result
