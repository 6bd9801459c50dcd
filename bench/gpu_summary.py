"""The Python half of bench/gpu_check.sh: probe the interpreter, time-stamp a log, summarise it.

Standard library only at import time, so it runs under any interpreter the check finds,
including one whose torch is missing (the probe is how the check learns that).

    python bench/gpu_summary.py probe                       # torch/CUDA/FA3/deps; exit 0, 2 or 3
    python bench/gpu_summary.py run --timeout S --log console.log -- CMD...  # "[t+S.SSS] line"
    python bench/gpu_summary.py summary --log console.log [--env env.txt] [--exit-code N]

Why stamps: the training log's own ``train_time`` excludes start-up, compilation and the
compile warm-up steps, and export has no time of its own, so the wall-clock seconds at
which each line appeared are the only way to measure them on a box lent for minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

STAMP = re.compile(r"^\[t\+(\d+(?:\.\d+)?)\] ?(.*)$")
TRAIN = re.compile(
    r"^step:(\d+)/(\d+) train_loss:\S+ train_time:(\d+(?:\.\d+)?)ms step_avg:(\d+(?:\.\d+)?)ms"
)
VAL = re.compile(r"^step:(\d+)/(\d+) val_loss:\S+ val_bpb:\S+ train_time:(\d+)ms")
WARMUP = re.compile(r"^warmup_step:(\d+)/(\d+)")
PEAK = re.compile(r"^peak memory allocated: (\d+) MiB reserved: (\d+) MiB")
WORLD = re.compile(r"^world_size:(\d+) grad_accum_steps:(\d+)")
BATCH = re.compile(r"^(?:  train_batch_tokens: |train_batch_tokens:)(\d+)")
EVAL_TIME = re.compile(r"eval_time:(\d+)ms")
TOTAL = re.compile(r"^Total submission size (\S+): (\d+) bytes")
CODE = re.compile(r"^Code size: (\d+) bytes")
MODEL = re.compile(r"^Serialized model (\S+): (\d+) bytes")
SCORE = re.compile(r"^(\S+(?: \S+)?) val_loss:(\S+) val_bpb:(\S+)")
# Lines worth quoting whole in the summary: the export's own reports.
QUOTE = re.compile(r"^(artifact:|gptq:|qat:enabled|layer_loop:|stopping_early:)")
ERROR = re.compile(r"(Error|Exception|error:|Traceback|CUDA out of memory)")


@dataclass
class Summary:
    """What one training log says, plus stamp timings when the log was stamped."""

    lines: int = 0
    stamped: bool = False
    world_size: int | None = None
    grad_accum_steps: int | None = None
    train_batch_tokens: int | None = None
    warmup_steps: int | None = None
    steps: int | None = None
    iterations: int | None = None
    step_avg_ms: float | None = None  # step_avg of the last train line
    last_interval_ms: float | None = None  # per step between the last two train lines
    last_interval_steps: str | None = None
    tokens_per_s: float | None = None  # train_batch_tokens / step_avg
    train_time_ms: float | None = None
    peak_alloc_mib: int | None = None
    peak_reserved_mib: int | None = None
    first_warmup_s: float | None = None  # start -> first warm-up step (start-up + compile)
    first_train_step_s: float | None = None  # start -> step 1 (the compile time asked for)
    export_s: float | None = None  # peak-memory line -> Total submission size line
    total_s: float | None = None  # start -> last line
    eval_times_ms: dict[str, int] = field(default_factory=dict)
    code_bytes: int | None = None
    model_bytes: int | None = None
    total_bytes: int | None = None
    artifact_label: str | None = None
    scores: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    final_score: str | None = None


def split_stamp(line: str) -> tuple[float | None, str]:
    m = STAMP.match(line)
    return (float(m.group(1)), m.group(2)) if m else (None, line)


def summarise(text: str) -> Summary:
    """Read a console capture (stamped or not) or a logs/<RUN_ID>.txt of train_gpt.py.

    Tolerates a log cut off anywhere (a run killed by the check's timeout): every field is
    None until its line has been seen.
    """
    s = Summary()
    prev_train: tuple[int, float] | None = None
    last_train: tuple[int, float] | None = None
    t_peak = None
    for raw in text.splitlines():
        t, line = split_stamp(raw.rstrip("\r"))
        s.lines += 1
        if t is not None:
            s.stamped = True
            s.total_s = t
        if m := WORLD.match(line):
            s.world_size, s.grad_accum_steps = int(m.group(1)), int(m.group(2))
        elif (m := BATCH.match(line)) and s.train_batch_tokens is None:
            s.train_batch_tokens = int(m.group(1))
        elif m := WARMUP.match(line):
            s.warmup_steps = int(m.group(2))
            if s.first_warmup_s is None:
                s.first_warmup_s = t
        elif m := TRAIN.match(line):
            step, ms = int(m.group(1)), float(m.group(3))
            if s.first_train_step_s is None:
                s.first_train_step_s = t
            s.steps, s.iterations = step, int(m.group(2))
            s.step_avg_ms, s.train_time_ms = float(m.group(4)), ms
            prev_train, last_train = last_train, (step, ms)
        elif m := VAL.match(line):
            s.steps, s.iterations = int(m.group(1)), int(m.group(2))
            s.train_time_ms = float(m.group(3))
            if em := EVAL_TIME.search(line):
                s.eval_times_ms[f"val step {m.group(1)}"] = int(em.group(1))
        elif m := PEAK.match(line):
            s.peak_alloc_mib, s.peak_reserved_mib = int(m.group(1)), int(m.group(2))
            t_peak = t
        elif m := CODE.match(line):
            s.code_bytes = int(m.group(1))
        elif m := TOTAL.match(line):
            s.artifact_label, s.total_bytes = m.group(1), int(m.group(2))
            if t is not None and t_peak is not None:
                s.export_s = t - t_peak
        elif m := MODEL.match(line):
            s.model_bytes = int(m.group(2))
        elif m := SCORE.match(line):
            name = m.group(1)
            s.scores.append(line)
            if em := EVAL_TIME.search(line):
                s.eval_times_ms[name] = int(em.group(1))
        if QUOTE.match(line):
            s.notes.append(line)
        elif ERROR.search(line) and not line.startswith("  "):
            s.errors.append(line)
    if prev_train and last_train and last_train[0] > prev_train[0]:
        (a, ta), (b, tb) = prev_train, last_train
        s.last_interval_ms = (tb - ta) / (b - a)
        s.last_interval_steps = f"{a}-{b}"
    if s.train_batch_tokens and s.step_avg_ms:
        s.tokens_per_s = s.train_batch_tokens / (s.step_avg_ms / 1000)
    # the exact score lines are the ones parsers keep; the last one wins
    exact = [x for x in s.scores if SCORE.match(x).group(1).endswith("_exact")]
    s.final_score = exact[-1] if exact else (s.scores[-1] if s.scores else None)
    s.errors = s.errors[-5:]
    return s


def read_env(path: Path | None) -> dict[str, str]:
    """``key: value`` lines written by gpu_check.sh and the probe (first colon splits)."""
    env: dict[str, str] = {}
    if path and path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, sep, value = line.partition(": ")
            if sep and key and " " not in key.strip():
                env.setdefault(key.strip(), value.strip())
    return env


def _fmt(value: float | int | None, spec: str = ",.0f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def render(s: Summary, env: dict[str, str], exit_code: int | None) -> str:
    """The one block the check prints last, and that bench/RESULTS.md's table is filled from."""
    status = "n/a" if exit_code is None else str(exit_code)
    if exit_code in (124, 137):
        status += " (killed by the check's timeout)"
    elif exit_code == 3:
        status += " (artifact over the cap: no score)"
    out = ["==== gpu_check summary ===="]
    for key in (
        "nvidia_smi_L",
        "gpu",
        "driver",
        "torch",
        "torch_cuda",
        "fa3",
        "python",
        "data_build_s",
        "wall_s",
    ):
        if key in env:
            out.append(f"{key}: {env[key]}")
    out += [
        f"exit status: {status}",
        f"world_size / grad_accum_steps: {s.world_size} / {s.grad_accum_steps}",
        f"steps: {s.steps}/{s.iterations} (train_time {_fmt(s.train_time_ms, ',.0f', ' ms')})",
        f"ms/step (step_avg of the last train line): {_fmt(s.step_avg_ms, '.2f')}",
        f"ms/step (last interval, steps {s.last_interval_steps}): "
        f"{_fmt(s.last_interval_ms, '.2f')}",
        f"tokens/s (train_batch_tokens {s.train_batch_tokens} / step_avg): {_fmt(s.tokens_per_s)}",
        f"peak memory: allocated {s.peak_alloc_mib} MiB, reserved {s.peak_reserved_mib} MiB",
        f"compile: start -> first train step {_fmt(s.first_train_step_s, '.1f', ' s')} "
        f"(start -> first warm-up step {_fmt(s.first_warmup_s, '.1f', ' s')}, "
        f"{s.warmup_steps} warm-up steps)",
        "eval time: " + (", ".join(f"{k} {v:,} ms" for k, v in s.eval_times_ms.items()) or "n/a"),
        f"export (peak memory line -> size line): {_fmt(s.export_s, '.1f', ' s')}",
        f"artifact bytes (Total submission size {s.artifact_label}): {_fmt(s.total_bytes)} "
        f"(code {_fmt(s.code_bytes)}, model {_fmt(s.model_bytes)})",
        f"wall: start -> last line {_fmt(s.total_s, '.1f', ' s')}",
    ]
    out += [f"note: {n}" for n in s.notes]
    out += ["score lines:"] + [f"  {x}" for x in s.scores or ["(none)"]]
    out.append(f"final score: {s.final_score or '(none)'}")
    if s.errors:
        out += ["errors (last lines):"] + [f"  {e}" for e in s.errors]
    return "\n".join(out)


def probe(allow_cpu: bool = False) -> int:
    """Print ``key: value`` facts about this interpreter; 2 = no torch with CUDA, 3 = deps.

    Each import is tried separately so the message names exactly what is missing.
    """
    missing: list[str] = []
    print(f"python: {sys.executable} {sys.version.split()[0]}")
    try:
        import torch
    except Exception as err:  # noqa: BLE001 - any import failure means the same here
        print(f"torch: not importable ({type(err).__name__}: {err})")
        print("missing: torch (with CUDA)")
        return 2
    print(f"torch: {torch.__version__}")
    print(f"torch_cuda: {torch.version.cuda}")
    cuda = torch.cuda.is_available()
    if cuda:
        props = torch.cuda.get_device_properties(0)
        print(
            f"gpu: {props.name}, {props.total_memory // 2**20} MiB, sm_{props.major}{props.minor}"
        )
    try:
        from flash_attn_interface import flash_attn_func  # noqa: F401

        print("fa3: importable (flash_attn_interface)")
    except Exception as err:  # noqa: BLE001
        print(f"fa3: not importable ({type(err).__name__}); the script uses SDPA")
    for name in ("numpy", "sentencepiece", "zstandard"):
        try:
            module = __import__(name)
            print(f"{name}: {getattr(module, '__version__', 'present')}")
        except Exception:  # noqa: BLE001
            missing.append(name)
    if not cuda and not allow_cpu:
        print("missing: CUDA (torch.cuda.is_available() is False)")
        return 2
    if missing:
        print(f"missing: {' '.join(missing)}")
        return 3
    print("missing: none")
    return 0


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc (torchrun starts its workers in their
    own sessions, so a process-group kill would miss them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields_ = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields_[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def supervise(cmd: list[str], timeout_s: float, log: Path, grace_s: float = 15.0) -> int:
    """Run ``cmd``, copying its output (stderr merged) to stdout and ``log``, each line
    prefixed with the seconds since the start; kill it and all its descendants after
    ``timeout_s``. Returns its exit status, or 124 when the timeout stopped it.
    """
    t0 = time.time()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as sink:

        def emit(line: str) -> None:
            text = f"[t+{time.time() - t0:.3f}] {line.rstrip(chr(10))}\n"
            sink.write(text)
            sink.flush()
            sys.stdout.write(text)
            sys.stdout.flush()

        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        assert proc.stdout is not None
        reader = threading.Thread(
            target=lambda: [emit(line) for line in iter(proc.stdout.readline, "")], daemon=True
        )
        reader.start()
        try:
            rc = proc.wait(timeout=max(timeout_s, 0.0))
        except subprocess.TimeoutExpired:
            emit(f"gpu_check: timeout after {timeout_s:.0f} s, stopping the run")
            victims = [proc.pid, *_descendants(proc.pid)]
            _signal_all(victims, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
            _signal_all([proc.pid, *victims, *_descendants(proc.pid)], signal.SIGKILL)
            proc.wait()
            rc = 124
        reader.join(timeout=5.0)
        emit(f"gpu_check: exit status {rc}")
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("probe", help="what this interpreter has (0 ok, 2 no CUDA torch, 3 deps)")
    pr.add_argument("--allow-cpu", action="store_true", help="tests: accept torch without CUDA")
    rn = sub.add_parser("run", help="run a command with stamped output and a hard timeout")
    rn.add_argument("--timeout", type=float, required=True, help="seconds, then kill all")
    rn.add_argument("--log", type=Path, required=True)
    rn.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    sm = sub.add_parser("summary", help="the summary block of a (stamped) training log")
    sm.add_argument("--log", type=Path, required=True)
    sm.add_argument("--env", type=Path, default=None, help="key: value facts to print first")
    sm.add_argument("--exit-code", type=int, default=None)
    sm.add_argument("--json", type=Path, default=None, help="also write the fields as JSON")
    args = parser.parse_args(argv)
    if args.command == "probe":
        return probe(args.allow_cpu)
    if args.command == "run":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("run needs a command after --")
        return supervise(cmd, args.timeout, args.log)
    text = args.log.read_text(errors="replace") if args.log.is_file() else ""
    summary = summarise(text)
    env = read_env(args.env)
    print(render(summary, env, args.exit_code))
    if args.json:
        record = {**asdict(summary), "env": env, "exit_code": args.exit_code}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
