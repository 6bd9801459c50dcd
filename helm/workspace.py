"""The campaign folder (``HELM_HOME``): where every file of one campaign lives.

Keeping the database, the task repository, the worktrees, the streamed job logs and the
submissions under one root means a campaign can be backed up, moved or deleted as a unit, and
that any process (TUI, daemon, agent) finds everything from one path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helm.models.db import Db
    from helm.models.engine import Store

ENV_HOME = "HELM_HOME"


class WorkspaceError(Exception):
    """The workspace folder cannot be created or used."""


def default_home() -> Path:
    """``$HELM_HOME``, else ``$XDG_DATA_HOME/helm``, else ``~/.local/share/helm``."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "helm"


class Workspace:
    """Paths of one campaign, plus a lazily opened store."""

    SUBDIRS = ("jobs", "data", "submissions", "worktrees", "logs", "agents", "audits")

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser().resolve() if root else default_home().resolve()

    # Layout -------------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.root / "helm.db"

    @property
    def task_dir(self) -> Path:
        """The task repository (git, branch ``base``)."""
        return self.root / "task"

    @property
    def worktrees_dir(self) -> Path:
        return self.root / "worktrees"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def data_dir(self) -> Path:
        """The tiny offline dataset for the local host (made by ``golf_task.data tiny``)."""
        return self.root / "data"

    @property
    def submissions_dir(self) -> Path:
        return self.root / "submissions"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def agents_dir(self) -> Path:
        """Per-agent driver logs and state."""
        return self.root / "agents"

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def known_hosts_path(self) -> Path:
        """Host keys the user trusted through ``helm host trust`` (added to ~/.ssh's)."""
        return self.root / "known_hosts"

    @cached_property
    def campaign_id(self) -> str:
        """A short random id of this campaign, made once (``<home>/campaign.id``).

        Boxes are shared: two campaigns using the same default work folder on one box would
        number their jobs alike and could take each other's job folders for their own (and the
        dispatcher's stray reaper could stop the other's jobs). Each campaign's default work
        folder therefore carries this id.
        """
        import secrets

        path = self.root / "campaign.id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        tmp = path.with_name(f"campaign.id.{os.getpid()}")
        tmp.write_text(secrets.token_hex(6) + "\n")
        try:
            os.link(tmp, path)  # first writer wins; a racing one reads the winner's id
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path.read_text().strip()

    def job_dir(self, job_id: int) -> Path:
        return self.jobs_dir / str(job_id)

    # Life cycle ---------------------------------------------------------------------------
    def ensure(self) -> Workspace:
        """Create the layout if missing; every command calls this before its first use."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for name in self.SUBDIRS:
                (self.root / name).mkdir(exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create workspace {self.root}: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise WorkspaceError(f"workspace {self.root} is not writable")
        return self

    @cached_property
    def store(self) -> Store:
        """The campaign's store (``HELM_DB_URL`` overrides the SQLite file)."""
        from helm.models.engine import Store, db_url_for

        return Store(db_url_for(self.root))

    @contextmanager
    def db(self, *, write: bool) -> Iterator[Db]:
        """One transaction for the query functions of ``helm.models`` (they all take a ``Db``).

        A SQLite store already at this helm's schema is opened with the standard library
        alone (no ORM import: agents call helm constantly); anything else (a new or older
        store, ``HELM_DB_URL``) goes through the full ``Store``, which creates or migrates it.
        """
        from helm.models.db import SqlaDb, sqlite_ready, sqlite_tx

        if not os.environ.get("HELM_DB_URL") and sqlite_ready(self.db_path):
            with sqlite_tx(self.db_path, write=write) as db:
                yield db
            return
        store = self.store
        with store.write() if write else store.read() as session:
            yield SqlaDb(session.connection())
