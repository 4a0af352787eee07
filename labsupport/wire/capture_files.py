"""Where the lab keeps its captures, and the pcap files themselves.

A capture may hold what a lesson sends in the clear (a password in the downgrade lesson),
and a key log decrypts every TLS session it names, so both are their user's only: the
lab's ``captures/`` folder in its state directory is mode 0700 (:func:`captures_folder`),
and a pcap written there, or in the temporary folder, is created 0600 before anything is
written into it (:func:`write_pcap`). A pcap the caller asks for elsewhere (the course's
reference captures in ``data/pcaps/``, for everyone to read) gets the usual mode.
:func:`packets_of` reads a pcap back with scapy.

The captures themselves are :mod:`labsupport.wire.capture`'s.
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

#: Modes of the lab's captures folder and of the pcaps in it: its user's only.
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: An empty pcap file: the global header alone (version 2.4, Ethernet link type).
_EMPTY_PCAP = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


class _HasStateDir(Protocol):
    @property
    def state_dir(self) -> Path: ...


def captures_folder(lab: _HasStateDir) -> Path:
    """The lab's ``captures/`` folder in its state directory, private to its user (made
    0700, and tightened to it if an older version left it open)."""
    folder = lab.state_dir / "captures"
    folder.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if os.name == "posix" and folder.stat().st_mode & 0o077:
        os.chmod(folder, PRIVATE_DIR_MODE)
    return folder


def keylog_path(lab: _HasStateDir, name: str = "keys") -> Path:
    """A fresh key log file in the lab's state directory (``captures/NAME.keylog``, in a
    folder only its user may enter: a key log decrypts every session it names)."""
    folder = captures_folder(lab)
    path = folder / f"{name}-{os.getpid()}-{int(time.time() * 1000) % 10**8}.keylog"
    path.unlink(missing_ok=True)
    return path


def default_pcap_path(lab: _HasStateDir | None, started: float, tag: int) -> Path:
    """Where a capture goes when no path was given: the lab's ``captures/`` folder (or
    the temporary folder without a lab), named by its start time, process and ``tag``."""
    folder = captures_folder(lab) if lab is not None else Path(tempfile.gettempdir())
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started or time.time()))
    return folder / f"capture-{stamp}-{os.getpid()}-{tag % 10000}.pcap"


def is_private(path: Path, lab: _HasStateDir | None) -> bool:
    """Whether a pcap at ``path`` is one the lab keeps for its user only: inside the lab's
    state directory, or anywhere for a capture without a lab (the temporary folder)."""
    if os.name != "posix":
        return False  # modes do not say who may read
    if lab is None:
        return True
    try:
        path.resolve().relative_to(Path(lab.state_dir).resolve())
    except ValueError:
        return False
    return True


def write_pcap(path: Path, packets: Sequence[Any], *, private: bool) -> None:
    """Write ``packets`` (scapy packets) to the pcap file ``path``; an empty capture is
    still a valid pcap file. ``private``: the file is made 0600 before it is written
    (writing keeps an existing file's mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
        os.chmod(path, PRIVATE_FILE_MODE)
    if packets:
        from scapy.utils import wrpcap

        wrpcap(str(path), list(packets))
    else:
        path.write_bytes(_EMPTY_PCAP)


def packets_of(path: str | Path) -> Iterator[Any]:
    """Every packet of a pcap file (scapy), for those who want the raw packets."""
    from scapy.utils import PcapReader

    with PcapReader(str(path)) as reader:
        yield from reader


__all__ = ["PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "captures_folder", "default_pcap_path",
           "is_private", "keylog_path", "packets_of", "write_pcap"]
