"""``helm host check``: what a box can do right now, gathered by one shell script.

The scheduler must not place a job on a box that lacks the dataset, the right torch or free
disk, and the operator wants to see GPU memory, utilisation and temperature without logging
in. One script prints tagged sections (``@@gpus`` ...) so the whole check is one round trip,
and parsing never depends on the order or presence of any tool (a CPU box has no nvidia-smi).

Disk: free space and inodes are measured on the work folder (or, if it cannot be made, on the
nearest folder above it that exists), and a 4 KiB test file is written there and removed. A
check flags as a problem: a write that fails (its error in the kernel's words, e.g. "No space
left on device", "Read-only file system"), no free-space figure at all, fewer than
``MIN_FREE_GB`` GB free (a job folder holds the code, logs, the artifact and the campaign's
compile caches: well under 1 GB, and training that runs out of disk loses hours), and no free
inodes. ``disk_problem`` runs the same probe when a job cannot be staged or ends badly, so the
job says why in the kernel's words instead of "Failure" or "lost".

Verdicts: ``verdicts`` turns a check into what an operator acts on, each problem with its fix
(most often a ``helm host setup`` line). A *blocker* stops jobs from running well there (the
check's ``problems`` are exactly the blockers, and ``host check`` exits 1); a *warning* is
worth knowing but no reason to stop (a CPU-only box runs tiny smoke jobs fine).
"""

from __future__ import annotations

import time
from typing import Any

from golf_task.variants import DEFAULT_VARIANT
from helm.remote.backend import Box
from helm.remote.launch import DATASET_SUBDIR, TOKENIZER_SUBPATH, box_word

_GPU_QUERY = "index,name,memory.total,memory.used,utilization.gpu,temperature.gpu"
# Less free space than this under the work folder is a blocker. A job folder holds code, log
# and artifact (well under 1 GB), but a box runs up to 8 jobs at once, a full-precision
# checkpoint is a few hundred MB, and the campaign's compile caches grow to a few GB: under
# 5 GB a busy box fills up within a day, and training that runs out of disk loses hours.
MIN_FREE_GB = 5.0
BLOCKER, WARNING = "blocker", "warning"
CPU_ONLY = "torch will be the CPU build; training runs on CPU, only for tiny smoke runs"
FULL_KB = 1024  # under 1 MiB free: the disk is full, whatever a small test write says


def _disk_probe(path: str) -> list[str]:
    """Script lines: the nearest existing folder of ``path``, its df (space, inodes) and
    the error of a 4 KiB test write there (nothing when it worked)."""
    return [
        f"p={box_word(path)}",
        'while [ ! -d "$p" ]; do q=$(dirname "$p"); [ "$q" = "$p" ] && break; p=$q; done',
        'echo @@diskdir; echo "$p"',
        'echo @@disk; df -Pk "$p" 2>/dev/null | tail -n 1',
        'echo @@inodes; df -Pi "$p" 2>/dev/null | tail -n 1',
        'echo @@write; t="$p/.helm-write-test.$$"',
        'if ! out=$(dd if=/dev/zero of="$t" bs=4096 count=1 conv=fsync 2>&1); then'
        ' printf "%s\\n" "$out" | grep -v -e records -e copied | head -n 1; fi; rm -f "$t"',
    ]


def check_script(python: str, workdir: str, data_dir: str | None) -> str:
    py = box_word(python)
    wd = box_word(workdir)
    lines = [
        "echo @@python",
        f"{py} -c 'import sys; print(sys.version.split()[0])' 2>&1 | tail -n 1",
        "echo @@torch",
        f"{py} -c 'import torch; print(torch.__version__, torch.cuda.is_available())' 2>&1"
        " | tail -n 1",
        "echo @@gpus",
        "if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi"
        f" --query-gpu={_GPU_QUERY} --format=csv,noheader,nounits 2>&1; fi",
        "echo @@smi",
        "command -v nvidia-smi || echo missing",
        f"mkdir -p {wd} 2>/dev/null",
        *_disk_probe(workdir),
        "echo @@setsid",
        "command -v setsid || echo missing",
    ]
    if data_dir:
        lines += _data_probe(data_dir)
    return "\n".join(lines) + "\n"


def _data_probe(data_dir: str) -> list[str]:
    """Script lines: train and val shard counts and whether the tokenizer is there
    (``@@data``; shared with the Slurm host check, which runs them on the login node)."""
    ds = box_word(f"{data_dir.rstrip('/')}/{DATASET_SUBDIR}")
    tok = box_word(f"{data_dir.rstrip('/')}/{TOKENIZER_SUBPATH}")
    return [
        "echo @@data",
        f"ls {ds} 2>/dev/null | grep -c '^fineweb_train_' ; "
        f"ls {ds} 2>/dev/null | grep -c '^fineweb_val_' ; "
        f"[ -f {tok} ] && echo yes || echo no",
    ]


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = out.setdefault(line[2:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.strip())
    return out


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _field(sec: dict[str, list[str]], name: str, index: int) -> int | None:
    """A number of a df line (``df -P``: available KiB or free inodes are field 3)."""
    parts = (sec.get(name) or [""])[-1].split()
    return int(parts[index]) if len(parts) > index and parts[index].isdigit() else None


def _parse_disk(sec: dict[str, list[str]]) -> dict[str, Any]:
    free_kb = _field(sec, "disk", 3)
    inodes_total = _field(sec, "inodes", 1)
    return {
        "disk_dir": (sec.get("diskdir") or [None])[-1],
        "disk_free_kb": free_kb,
        "disk_free_gb": None if free_kb is None else round(free_kb / 1024**2, 1),
        # some filesystems (btrfs) have no inode limit: they report 0 of 0
        "inodes_free": _field(sec, "inodes", 3) if inodes_total else None,
        "write_error": _kernel_words((sec.get("write") or [""])[-1]) or None,
    }


def parse_check(text: str, *, has_data: bool = False) -> dict[str, Any]:
    sec = _sections(text)
    result: dict[str, Any] = {}
    py = (sec.get("python") or [""])[-1]
    result["python"] = py if py and py[0].isdigit() else None
    torch_line = (sec.get("torch") or [""])[-1].split()
    if len(torch_line) == 2 and torch_line[1] in ("True", "False"):
        result["torch"] = torch_line[0]
        result["cuda"] = torch_line[1] == "True"
    else:
        result["torch"] = None
        result["cuda"] = False
    gpus = []
    for line in sec.get("gpus", []):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 6 or not parts[0].isdigit():
            continue
        gpus.append(
            {
                "index": int(parts[0]),
                "name": parts[1],
                "memory_total_mib": _num(parts[2]),
                "memory_used_mib": _num(parts[3]),
                "utilization_pct": _num(parts[4]),
                "temperature_c": _num(parts[5]),
            }
        )
    result["gpus"] = gpus
    smi = sec.get("smi")
    result["nvidia_smi"] = None if smi is None else (bool(smi) and smi[-1] != "missing")
    result.update(_parse_disk(sec))
    result["setsid"] = bool(sec.get("setsid")) and sec["setsid"][-1] != "missing"
    if has_data:
        result.update(_parse_data(sec))
    return result


def _parse_data(sec: dict[str, list[str]]) -> dict[str, Any]:
    """``data`` (shard counts, tokenizer) and ``data_ok`` from the ``@@data`` section."""
    data = sec.get("data", [])
    train = int(data[0]) if len(data) > 0 and data[0].isdigit() else 0
    val = int(data[1]) if len(data) > 1 and data[1].isdigit() else 0
    tok = len(data) > 2 and data[2] == "yes"
    return {
        "data": {"train_shards": train, "val_shards": val, "tokenizer": tok},
        "data_ok": train > 0 and val > 0 and tok,
    }


def problems(check: dict[str, Any]) -> list[str]:
    """What would stop a job from running, in words (the blockers of ``verdicts``)."""
    return [v["problem"] for v in verdicts(check) if v["level"] == BLOCKER]


def verdicts(
    check: dict[str, Any], *, host: str = "NAME", declared_gpus: int | None = None
) -> list[dict[str, str]]:
    """Each problem of a box's check with its fix: ``{"level", "problem", "fix"}``.

    ``declared_gpus`` is what the host row schedules on; with nvidia-smi present, fewer GPUs
    than that (or torch without CUDA) is a blocker. Without nvidia-smi the box is CPU-only:
    a warning that says what that means, not a blocker (tiny jobs and tests run there).
    """
    out: list[dict[str, str]] = []
    setup = f"helm host setup {host}"

    def add(level: str, problem: str, fix: str) -> None:
        out.append({"level": level, "problem": problem, "fix": fix})

    if check.get("python") is None:
        add(BLOCKER, "python not found", f"{setup} (a venv in the work folder, used from then on)")
    elif check.get("torch") is None:
        add(BLOCKER, "torch not importable", f"{setup} (installs the torch the driver supports)")
    if not check.get("setsid", True):
        add(BLOCKER, "setsid missing", "install util-linux on the box (jobs start under setsid)")
    out += _gpu_verdicts(check, setup, host, declared_gpus)
    for problem in _data_problems(check):
        add(BLOCKER, problem, f"{setup} --data {DEFAULT_VARIANT}")
    for problem, fix in _disk_findings(check):
        add(BLOCKER, problem, fix)
    return out


def _gpu_verdicts(
    check: dict[str, Any], setup: str, host: str, declared: int | None
) -> list[dict[str, str]]:
    gpus = check.get("gpus") or []
    if check.get("nvidia_smi") is False:
        slots = f" (its {declared} GPUs are job slots)" if declared else ""
        return [
            {"level": WARNING, "problem": f"no nvidia-smi: CPU-only box{slots}", "fix": CPU_ONLY}
        ]
    out = []
    if gpus and check.get("torch") and check.get("cuda") is False:
        out.append(
            {
                "level": BLOCKER,
                "problem": f"torch {check['torch']} has no CUDA on a box with {len(gpus)} GPUs",
                "fix": f"{setup} --torch auto (the CUDA build the driver supports)",
            }
        )
    if check.get("nvidia_smi") and declared and len(gpus) < declared:
        out.append(
            {
                "level": BLOCKER,
                "problem": f"{len(gpus)} GPUs found, the host is declared with {declared}",
                "fix": f"check the driver (nvidia-smi), or declare what is there: helm host rm "
                f"{host}; helm host add {host} ... --gpus {max(len(gpus), 1)}",
            }
        )
    return out


def _data_problems(check: dict[str, Any]) -> list[str]:
    if check.get("data_ok") is False:
        return [
            f"dataset or tokenizer missing under --data (jobs default to {DATASET_SUBDIR}/ and "
            f"{TOKENIZER_SUBPATH}: python -m golf_task.data fineweb --out DIR)"
        ]
    return []


def _disk_problems(check: dict[str, Any]) -> list[str]:
    return [problem for problem, _ in _disk_findings(check)]


def _disk_findings(check: dict[str, Any]) -> list[tuple[str, str]]:
    """(problem, fix) for the work folder's disk."""
    where = check.get("disk_dir") or "the work folder"
    free = check.get("disk_free_gb")
    move = "or give the host a --workdir on a bigger disk (helm host rm + add)"
    out = []
    if check.get("write_error"):
        out.append(
            (
                f"work folder {where} is not writable: {check['write_error']}",
                f"make {where} writable for the SSH user, {move}",
            )
        )
    if free is None:
        out.append((f"free disk space unknown (df gave no figure for {where})", "check df there"))
    elif free < MIN_FREE_GB:
        out.append(
            (
                f"low disk space: {free:.1f} GB free in {where} "
                f"(helm wants at least {MIN_FREE_GB:g} GB)",
                f"free space in {where} (old jobs/, cache/), {move}",
            )
        )
    if check.get("inodes_free") == 0:
        out.append((f"no free inodes in {where}", f"delete small files there, {move}"))
    return out


def _kernel_words(error: str) -> str:
    """The reason at the end of a tool's message (``dd: error writing 'x': No space ...``)."""
    return error.rsplit(": ", 1)[-1].strip() if ": " in error else error.strip()


async def disk_problem(box: Box, path: str, *, host: str) -> str | None:
    """Why ``path`` on the box cannot take writes, in the kernel's words, else None.

    Run when a job cannot be staged, or ends without success, so that "No space left on
    device on box: /w/jobs/7 (0 KiB free)" is what the job says, not "Failure" or "lost".
    """
    res = await box.run("\n".join(_disk_probe(path)) + "\n", timeout=60)
    disk = _parse_disk(_sections(res.stdout))
    where = disk["disk_dir"] or path
    error = disk["write_error"] or ""
    free_kb = disk["disk_free_kb"]
    free = "" if free_kb is None else f" ({free_kb} KiB free)"
    if "No space left" in error or (free_kb is not None and free_kb < FULL_KB):
        return f"No space left on device on {host}: {where}{free}"
    if disk["inodes_free"] == 0:
        return f"No space left on device on {host}: {where} (no free inodes)"
    if error:
        return f"{error} on {host}: {where}"
    return None


async def check_box(box: Box, *, python: str, workdir: str, data_dir: str | None) -> dict:
    """Run the check; the result always has ``reachable`` and ``checked_at``."""
    started = time.time()
    res = await box.run(check_script(python, workdir, data_dir), timeout=120)
    check = parse_check(res.stdout, has_data=bool(data_dir))
    check["reachable"] = True
    check["checked_at"] = started
    check["verdicts"] = verdicts(check)
    check["problems"] = problems(check)
    return check


def judge(check: dict[str, Any], *, host: str, declared_gpus: int | None) -> dict[str, Any]:
    """Fill in the check's verdicts for this host (its name in the fixes, its declared GPUs);
    ``problems`` stays the list of blockers."""
    check["verdicts"] = verdicts(check, host=host, declared_gpus=declared_gpus)
    check["problems"] = [v["problem"] for v in check["verdicts"] if v["level"] == BLOCKER]
    return check
