"""Coding-agent drivers: which command runs unattended, and what it is told.

A driver is ``sweep`` (built in), a preset (``claude``, ``codex``, ``opencode``) or a command
template with ``{prompt}``, e.g. ``"aider --yes-always --message {prompt}"``. Templates may
also use ``{agent}``, ``{worktree}`` and ``{home}``. Presets carry the flags each CLI needs to
run with nobody at the keyboard (a permission prompt is the commonest way an autoresearch
agent silently stops); ``[agents.drivers]`` in config.toml can override any of them.

Claude Code refuses ``--dangerously-skip-permissions`` as root: set ``[agents] run_as`` to
a non-root user and helm starts the CLI as that user.
"""

from __future__ import annotations

import shlex
from importlib import resources
from pathlib import Path

PRESETS: dict[str, str] = {
    # stream-json makes Claude print as it works, so the driver log (and stall detection)
    # sees progress long before the final answer.
    "claude": "claude -p {prompt} --dangerously-skip-permissions --output-format stream-json "
    "--verbose",
    "codex": "codex exec --dangerously-bypass-approvals-and-sandbox --skip-git-repo-check {prompt}",
    "opencode": "opencode run {prompt}",
}
BUILTIN = "sweep"

PROMPT = (
    "You are helm research agent {agent}. Read program.md in the current directory and "
    "follow it exactly; obey DIRECTIVES.md first. Work autonomously and never stop."
)


class DriverError(ValueError):
    """Not a driver helm can run."""


def validate_driver(driver: str) -> str:
    if driver == BUILTIN or driver in PRESETS:
        return driver
    if "{prompt}" in driver:
        try:
            shlex.split(driver)
        except ValueError as exc:
            raise DriverError(f"driver template {driver!r}: {exc}") from exc
        return driver
    raise DriverError(
        f"unknown driver {driver!r}: use sweep, claude, codex, opencode or a command "
        'template containing {prompt}, e.g. "mycli --yes {prompt}"'
    )


def command_for(
    driver: str,
    *,
    agent: str,
    worktree: Path,
    home: Path,
    overrides: dict[str, str] | None = None,
) -> list[str]:
    """The argv that starts ``driver`` for ``agent`` (placeholders substituted per token)."""
    validate_driver(driver)
    if driver == BUILTIN:
        raise DriverError("the sweep driver runs inside helm, not as a command")
    template = (overrides or {}).get(driver) or PRESETS.get(driver) or driver
    values = {
        "prompt": PROMPT.format(agent=agent),
        "agent": agent,
        "worktree": str(worktree),
        "home": str(home),
    }
    argv = []
    for token in shlex.split(template):
        for key, value in values.items():
            token = token.replace("{" + key + "}", value)
        argv.append(token)
    return argv


def program_text(agent: str, driver: str) -> str:
    """``program.md`` for this agent: the experiment loop in the agent's terms."""
    template = resources.files("helm.agents").joinpath("program.md").read_text()
    return template.replace("{agent}", agent).replace("{driver}", driver)


def write_program(worktree: Path, agent: str, driver: str) -> Path:
    path = worktree / "program.md"
    text = program_text(agent, driver)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path
