"""A lab's state directory: where it lives, the lock held while the lab runs, and the
runtime file that tells other processes how to reach it.

Each user has a folder of state directories (:func:`labs_home`), one per running lab, so
students on a shared machine never share one. A state directory is private to its user:
:func:`prepare_state_dir` makes it (and the folder of state directories) mode 0700,
refuses one that belongs to another user, and tightens one left readable by others
(directories to 0700, files to 0600), with a :class:`PermissionsTightened` warning that
names what it changed. Files the lab writes itself are made 0600 at creation
(:func:`write_private`, :func:`append_private`), whatever the user's umask.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import warnings
from pathlib import Path
from typing import Any

from ..core.errors import LabError, LabNotRunning
from ..core.peers import user_name

#: Name of the file in a state directory that says how to reach its running lab.
RUNTIME_FILE = "lab.json"
LOCK_FILE = "lock"
#: Modes of what a state directory holds: its owner only (umask cannot loosen them).
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: How many changed paths a PermissionsTightened warning names (then "and N more").
_NAMED_IN_WARNING = 5


class PermissionsTightened(UserWarning):
    """A state directory was readable by other users, and the lab made it private."""


def labs_home() -> Path:
    """The folder that holds this user's lab state directories.

    ``MAIL_LABS_HOME`` overrides it; otherwise it is per user, as each platform expects,
    so students on a shared JupyterHub host each have their own.
    """
    env = os.environ.get("MAIL_LABS_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "mail-labs"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "mail-labs"
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "mail-labs"


class StateLock:
    """An exclusive, non-blocking lock on a state directory, held while a lab runs."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def is_free(self) -> bool:
        """True when nobody holds the lock (taken and given back at once)."""
        if self.acquire():
            self.release()
            return True
        return False


# -- privacy ------------------------------------------------------------------------------


def _mkdir_private(directory: Path) -> None:
    """Make ``directory`` and any missing parent with mode 0700 (``mkdir -p`` would give
    the parents the umask's mode)."""
    missing = []
    for folder in [directory, *directory.parents]:
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)


#: Folders inside the state directory whose modes a service sets for itself, left as they
#: are: Dovecot makes its sockets' folder ``imap/run`` 0755 and some sockets 0666, and
#: writes its own state (``imap/state``) 0644 whatever the umask; the private ``imap/``
#: above them keeps other users out.
SERVICE_OWNED = ("imap/run", "imap/state")


def tighten(directory: Path, *, recursive: bool = True,
            skip: tuple[str, ...] = SERVICE_OWNED) -> list[tuple[Path, int, int]]:
    """Take group and other permissions off ``directory`` and (``recursive``) everything
    in it: directories become at most 0700, files at most 0600 (symbolic links inside are
    left alone, never followed; the folders ``skip`` names, relative to ``directory``,
    are not entered). One ``lstat`` per entry: some 50 ms for a state directory
    holding 3,000 messages. Returns ``(path, old mode, new mode)`` for each change.
    Nothing to do on Windows, where modes do not say who may read."""
    changed: list[tuple[Path, int, int]] = []
    if os.name != "posix":
        return changed

    def fix(path: str, mode: int, limit: int) -> None:
        new = mode & limit
        if new != mode:
            os.chmod(path, new)
            changed.append((Path(path), mode, new))

    fix(str(directory), stat.S_IMODE(directory.stat().st_mode), PRIVATE_DIR_MODE)
    skipped = {os.path.join(str(directory), name) for name in skip}
    pending = [str(directory)] if recursive else []
    while pending:  # os.scandir: one lstat per entry, symbolic links never followed
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed meanwhile
                if stat.S_ISDIR(info.st_mode):
                    if entry.path in skipped:
                        continue
                    fix(entry.path, stat.S_IMODE(info.st_mode), PRIVATE_DIR_MODE)
                    pending.append(entry.path)
                elif not stat.S_ISLNK(info.st_mode):
                    fix(entry.path, stat.S_IMODE(info.st_mode), PRIVATE_FILE_MODE)
    return changed


def prepare_state_dir(directory: Path) -> list[tuple[Path, int, int]]:
    """Make ``directory`` private to this user before a lab uses it.

    Creates it (and missing parents) with mode 0700; refuses (LabError) a directory that
    belongs to another user; tightens one left readable by others, and the folder of
    state directories around it, with a :class:`PermissionsTightened` warning that says
    what changed. Returns the changes."""
    _mkdir_private(directory)
    if os.name != "posix":
        return []
    me = os.geteuid()
    owner = directory.stat().st_uid
    if owner != me:
        raise LabError(f"the state directory {directory} belongs to {user_name(owner)}, "
                       f"not to you ({user_name(me)}); a lab keeps its state only in a "
                       "folder of its own user: choose another state directory")
    changed = tighten(directory)
    home = labs_home()
    if directory.parent == home and home.stat().st_uid == me:
        changed += tighten(home, recursive=False)
    if changed:
        named = ", ".join(f"{path} ({old:04o} -> {new:04o})"
                          for path, old, new in changed[:_NAMED_IN_WARNING])
        more = len(changed) - _NAMED_IN_WARNING
        warnings.warn(PermissionsTightened(
            f"the lab's state directory {directory} was open to other users; the lab made "
            f"it private (directories 0700, files 0600): {named}"
            + (f" and {more} more" if more > 0 else "")), stacklevel=3)
    return changed


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file, then a rename), created
    with mode 0600."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def append_private(path: Path, text: str) -> None:
    """Append ``text`` to ``path``, creating it with mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(text)


# -- finding a running lab ----------------------------------------------------------------


def read_runtime(state_dir: str | Path) -> dict[str, Any]:
    """What a running lab wrote about itself in ``state_dir`` (raises LabNotRunning)."""
    path = Path(state_dir).expanduser() / RUNTIME_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except PermissionError as exc:
        raise LabNotRunning(f"cannot read {path}: the lab in {state_dir} belongs to another "
                            "user, and only its owner may drive it") from exc
    except (OSError, ValueError) as exc:
        raise LabNotRunning(f"no running lab in {state_dir} (no readable {RUNTIME_FILE})") from exc


def running_labs() -> list[Path]:
    """State directories under :func:`labs_home` whose lab is running now."""
    found: list[Path] = []
    home = labs_home()
    if not home.is_dir():
        return found
    for candidate in sorted(home.iterdir()):
        if (candidate / RUNTIME_FILE).exists() and not StateLock(candidate).is_free():
            found.append(candidate)
    return found
