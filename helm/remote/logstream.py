"""The workspace copy of a job's log, kept byte-exact across reconnects and restarts.

The stored ``Job.log_offset`` is the promise: the first ``log_offset`` bytes of the remote
``train.log`` are in ``jobs/<id>/train.log``, and nothing else is. Bytes are appended to the
file (and flushed) before the offset is committed, so after a crash the file can only be
*ahead* of the store; opening the stream cuts it back to the stored offset, and reading
resumes from there (after a power loss it may instead be behind: it is then refilled). No line is lost, none repeated. The parser is rebuilt from the local
copy on open, so live progress survives a daemon restart too.
"""

from __future__ import annotations

import os
from pathlib import Path

from golf_task.logs import LogParser, LogSummary
from helm.models.job_queue import TAIL_LINES, read_tail


class LogStream:
    """Append-only local log plus its incremental parse."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.parser = LogParser()
        with open(self.path, "ab+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size > offset:
                fh.truncate(offset)  # written but never committed: it will be read again
            elif size < offset:
                offset = size  # the local copy lost bytes (deleted?): fetch them again
            fh.seek(0)
            remaining = offset
            while remaining > 0:
                chunk = fh.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                self.parser.feed(chunk)
                remaining -= len(chunk)
        self.offset = offset

    def append(self, data: bytes) -> None:
        """Write bytes that came from the box at ``self.offset``; the caller commits after.

        All or nothing: a write cut short (the workspace's disk is full) is cut back off, so
        the copy stays the box's first ``offset`` bytes and the same bytes are written again
        once there is room. The OSError is raised for the caller to wait and retry.
        """
        if not data:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            view, at = memoryview(data), self.offset
            try:
                while view:  # in the page cache before the commit: survives a SIGKILL
                    written = os.pwrite(fd, view, at)
                    view, at = view[written:], at + written
            except OSError:
                os.ftruncate(fd, self.offset)  # shrinking a file needs no free space
                raise
        finally:
            os.close(fd)
        self.offset += len(data)
        self.parser.feed(data)

    @property
    def summary(self) -> LogSummary:
        return self.parser.summary

    def finish(self) -> LogSummary:
        return self.parser.finish()

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines of the local copy (kept on the run when a job fails)."""
        return read_tail(self.path, lines)
