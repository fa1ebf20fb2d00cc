"""Writing the files an operator names on the command line, without following a link someone
else planted.

Two kinds of file, two rules:

- An **output** (``audit export --output``, ``report --html``, ``setup --update-set``) is written
  where it is named and nowhere else: a symbolic link there is refused (``O_NOFOLLOW``), as is
  anything but a plain file with a single name (a hard link to someone's file, a FIFO, a device).
  Otherwise a link left in a shared directory turns Deskgate's write into a write of the link's
  target (the audit trail into a world-readable file, an HTML page over a config).
- A **file Deskgate's service reads** (``setup --env-file``, ``--secret-file``) is often a link on
  purpose (a configuration repository, a mounted secret), and replacing the link with a new file
  would leave the service reading the old secret. The link is resolved and its target is
  replaced atomically in the target's own directory, keeping the target's group and its owner
  and group permissions (never the world's: it holds a secret).

Errors are ``OSError`` with a ``strerror`` that says what was refused and why and the path in
``filename``, so a command prints one clear line: ``cannot write PATH: STRERROR``.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

PRIVATE = 0o600  # a new secret or audit file: its owner only
# Permission bits a replaced secret file keeps: its owner's and its group's, never other users'.
_KEPT_BITS = 0o770


def open_output(path: Path | str, mode: int = 0o666) -> BinaryIO:
    """Open ``path`` for writing, emptied: a plain file (created with ``mode``, masked by the
    umask; an existing file keeps its mode unless ``mode`` is ``PRIVATE``). Refuses a symbolic
    link, a hard-linked file or anything that is not a plain file, leaving it as it was."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused(path, "it is a symbolic link; remove it or name its target") from exc
        raise
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise _refused(path, "it is not a plain file")
        if found.st_nlink > 1:
            raise _refused(path, f"it is a plain file with {found.st_nlink} names (hard links)")
        if mode == PRIVATE:
            os.fchmod(fd, PRIVATE)  # a file that was there keeps its mode through O_CREAT
        os.set_blocking(fd, True)
        os.ftruncate(fd, 0)  # only now: a refused file is left as it was
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def write_output(path: Path | str, data: str | bytes, mode: int = 0o666) -> None:
    """``data`` (text as UTF-8) into ``path``, as ``open_output`` allows."""
    with open_output(path, mode) as out:
        out.write(data.encode("utf-8") if isinstance(data, str) else data)


def replace_target(path: Path | str, text: str) -> Path:
    """Replace the file ``path`` names (through any symbolic links) with ``text``, never
    half-written. A new file is ``PRIVATE``; an existing one keeps its group and its owner and
    group permissions (and its owner, where this process may set it). Returns the real path."""
    target = Path(os.path.realpath(path))
    try:
        before: os.stat_result | None = target.stat()
    except FileNotFoundError:
        before = None
    if before is not None and not stat.S_ISREG(before.st_mode):
        raise _refused(Path(path), f"its target {target} is not a plain file")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.fchmod(fd, PRIVATE)  # nobody else reads the secret while it is being written
        if before is not None:
            _keep_owner(fd, before, target)
            os.fchmod(fd, before.st_mode & _KEPT_BITS)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _keep_owner(fd: int, before: os.stat_result, target: Path) -> None:
    """Give the new file the old one's group (and owner, as root), or refuse: the service may read
    the file through its group, and would lose the secret."""
    uid = before.st_uid if os.geteuid() == 0 else -1
    if before.st_gid == os.getegid() and uid == -1:
        return
    try:
        os.fchown(fd, uid, before.st_gid)
    except PermissionError as exc:
        raise _refused(
            target,
            f"its group (gid {before.st_gid}) cannot be kept by this user; run as the file's "
            "owner or a member of its group",
        ) from exc


def _refused(path: Path, why: str) -> OSError:
    return OSError(errno.EPERM, f"refused, {why}", str(path))
