"""Writing files that are made once and must never be seen half-written: keys, certificates;
and the file locks through which processes on one host agree."""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_new_file(path: Path, content: bytes, mode: int) -> None:
    """Create ``path`` holding ``content`` with ``mode``, or raise ``FileExistsError``.

    The bytes go to a private temporary file beside it, are fsynced, and are then linked
    into place: a crash never leaves a partial file, and of two processes creating the
    same file at once exactly one succeeds.
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.link(temporary, path)
    finally:
        os.unlink(temporary)


def fsync_directory(path: Path) -> None:
    """Make a directory's new entries (created or renamed files) durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def creation_lock(directory: Path) -> Iterator[None]:
    """Held while a process looks for ``directory``'s first-start files and makes them.

    The workers of one server start at the same moment: without it two of them could
    both find nothing, and both make a CA or a TSA there. The lock is a ``flock`` on a
    file beside the directory, which the kernel drops if the process dies. Once the body
    has succeeded the file is removed: every process that waited on it, and every later
    one, finds the directory complete.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    path = directory.parent / f".{directory.name}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
            path.unlink(missing_ok=True)
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def host_lock_directory() -> Path | None:
    """This user's directory for lock files shared only by processes on this host.

    ``<temp dir>/evidence-ledger-<uid>``, made ``0700`` if missing. ``None`` if it cannot be
    made, or is not a directory of this user's that only it may open (another user could
    otherwise hold its locks): the caller then goes without.
    """
    directory = Path(tempfile.gettempdir()) / f"evidence-ledger-{os.getuid()}"
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        found = directory.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        return None
    return directory


class ExclusiveFileLock:
    """An exclusive ``flock`` on ``path``, taken only if no other open file holds it.

    The kernel is the keeper: the lock goes with the open file, released when its holder
    closes it or dies, so another process can then take it over.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if it is free; ``True`` while this holds it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go of the lock (no-op if not held)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
