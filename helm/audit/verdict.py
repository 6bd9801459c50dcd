"""From evidence to one word: real, not_reproduced, copy, invalid or unverified.

The rules, first match wins (docs/AUDIT.md explains why):

1. ``copy``: ``code.similarity`` failed: the code is byte- or normalised-identical to a known
   script while claiming a different result. Named first because it says the most: whatever
   else is wrong, the code cannot have earned the claim.
2. ``invalid``: any other static check failed: the validator's rules, a claim its own logs
   do not print, logs from a different model or program than the one submitted, seeds
   evaluated on different validation sets.
3. ``not_reproduced``: our rerun scored worse than the claim by more than ``K`` spreads.
4. ``real``: no check failed AND our rerun landed within ``K`` spreads of the claim.
5. ``unverified``: no check failed but nothing was rerun (or the rerun produced no score).
   Static checks cannot catch a log edited to agree with its JSON; only a rerun can, so an
   audit never says ``real`` without one. Warnings never decide a verdict; they are listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from helm.audit.checks import Finding

VERDICTS = ("real", "not_reproduced", "copy", "invalid", "unverified")
PASSING = frozenset({"real"})


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decide(findings: list[Finding], reproduction: dict | None) -> Verdict:
    """The verdict on a folder from its findings and, when it ran, the reproduction."""
    copy = next((f for f in findings if f.name == "code.similarity" and f.status == "fail"), None)
    if copy is not None:
        return Verdict("copy", copy.message)
    fails = [f for f in findings if f.status == "fail"]
    if fails:
        # the specific checks say why; the validator's failed rules are named after them
        parts = [f"{f.name}: {_short(f.message)}" for f in fails if f.name != "validate"]
        for f in fails:
            if f.name == "validate":
                rules = f.details.get("failed") or []
                parts.append(f"validator fails {', '.join(rules)}" if rules else _short(f.message))
        return Verdict("invalid", "; ".join(parts))
    if reproduction is None:
        return Verdict(
            "unverified", "no static check failed, but nothing was rerun: only a rerun proves it"
        )
    outcome = reproduction.get("outcome")
    summary = reproduction.get("summary") or ""
    if outcome == "reproduced":
        return Verdict("real", summary)
    if outcome == "not_reproduced":
        return Verdict("not_reproduced", summary)
    return Verdict("unverified", f"the rerun gave no score: {summary}")
