"""labsupport.teach.widgets: the SMTP console and the mailbox viewer.

The console talks to throwaway aiosmtpd servers (the fixtures of test_smtp.py); the
mailbox viewer reads a small fake store with the MailStore API of the issue's contract.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from smtp_servers import (
    MULTI_HOP,
    Certificates,
    Running,
    refused_port,
)

pytest.importorskip("ipywidgets")

from labsupport.teach.widgets import mailbox_viewer, smtp_console  # noqa: E402


def console_parts(panel):  # noqa: ANN001, ANN201
    _help, controls, data_row, status, view = panel.children
    entry, starttls_button, reset_button = controls.children
    message_box, send_button = data_row.children
    return entry, starttls_button, reset_button, message_box, send_button, status, view


# -- the console --------------------------------------------------------------------------


def test_console_grows_the_dialogue(plain: Running) -> None:
    panel = smtp_console("127.0.0.1", plain.port)
    entry, starttls_button, _reset, message_box, send_button, status, view = \
        console_parts(panel)
    assert "220 mx.lab.test" in view.value and "Connected to" in status.value
    assert not starttls_button.disabled  # what the server offers is learnt from EHLO
    entry.value = "EHLO console.lab.test"  # what pressing Enter does
    assert entry.value == ""
    assert "250-mx.lab.test" in view.value and "EHLO console.lab.test" in view.value
    assert panel.submit("MAIL FROM:<alice@northwind.test>").code == 250
    assert panel.submit("RCPT TO:<bob@campus.test>").code == 250
    assert panel.submit("DATA").code == 354
    assert message_box.layout.display == "" and send_button.layout.display == ""
    assert "a line holding a single &#x27;.&#x27;" in status.value
    reply = panel.send_message("Subject: by hand\n\n..a dot I stuffed myself\n.\n")
    assert reply is not None and reply.code == 250
    assert message_box.layout.display == "none" and message_box.value == ""
    assert plain.handler.received[-1][2] == b"Subject: by hand\r\n\r\n.a dot I stuffed myself\r\n"
    assert panel.submit("QUIT").code == 221
    assert "Reset" in status.value and "221" in view.value
    assert panel.submit("NOOP") is None  # closed: nothing is sent
    assert panel.transcript().verdict == "closed"


def test_console_starts_tls_and_resets(starttls: Running,
                                       certs: Certificates) -> None:
    panel = smtp_console("127.0.0.1", starttls.port, ca_file=certs.ca_file)
    entry, starttls_button, reset_button, *_rest, status, view = console_parts(panel)
    panel.submit("EHLO console.lab.test")
    assert not starttls_button.disabled
    starttls_button.click()
    assert panel.session().tls_active and starttls_button.disabled
    assert "TLS started with cipher" in view.value and " ~&gt; EHLO" not in view.value
    entry.value = "EHLO again.lab.test"
    assert " ~&gt; EHLO again.lab.test" in view.value and "over TLS" in status.value
    first = panel.session()
    reset_button.click()
    assert panel.session() is not first and not first.connected
    assert not panel.session().tls_active and "EHLO again" not in view.value


def test_console_shows_errors_as_sentences(starttls: Running,
                                           certs: Certificates) -> None:
    port = refused_port()
    panel = smtp_console("127.0.0.1", port)
    *_parts, status, view = console_parts(panel)
    assert f"connection to 127.0.0.1:{port} refused" in status.value
    assert "#b00020" in status.value and "ERROR: connection" in view.value
    assert panel.submit("EHLO x") is None
    wrong = smtp_console("127.0.0.1", starttls.port, ca_file=certs.wrong_ca_file)
    wrong.submit("EHLO x")
    assert wrong.submit("starttls") is None
    assert "certificate verification failed" in console_parts(wrong)[-2].value


# -- the mailbox viewer -------------------------------------------------------------------


@dataclass(frozen=True)
class FakeStored:
    key: str
    folder: str
    address: str
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class FakeStore:
    """The MailStore API of the contract, in memory."""

    def __init__(self) -> None:
        self.boxes: dict[str, dict[str, list[FakeStored]]] = {}

    def deliver(self, address: str, raw: bytes, folder: str = "INBOX") -> str:
        box = self.boxes.setdefault(address, {"INBOX": []}).setdefault(folder, [])
        key = f"{address}-{folder}-{len(box)}"
        box.append(FakeStored(key, folder, address, raw))
        return key

    def addresses(self) -> list[str]:
        return sorted(self.boxes)

    def folders(self, address: str) -> list[str]:
        return sorted(self.boxes.get(address, {"INBOX": []}))

    def messages(self, address: str, folder: str = "INBOX") -> list[FakeStored]:
        return list(self.boxes.get(address, {}).get(folder, []))


AUTH_RESULTS = (b"Authentication-Results: mx-a.campus.test; spf=pass "
                b"smtp.mailfrom=northwind.test\n")


@pytest.fixture
def store() -> FakeStore:
    fake = FakeStore()
    fake.deliver("carol@campus.test", AUTH_RESULTS + MULTI_HOP)
    fake.deliver("carol@campus.test", b"From: x@phisher.example\nSubject: win <money>\n\nhi\n",
                 folder=".Junk")
    fake.deliver("bob@northwind.test", b"From: alice@northwind.test\nSubject: lunch\n\nyes\n")
    return fake


def viewer_parts(panel):  # noqa: ANN001, ANN201
    controls, message_list, tabs = panel.children
    address_box, folder_box, refresh_button = controls.children
    return address_box, folder_box, refresh_button, message_list, tabs


def test_mailbox_viewer_shows_headers_received_chain_and_source(store: FakeStore) -> None:
    panel = mailbox_viewer(store, "carol@campus.test")
    address_box, folder_box, _refresh, message_list, tabs = viewer_parts(panel)
    assert address_box.options == ("bob@northwind.test", "carol@campus.test")
    assert folder_box.options == ("INBOX", ".Junk") and folder_box.value == "INBOX"
    assert len(message_list.options) == 1 and "hops" in message_list.options[0][0]
    headers, received, auth, raw = (child.value for child in tabs.children)
    assert tabs.titles == ("Header fields", "Received chain", "Authentication-Results",
                           "Raw source")
    assert "Subject" in headers and "hops" in headers
    # hop by hop, from the first to the last
    order = [received.index(name) for name in ("laptop.example", "out.northwind.test (",
                                               "mx1.relay.test (", "mail.campus.test")]
    assert order == sorted(order)
    assert "ESMTPSA: ESMTP with both STARTTLS and successful AUTH" in received
    assert "+4 s" in received  # 11:00:01 +0100 to 02:00:05 -0800
    assert "spf=pass" in auth
    assert "<pre" in raw and "Received: from [198.51.100.7]" in raw
    assert panel.selected().key == "carol@campus.test-INBOX-0"


def test_mailbox_viewer_follows_folders_addresses_and_new_mail(store: FakeStore) -> None:
    panel = mailbox_viewer(store)
    address_box, folder_box, refresh_button, message_list, tabs = viewer_parts(panel)
    assert address_box.value == "bob@northwind.test"
    assert "lunch" in message_list.options[0][0]
    assert "no Received header fields" in tabs.children[1].value
    assert "No Authentication-Results" in tabs.children[2].value
    address_box.value = "carol@campus.test"
    folder_box.value = ".Junk"
    assert "win &lt;money&gt;" in tabs.children[0].value
    assert panel.selected().folder == ".Junk"
    store.deliver("carol@campus.test", b"Subject: second junk\n\nx\n", folder=".Junk")
    store.deliver("dave@campus.test", b"Subject: new box\n\nx\n")
    refresh_button.click()
    assert folder_box.value == ".Junk" and len(message_list.options) == 2
    assert "dave@campus.test" in address_box.options
    panel.select(1)
    assert "second junk" in tabs.children[0].value


def test_mailbox_viewer_for_an_empty_mailbox() -> None:
    panel = mailbox_viewer(FakeStore(), "erin@tinyshop.test")
    address_box, folder_box, _refresh, message_list, tabs = viewer_parts(panel)
    assert address_box.value == "erin@tinyshop.test" and folder_box.value == "INBOX"
    assert message_list.options == () and panel.selected() is None
    assert "No message selected" in tabs.children[0].value
