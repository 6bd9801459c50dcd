"""The README's "Your first real campaign", run word for word, to a first scored run.

A quickstart that nobody runs drifts until it no longer works. This takes the fenced ``sh``
block under that heading out of README.md (it fails loudly if the heading or the block is
gone) and runs it with ``bash -euo pipefail`` against a throwaway OpenSSH box on 127.0.0.1,
in a fresh campaign folder under a temp dir. Every command line of the block runs as the
README has it. The only differences, each printed when the script runs:

1. the variables at the top of the block (``BOX``, ``KEY``, ``FP``: the loopback box's
   address, login key and host key fingerprint; ``HELM_HOME``: the temp campaign folder);
2. the data source: a local HTTP server serving a tiny dataset in the official FineWeb
   layout (manifest, tokenizer, 1 val + 80 train shards of sp8192), named to the box by
   ``GOLF_DATA_URL`` in the box's environment (sshd ``SetEnv``);
3. pip's package source: a local wheel folder (the real torch CPU wheel from /opt/wheels plus
   the task's packages), named to the box by ``PIP_NO_INDEX``/``PIP_FIND_LINKS`` in the same
   way, so ``host setup`` runs without its ``--wheels`` flag, as the README has it;
4. the driver: ``DRIVER=sweep`` (no coding-agent CLI can run here);
5. the configuration: ``GPUS=1`` and ``CONFIG`` = the tiny CPU preset
   (``golf_task.presets.TINY_CPU_ENV``, what ``tiny_env`` builds on; the data paths come from
   the host, as on a real box; ``VOCAB_SIZE=8192`` for the sp8192 data), the box has no GPU;
6. the last line, ``helm`` (the TUI), is replaced by a bounded poll of ``helm runs --json``
   until the first run with a val_bpb.

``helm`` is found on PATH as ``make demo`` installs it (this checkout's ``.venv/bin``).

    .venv/bin/python bench/first_campaign.py [--budget 1500] [--keep]

Bounded by ``--budget`` seconds. In every case it stops the agents (``helm swarm down``), the
daemon (``helm daemon stop``), then by pid anything of this campaign still alive (agents,
daemon, training on the box), the sshd and the HTTP server, and deletes the box's work folder.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
HEADING = "## Your first real campaign"
FENCE = "```sh"
ASSIGN = re.compile(r"^(export )?([A-Z_][A-Z0-9_]*)=")
# The block's variables this script sets differently, and why (nothing else differs).
SUBSTITUTED = {
    "BOX": "the loopback sshd on 127.0.0.1 (a free port), as this machine's user",
    "KEY": "the login key made for that sshd",
    "FP": "that sshd's host key, read with ssh-keygen -lf as the README says",
    "GPUS": "1: the box has no GPU (CPU-only), one job at a time",
    "DRIVER": "sweep: no coding-agent CLI can run here",
    "CONFIG": "the tiny CPU preset (golf_task.presets.TINY_CPU_ENV, VOCAB_SIZE=8192)",
    "HELM_HOME": "a fresh campaign folder under a temp dir",
}
TRAIN_SHARDS = 80  # what `helm host setup` asks for by default (--train-shards)
VARIANT = "sp8192"  # the README's --data


class BlockError(SystemExit):
    """The README no longer has the block this script follows: say so, exit non-zero."""


def readme_block(text: str) -> str:
    """The first ```sh block under HEADING (before the next ``## `` heading)."""
    lines = text.splitlines()
    try:
        start = lines.index(HEADING)
    except ValueError:
        raise BlockError(f"README.md has no heading {HEADING!r}") from None
    body: list[str] | None = None
    for line in lines[start + 1 :]:
        if body is None:
            if line.startswith("## "):
                break
            if line.strip() == FENCE:
                body = []
        elif line.strip() == "```":
            return "\n".join(body) + "\n"
        else:
            body.append(line)
    raise BlockError(f"README.md has no complete {FENCE} block under {HEADING!r}")


def split_block(block: str) -> tuple[list[str], list[str]]:
    """(the variable lines at the top, the rest): the top ends at the first other line."""
    lines = block.splitlines()
    n = 0
    while n < len(lines) and ASSIGN.match(lines[n]):
        n += 1
    if n == 0:
        raise BlockError("the README block does not start with its variables")
    return lines[:n], lines[n:]


def is_tui_line(line: str) -> bool:
    """The block's last command: bare ``helm`` (with a comment), which opens the TUI."""
    return shlex.split(line, comments=True) == ["helm"]


def shell_value(value: str | list[str]) -> str:
    """The right-hand side of an assignment: a quoted word, or an array ``( ... )``."""
    if isinstance(value, list):
        return "(" + " ".join(shlex.quote(v) for v in value) + ")"
    return shlex.quote(value)


def compose(block: str, values: dict[str, str | list[str]]) -> tuple[str, list[str]]:
    """The script to run (top variables set to ``values``, the body as it is, the TUI line
    left out) and the differences in words. Unknown or unlisted names are refused."""
    unknown = set(values) - set(SUBSTITUTED)
    if unknown:
        raise ValueError(f"not a variable this bench may change: {sorted(unknown)}")
    top, body = split_block(block)
    names = {ASSIGN.match(line).group(2) for line in top}  # type: ignore[union-attr]
    missing = set(values) - names
    if missing:
        raise BlockError(f"the README block no longer sets {sorted(missing)}")
    out, diffs = [], []
    for line in top:
        m = ASSIGN.match(line)
        assert m is not None
        name = m.group(2)
        if name in values:
            out.append(f"{m.group(1) or ''}{name}={shell_value(values[name])}")
            diffs.append(f"{name}: {SUBSTITUTED[name]}")
        else:
            out.append(line)
    commands = [i for i, line in enumerate(body) if line.strip() and not line.startswith("#")]
    if not commands or not is_tui_line(body[commands[-1]]):
        raise BlockError("the README block no longer ends with `helm` (the TUI)")
    tui = commands[-1]
    out += body[:tui] + body[tui + 1 :]
    diffs.append("the last line `helm` (the TUI): a bounded wait for the first scored run")
    return "\n".join(out) + "\n", diffs


def command_lines(script: str) -> list[str]:
    """The lines a composed script runs after its variables (for the drift test)."""
    return split_block(script)[1]


# --- the pieces the box needs ----------------------------------------------------------------


def serve_dataset(root: Path, log) -> tuple[http.server.ThreadingHTTPServer, str]:  # noqa: ANN001
    """A tiny sp8192 dataset in the official export layout, served on 127.0.0.1."""
    import numpy as np

    from golf_task.data import make_tiny
    from golf_task.shards import read_shard, write_shard
    from golf_task.variants import VARIANTS

    layout = make_tiny(root / "tiny", variant=VARIANT, log=log)
    var = VARIANTS[VARIANT]
    top = root / "srv" / var.repo / "resolve" / "main" / "datasets"
    ds = top / "datasets" / var.dataset
    ds.mkdir(parents=True)
    (top / "tokenizers").mkdir()
    for src in (layout.tokenizer_model, layout.tokenizer_vocab):
        shutil.copyfile(src, top / "tokenizers" / src.name)
    shutil.copyfile(layout.dataset_dir / "fineweb_val_000000.bin", ds / "fineweb_val_000000.bin")
    train = np.concatenate(
        [read_shard(p) for p in sorted(layout.dataset_dir.glob("fineweb_train_*.bin"))]
    )
    for i, part in enumerate(np.array_split(train, TRAIN_SHARDS)):
        write_shard(ds / f"fineweb_train_{i:06d}.bin", part)
    stats = {"files_val": 1, "files_train": TRAIN_SHARDS}
    (top / "manifest.json").write_text(
        json.dumps({"datasets": [{"name": var.dataset, "stats": stats}]})
    )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root / "srv"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def wheel_folder(dest: Path) -> Path:
    """The real torch CPU wheel and the task's packages as wheels (tests' wheel kit)."""
    sys.path.insert(0, str(REPO / "tests" / "helm" / "remote"))
    from wheel_kit import wheel_dir

    return wheel_dir(dest, torch=True)


def fingerprint(pub: Path) -> str:
    """What the README tells the user to run on the box: ``ssh-keygen -lf KEY.pub``."""
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True)
    return out.stdout.split()[1]


# --- running and cleaning up -----------------------------------------------------------------


def helm_cmd(home: str, *args: str) -> list[str]:
    """A helm command on this campaign, named explicitly: the environment that runs these has
    no HELM_HOME (the block sets its own), and a bare `helm swarm down` would stop the agents
    of whatever campaign the default folder holds."""
    return ["helm", *args, "--home", home]


def helm_json(env: dict[str, str], home: str, *args: str) -> object | None:
    res = subprocess.run(helm_cmd(home, *args, "--json"), env=env, capture_output=True, text=True)
    with contextlib.suppress(ValueError):
        return json.loads(res.stdout) if res.returncode == 0 else None
    return None


def run_block(script: str, env: dict[str, str], timeout: float, marks: dict) -> int:
    """Run the composed block, echoing its output, noting when the box was ready."""
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    marks["block_pid"] = proc.pid
    timer = threading.Timer(timeout, lambda: _kill_group(proc.pid))
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(f"  | {line}")
            if "verdict: ready" in line:
                marks["ready_s"] = time.monotonic() - started
            if line.startswith("up: "):
                marks["up_s"] = time.monotonic() - started
        return proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            _kill_group(proc.pid)
            proc.wait(10)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def wait_scored(env: dict[str, str], home: str, deadline: float) -> dict | None:
    """Poll ``helm runs --json`` until a run has a val_bpb (or the deadline)."""
    seen: set[tuple[int, str]] = set()
    while time.monotonic() < deadline:
        rows = helm_json(env, home, "runs") or []
        for r in rows:  # type: ignore[union-attr]
            key = (r["id"], r["status"])
            if key not in seen:
                seen.add(key)
                print(f"  run {r['id']}: {r['status']} val_bpb={r.get('val_bpb')}", flush=True)
            if r.get("val_bpb") is not None:
                return r
        time.sleep(2.0)
    return None


def box_workdir(env: dict[str, str], home: str) -> str | None:
    """The host's work folder on the box (this machine), where setup and the jobs wrote."""
    if not Path(home).is_dir():
        return None
    hosts = helm_json(env, home, "host", "ls") or []
    workdir = next((h.get("workdir") for h in hosts), None)  # type: ignore[union-attr]
    return os.path.expanduser(workdir) if workdir else None


def _ours(pid: int, home: str, workdir: str | None) -> bool:
    """A process of this campaign: its environment names our HELM_HOME, or it runs in the
    box's work folder (training started through sshd)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    if f"HELM_HOME={home}".encode() in environ:
        return True
    return bool(workdir) and (cwd == workdir or cwd.startswith(workdir + "/"))


def stop_campaign(env: dict[str, str], home: str, workdir: str | None) -> list[str]:
    """Agents down, daemon stopped, then any process of ours still alive, by pid."""
    if shutil.which("helm", path=env["PATH"]) and Path(home).is_dir():
        for args in (("swarm", "down"), ("daemon", "stop")):
            subprocess.run(helm_cmd(home, *args), env=env, capture_output=True, timeout=120)
    me = os.getpid()
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me and _ours(int(entry.name), home, workdir):
            left.append(int(entry.name))
    named = []
    for pid in left:  # what each one was, for the record
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            named.append(f"{pid}: {cmd.strip()[:120]}")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(1.0)
    return named


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=1500.0, help="seconds for everything")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (not processes)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    deadline = t0 + args.budget
    block = readme_block(README.read_text())
    sys.path.insert(0, str(REPO))
    from golf_task.presets import TINY_CPU_ENV
    from helm.remote.loopback import LoopbackSshd

    tmp = Path(tempfile.mkdtemp(prefix="helm-first-campaign-"))
    home = str(tmp / "golf")
    env = {k: v for k, v in os.environ.items() if k not in ("HELM_HOME", "HELM_DB_URL")}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    sshd = httpd = None
    jobs_root = Path.home() / "helm-jobs"
    jobs_root_existed = jobs_root.exists()
    marks: dict = {}
    result: dict = {"budget_s": args.budget}
    try:
        print("first_campaign: preparing the data server and the wheel folder", flush=True)
        httpd, url = serve_dataset(tmp / "data", lambda m: print(f"  {m}", flush=True))
        wheels = wheel_folder(tmp / "wheels")
        box_env = {"GOLF_DATA_URL": url, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
        setenv = "SetEnv " + " ".join(f"{k}={v}" for k, v in box_env.items())
        sshd = LoopbackSshd.start(tmp / "sshd", extra_config=[setenv])
        config = [w for k, v in {**TINY_CPU_ENV, "VOCAB_SIZE": "8192"}.items() for w in ("--env", f"{k}={v}")]  # fmt: skip
        values: dict[str, str | list[str]] = {
            "BOX": sshd.ssh_target(),
            "KEY": str(sshd.user_key),
            "FP": fingerprint(sshd.root / "host_ed25519.pub"),
            "GPUS": "1",
            "DRIVER": "sweep",
            "CONFIG": config,
            "HELM_HOME": home,
        }
        script, diffs = compose(block, values)
        print("first_campaign: the README block, with these differences only:")
        for d in diffs:
            print(f"  - {d}")
        print(f"  - the box's environment (sshd SetEnv): {setenv}")
        print(f"  - helm from {REPO / '.venv' / 'bin'} on PATH (what `make demo` installs)")
        print("first_campaign: running it with bash -euo pipefail:")
        print("".join(f"  > {line}\n" for line in script.splitlines()), flush=True)
        started = time.monotonic()
        rc = run_block(script, env, deadline - started, marks)
        result["block_rc"] = rc
        if rc != 0:
            print(f"first_campaign: the README block failed (exit {rc})", file=sys.stderr)
            return 1
        result["ready_box_s"] = round(marks.get("ready_s", float("nan")), 1)
        print("first_campaign: waiting for the first scored run (helm runs --json)", flush=True)
        run = wait_scored(env, home, deadline)
        result["first_scored_s"] = round(time.monotonic() - started, 1)
        result["after_swarm_up_s"] = round(time.monotonic() - started - marks.get("up_s", 0), 1)
        result["run"] = run and {
            k: run.get(k)
            for k in ("id", "agent", "status", "val_bpb", "steps", "bytes_total", "description")
        }
        if run is None:
            print("first_campaign: no scored run within the budget", file=sys.stderr)
            return 1
        return 0
    finally:
        workdir = box_workdir(env, home)
        left = stop_campaign(env, home, workdir)
        result["killed_leftovers"] = left
        if sshd is not None:
            sshd.stop()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if workdir and Path(workdir).is_dir() and str(jobs_root) in workdir:
            shutil.rmtree(workdir, ignore_errors=True)
            if not jobs_root_existed:
                with contextlib.suppress(OSError):
                    jobs_root.rmdir()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        result["total_s"] = round(time.monotonic() - t0, 1)
        print("first_campaign: " + json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
