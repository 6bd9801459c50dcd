"""Secrets in job, host and agent environments: kept out of the store, git, logs and screens.

An environment value whose name holds a credential (``HF_TOKEN``, ``OPENAI_APIKEY``,
``DBPASSWORD`` ...) must reach the job, but the store is read by every agent and shown by the
TUI, a run's commit can be published by a promotion, and logs get pasted into issues. So every
environment that enters helm goes through ``classify`` (``take_env`` when the scope is known):
the one place, with the one rule. Credential values are replaced by ``***`` in what the caller
may write anywhere (rows, run.env, commits, descriptions: free text is ``scrub``-bed of known
values too), and the real values go to ``<workspace>/secrets.json`` (mode 0600, one writer at
a time under ``flock``), keyed by scope:

- ``host:NAME``: a host's environment (``host add``; until ``host rm``);
- ``agent:NAME``: an agent's (``swarm up --env``, and every ``exp run --env`` / ``run.env``
  value of its runs): later runs carry ``KEY=***`` in ``run.env`` and get the value from here;
- ``job:ID``: one job's (``submit_job``: ``job run``, an agent's run, a promotion ...), filled
  from its agent's scope at submit time and dropped once the job is final. Being on disk, it
  survives a daemon restart (and a box lost mid-job: the retry gets it).

On the box the values travel in a file the wrapper reads and deletes before the job starts
(``helm.remote.launch``), never in the wrapper itself.

The rule (``SecretRule``): a name is a secret when it contains, ignoring case, one of
``SUBSTRINGS`` (``TOKEN`` not followed by ``S`` or ``IZ``, so that ``TRAIN_BATCH_TOKENS`` and
``TOKENIZER_PATH`` stay visible knobs), ends in ``_PAT``, has a ``_``-separated part in
``PARTS``, or is declared: ``[secrets] names = [...]`` in config.toml (exact names or
``fnmatch`` patterns), ``--secret NAME`` on the command line, or already held in the scope.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MASK = "***"
SUBSTRINGS = (
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "APIKEY",
    "API_KEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "COOKIE",
)
PARTS = ("KEY", "PASS", "AUTH", "PAT")
_BUILTIN = re.compile(
    r"TOKEN(?!S|IZ)|_PAT$|" + "|".join(SUBSTRINGS) + "|(?:^|_)(?:" + "|".join(PARTS) + ")(?:_|$)",
    re.IGNORECASE,
)
MIN_SCRUB_LEN = 4  # shorter values are not looked for in free text (they would match words)


@dataclass(frozen=True)
class SecretRule:
    """The built-in name rule plus the names (or patterns) declared secret."""

    declared: tuple[str, ...] = ()

    def is_secret(self, key: str) -> bool:
        if _BUILTIN.search(key):
            return True
        up = key.upper()
        return any(fnmatch.fnmatchcase(up, d.upper()) for d in self.declared)

    def mask(self, env: Mapping[str, str]) -> dict[str, str]:
        """The environment as it may be stored or shown: secret values replaced by ``***``."""
        return {k: (MASK if self.is_secret(k) else v) for k, v in env.items()}

    def split(self, env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """(what may be stored, the clear secrets); a value already ``***`` is no secret."""
        secrets = {k: v for k, v in env.items() if self.is_secret(k) and v != MASK}
        return self.mask(env), secrets


BUILTIN = SecretRule()


def declared_names(root: Path) -> tuple[str, ...]:
    """``[secrets] names`` of ``<root>/config.toml``; ValueError when it is malformed (a typo
    there must not quietly publish a secret)."""
    path = Path(root) / "config.toml"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        table = tomllib.loads(text).get("secrets", {})
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    names = table.get("names", []) if isinstance(table, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f'{path}: [secrets] names must be a list of names, e.g. ["MY_VAR"]')
    return tuple(names)


def rule_for(root: Path, names: Iterable[str] = ()) -> SecretRule:
    """The rule for this workspace: built-in, config.toml's names, and ``names``."""
    return SecretRule(declared_names(root) + tuple(names))


def is_secret_key(key: str) -> bool:
    """Whether a variable name looks like it holds a credential (the built-in rule)."""
    return BUILTIN.is_secret(key)


def mask_env(env: Mapping[str, str], rule: SecretRule = BUILTIN) -> dict[str, str]:
    """The environment as it may be shown: credential values replaced by ``***``."""
    return rule.mask(env)


def split_env(
    env: Mapping[str, str], rule: SecretRule = BUILTIN
) -> tuple[dict[str, str], dict[str, str]]:
    """(what the store may hold, the secrets to keep aside)."""
    return rule.split(env)


def scrub(text: str, values: Iterable[str]) -> str:
    """Free text (a description, a commit message) with any known secret value masked."""
    for value in sorted({v for v in values if len(v) >= MIN_SCRUB_LEN}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


class SecretStore:
    """The workspace's ``secrets.json``: scope -> {KEY: value}."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / "secrets.json"

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, str]]]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self._load()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                tmp = self.path.with_name(self.path.name + ".tmp")
                fd_tmp = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd_tmp, "w") as fh:
                    json.dump(data, fh)
                os.replace(tmp, self.path)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def put(self, scope: str, secrets: Mapping[str, str]) -> None:
        if not secrets:
            return
        with self._locked() as data:
            data.setdefault(scope, {}).update(secrets)

    def get(self, scope: str) -> dict[str, str]:
        return dict(self._load().get(scope, {}))

    def drop(self, scope: str) -> None:
        with self._locked() as data:
            data.pop(scope, None)


def agent_scope(agent: str) -> str:
    """The scope of an agent's secrets: its swarm env and every secret of its runs' env."""
    return f"agent:{agent}"


def classify(
    root: Path, env: Mapping[str, str], *, names: Iterable[str] = (), scopes: Iterable[str] = ()
) -> tuple[dict[str, str], dict[str, str]]:
    """THE entry of an environment into helm: (what may be written anywhere, the secrets).

    Secret by ``rule_for(root, names)`` or by being a name some ``scopes`` already holds (once
    a secret, always one); a value given as ``***`` is filled from those scopes when they know
    it (an agent's run.env carries ``KEY=***``; its job gets the agent's value). The caller
    puts the secrets in its own scope (``take_env`` does both when the scope is known).
    Raises ValueError for a malformed ``[secrets]`` table.
    """
    store = SecretStore(root)
    fills: dict[str, str] = {}
    for scope in scopes:
        fills = {**store.get(scope), **fills}
    public, secrets = rule_for(root, (*names, *fills)).split(env)
    for key, value in env.items():
        if value == MASK and key not in secrets and key in fills:
            secrets[key] = fills[key]
    return public, secrets


def take_env(
    root: Path,
    scope: str,
    env: Mapping[str, str],
    *,
    names: Iterable[str] = (),
    fill_from: Iterable[str] = (),
) -> dict[str, str]:
    """``classify`` the environment and keep its secrets in ``scope``; returns the public part."""
    public, secrets = classify(root, env, names=names, scopes=(scope, *fill_from))
    SecretStore(root).put(scope, secrets)
    return public


def resolve_env(stored: Mapping[str, str], secrets: Mapping[str, str]) -> dict[str, str]:
    """The stored (masked) environment with the masked values filled back in.

    A ``***`` whose value is known nowhere (a pinned run.env from another agent, a rerun of an
    old run) is left out: a job is better off without a token than with ``***`` as one.
    """
    out = {k: v for k, v in stored.items() if v != MASK or k in secrets}
    for key, value in secrets.items():
        if out.get(key) == MASK or key not in out:
            out[key] = value
    return out
