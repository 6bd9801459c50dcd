"""Secrets in job and host environments: kept out of the store, the logs and the screen.

An environment value whose key names a credential (``HF_TOKEN``, ``WANDB_API_KEY``,
``DB_PASSWORD`` ...) must reach the box, but the store is read by every agent and shown by the
TUI, and logs get pasted into issues. So such values are split off when a host or job is
written: the store keeps ``***`` in their place and the real value lives in
``<workspace>/secrets.json`` (mode 0600, one writer at a time under ``flock``), keyed by scope
(``host:NAME`` or ``job:ID``). Only the launch script on the box ever sees them in clear.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

MASK = "***"
_SECRET_KEY = re.compile(
    r"(^|_)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASS|PASSPHRASE|CREDENTIALS?|AUTH|COOKIE)(_|$)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """Whether a variable name looks like it holds a credential."""
    return bool(_SECRET_KEY.search(key))


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment as it may be shown: credential values replaced by ``***``."""
    return {k: (MASK if is_secret_key(k) else v) for k, v in env.items()}


def split_env(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(what the store may hold, the secrets to keep aside)."""
    secrets = {k: v for k, v in env.items() if is_secret_key(k)}
    return mask_env(env), secrets


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


def resolve_env(stored: Mapping[str, str], secrets: Mapping[str, str]) -> dict[str, str]:
    """The stored (masked) environment with the masked values filled back in."""
    out = dict(stored)
    for key, value in secrets.items():
        if out.get(key) == MASK or key not in out:
            out[key] = value
    return out
