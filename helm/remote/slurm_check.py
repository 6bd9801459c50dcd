"""``helm host check`` for a Slurm host: what the cluster will run for helm, in one round trip.

A box's check looks at the box; a Slurm host has no box of its own, so this one asks the
login node (or this machine) what the scheduler will give: whether the Slurm commands are
there, whether the partition exists, its nodes and their GPUs (GRES), the account's and
QOS's limits where the cluster keeps accounting, and, through one short ``srun``, the
Python and torch a compute node really has. Data, tokenizer and free disk are measured on
the login node with the box check's own probes: the work folder and ``--data`` must be on
a filesystem the compute nodes share, so what the login node sees is what a job sees.

As in ``helm.remote.check``, one script prints tagged ``@@section`` lines and parsing never
depends on a tool being present: a login node without ``sacctmgr`` (or a cluster without
accounting) gives ``limits: None``, one without ``srun`` gives no compute-node facts. The
``srun`` asks for no GPU (a GPU may not be free for minutes on a busy cluster) and gives up
after ``srun_wait_s`` (``--immediate``), so a full partition says so instead of hanging; that
is shown, not counted as a problem, since it is not something the user's settings got wrong.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

from helm.remote.backend import Box
from helm.remote.check import (
    MIN_FREE_GB,
    _data_probe,
    _data_problems,
    _disk_probe,
    _disk_problems,
)
from helm.remote.launch import box_word
from helm.remote.slurm_check_parse import ASSOC_FIELDS, COMMANDS, QOS_FIELDS, parse_slurm_check
from helm.remote.slurm_conf import SlurmSettings, format_time

# Run on the compute node: one tagged line each, whatever fails (helm reads only these).
_PROBE = """import sys
print("helm:python=" + sys.version.split()[0])
try:
    import torch
    print("helm:torch=%s %s" % (torch.__version__, torch.cuda.is_available()))
except Exception as e:
    print("helm:torch-error=%s: %s" % (type(e).__name__, e))
"""


def _srun_argv(settings: SlurmSettings, wait_s: int) -> list[str]:
    argv = ["srun", "-J", "helm-check", "-p", settings.partition]
    if settings.account:
        argv += ["--account", settings.account]
    if settings.qos:
        argv += ["--qos", settings.qos]
    return [*argv, "-N1", "-n1", f"--immediate={int(wait_s)}", "-t", "2"]


def slurm_check_script(
    settings: SlurmSettings,
    *,
    python: str,
    workdir: str,
    data_dir: str | None,
    srun_wait_s: int = 30,
) -> str:
    """The script ``check_slurm`` runs on the login node (sections read by ``parse_slurm_check``)."""
    p = shlex.quote(settings.partition)
    inner = f'echo "helm:node=$(uname -n)"; exec {box_word(python)} -c {shlex.quote(_PROBE)}'
    srun = " ".join(shlex.quote(w) for w in _srun_argv(settings, srun_wait_s))
    bound = int(srun_wait_s) + 150  # --immediate, then -t 2 minutes, then Slurm's kill
    lines = [
        'have() { command -v "$1" >/dev/null 2>&1; }',
        "echo @@missing",
        f'for c in {" ".join(COMMANDS)}; do have "$c" || echo "$c"; done',
        "echo @@version",
        "have sinfo && sinfo --version 2>&1 | head -n 1",
        # The first question to the controller; when it does not answer (each command then
        # retries for ~20 s), the others are not asked.
        "ctl=1",
        "echo @@partitions",
        "if have sinfo; then",
        "  if out=$(sinfo -h -o %P 2>&1); then printf '%s\\n' \"$out\";",
        "  else ctl=0; echo @@controller; printf '%s\\n' \"$out\" | grep . | head -n 1; fi",
        "fi",
        'ask() { [ $ctl = 1 ] && have "$1"; }',
        "echo @@config",
        "ask scontrol && scontrol show config 2>/dev/null"
        " | grep -E '^(ClusterName|AccountingStorageEnforce|AccountingStorageType) '",
        "echo @@partition",
        f"ask scontrol && scontrol -o show partition {p} 2>&1 | head -n 1",
        "echo @@nodes",
        f"ask sinfo && sinfo -p {p} -N -h -o '%N|%G|%T|%c|%m' 2>/dev/null",
        'u="${USER:-$(id -un)}"',
        'echo @@user; echo "$u"',
        "echo @@acct",
        "if ! have sacctmgr; then echo 'error sacctmgr not found';"
        ' elif out=$(sacctmgr -n -P show user "$u" format=DefaultAccount 2>&1); then',
        '  echo ok; echo @@defaccount; printf "%s\\n" "$out"',
        f'  echo @@assoc; sacctmgr -n -P show assoc user="$u" format={ASSOC_FIELDS} 2>/dev/null',
        f"  echo @@qos; sacctmgr -n -P show qos format={QOS_FIELDS} 2>/dev/null",
        'else printf "error %s\\n" "$(printf "%s\\n" "$out" | grep . | head -n 1)"; fi',
        f"echo @@pythonpath; echo {box_word(python)}",
        "echo @@srun",
        "if [ $ctl = 0 ]; then echo skipped; elif have srun; then",
        f"  if have timeout; then to='timeout -k 5 {bound}'; else to=; fi",
        f"  out=$($to {srun} /bin/sh -c {shlex.quote(inner)} 2>&1); rc=$?",
        '  echo "rc=$rc"; printf "%s\\n" "$out" | tail -n 20',
        "else echo rc=127; fi",
        f"mkdir -p {box_word(workdir)} 2>/dev/null",
        *_disk_probe(workdir),
    ]
    if data_dir:
        lines += _data_probe(data_dir)
    return "\n".join(lines) + "\n"


# -- problems --------------------------------------------------------------------------------


def _n(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def slurm_problems(check: dict[str, Any], settings: SlurmSettings) -> list[str]:
    """What would stop this host's jobs from running, one line each with its fix."""
    s = check.get("slurm") or {}
    out: list[str] = []
    missing = s.get("missing_commands") or []
    if missing:
        out.append(
            f"{', '.join(missing)} not found on the login node (install Slurm's client commands"
            " there, or put them on the PATH a non-interactive shell gets)"
        )
    if s.get("controller_error"):
        out.append(
            f"Slurm's controller did not answer the login node ({s['controller_error']}):"
            " is slurmctld up, and does the login node's slurm.conf (SLURM_CONF) name it?"
        )
    if s.get("partition_exists") is False:
        have = ", ".join(s.get("partitions") or []) or "none visible"
        out.append(
            f"partition '{settings.partition}' not found (the cluster has: {have}): fix --partition"
        )
    elif s.get("partition_exists"):
        out += _partition_problems(s, settings)
        out += _allowed_problems(s, settings)
    out += _limit_problems(s.get("limits"), settings)
    out += _compute_problems(s, settings, explained=bool(out))
    return out + _data_problems(check) + _disk_problems(check)


def _partition_problems(s: dict[str, Any], settings: SlurmSettings) -> list[str]:
    p, per, want_nodes = settings.partition, settings.gpus_per_node, settings.max_nodes
    info = s.get("partition_info") or {}
    nodes = s.get("nodes") or []
    out = []
    if info.get("state") and info["state"] != "UP":
        out.append(f"partition {p} is {info['state']}: Slurm starts no jobs there until it is UP")
    if not nodes and not s.get("partition_nodes"):
        return [*out, f"partition {p} has no nodes"]
    most = s.get("max_gpus_per_node") or 0
    if per > most:
        have = "no GPUs in their GRES" if most == 0 else f"{_n(most, 'GPU')}"
        if most and len({n["gpus"] for n in nodes}) > 1:
            have = f"at most {_n(most, 'GPU')}"
        fix = "--gpus-per-node 0 for a CPU partition" if most == 0 else f"--gpus-per-node {most}"
        out.append(
            f"nodes in partition {p} have {have}; this host declares --gpus-per-node {per}"
            f" (use {fix})"
        )
    total = s.get("partition_nodes") or len(nodes)
    fit = sum(1 for n in nodes if n["gpus"] >= per) if nodes else total
    if want_nodes > total:
        out.append(
            f"partition {p} has {_n(total, 'node')}; this host allows jobs of up to"
            f" {want_nodes} nodes (lower --max-nodes to {total})"
        )
    elif per <= most and fit < want_nodes:
        out.append(
            f"only {_n(fit, 'node')} in partition {p} have {per} GPUs; this host allows jobs of"
            f" up to {want_nodes} nodes (lower --max-nodes to {max(fit, 1)})"
        )
    if info.get("max_nodes") is not None and want_nodes > info["max_nodes"]:
        out.append(
            f"partition {p} allows {_n(info['max_nodes'], 'node')} per job (MaxNodes); this host"
            f" allows {want_nodes} (lower --max-nodes)"
        )
    limit = settings.time_limit_s
    if info.get("max_time_s") and limit and limit > info["max_time_s"]:
        out.append(
            f"partition {p} allows jobs of at most {format_time(info['max_time_s'])}; this host"
            f" asks --time {format_time(limit)}"
        )
    return out


def _allowed_problems(s: dict[str, Any], settings: SlurmSettings) -> list[str]:
    """The partition's own AllowAccounts / AllowQos lists (``scontrol show partition``)."""
    info, limits = s.get("partition_info") or {}, s.get("limits") or {}
    out = []
    for what, mine, allowed in (
        ("account", settings.account or limits.get("account"), info.get("allow_accounts")),
        ("QOS", settings.qos or limits.get("qos"), info.get("allow_qos")),
    ):
        names = [] if allowed in (None, "ALL") else allowed.split(",")
        if mine and names and mine not in names:
            out.append(
                f"partition {settings.partition} only takes {what} {', '.join(names)}, not"
                f" '{mine}' (fix --{what.lower()})"
            )
    return out


def _enforced(limits: dict[str, Any], *words: str) -> bool:
    """Whether AccountingStorageEnforce has one of ``words`` (unknown: assume it does)."""
    enforce = limits.get("enforce")
    return enforce is None or any(w in enforce.lower() for w in words)


def _limit_problems(limits: dict[str, Any] | None, settings: SlurmSettings) -> list[str]:
    if not limits:
        return []
    out = []
    accounts = limits.get("accounts") or []
    if _enforced(limits, "associations", "limits", "qos", "safe"):
        if settings.account and settings.account.lower() not in accounts:
            yours = ", ".join(accounts) or "none"
            out.append(
                f"account '{settings.account}' is not one of yours on this cluster (yours:"
                f" {yours}): fix --account"
            )
        elif not accounts:
            out.append(
                f"user {limits.get('user')} has no Slurm account on this cluster: ask its"
                " admins to add one, or give --account"
            )
        known, allowed = limits.get("qos_known") or [], limits.get("qos_allowed") or []
        qos = (settings.qos or "").lower()  # Slurm's database keeps names in lower case
        if qos and known and qos not in known:
            out.append(
                f"QOS '{settings.qos}' does not exist (the cluster has: {', '.join(known)}):"
                " fix --qos"
            )
        elif qos and allowed and qos not in allowed:
            out.append(
                f"QOS '{settings.qos}' is not allowed for account '{limits.get('account')}'"
                f" (allowed: {', '.join(allowed)}): fix --qos"
            )
    if out or not _enforced(limits, "limits", "safe"):
        return out
    caps = limits.get("caps") or {}

    def over(key: str, asked: int | None) -> dict[str, Any] | None:
        c = caps.get(key)
        return c if c is not None and asked is not None and asked > c["value"] else None

    if c := over("gpus_per_job", settings.max_gpus):
        out.append(
            f"{c['by']} allows {_n(c['value'], 'GPU')} per job; jobs here ask up to"
            f" {settings.max_gpus} (--gpus-per-node x --max-nodes): lower them, or use another"
            " --qos"
        )
    if c := over("gpus_per_node", settings.gpus_per_node):
        out.append(
            f"{c['by']} allows {_n(c['value'], 'GPU')} per node; this host declares"
            f" --gpus-per-node {settings.gpus_per_node}"
        )
    if c := over("nodes_per_job", settings.max_nodes):
        out.append(
            f"{c['by']} allows {_n(c['value'], 'node')} per job; this host allows"
            f" {settings.max_nodes} (lower --max-nodes)"
        )
    if c := over("wall_s", settings.time_limit_s):
        out.append(
            f"{c['by']} allows jobs of at most {format_time(c['value'])}; this host asks"
            f" --time {format_time(settings.time_limit_s or 0)}"
        )
    if c := over("submitted_jobs", settings.max_submitted):
        out.append(
            f"{c['by']} allows {_n(c['value'], 'submitted job')} per user; this host keeps up"
            f" to {settings.max_submitted} submitted (lower --max-submitted)"
        )
    return out


def _compute_problems(s: dict[str, Any], settings: SlurmSettings, *, explained: bool) -> list[str]:
    srun = s.get("srun")
    python = s.get("python_path") or "python"
    if srun == "ok":
        if s.get("python_error"):
            return [
                f"{python} does not run on a compute node ({s['python_error']}): give --python"
                " an interpreter the compute nodes have"
            ]
        if s.get("torch_error"):
            return [
                f"torch not importable on a compute node with {python} ({s['torch_error']}):"
                " install torch there, or point --python at an environment that has it"
            ]
        return []
    if srun in ("timeout", "no answer") or explained:
        return []  # a busy partition is not a setting to fix; an explained refusal is said
    return [f"srun on partition {settings.partition} failed: {srun}"]


async def check_slurm(
    box: Box,
    settings: SlurmSettings,
    *,
    python: str,
    workdir: str,
    data_dir: str | None,
    srun_wait_s: int = 30,
) -> dict:
    """Run the check on the login node; the result always has ``reachable`` and
    ``checked_at`` (``BoxError`` when the login node cannot be reached, as ``check_box``)."""
    started = time.time()
    script = slurm_check_script(
        settings, python=python, workdir=workdir, data_dir=data_dir, srun_wait_s=srun_wait_s
    )
    res = await box.run(script, timeout=srun_wait_s + 240)
    check = parse_slurm_check(res.stdout, settings, has_data=bool(data_dir))
    check["reachable"] = True
    check["checked_at"] = started
    check["problems"] = slurm_problems(check, settings)
    return check


# -- what `helm host check` prints -----------------------------------------------------------


def render_lines(check: dict[str, Any]) -> list[str]:
    """The human lines of a Slurm host's check (the CLI adds the ``problem:`` lines)."""
    s = check.get("slurm") or {}
    missing = s.get("missing_commands") or []
    found = [c for c in COMMANDS if c not in missing]
    slurm = f"slurm:     {s.get('version') or 'version unknown'}"
    slurm += f"; {', '.join(found) or 'no commands'} found"
    if missing:
        slurm += f"; MISSING: {', '.join(missing)}"
    lines = [slurm, _partition_line(s), *_node_lines(s), _limits_line(s), _compute_line(check)]
    data = check.get("data")
    if data is not None:
        lines.append(
            f"data:      {data['train_shards']} train / {data['val_shards']} val shards,"
            f" tokenizer {'present' if data['tokenizer'] else 'MISSING'} (login node)"
        )
    lines.append(f"disk:      {_disk_line(check)}")
    return lines


def _partition_line(s: dict[str, Any]) -> str:
    p = s.get("partition")
    if s.get("controller_error"):
        return f"partition: {p} UNKNOWN (the controller did not answer)"
    if s.get("partition_exists") is False:
        return f"partition: {p} NOT FOUND (the cluster has: {', '.join(s.get('partitions') or [])})"
    info = s.get("partition_info") or {}
    bits = [info.get("state") or "state unknown"]
    if info:
        bits.append(
            f"max {info['max_nodes']} nodes/job" if info.get("max_nodes") else "any nodes/job"
        )
        bits.append(f"max time {info.get('max_time') or '?'}")
    up, total = s.get("nodes_up", 0), s.get("partition_nodes", 0)
    return f"partition: {p} ({', '.join(bits)}); {_n(total, 'node')}, {up} up"


def _node_lines(s: dict[str, Any]) -> list[str]:
    """Nodes grouped by GRES (a cluster has hundreds): count, GRES, states, names if few."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for n in s.get("nodes") or []:
        groups.setdefault(n["gres"], []).append(n)
    out = []
    for gres, nodes in groups.items():
        states: dict[str, int] = {}
        for n in nodes:
            states[n["state"]] = states.get(n["state"], 0) + 1
        st = ", ".join(f"{k} {v}" if len(nodes) > 1 else k for k, v in states.items())
        names = " " + ",".join(n["name"] for n in nodes) if len(nodes) <= 4 else ""
        first = nodes[0]
        size = f"{first['cpus']} CPUs, {first['memory_mb']} MB"
        gpus = _n(first["gpus"], "GPU") + (f" {first['gpu_type']}" if first["gpu_type"] else "")
        out.append(f"nodes:     {len(nodes)} x {gres} ({gpus}; {size}) [{st}]{names}")
    return out or ["nodes:     none listed"]


def _limits_line(s: dict[str, Any]) -> str:
    limits = s.get("limits")
    if limits is None:
        return f"limits:    accounting not available ({s.get('accounting')})"
    who = f"account {limits.get('account') or '?'}, QOS {limits.get('qos') or 'default'}"
    words = {
        "gpus_per_job": "GPUs/job",
        "gpus_per_node": "GPUs/node",
        "gpus_per_user": "GPUs/user",
        "nodes_per_job": "nodes/job",
        "running_jobs": "running jobs",
        "submitted_jobs": "submitted jobs",
    }
    caps = limits.get("caps") or {}
    bits = [f"{words[k]} {caps[k]['value']}" for k in words if k in caps]
    if "wall_s" in caps:
        bits.append(f"time {format_time(caps['wall_s']['value'])}")
    enforce = limits.get("enforce")
    tail = f"; enforced: {enforce}" if enforce else ""
    return f"limits:    {who}: {', '.join(bits) or 'no caps set'}{tail}"


def _compute_line(check: dict[str, Any]) -> str:
    s = check.get("slurm") or {}
    srun = s.get("srun")
    if srun == "ok":
        torch = check.get("torch") or "NOT IMPORTABLE"
        python = check.get("python") or f"NOT RUNNING ({s.get('python_error')})"
        return f"compute:   python {python}, torch {torch} on {s.get('srun_node')} (via srun)"
    if srun == "timeout":
        return "compute:   no node free in time for the srun probe: python and torch unchecked"
    return f"compute:   srun failed ({srun}): python and torch unchecked"


def _disk_line(check: dict[str, Any]) -> str:
    free, where = check.get("disk_free_gb"), check.get("disk_dir") or "the work folder"
    if free is None:
        return f"free space UNKNOWN in {where}"
    line = f"{free:.1f} GB free in {where} (login node; shared with the compute nodes)"
    if free < MIN_FREE_GB:
        line += f"  LOW (helm wants at least {MIN_FREE_GB:g} GB)"
    if check.get("write_error"):
        line += f"  NOT WRITABLE: {check['write_error']}"
    return line
