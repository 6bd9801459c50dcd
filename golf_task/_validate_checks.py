"""Checks of a loaded records folder's logs against its JSON and the competition's limits.

Split from ``_validate_rules`` (loading, layout, JSON fields) so each file stays readable;
the same ``add(name, status, message, **details)`` protocol applies.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from golf_task._validate_code import ShippedCode, measure_code
from golf_task._validate_rules import (
    ARTIFACT_CAP_BYTES,
    EVAL_CAP_MS,
    TIME_GRACE_MS,
    TRAIN_CAP_MS,
    Add,
    Folder,
    LogEntry,
    exact,
    is_number,
    logged_exact,
    mean,
    rounds_to,
)

# ---------------------------------------------------------------------------- logs


def check_logs(folder: Folder, add: Add) -> None:
    unscored = [lg.rel for lg in folder.logs if not lg.summary.has_score]
    if folder.logs and not folder.samples:
        add("logs.scores", "fail", f"no log has a score line: {unscored}", unscored=unscored)
    elif unscored:
        add("logs.scores", "warn", f"no score line (crashed or cut short?): {unscored}")
    elif folder.logs:
        add("logs.scores", "pass", "every log ends with a score line")
    dups = [(lg.rel, lg.duplicate_of) for lg in folder.logs if lg.duplicate_of]
    if dups:
        text = ", ".join(f"{a} == {b}" for a, b in dups)
        add("logs.duplicates", "warn", f"byte-identical logs (counted once): {text}", pairs=dups)
    elif len(folder.logs) > 1:
        add("logs.duplicates", "pass", "no two logs are identical")
    by_seed: dict[int, list[str]] = {}
    for lg in folder.samples:
        if lg.seed is not None:
            by_seed.setdefault(lg.seed, []).append(lg.rel)
    problems = [f"seed {s} ran in {names}" for s, names in by_seed.items() if len(names) > 1]
    problems += [
        f"{lg.rel} is named for seed {lg.name_seed} but ran seed {lg.summary.seed}"
        for lg in folder.samples
        if lg.summary.seed is not None
        and lg.name_seed is not None
        and "seed" in lg.rel.lower()
        and lg.name_seed != lg.summary.seed
    ]
    if problems:
        add("logs.seeds", "warn", "not independent seeds: " + "; ".join(problems))
    elif len(folder.samples) > 1:
        add("logs.seeds", "pass", f"distinct seeds {sorted(by_seed)}")


# ---------------------------------------------------------------------------- consistency


def check_consistency(folder: Folder, add: Add, *, logs_only: bool) -> None:
    _check_score(folder, add)
    if folder.seed_results:
        _check_seed_results(folder, add)
    _check_bytes_total(folder, add)
    _check_bytes_code(folder, add, logs_only=logs_only)
    _check_artifact_sums(folder, add)


def _logged(logs: list[LogEntry], key: str) -> list[Decimal] | None:
    """Every log's figure with its printed digits, or None when one of them lacks it."""
    values = [logged_exact(lg.summary, key) for lg in logs]
    return None if any(v is None for v in values) else values  # type: ignore[return-value]


def _check_score(folder: Folder, add: Add) -> None:
    jb, claim = folder.json_number("val_bpb"), folder.json_exact("val_bpb")
    claimed, samples = folder.claimed, folder.samples
    logged = _logged(claimed, "val_bpb")
    if jb is None or claim is None or not claimed or logged is None:
        return
    got = mean([lg.summary.val_bpb for lg in claimed])
    r = rounds_to(claim, logged)
    names = [lg.rel for lg in claimed]
    details = {
        "json": jb,
        "logs": got,
        "decimals": r.decimals,
        "tolerance": r.half_unit,
        "claimed": names,
    }
    if not r.ok:
        what = f"the mean over {names}" if len(names) > 1 else f"the score of {names[0]}"
        add(
            "consistency.score",
            "fail",
            f"JSON val_bpb {claim} is not {got:.8f}, {what}, rounded to the claim's "
            f"{r.decimals} decimal(s): that is {r.rounded}",
            **details,
        )
        return
    notes = []
    jl = folder.json_exact("val_loss")
    losses = _logged(claimed, "val_loss")
    if jl is not None and losses is not None:
        rl = rounds_to(jl, losses)
        if not rl.ok:
            notes.append(
                f"JSON val_loss {jl} is not the logs' {float(rl.logged):.8f} rounded to "
                f"{rl.decimals} decimal(s) ({rl.rounded})"
            )
    if folder.claim_kind == "single" and len(samples) > 1:
        all_mean = mean([lg.summary.val_bpb for lg in samples])
        notes.append(
            f"JSON val_bpb {jb} is the score of {names[0]} alone, not the mean "
            f"{all_mean:.8f} over the folder's {len(samples)} logs"
        )
    if notes:
        add("consistency.score", "warn", "; ".join(notes), **details)
    else:
        what = f"mean over {len(names)} logs" if len(names) > 1 else names[0]
        add("consistency.score", "pass", f"JSON val_bpb {jb} matches {what} ({got:.8f})", **details)


def _check_seed_results(folder: Folder, add: Add) -> None:
    by_seed = {lg.seed: lg for lg in reversed(folder.samples) if lg.seed is not None}
    problems: list[str] = []
    for seed, entry in folder.seed_results.items():
        lg = by_seed.get(seed)
        if lg is None:
            problems.append(f"seed {seed}: no log ran it")
            continue
        s = lg.summary
        printed = folder.seed_exact.get(seed, {})
        for key in ("val_bpb", "val_loss"):
            if not is_number(entry.get(key)):
                continue
            claim = exact(printed.get(key))
            claim = claim if claim is not None else exact(entry[key])
            if claim is None or not claim.is_finite():
                continue
            logged = logged_exact(s, key)
            if logged is not None and not rounds_to(claim, [logged]).ok:
                problems.append(
                    f"seed {seed}: JSON {key} {claim} but {lg.rel} says {getattr(s, key)}"
                )
        art = entry.get("artifact_bytes")
        if is_number(art) and s.bytes_total is not None and art != s.bytes_total:
            problems.append(
                f"seed {seed}: JSON artifact_bytes {art} but {lg.rel} says {s.bytes_total}"
            )
        steps = entry.get("steps")
        if is_number(steps) and s.stop_step is not None and steps != s.stop_step:
            problems.append(
                f"seed {seed}: JSON steps {steps} but {lg.rel} stopped at {s.stop_step}"
            )
    unclaimed = [lg.rel for lg in folder.samples if not lg.claimed]
    if unclaimed:
        problems.append(f"logs not among the JSON's seeds: {unclaimed}")
    if problems:
        add("consistency.seed_results", "warn", "; ".join(problems), problems=problems)
    else:
        n = len(folder.seed_results)
        add("consistency.seed_results", "pass", f"{n} per-seed results match their logs")


def _json_bytes_total(folder: Folder) -> tuple[int | None, str]:
    data = folder.data or {}
    value = data.get("bytes_total")
    if isinstance(value, int) and not isinstance(value, bool):
        return value, "bytes_total"
    per_seed = [e.get("artifact_bytes") for e in folder.seed_results.values()]
    per_seed = [v for v in per_seed if isinstance(v, int) and not isinstance(v, bool)]
    if per_seed:
        return max(per_seed), "max of seed_results artifact_bytes"
    value = data.get("artifact_bytes_max")
    if isinstance(value, int) and not isinstance(value, bool):
        return value, "artifact_bytes_max"
    return None, ""


def _check_bytes_total(folder: Folder, add: Add) -> None:
    claim, source = _json_bytes_total(folder)
    logs = [lg for lg in folder.claimed if lg.summary.bytes_total is not None]
    if claim is None:
        if folder.data is not None:
            add("consistency.bytes_total", "warn", "the JSON states no artifact size")
        return
    if not logs:
        add("consistency.bytes_total", "warn", f"JSON {source} {claim}: no log prints an artifact")
        return
    totals = [lg.summary.bytes_total for lg in logs]
    details = {"json": claim, "source": source, "logs": totals}
    if claim in totals or claim == max(totals) or claim == round(mean(totals)):
        add("consistency.bytes_total", "pass", f"JSON {source} {claim} matches the logs", **details)
        return
    code = (folder.data or {}).get("bytes_code")
    for lg in logs:
        model = lg.summary.bytes_model
        if isinstance(code, int) and model is not None and model + code == claim:
            add(
                "consistency.bytes_total",
                "warn",
                f"JSON {source} {claim} = {lg.rel}'s model {model} + JSON bytes_code {code}, "
                f"but that log counted {lg.summary.bytes_code} code bytes (code changed since)",
                **details,
            )
            return
    add(
        "consistency.bytes_total",
        "fail",
        f"JSON {source} {claim} matches none of the logs' artifact lines {totals}",
        **details,
    )


def _code_name(code: ShippedCode) -> str:
    files = code.files
    return files[0] if files == ["train_gpt.py"] else f"the code it ships ({', '.join(files)})"


def _form_note(code: ShippedCode) -> str:
    """How the bytes were counted when train_gpt.py is the packed form (else nothing)."""
    if code.packed is None:
        return ""
    size = len(code.packed.encode("utf-8"))
    twin = f"; {code.readable}, the same source, is not counted" if code.readable else ""
    return f" (train_gpt.py is the packed form of a {size:,}-byte source{twin})"


def _check_bytes_code(folder: Folder, add: Add, *, logs_only: bool) -> None:
    code = (folder.data or {}).get("bytes_code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    logged = {lg.summary.bytes_code for lg in folder.claimed} | {
        lg.summary.bytes_code_raw for lg in folder.claimed
    }
    logged.discard(None)
    script = folder.path / "train_gpt.py"
    measured = None if logs_only else measure_code(folder.path)
    if measured is None or not script.is_file():
        if code is not None and logged and code not in logged:
            add(
                "consistency.bytes_code",
                "warn",
                f"JSON bytes_code {code} but the logs counted {sorted(logged)}",
            )
        elif code is not None and logged:
            add("consistency.bytes_code", "pass", f"JSON bytes_code {code} matches the logs")
        return
    size, files = measured.size, measured.files
    name, note = _code_name(measured), _form_note(measured)
    if code is None:
        add("consistency.bytes_code", "warn", f"JSON has no bytes_code ({name}: {size}){note}")
    elif code != size:
        add(
            "consistency.bytes_code",
            "fail",
            f"JSON bytes_code {code} but {name} is {size} bytes{note}",
            json=code,
            file=size,
            files=files,
        )
    elif logged and size not in logged:
        add(
            "consistency.bytes_code",
            "warn",
            f"{name} is {size} bytes{note} but the logs ran code of {sorted(logged)} bytes",
        )
    else:
        add("consistency.bytes_code", "pass", f"bytes_code {code} = {name}'s size{note}")


def _check_artifact_sums(folder: Folder, add: Add) -> None:
    bad = []
    for lg in folder.logs:
        s = lg.summary
        parts = (s.bytes_total, s.bytes_code, s.bytes_model)
        if None not in parts and s.bytes_code + s.bytes_model != s.bytes_total:
            bad.append(f"{lg.rel}: {s.bytes_code} + {s.bytes_model} != {s.bytes_total}")
    if bad:
        add("consistency.artifact_sum", "warn", "artifact != code + model in " + "; ".join(bad))


# ---------------------------------------------------------------------------- limits


def _artifact(lg: LogEntry, code: ShippedCode | None) -> dict | None:
    """One log's artifact on the figures that can be trusted most: the code the folder ships,
    measured, plus the compressed model the log reported; the logged total when the code
    cannot be measured (logs only) or the log reported no model size. None: no figures."""
    s = lg.summary
    model, source = s.bytes_model, f"logged in {lg.rel}"
    if model is None and s.bytes_total is not None and s.bytes_code is not None:
        model, source = s.bytes_total - s.bytes_code, f"{lg.rel}'s logged total - logged code"
    if code is not None and model is not None:
        total = model + code.size
        text = (
            f"{lg.rel}: model {model:,} ({source}) + code {code.size:,} "
            f"(measured: {', '.join(code.files)}) = {total:,}"
        )
        if s.bytes_total is not None and s.bytes_total > total:
            total, text = s.bytes_total, text + f"; logged total {s.bytes_total:,}"
        return {"log": lg.rel, "model": model, "code": code.size, "total": total, "text": text}
    if s.bytes_total is None:
        return None
    why = "code not measured" if code is None else "no model size logged"
    text = f"{lg.rel}: {s.bytes_total:,} (logged total; {why})"
    return {"log": lg.rel, "model": None, "code": None, "total": s.bytes_total, "text": text}


def check_limits(folder: Folder, add: Add, *, logs_only: bool) -> None:
    code = None if logs_only else measure_code(folder.path)
    over, missing, figures = [], [], []
    for lg in folder.logs:
        art = _artifact(lg, code)
        if art is None:
            missing.append(lg.rel)
            continue
        figures.append(art)
        if art["total"] > ARTIFACT_CAP_BYTES:
            over.append(art["text"])
    claim, source = _json_bytes_total(folder)
    if claim is not None and claim > ARTIFACT_CAP_BYTES:
        over.append(f"JSON {source}: {claim:,}")
    details = {
        "measured_code": code.size if code else None,
        "code_files": code.files if code else [],
        "artifacts": [{k: v for k, v in a.items() if k != "text"} for a in figures],
    }
    claimed_missing = [r for r in missing if any(lg.rel == r and lg.claimed for lg in folder.logs)]
    if over:
        add("limits.artifact", "fail", f"over {ARTIFACT_CAP_BYTES:,} bytes: {over}", **details)
    elif claimed_missing:
        add("limits.artifact", "fail", f"no artifact size line in {claimed_missing}", **details)
    elif missing:
        add("limits.artifact", "warn", f"no artifact size line in {missing}", **details)
    elif figures:
        top = max(figures, key=lambda a: a["total"])
        add(
            "limits.artifact",
            "pass",
            f"every artifact <= {ARTIFACT_CAP_BYTES:,}; the largest: {top['text']}",
            **details,
        )
    _time_limit(folder, add, "limits.train_time", "train_time_ms", TRAIN_CAP_MS)
    _time_limit(folder, add, "limits.eval_time", "eval_time_ms", EVAL_CAP_MS)
    script = folder.path / "train_gpt.py"
    if not logs_only and script.is_file():
        _check_compiles(script, code.packed if code else None, add)


def _compiles(source: bytes | str, where: str) -> str | None:
    """None when ``source`` compiles, else why not (with the line)."""
    try:
        compile(source, where, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno})" if exc.lineno else str(exc.msg)
    except ValueError as exc:  # null bytes
        return str(exc)
    return None


def _check_compiles(script: Path, packed: str | None, add: Add) -> None:
    """train_gpt.py compiles, and so does the source inside it when it is the packed form
    (the wrapper compiles whatever it carries only when it runs, on the GPUs)."""
    why = _compiles(script.read_bytes(), str(script))
    if why is not None:
        add("code.compiles", "fail", f"train_gpt.py does not compile: {why}")
        return
    if packed is None:
        add("code.compiles", "pass", "train_gpt.py compiles")
        return
    why = _compiles(packed, "train_gpt.py")
    size = len(packed.encode("utf-8"))
    if why is not None:
        add(
            "code.compiles",
            "fail",
            f"train_gpt.py is the packed form, and its {size:,}-byte source does not "
            f"compile: {why}",
        )
    else:
        add("code.compiles", "pass", f"train_gpt.py and the {size:,}-byte source it packs compile")


def _time_limit(folder: Folder, add: Add, name: str, attr: str, cap_ms: int) -> None:
    fails, warns, unknown = [], [], []
    for lg in folder.logs:
        t = getattr(lg.summary, attr)
        if t is None:
            unknown.append(lg.rel)
        elif t > cap_ms + TIME_GRACE_MS:
            (fails if lg.claimed else warns).append(f"{lg.rel}: {t / 1000:.1f}s")
    cap = f"{cap_ms / 1000:.0f}s"
    if fails:
        add(name, "fail", f"over the {cap} cap: {fails + warns}", over=fails + warns)
    elif warns:
        add(name, "warn", f"a log the claim does not rest on ran over the {cap} cap: {warns}")
    elif len(unknown) == len(folder.logs):
        if folder.logs:
            status = "warn" if attr == "train_time_ms" else "pass"
            add(name, status, "not logged")
    else:
        note = f" (not logged in {unknown})" if unknown else ""
        add(name, "pass", f"within {cap}{note}")
