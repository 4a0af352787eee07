"""The lab's IMAP service: Dovecot started on first use, over the lab's own mailboxes,
listed by lab.info() and `serve`, stopped with the lab."""

from __future__ import annotations

import imaplib
import ssl
from pathlib import Path

import pytest

import labsupport
from labsupport.mail.imap_dovecot import dovecot_available

pytestmark = pytest.mark.skipif(
    not dovecot_available(), reason="Dovecot is not installed (Debian package dovecot-imapd)")

MESSAGE = (b"From: alice@northwind.test\r\nTo: bob@northwind.test\r\n"
           b"Subject: read me over IMAP\r\n\r\nHello over 993.\r\n")


def test_imap_starts_on_first_use_and_reads_the_lab_mailbox(tmp_path: Path) -> None:
    lab = labsupport.start(tmp_path / "lab")
    try:
        assert lab.imap_if_running() is None  # not started with the lab
        assert lab.info()["imap"] == {"port": 0}
        lab.mail.deliver("bob@northwind.test", MESSAGE)
        imap = lab.imap
        assert lab.imap_if_running() is imap and lab.info()["imap"]["port"] == imap.port
        assert "IMAP (Dovecot)" in str(lab)
        account = lab.accounts.get("bob@northwind.test")
        assert account is not None
        context = ssl.create_default_context(cafile=str(lab.ca.ca_file))
        with imaplib.IMAP4_SSL("127.0.0.1", imap.port, ssl_context=context) as client:
            client.login(account.address, account.password)
            client.select("INBOX", readonly=True)
            _, data = client.fetch("1", "(BODY.PEEK[])")
        assert b"Subject: read me over IMAP" in data[0][1]
        lab.reset()
        assert lab.imap_if_running() is imap  # a reset empties the mail, Dovecot stays
    finally:
        lab.stop()
    assert not imap.running


def test_imap_needs_a_running_lab(tmp_path: Path) -> None:
    lab = labsupport.start(tmp_path / "lab")
    lab.stop()
    with pytest.raises(labsupport.LabError, match="not running"):
        lab.start_imap()
