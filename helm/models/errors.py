"""Store failures in one line: what went wrong with ``helm.db`` and what to do about it.

A researcher whose campaign store is damaged, read-only or held by a stuck process needs one
sentence, not a 60-line SQLAlchemy traceback, and must never have the store silently replaced.
``store_failure`` turns the driver errors of both engines (stdlib ``sqlite3``, SQLAlchemy over
any driver) into that sentence; the CLI prints it and exits non-zero. Imports nothing heavy:
the agents' fast path uses it too.
"""

from __future__ import annotations

import sys


class StoreError(Exception):
    """The store cannot be used (empty, unreadable, corrupt, newer, locked ...)."""


class SchemaFault(StoreError):
    """A fault found in the schema, phrased to follow "store X" (the Store adds the name)."""


EMPTY = (
    "is empty (0 bytes): helm will not replace it with a new campaign; restore it from a "
    "backup (helm.db.bak-*) or move it away to start afresh"
)
UNREADABLE = "cannot be read ({detail}): check its permissions and owner"
READ_ONLY = "is read-only: make it writable (chmod u+w), or work on a copy of the workspace"
CORRUPT = "is corrupt or not a helm store ({detail}): restore it from a backup (helm.db.bak-*)"
LOCKED = (
    "stayed locked by another process for {seconds:g} s: find it with `fuser helm.db` "
    "(a stuck helm or sqlite3 shell) and stop it"
)
BAD_VERSION = "has an unreadable schema version {value!r}: it was not written by helm or is damaged"
NEWER = "was written by a newer helm (schema {found}, this helm knows {known}): upgrade helm"


def _driver_error(exc: BaseException) -> BaseException:
    """The DBAPI error inside a SQLAlchemy wrapper (or the error itself)."""
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import DBAPIError

        if isinstance(exc, DBAPIError) and exc.orig is not None:
            return exc.orig
    return exc


def store_failure(exc: BaseException, where: str, *, busy_timeout_s: float) -> str | None:
    """One line, "store WHERE ...", for a database error; None if ``exc`` is not one.

    None means the error is not a store fault: the caller re-raises it.
    """
    if isinstance(exc, StoreError):
        return str(exc)
    reason = _reason(exc, busy_timeout_s)
    return None if reason is None else f"store {where} {reason}"


def _reason(exc: BaseException, busy_timeout_s: float) -> str | None:
    inner = _driver_error(exc)
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    low = text.lower()
    if "readonly database" in low or ("read-only" in low and "transaction" in low):
        return READ_ONLY
    if "database is locked" in low or "database table is locked" in low:
        return LOCKED.format(seconds=busy_timeout_s)
    if "not a database" in low or "malformed" in low or "file is encrypted" in low:
        return CORRUPT.format(detail=text)
    if "unable to open database file" in low:
        return UNREADABLE.format(detail=text)
    is_db_error = "sqlite3" in sys.modules and isinstance(inner, sys.modules["sqlite3"].Error)
    if not is_db_error and "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import SQLAlchemyError

        is_db_error = isinstance(exc, SQLAlchemyError)
    if not is_db_error and "psycopg" in sys.modules:
        is_db_error = isinstance(inner, sys.modules["psycopg"].Error)
    if is_db_error:
        return f"failed: {text}"
    return None


def write_fault(exc: BaseException) -> str | None:
    """Why a write failed when the disk is to blame ("No space left on device", "Read-only
    file system", a store that is full ...), else None; the error's causes are looked at too.

    The daemon and its job watchers retry such writes until space is back, and never count
    them against a job or exit on them: the job on its box is fine, only our copy waits.
    """
    import errno
    import os

    disk = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in disk:
            return os.strerror(current.errno or 0)
        low = str(_driver_error(current)).lower()
        for sign, reason in (
            ("database or disk is full", "database or disk is full"),
            ("no space left on device", "No space left on device"),
            ("readonly database", "attempt to write a readonly database"),
            ("disk i/o error", "disk I/O error"),
        ):
            if sign in low:
                return reason
        current = current.__cause__ or current.__context__
    return None
