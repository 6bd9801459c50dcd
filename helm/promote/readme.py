"""The records folder's README: the result, what changed against the base, per-seed, how to
reproduce, and the validator's verdict.

Reviewers of a record read the README first; it states only figures that are also in
``submission.json`` (so from the logs), and the change as the diff measured it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helm.promote.folder import SeedResult, log_name, steps_of
from helm.remote.launch import data_variant

if TYPE_CHECKING:
    from golf_task.validate import Report
    from helm.promote.diff import RunDiff

# Paths of the machine that ran it: a reader sets their own.
MACHINE_KEYS = frozenset({"DATA_PATH", "TOKENIZER_PATH", "OMP_NUM_THREADS"})
MAX_PATCH_LINES = 300


def _f(value: Any, digits: int = 8) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def change_section(d: RunDiff) -> str:
    lines = [f"Compared with {d.b.label} (commit {(d.b.commit or '-')[:10]}):", ""]
    if d.files:
        lines.append(f"- code: +{d.added} / -{d.removed} lines")
        lines += [f"  - `{f.path}`: +{f.added} / -{f.removed} ({f.status})" for f in d.files]
    else:
        lines.append("- code: unchanged")
    env = d.env_changes()
    if env:
        lines.append("- environment:")
        lines += [
            f"  - `{r.key}`: `{r.b if r.b is not None else '(unset)'}` → "
            f"`{r.a if r.a is not None else '(unset)'}`"
            for r in env
        ]
    else:
        lines.append("- environment: unchanged")
    patch = d.patch.rstrip("\n").splitlines()
    if patch and len(patch) <= MAX_PATCH_LINES:
        lines += [
            "",
            "<details><summary>code diff</summary>",
            "",
            "```diff",
            *patch,
            "```",
            "",
            "</details>",
        ]
    elif patch:
        lines += ["", f"(the code diff has {len(patch)} lines; see `git diff` in the repo)"]
    return "\n".join(lines)


def reproduce_command(env: dict[str, str], seed: int, gpus: int) -> str:
    keep = {k: v for k, v in sorted(env.items()) if k not in MACHINE_KEYS and k != "SEED"}
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in keep.items())
    runner = (
        "python train_gpt.py"
        if gpus <= 1
        else f"torchrun --standalone --nproc_per_node={gpus} train_gpt.py"
    )
    return " \\\n  ".join(x for x in (assigns, f"SEED={seed} {runner}") if x)


def _code_form(data: dict[str, Any]) -> list[str]:
    """Which file is the counted code, when the folder ships the packed form."""
    if (data.get("helm") or {}).get("code_form") != "packed":
        return []
    return [
        f"`train_gpt.py` is the self-extracting compressed form of the script: its "
        f"{_f(data['bytes_code'])} bytes are the code the logs counted. `train_gpt_human.py` is "
        "the same source, readable; run either (the script packs itself to count its code).",
    ]


def readme_text(
    data: dict[str, Any],
    results: list[SeedResult],
    *,
    run: dict[str, Any],
    env: dict[str, str],
    change: str,
) -> str:
    n = len(results)
    std = data.get("val_bpb_std")
    spread = f" ± {std:.8f} (std)" if std is not None else ""
    lines = [
        f"# {data['name']}",
        "",
        f"**val_bpb {_f(data['val_bpb'])}**{spread}, mean over {n} seed(s) "
        f"{', '.join(str(r.seed) for r in results)}; val_loss {_f(data.get('val_loss'))}.",
        f"Artifact at most {_f(data.get('bytes_total'))} bytes (code {_f(data['bytes_code'])} "
        f"bytes + compressed model). Track: `{data['track']}`. Hardware: {data['hardware']}; "
        f"PyTorch {data.get('pytorch_version') or 'unknown'}.",
        *_code_form(data),
        "",
        data["blurb"],
        "",
        "## What changed against the base",
        "",
        change or "No base to compare with was recorded for this run.",
        "",
        "## Results per seed",
        "",
        "| seed | val_bpb | val_loss | artifact bytes | steps | step avg (ms) | train time (s) | log |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        s = r.summary
        train_s = f"{s.train_time_ms / 1000:.1f}" if s.train_time_ms is not None else "-"
        lines.append(
            f"| {r.seed} | {_f(s.val_bpb)} | {_f(s.val_loss)} | {_f(s.bytes_total)} | "
            f"{_f(steps_of(s))} | {_f(s.step_avg_ms, 2)} | {train_s} | `{log_name(r.seed)}` |"
        )
    gpus = int(run.get("gpus") or 1)
    variant = data_variant(env)  # the layout the run's jobs read (its VOCAB_SIZE's)
    lines += [
        "",
        "## Reproduce",
        "",
        f"From this folder, with `DATA_PATH` and `TOKENIZER_PATH` pointing at the {variant} "
        "FineWeb shards and tokenizer (the script's defaults are the repository's `data/` "
        f"layout; `python -m golf_task.data fineweb --out data --variant {variant}`), once per "
        "seed:",
        "",
        "```sh",
        reproduce_command(env, results[0].seed if results else 1337, gpus),
        "```",
        "",
        f"Made with helm from run #{run['id']} (commit `{(run.get('commit') or '-')[:12]}`).",
        "",
    ]
    return "\n".join(lines)


def append_verdict(path: Path, report: Report, track: str) -> None:
    f = report.figures
    lines = ["", "## Validation", ""]
    if track == "record" and f.get("p_value") is not None:
        lines.append(
            f"Against SOTA {f['sota']:.8f}: {f['improvement_nats']:+.5f} nats "
            f"(need ≥ +0.005), one-sided t-test p = {f['p_value']:.3g} over {f['n_samples']} seeds."
        )
    elif track != "record":
        lines.append("Non-record track: no significance test is required.")
    counts = report.to_json()["counts"]
    lines += [
        f"`python -m golf_task.validate` passes: {counts['pass']} checks pass, "
        f"{counts['warn']} warn, {counts['fail']} fail"
        + (" (the non-record track allows longer training)" if counts["fail"] else "")
        + ".",
        "",
    ]
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
