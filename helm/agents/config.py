"""The swarm's knobs, read from the ``[agents]`` tables of ``<home>/config.toml``.

Everything here has a default that works for the tiny CPU demo and for a real 8xH100
campaign alike; the file only needs the keys a campaign wants to change. The documented list
(with the reasons for each default) is in docs/AGENTS.md.

    [agents]
    stall_s = 900                # no experiment and no output for this long: "stalled"
    restart_on_stall = false     # also kill and restart a stalled coding agent
    backoff_s = [5.0, 300.0]     # restart delay: first, cap (doubling in between)
    run_as = ""                  # run coding agents as this user when helm runs as root
    time_limit_s = 1800          # per job, passed to the scheduler
    gpus = 1                     # default GPUs per experiment

    [agents.keep]
    min_delta = 0.0005           # an improvement must beat this many bpb ...
    k = 2.0                      # ... and k x the seed-to-seed spread
    default_spread = 0.0         # spread to assume before any repeated baseline exists

    [agents.sweep]
    measure_noise = true         # repeat the first baseline with another seed
    random_prob = 0.25           # share of random (two-knob) proposals
    keys = []                    # only these knobs (default: every numeric one found)
    exclude = ["ITERATIONS", ...]  # never these

    [agents.screen]
    enabled = false              # screen every experiment first (helm exp run --screen)
    gpus = 1                     # a screen's GPUs
    steps_frac = 0.25            # ... and its share of the full run's steps
    k = 0.0                      # a screen must beat the base's by k x its spread ...
    min_delta = 0.0              # ... and by this many bpb
    env = {TTT = "0", EVAL_STRIDE = "0", PREQUANT_EVAL = "0", FINAL_VAL = "0"}
                                 # set on screens only (one score: the export's)

    [agents.drivers]
    claude = "claude -p {prompt} --dangerously-skip-permissions"   # override a preset
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Knobs a sweep must not turn: paths and ids, the compute budget (more steps always "wins"),
# evaluation and logging cadence, and the tokenizer-bound vocabulary size.
DEFAULT_SWEEP_EXCLUDE: tuple[str, ...] = (
    "DATA_PATH",
    "TOKENIZER_PATH",
    "RUN_ID",
    "SEED",
    "LOG_DIR",
    "DEVICE",
    "COMPILE",
    "ITERATIONS",
    "MAX_WALLCLOCK_SECONDS",
    "TRAIN_BATCH_TOKENS",
    "TRAIN_SEQ_LEN",
    "GRAD_ACCUM_STEPS",
    "WARMUP_STEPS",
    "VAL_BATCH_SIZE",
    "VAL_LOSS_EVERY",
    "TRAIN_LOG_EVERY",
    "VOCAB_SIZE",
    "ZSTD_LEVEL",
    "EVAL_SEQ_LEN",
    "EVAL_STRIDE",
    "PREQUANT_EVAL",
    "FINAL_VAL",
    "ADAM_EPS",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "OMP_NUM_THREADS",
    "SAVE_RAW_MODEL",
)


@dataclass(frozen=True)
class KeepRule:
    """The noise-aware keep rule's parameters (see ``helm.agents.keeprule``)."""

    min_delta: float = 0.0005
    k: float = 2.0
    default_spread: float = 0.0


@dataclass(frozen=True)
class SweepConfig:
    measure_noise: bool = True
    random_prob: float = 0.25
    keys: tuple[str, ...] = ()
    exclude: tuple[str, ...] = DEFAULT_SWEEP_EXCLUDE


DEFAULT_SCREEN_ENV: dict[str, str] = {
    "TTT": "0",
    "EVAL_STRIDE": "0",
    "PREQUANT_EVAL": "0",
    "FINAL_VAL": "0",
}
"""Screens skip test-time training and the sliding-window score (both only refine the final
number and cost minutes on a real box; a screen is compared only with another screen), and
the full run's two diagnostic scores, of the live weights at the last step and of the
averaged weights before export: a screen is judged on its exported model's score alone, so
it makes one pass over the validation set, not three."""


@dataclass(frozen=True)
class ScreenConfig:
    """How a candidate is screened before its full run (see ``helm.agents.screen``)."""

    enabled: bool = False
    gpus: int = 1
    steps_frac: float = 0.25
    k: float = 0.0  # see helm.agents.screen: why a screen's bar is not the seed spread
    min_delta: float = 0.0
    env: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SCREEN_ENV))


@dataclass(frozen=True)
class AgentsConfig:
    stall_s: float = 900.0
    restart_on_stall: bool = False
    backoff_s: tuple[float, float] = (5.0, 300.0)
    run_as: str = ""
    time_limit_s: float = 1800.0
    gpus: int = 1
    keep: KeepRule = field(default_factory=KeepRule)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    screen: ScreenConfig = field(default_factory=ScreenConfig)
    drivers: dict[str, str] = field(default_factory=dict)


class ConfigError(ValueError):
    """``config.toml`` cannot be read or has a value of the wrong type."""


def _pick(table: dict[str, Any], key: str, default: Any, kind: type | tuple[type, ...]) -> Any:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"[agents] {key} must be a number, not {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"[agents] {key} has the wrong type: {value!r}")
    return value


def parse(data: dict[str, Any]) -> AgentsConfig:
    """Build the config from a parsed TOML document (its ``agents`` table)."""
    a = data.get("agents", {})
    if not isinstance(a, dict):
        raise ConfigError("[agents] must be a table")
    keep_t, sweep_t = a.get("keep", {}), a.get("sweep", {})
    num = (int, float)
    keep = KeepRule(
        min_delta=float(_pick(keep_t, "min_delta", KeepRule.min_delta, num)),
        k=float(_pick(keep_t, "k", KeepRule.k, num)),
        default_spread=float(_pick(keep_t, "default_spread", KeepRule.default_spread, num)),
    )
    sweep = SweepConfig(
        measure_noise=bool(_pick(sweep_t, "measure_noise", True, bool)),
        random_prob=float(_pick(sweep_t, "random_prob", SweepConfig.random_prob, num)),
        keys=tuple(_pick(sweep_t, "keys", [], list)),
        exclude=tuple(_pick(sweep_t, "exclude", list(DEFAULT_SWEEP_EXCLUDE), list)),
    )
    screen = _screen(a.get("screen", {}))
    backoff = _pick(a, "backoff_s", [5.0, 300.0], list)
    if len(backoff) != 2 or not all(isinstance(x, int | float) for x in backoff):
        raise ConfigError("[agents] backoff_s must be [first, cap] in seconds")
    drivers = _pick(a, "drivers", {}, dict)
    return AgentsConfig(
        stall_s=float(_pick(a, "stall_s", 900.0, num)),
        restart_on_stall=bool(_pick(a, "restart_on_stall", False, bool)),
        backoff_s=(float(backoff[0]), float(backoff[1])),
        run_as=str(_pick(a, "run_as", "", str)),
        time_limit_s=float(_pick(a, "time_limit_s", 1800.0, num)),
        gpus=int(_pick(a, "gpus", 1, int)),
        keep=keep,
        sweep=sweep,
        screen=screen,
        drivers={str(k): str(v) for k, v in drivers.items()},
    )


def _screen(t: Any) -> ScreenConfig:
    if not isinstance(t, dict):
        raise ConfigError("[agents.screen] must be a table")
    num = (int, float)
    frac = float(_pick(t, "steps_frac", ScreenConfig.steps_frac, num))
    if not 0.0 < frac <= 1.0:
        raise ConfigError(f"[agents.screen] steps_frac must be in (0, 1], not {frac}")
    gpus = int(_pick(t, "gpus", ScreenConfig.gpus, int))
    if gpus < 1:
        raise ConfigError(f"[agents.screen] gpus must be at least 1, not {gpus}")
    env = _pick(t, "env", dict(DEFAULT_SCREEN_ENV), dict)
    return ScreenConfig(
        enabled=bool(_pick(t, "enabled", False, bool)),
        gpus=gpus,
        steps_frac=frac,
        k=float(_pick(t, "k", ScreenConfig.k, num)),
        min_delta=float(_pick(t, "min_delta", ScreenConfig.min_delta, num)),
        env={str(k): str(v) for k, v in env.items()},
    )


def read_toml(path: Path, error: type[ValueError] = ConfigError) -> dict[str, Any]:
    """The parsed ``config.toml`` at ``path``, ``{}`` when it does not exist: the one reader
    of the file for every table in it ([agents], [agents.abort], [budget] ...), each raising
    its own ``error`` for a file that cannot be read or parsed."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: {exc}") from exc


def load(path: Path) -> AgentsConfig:
    """The config at ``path``; all defaults when the file does not exist."""
    return parse(read_toml(path))
