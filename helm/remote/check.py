"""``helm host check``: what a box can do right now, gathered by one shell script.

The scheduler must not place a job on a box that lacks the dataset, the right torch or free
disk, and the operator wants to see GPU memory, utilisation and temperature without logging
in. One script prints tagged sections (``@@gpus`` ...) so the whole check is one round trip,
and parsing never depends on the order or presence of any tool (a CPU box has no nvidia-smi).
"""

from __future__ import annotations

import shlex
import time
from typing import Any

from helm.remote.backend import Box
from helm.remote.launch import DATASET_SUBDIR, TOKENIZER_SUBPATH

_GPU_QUERY = "index,name,memory.total,memory.used,utilization.gpu,temperature.gpu"


def check_script(python: str, workdir: str, data_dir: str | None) -> str:
    py = shlex.quote(python)
    wd = shlex.quote(workdir)
    lines = [
        "echo @@python",
        f"{py} -c 'import sys; print(sys.version.split()[0])' 2>&1 | tail -n 1",
        "echo @@torch",
        f"{py} -c 'import torch; print(torch.__version__, torch.cuda.is_available())' 2>&1"
        " | tail -n 1",
        "echo @@gpus",
        "if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi"
        f" --query-gpu={_GPU_QUERY} --format=csv,noheader,nounits 2>&1; fi",
        "echo @@disk",
        f"mkdir -p {wd} && df -Pk {wd} | tail -n 1",
        "echo @@setsid",
        "command -v setsid || echo missing",
    ]
    if data_dir:
        ds = shlex.quote(f"{data_dir.rstrip('/')}/{DATASET_SUBDIR}")
        tok = shlex.quote(f"{data_dir.rstrip('/')}/{TOKENIZER_SUBPATH}")
        lines += [
            "echo @@data",
            f"ls {ds} 2>/dev/null | grep -c '^fineweb_train_' ; "
            f"ls {ds} 2>/dev/null | grep -c '^fineweb_val_' ; "
            f"[ -f {tok} ] && echo yes || echo no",
        ]
    return "\n".join(lines) + "\n"


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


def parse_check(text: str, *, has_data: bool) -> dict[str, Any]:
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
    disk = (sec.get("disk") or [""])[-1].split()
    result["disk_free_gb"] = (
        round(int(disk[3]) / 1024**2, 1) if len(disk) >= 4 and disk[3].isdigit() else None
    )
    result["setsid"] = bool(sec.get("setsid")) and sec["setsid"][-1] != "missing"
    if has_data:
        data = sec.get("data", [])
        train = int(data[0]) if len(data) > 0 and data[0].isdigit() else 0
        val = int(data[1]) if len(data) > 1 and data[1].isdigit() else 0
        tok = len(data) > 2 and data[2] == "yes"
        result["data"] = {"train_shards": train, "val_shards": val, "tokenizer": tok}
        result["data_ok"] = train > 0 and val > 0 and tok
    return result


def problems(check: dict[str, Any]) -> list[str]:
    """What would stop a job from running, in words."""
    out = []
    if check.get("python") is None:
        out.append("python not found")
    elif check.get("torch") is None:
        out.append("torch not importable")
    if not check.get("setsid", True):
        out.append("setsid missing")
    if check.get("data_ok") is False:
        out.append("dataset or tokenizer missing under --data")
    return out


async def check_box(box: Box, *, python: str, workdir: str, data_dir: str | None) -> dict:
    """Run the check; the result always has ``reachable`` and ``checked_at``."""
    started = time.time()
    res = await box.run(check_script(python, workdir, data_dir), timeout=120)
    check = parse_check(res.stdout, has_data=bool(data_dir))
    check["reachable"] = True
    check["checked_at"] = started
    check["problems"] = problems(check)
    return check
