"""One audit, start to finish: checks, optional rerun, verdict, record.

``audit_pr`` fetches a PR's records folder and audits it; ``audit_folder`` audits any local
folder (``helm audit dir``). A folder without ``train_gpt.py`` is audited with logs-only
semantics (the shared fixture records carry only logs and JSON): the code checks and the
rerun cannot run, which the evidence says, and the verdict can be no better than
``unverified``.

The rerun is skipped when the static checks already decide (``copy`` or ``invalid``): no
rerun can make a copied script or a claim its own logs contradict real, and GPU time costs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from golf_task.pack import readable
from golf_task.validate import validate_folder
from helm.agents.github import DEFAULT_REPO
from helm.audit import checks as ck
from helm.audit import config as cfgmod
from helm.audit import reproduce as rp
from helm.audit import store
from helm.audit.fetch import fetch_pr, pr_ref
from helm.audit.verdict import Verdict, decide
from helm.workspace import Workspace


@dataclass
class RerunOptions:
    """``--reproduce``: the seeds (None: the claim's first) and how the jobs are placed."""

    seeds: list[int] | None = None
    env: dict[str, str] = field(default_factory=dict)
    gpus: int = 8
    host: str | None = None
    time_limit_s: float = 1800.0
    poll_s: float = 1.0
    wait_s: float | None = None  # how long a job may take, queueing included (None: limit + 10m)


def audit_folder(
    ws: Workspace,
    folder: Path,
    *,
    ref: str | None = None,
    pr: dict[str, Any] | None = None,
    rerun: RerunOptions | None = None,
    record: bool = True,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Audit a records folder; returns the evidence (verdict, reason, findings, rerun ...)."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    ref = ref or str(folder)
    script = folder / "train_gpt.py"
    has_code = script.is_file()
    report = validate_folder(folder, sota=None, logs_only=not has_code)
    logs, every = ck.scored_logs(folder, report)
    claim = report.figures.get("json_val_bpb")
    findings = [ck.check_validate(report), ck.check_claim(report, logs)]
    evidence: dict[str, Any] = {
        "ref": ref,
        "folder": str(folder),
        "mode": "full" if has_code else "logs-only",
        "pr": pr,
        "claimed_bpb": claim,
        "logged_bpb": [lg.summary.val_bpb for lg in logs],
        "claimed_seeds": [lg.summary.seed for lg in logs],
        "skipped": [],
    }
    if has_code:
        code = readable(script.read_bytes()).encode("utf-8")  # a packed form's source
        stated = cfgmod.stated_config(folder, cfgmod.code_config(code))
        known = store.known_scripts(ws, exclude_ref=ref)
        finding, matches = ck.check_similarity(code, known, claim, stated)
        findings.append(finding)
        echo = ck.check_log_echo(code, every)
        if echo is not None:
            findings.append(echo)
        findings.append(ck.check_hyperparameters(code, stated, every))
        evidence["stated_config"] = stated
        evidence["similarity"] = matches[0].to_json() if matches else None
        evidence["script_sha256"] = store.keep_script(ws, code) if record else None
    else:
        evidence["skipped"] += ["code.similarity", "logs.hyperparameters", "reproduction"]
    findings += [ck.check_steps(every), ck.check_data(every)]
    static = decide(findings, None)
    reproduction = None
    if rerun is not None:
        if not has_code:
            evidence["rerun_note"] = "no train_gpt.py: nothing to rerun"
        elif static.verdict in ("copy", "invalid"):
            evidence["rerun_note"] = (
                f"rerun skipped: the static checks already say {static.verdict}"
            )
        elif claim is None:
            evidence["rerun_note"] = "rerun skipped: no claimed val_bpb to compare with"
        else:
            scores = [lg.summary.val_bpb for lg in logs if lg.summary.val_bpb is not None]
            seeds = rerun.seeds or rp.default_seeds(evidence["claimed_seeds"])
            reproduction = rp.reproduce(
                ws,
                folder,
                claim,
                rp.std(scores),
                seeds=seeds,
                overrides=rerun.env,
                gpus=rerun.gpus,
                host=rerun.host,
                time_limit_s=rerun.time_limit_s,
                poll_s=rerun.poll_s,
                wait_s=rerun.wait_s,
                on_progress=on_progress,
            )
    verdict = decide(findings, reproduction)
    if not has_code and verdict.verdict == "unverified":
        n = len(logs)
        verdict = Verdict(
            "unverified",
            f"logs-only folder: {n} log(s) support the claim as far as they go; "
            "there is no code to compare or rerun",
        )
    evidence.update(
        verdict=verdict.verdict,
        reason=verdict.reason,
        findings=[f.to_json() for f in findings],
        reproduction=reproduction,
        validator=report.to_json(),
    )
    if record:
        row = store.record(ws, evidence)
        evidence["id"] = row["id"]
        evidence["created_at"] = row["created_at"]
    return evidence


def audit_pr(
    ws: Workspace,
    number: int,
    repo: str = DEFAULT_REPO,
    *,
    path: str | None = None,
    rerun: RerunOptions | None = None,
    transport: httpx.BaseTransport | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fetch PR ``number``'s records folder into the workspace and audit it."""
    folder, meta = fetch_pr(ws, number, repo, path=path, transport=transport)
    if on_progress is not None:
        on_progress(f"fetched {len(meta['files'])} file(s) of PR #{number} into {folder}")
    return audit_folder(
        ws, folder, ref=pr_ref(repo, number), pr=meta, rerun=rerun, on_progress=on_progress
    )
