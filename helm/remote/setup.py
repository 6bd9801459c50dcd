"""``helm host setup``: make an SSH box ready for jobs, idempotently and resumably.

A fresh GPU box has a driver and a Python, nothing else. Setup runs six steps over the host's
one SSH connection: (1) the driver (``nvidia-smi``: driver and CUDA version, GPU count; none:
CPU-only), (2) a venv in the host's work folder, (3) torch built for that driver plus the
task's other packages, (4) ``golf_task`` uploaded beside it, (5) the data, fetched on the box
by ``golf_task.data`` (resumable), (6) ``host check``. The host row is pointed at the venv's
python and the data folder, so jobs and checks use what setup made.

Each finished step is recorded in ``<workdir>/setup/state.json`` on the box, and a re-run
skips a step only when the record matches what is asked *and* a cheap probe confirms it (the
venv's python runs, the packages import with the right CUDA build, the uploaded code is the
same, the shards are there). A step cut short (Ctrl-C, a dropped connection) is not recorded,
so the next run redoes it: pip resumes nothing but is idempotent, the venv is recreated with
``--clear``, and the data fetcher continues its ``.part`` files with HTTP ranges.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import golf_task
from golf_task.shards import DataLayout
from golf_task.variants import DEFAULT_VARIANT, check_variant
from helm import fmt
from helm.models.hosts import edit_host
from helm.models.tables import Host
from helm.remote.backend import Box
from helm.remote.check import CPU_ONLY
from helm.remote.jobs import snapshot_code
from helm.remote.launch import box_word
from helm.remote.probe import probe_host
from helm.workspace import Workspace

# The PyTorch wheel index per CUDA runtime, newest first: a driver runs any build whose CUDA
# version is at most the one nvidia-smi reports ("CUDA Version: 12.4" runs cu124, cu121 ...).
# ``--torch auto`` takes the newest build the driver supports. Keep this the one table: add a
# row when PyTorch publishes a new index (https://download.pytorch.org/whl/<build>).
TORCH_CUDA_BUILDS: tuple[tuple[tuple[int, int], str], ...] = (
    ((12, 8), "cu128"),
    ((12, 6), "cu126"),
    ((12, 4), "cu124"),
    ((12, 1), "cu121"),
    ((11, 8), "cu118"),
)
TORCH_INDEX = "https://download.pytorch.org/whl/{build}"
# What golf_task imports besides torch (train_gpt.py: numpy, zstandard; data: sentencepiece).
TASK_PACKAGES = ("numpy", "sentencepiece", "zstandard")
STEPS = ("driver", "venv", "packages", "code", "data", "check")
SETUP_DIR, VENV_DIR, TASK_DIR, DATA_DIR = "setup", "venv", "task", "data"
LONG_S = 4 * 3600  # pip downloading torch, or the full data, on a slow link


class SetupError(Exception):
    """A step that cannot finish; the message says what to do."""


@dataclass(frozen=True)
class SetupPlan:
    """What the operator asked for."""

    torch: str = "auto"  # or a version, e.g. 2.6.0
    variant: str = DEFAULT_VARIANT
    tiny: bool = False  # the tiny offline dataset instead of the FineWeb download
    train_shards: int = 80
    flash_attn: bool = False
    wheels: tuple[str, ...] = ()  # find-links folders or URLs; given: pip uses no index
    data_url: str | None = None  # the data source instead of huggingface.co/datasets
    base_python: str = "python3"  # the interpreter the venv is made from

    def __post_init__(self) -> None:
        check_variant(self.variant)
        if self.torch != "auto" and not re.fullmatch(r"\d+(\.\d+){1,2}", self.torch):
            raise ValueError(f"--torch must be auto or a version like 2.6.0, not {self.torch!r}")


@dataclass(frozen=True)
class Driver:
    version: str | None
    cuda: tuple[int, int] | None  # None: no nvidia-smi (or it failed): CPU-only
    gpus: int


@dataclass
class StepResult:
    index: int
    name: str
    status: str  # done | skipped | failed
    seconds: float
    detail: str = ""


@dataclass
class SetupReport:
    host: str
    steps: list[StepResult] = field(default_factory=list)
    check: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "steps": [asdict(s) for s in self.steps], "check": self.check}


def torch_build(cuda: tuple[int, int] | None) -> str:
    """The wheel build for a driver's CUDA version (``cpu`` without one)."""
    if cuda is None:
        return "cpu"
    for needs, build in TORCH_CUDA_BUILDS:
        if cuda >= needs:
            return build
    raise SetupError(
        f"the driver supports CUDA {cuda[0]}.{cuda[1]}; the oldest torch build helm knows "
        f"needs {TORCH_CUDA_BUILDS[-1][0][0]}.{TORCH_CUDA_BUILDS[-1][0][1]}: upgrade the driver"
    )


def build_cuda(build: str) -> str | None:
    """What ``torch.version.cuda`` says for a build: ``cu124`` -> ``12.4``, cpu -> None."""
    if build == "cpu":
        return None
    digits = build.removeprefix("cu")
    return f"{digits[:-1]}.{digits[-1]}"


def parse_driver(text: str) -> Driver:
    """``nvidia-smi`` then ``nvidia-smi -L`` output (sections ``@@smi``/``@@list``)."""
    if "@@smi" not in text:
        return Driver(None, None, 0)
    version = re.search(r"Driver Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", text)
    gpus = len(re.findall(r"^GPU \d+:", text, re.MULTILINE))
    return Driver(
        version.group(1) if version else None,
        (int(cuda.group(1)), int(cuda.group(2))) if cuda else None,
        gpus,
    )


def pip_commands(plan: SetupPlan, build: str) -> list[list[str]]:
    """The ``pip install`` argument lists, in order: torch from its build's index, the task's
    packages, then flash-attn (it compiles against the installed torch). With ``--wheels``
    every one reads only those folders (offline boxes, tests)."""
    torch_req = "torch" if plan.torch == "auto" else f"torch=={plan.torch}"
    if plan.wheels:
        source = ["--no-index", *(f"--find-links={w}" for w in plan.wheels)]
        torch_source = source
    else:
        source, torch_source = [], ["--index-url", TORCH_INDEX.format(build=build)]
    cmds = [[*torch_source, torch_req], [*source, *TASK_PACKAGES]]
    if plan.flash_attn:
        cmds.append([*source, "--no-build-isolation", "flash-attn"])
    return cmds


def _human(n: float) -> str:
    """Bytes as a download meter shows them (1.2 GB, 45.0 MB)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def code_hash(root: Path) -> str:
    """A digest of the files ``golf_task`` ships (bytecode left out)."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class HostSetup:
    """One setup run against one host; ``say`` gets each line of progress."""

    def __init__(
        self, ws: Workspace, host: Host, box: Box, plan: SetupPlan, say: Callable[[str], None]
    ) -> None:
        self.ws, self.host, self.box, self.plan, self.say = ws, host, box, plan, say
        self.state: dict[str, Any] = {}
        self.driver = Driver(None, None, 0)

    # paths on the box (set in run, once the work folder is resolved)
    def _paths(self, workdir: str) -> None:
        self.workdir = workdir.rstrip("/")
        self.setup_dir = f"{self.workdir}/{SETUP_DIR}"
        self.venv = f"{self.workdir}/{VENV_DIR}"
        self.python = f"{self.venv}/bin/python"
        self.task = f"{self.workdir}/{TASK_DIR}"
        self.data = self.host.data_dir or f"{self.workdir}/{DATA_DIR}"

    def _point_host(self, **fields: str) -> None:
        """Make the host row use what setup made (its python, its data), if it does not."""
        changed = {k: v for k, v in fields.items() if getattr(self.host, k) != v}
        if changed:
            with self.ws.db(write=True) as db:
                edit_host(db, self.host.name, **changed)
            for k, v in changed.items():
                setattr(self.host, k, v)

    async def _sh(self, script: str, what: str, *, timeout: float = 120) -> str:
        res = await self.box.run(script, timeout=timeout)
        if res.exit_status != 0:
            tail = "\n".join(res.stdout.strip().splitlines()[-8:])
            raise SetupError(f"{what} failed (exit {res.exit_status}):\n{tail}")
        return res.stdout

    async def _save(self) -> None:
        data = json.dumps(self.state, indent=1, sort_keys=True).encode()
        await self.box.write_bytes(f"{self.setup_dir}/state.json", data, mode=0o644)

    async def run(self) -> SetupReport:
        await self.box.ensure()
        self._paths(await self.box.realpath(self.host.workdir))
        if self.data.startswith("~"):
            self.data = await self.box.realpath(self.data)
        await self.box.makedirs(self.setup_dir)
        raw = await self.box.read_text(f"{self.setup_dir}/state.json")
        with contextlib.suppress(ValueError, TypeError):
            self.state = json.loads(raw or "{}") if raw else {}
        report = SetupReport(self.host.name)
        steps = (self._driver, self._venv, self._packages, self._code, self._data, self._check)
        for i, (name, step) in enumerate(zip(STEPS, steps, strict=True), 1):
            self.say(f"step {i}/{len(STEPS)} {name} ...")
            started = time.monotonic()
            skipped, detail = await step(report)
            took = time.monotonic() - started
            status = "skipped" if skipped else "done"
            report.steps.append(StepResult(i, name, status, round(took, 2), detail))
            self.say(f"step {i}/{len(STEPS)} {name}: {status} ({took:.1f}s) {detail}".rstrip())
        return report

    # 1 ---------------------------------------------------------------------------------------
    async def _driver(self, _r: SetupReport) -> tuple[bool, str]:
        out = await self._sh(
            "if command -v nvidia-smi >/dev/null 2>&1; then echo @@smi; nvidia-smi 2>&1;"
            " echo @@list; nvidia-smi -L 2>&1; fi; true",
            "nvidia-smi",
        )
        self.driver = parse_driver(out)
        now = asdict(self.driver)
        if self.driver.cuda is None:
            detail = f"no usable nvidia-smi: CPU-only box; {CPU_ONLY}"
        else:
            c = self.driver.cuda
            detail = f"driver {self.driver.version}, CUDA {c[0]}.{c[1]}, {self.driver.gpus} GPUs"
        same = self.state.get("driver") == json.loads(json.dumps(now))
        if not same:
            self.state["driver"] = now
            await self._save()
        return same, detail

    # 2 ---------------------------------------------------------------------------------------
    async def _venv(self, _r: SetupReport) -> tuple[bool, str]:
        py = box_word(self.python)
        probe = await self.box.run(f"{py} -c 'import sys; print(sys.version.split()[0])'")
        if self.state.get("venv") == self.venv and probe.exit_status == 0:
            self._point_host(python=self.python)
            return True, f"{self.venv} (python {probe.stdout.strip()})"
        base = box_word(self.plan.base_python)
        await self._sh(f"{base} -m venv --clear {box_word(self.venv)}", "creating the venv")
        self._point_host(python=self.python)
        self.state["venv"] = self.venv
        self.state.pop("packages", None)  # a new venv has none
        await self._save()
        return False, self.venv

    # 3 ---------------------------------------------------------------------------------------
    async def _installed(self, build: str) -> str | None:
        """The torch version if the venv imports everything with the right build, else None."""
        mods = ", ".join(
            ("torch", *TASK_PACKAGES) + (("flash_attn",) if self.plan.flash_attn else ())
        )
        res = await self.box.run(
            f"{box_word(self.python)} -c 'import {mods}; "
            "print(torch.__version__, torch.version.cuda)' 2>&1 | tail -n 1"
        )
        parts = res.stdout.split()
        if len(parts) != 2:
            return None
        want = build_cuda(build)
        return parts[0] if (parts[1] == "None" and want is None) or parts[1] == want else None

    async def _packages(self, _r: SetupReport) -> tuple[bool, str]:
        build = torch_build(self.driver.cuda)
        want = {"build": build, "torch": self.plan.torch, "flash_attn": self.plan.flash_attn}
        if self.state.get("packages", {}).get("want") == want:
            version = await self._installed(build)
            if version is not None:
                return True, f"torch {version} ({build}), {', '.join(TASK_PACKAGES)}"
        cuda = self.driver.cuda
        driver = "no CUDA driver" if cuda is None else f"the driver's CUDA {cuda[0]}.{cuda[1]}"
        self.say(f"  torch build {build} (for {driver})")
        log = box_word(f"{self.setup_dir}/pip.log")
        for args in pip_commands(self.plan, build):
            words = " ".join(box_word(a) for a in args)
            self.say(f"  pip install {' '.join(args)}")
            await self._sh(
                f"{box_word(self.python)} -m pip install --disable-pip-version-check --no-input"
                f" --log {log} {words}",
                f"pip install {args[-1]}",
                timeout=LONG_S,
            )
        version = await self._installed(build)
        if version is None:
            raise SetupError(
                f"the venv does not import torch built for {build} after installing"
                + (" (does the --wheels folder hold that build?)" if self.plan.wheels else "")
            )
        self.state["packages"] = {"want": want, "torch": version}
        await self._save()
        return False, f"torch {version} ({build})"

    # 4 ---------------------------------------------------------------------------------------
    async def _code(self, _r: SetupReport) -> tuple[bool, str]:
        local = Path(golf_task.__file__).parent
        digest = code_hash(local)
        marker = f"{self.task}/golf_task/train_gpt.py"
        size = await self.box.size(marker)
        if self.state.get("code") == digest and size == (local / "train_gpt.py").stat().st_size:
            return True, f"{self.task}/golf_task ({digest[:12]})"
        with tempfile.TemporaryDirectory(prefix="helm-setup-") as tmp:
            staged = Path(tmp) / "golf_task"
            snapshot_code(local, staged)  # the job snapshot's rules: no caches, no bytecode
            new = f"{self.task}/golf_task.new"
            await self._sh(f"rm -rf {box_word(new)}", "clearing the upload folder")
            await self.box.put_tree(staged, new)
        dest = box_word(f"{self.task}/golf_task")
        await self._sh(f"rm -rf {dest} && mv {box_word(new)} {dest}", "installing golf_task")
        self.state["code"] = digest
        await self._save()
        return False, f"{self.task}/golf_task ({digest[:12]})"

    # 5 ---------------------------------------------------------------------------------------
    def _data_want(self) -> dict[str, Any]:
        source = "tiny" if self.plan.tiny else "fineweb"
        shards = 0 if self.plan.tiny else self.plan.train_shards
        return {"variant": self.plan.variant, "source": source, "train_shards": shards}

    async def _data_present(self) -> tuple[int, int, bool]:
        layout = DataLayout(Path(self.data), self.plan.variant)
        ds = box_word(str(layout.dataset_dir))
        out = await self.box.run(
            f"ls {ds} 2>/dev/null | grep -c '^fineweb_train_.*\\.bin$'; "
            f"ls {ds} 2>/dev/null | grep -c '^fineweb_val_.*\\.bin$'; "
            f"[ -f {box_word(str(layout.tokenizer_model))} ] && echo yes || echo no"
        )
        words = out.stdout.split()
        if len(words) != 3:
            return 0, 0, False
        return int(words[0]), int(words[1]), words[2] == "yes"

    async def _data(self, _r: SetupReport) -> tuple[bool, str]:
        want = self._data_want()
        train, val, tok = await self._data_present()
        enough = val > 0 and tok and train >= max(want["train_shards"], 1)
        where = f"{self.data} ({self.plan.variant}: {train} train / {val} val shards)"
        if self.state.get("data") == want and enough:
            self._point_host(data_dir=self.data)
            return True, where
        progress = f"{self.setup_dir}/progress.json"
        args = ["--out", self.data, "--variant", self.plan.variant]
        if self.plan.tiny:
            args = ["tiny", *args]
        else:
            args = ["fineweb", *args, "--train-shards", str(self.plan.train_shards)]
            args += ["--progress", progress]
            if self.plan.data_url:
                args += ["--data-url", self.plan.data_url]
        script = (
            f"cd {box_word(self.task)} && rm -f {box_word(progress)} && PYTHONPATH={box_word(self.task)}"
            f" {box_word(self.python)} -m golf_task.data {' '.join(box_word(a) for a in args)}"
        )
        watch = asyncio.ensure_future(self._watch(progress))
        try:
            await self._sh(
                script, "fetching the data (run setup again to continue)", timeout=LONG_S
            )
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        self._point_host(data_dir=self.data)
        self.state["data"] = want
        await self._save()
        train, val, _ = await self._data_present()
        return False, f"{self.data} ({self.plan.variant}: {train} train / {val} val shards)"

    async def _watch(self, path: str) -> None:
        """Print the fetcher's progress file now and then (bytes, rate, ETA)."""
        last = None
        while True:
            await asyncio.sleep(2.0)
            with contextlib.suppress(Exception):
                text = await self.box.read_text(path)
                p = json.loads(text) if text else None
                if p and p != last:
                    last = p
                    total = p.get("files_total") or "?"
                    eta = p.get("eta_s")
                    self.say(
                        f"  data: {p['files_done']}/{total} files, "
                        f"{_human(p['bytes'])} downloaded, {_human(p['rate_bps'])}/s, "
                        f"ETA {'?' if eta is None else fmt.duration(eta)}"
                    )

    # 6 ---------------------------------------------------------------------------------------
    async def _check(self, report: SetupReport) -> tuple[bool, str]:
        with self.ws.store.read() as s:
            from helm.models.job_life import load_host

            host = load_host(s, self.host.name)
        report.check = await probe_host(self.box, host)
        blockers = report.check.get("problems", [])
        return False, "ready" if not blockers else f"NOT READY: {'; '.join(blockers)}"
