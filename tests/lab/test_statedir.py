"""Tightening a state directory: private all the way down, except the folder whose modes
Dovecot sets for itself (inside the private imap/ folder)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from labsupport.lab.statedir import SERVICE_OWNED, tighten

pytestmark = pytest.mark.skipif(os.name != "posix", reason="modes say who may read on POSIX")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_everything_is_made_private_but_dovecots_own_folder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run = state / "imap" / "run"
    run.mkdir(parents=True)
    for folder in (state, state / "imap", run):
        folder.chmod(0o755)
    socket_like = run / "auth-userdb"
    socket_like.write_text("")
    socket_like.chmod(0o666)
    notes = state / "imap" / "dovecot.conf"
    notes.write_text("listen = 127.0.0.1\n")
    notes.chmod(0o644)

    changed = {path for path, _old, _new in tighten(state)}

    assert "imap/run" in SERVICE_OWNED
    assert (_mode(state), _mode(state / "imap"), _mode(notes)) == (0o700, 0o700, 0o600)
    assert (_mode(run), _mode(socket_like)) == (0o755, 0o666)  # Dovecot's, left alone
    assert changed == {state, state / "imap", notes}


def test_skip_can_be_emptied(tmp_path: Path) -> None:
    run = tmp_path / "imap" / "run"
    run.mkdir(parents=True)
    run.chmod(0o755)
    tighten(tmp_path, skip=())
    assert _mode(run) == 0o700
