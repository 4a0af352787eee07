"""The lab's mailboxes: one Maildir per address, written so that no message is half there.

Mail the lab's MX role accepts is stored with Python's :mod:`mailbox` module, one Maildir
per address under the lab's state directory: ``mail/<domain>/<local part>/`` with its
``tmp``, ``new`` and ``cur`` folders, and the Junk folder as a Maildir++ subfolder
``.Junk`` (for the filtering lessons). A Maildir delivery writes the message into ``tmp``,
flushes it to disk (``fsync``) and only then links it into ``new``; this store also flushes
the ``new`` directory itself before returning, so when the server says 250 the message is
durable, and a crash at any moment leaves either the whole message or none of it (a
half-written file in ``tmp`` is never listed, and stale ones are removed when the store
opens). Messages are kept with Unix line endings, as Maildir readers expect.

Introduced in ``notebooks/02-smtp-dialogue.ipynb``.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import mailbox
import os
import re
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import IO, Any, cast

from ..core.errors import LabError
from ..core.results import html_table, text_table

INBOX = "INBOX"
JUNK = "Junk"

#: A unique number per delivery in this process (``next()`` on a count is atomic).
_SEQUENCE = itertools.count(1)
#: A Maildir key as this store writes it: seconds, microseconds, pid, sequence.
_KEY = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)")
#: Characters that may not appear in a mailbox path component.
_UNSAFE = re.compile(r"[/\\\x00]")
#: Unfinished deliveries older than this are removed when the store opens (Maildir's
#: own rule is 36 hours; a lab restart means any unfinished write is abandoned).
_STALE_TMP_SECONDS = 60
#: Every message file is its owner's only; folders are 0700 (``mailbox`` makes them so).
_FILE_MODE = 0o600


class _DurableMaildir(mailbox.Maildir):
    """A Maildir whose new messages get names unique across threads, and whose ``new``
    directory is flushed to disk after each delivery (``mailbox.Maildir`` already
    flushes the message file before linking it into place)."""

    def _create_tmp(self) -> IO[bytes]:
        # Maildir's own name uses a class counter that two threads can read at once.
        now = time.time()
        uniq = (f"{int(now)}.M{int(now % 1 * 1e6):06d}P{os.getpid()}Q{next(_SEQUENCE)}"
                f"R{secrets.token_hex(4)}.{_hostname()}")
        # Mode 0600 whatever the umask: a mailbox is its owner's only. (Maildir.add closes
        # it, and needs its name: hence open() with an opener rather than os.fdopen.)
        return open(os.path.join(self._path, "tmp", uniq), "xb",
                    opener=lambda path, flags: os.open(path, flags, _FILE_MODE))

    def add(self, message: Any) -> str:
        key = cast(str, super().add(message))
        _fsync_directory(os.path.join(self._path, "new"))
        return key


def _hostname() -> str:
    return socket.gethostname().replace("/", r"\057").replace(":", r"\072")


def _fsync_directory(path: str) -> None:
    """Make a rename or link in ``path`` durable (POSIX: fsync the directory)."""
    if os.name != "posix":
        return  # Windows has no directory fsync; NTFS journals the rename
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class StoredMessage:
    """One message in a lab mailbox: its Maildir key, folder, mailbox address and bytes."""

    key: str
    folder: str
    address: str
    raw: bytes = field(repr=False)

    @property
    def message(self) -> EmailMessage:
        """The message parsed with ``email.policy.default`` (headers decoded)."""
        return cast(EmailMessage,
                    email.message_from_bytes(self.raw, policy=email.policy.default))

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def __str__(self) -> str:
        return self.raw.decode("utf-8", errors="replace")


def _split(address: str) -> tuple[str, str]:
    """(domain, local part) of a lab address, safe to use as path components."""
    cleaned = address.strip().strip("<>").lower()
    local, at, domain = cleaned.rpartition("@")
    if not at or not local or not domain:
        raise LabError(f"{address!r} is not a mail address (local-part@domain)")
    for part in (local, domain):
        if _UNSAFE.search(part) or part.startswith(".") or part in (".", ".."):
            raise LabError(f"{address!r} cannot be a lab mailbox name")
    return domain, local


def _sort_key(key: str) -> tuple[int, int, int, str]:
    found = _KEY.match(key)
    if found is None:
        return (1 << 62, 0, 0, key)  # written by someone else: last, by name
    return (int(found.group(1)), int(found.group(2)), int(found.group(4)), key)


class MailStore:
    """Maildir mailboxes under ``root``, one per address (see the module docstring).

    Safe to use from several threads (the server delivers from worker threads while a
    notebook reads).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._clean_tmp()

    # -- writing -------------------------------------------------------------------------

    def _maildir(self, address: str, folder: str = INBOX, create: bool = True) -> mailbox.Maildir:
        domain, local = _split(address)
        path = self.root / domain / local
        if not create and not path.is_dir():
            raise KeyError(address)
        with self._lock:  # Maildir() creates its folders without expecting company
            if create:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            box = _DurableMaildir(str(path), factory=None, create=create)
            if folder == INBOX:
                return box
            if folder not in box.list_folders():
                if not create:
                    raise KeyError(folder)
                box.add_folder(folder)  # Maildir++: ".Junk" with its "maildirfolder" mark
                os.chmod(path / f".{folder}" / "maildirfolder", _FILE_MODE)  # made 0666-umask
            return _DurableMaildir(str(path / f".{folder}"), factory=None, create=False)

    def deliver(self, address: str, raw: bytes, folder: str = INBOX) -> str:
        """Store ``raw`` in ``address``'s ``folder`` and return its Maildir key.

        The message is on disk, and listed, when this returns; if it raises (or the
        process dies on the way), nothing is listed. Line endings become Unix ones.
        """
        if folder != INBOX and (not folder or _UNSAFE.search(folder) or "." in folder):
            raise LabError(f"{folder!r} is not a folder name (use {INBOX!r} or {JUNK!r})")
        data = raw.replace(b"\r\n", b"\n")
        box = self._maildir(address, folder)
        return box.add(data)

    def clear(self) -> None:
        """Remove every mailbox and message (``lab.reset()`` calls this)."""
        with self._lock:
            for child in self.root.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)

    def _clean_tmp(self) -> None:
        """Remove deliveries a crash left unfinished in ``tmp`` (never listed anyway)."""
        cutoff = time.time() - _STALE_TMP_SECONDS
        for tmp in self.root.glob("*/*/tmp"):
            for leftover in [tmp, *tmp.parent.glob(".*/tmp")]:
                for path in leftover.iterdir() if leftover.is_dir() else []:
                    try:
                        if path.stat().st_mtime < cutoff:
                            path.unlink()
                    except OSError:
                        continue

    # -- reading -------------------------------------------------------------------------

    def addresses(self) -> list[str]:
        """Every address that has a mailbox (received mail at least once), sorted."""
        found = []
        for domain in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for local in sorted(p for p in domain.iterdir() if (p / "new").is_dir()):
                found.append(f"{local.name}@{domain.name}")
        return found

    def folders(self, address: str) -> list[str]:
        """The folders of ``address``'s mailbox: INBOX first, then the others (Junk)."""
        try:
            box = self._maildir(address, create=False)
        except KeyError:
            return []
        return [INBOX, *sorted(box.list_folders())]

    def messages(self, address: str, folder: str = INBOX) -> list[StoredMessage]:
        """The messages in ``address``'s ``folder``, oldest first (empty if none)."""
        try:
            box = self._maildir(address, folder, create=False)
        except KeyError:
            return []
        domain, local = _split(address)
        found = []
        for key in sorted(box.keys(), key=_sort_key):
            try:
                raw = box.get_bytes(key)
            except KeyError:
                continue  # moved or removed meanwhile
            found.append(StoredMessage(key=key, folder=folder, address=f"{local}@{domain}",
                                       raw=raw))
        return found

    def count(self, address: str | None = None) -> int:
        """How many messages are stored, in every folder (of ``address``, or of all)."""
        addresses = [address] if address is not None else self.addresses()
        total = 0
        for each in addresses:
            for folder in self.folders(each):
                try:
                    total += len(self._maildir(each, folder, create=False))
                except KeyError:
                    continue
        return total

    def summary(self) -> list[list[object]]:
        """One row per mailbox and folder: address, folder, message count."""
        rows: list[list[object]] = []
        for address in self.addresses():
            for folder in self.folders(address):
                rows.append([address, folder, len(self._maildir(address, folder, create=False))])
        return rows

    def __repr__(self) -> str:
        return f"<MailStore {self.root}: {self.count()} message(s)>"

    def __str__(self) -> str:
        return text_table(["mailbox", "folder", "messages"], self.summary())

    def _repr_html_(self) -> str:
        return html_table(["mailbox", "folder", "messages"], self.summary(),
                          caption=f"Lab mailboxes in {self.root}")


__all__ = ["INBOX", "JUNK", "MailStore", "StoredMessage"]
