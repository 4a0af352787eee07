"""A lab's state directory: where it lives, the lock held while the lab runs, and the
runtime file that tells other processes how to reach it.

Each user has a folder of state directories (:func:`labs_home`), one per running lab, so
students on a shared machine never share one.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..core.errors import LabNotRunning

#: Name of the file in a state directory that says how to reach its running lab.
RUNTIME_FILE = "lab.json"
LOCK_FILE = "lock"


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


def read_runtime(state_dir: str | Path) -> dict[str, Any]:
    """What a running lab wrote about itself in ``state_dir`` (raises LabNotRunning)."""
    path = Path(state_dir).expanduser() / RUNTIME_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
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
