"""Exercise checks of ``notebooks/03-starttls-vs-implicit-tls.ipynb``: round trips before
the first protected byte, the password read from a downgraded session, an
``ssl.SSLContext`` that verifies the lab's server, and the newest message of a mailbox
read over IMAP. Part of :mod:`labsupport.teach.checks`.
"""

from __future__ import annotations

from typing import Any

from .verdicts import Verdict, answer_of, report

# -- notebooks/03-starttls-vs-implicit-tls.ipynb -------------------------------------------

def judge_round_trips(answer: Any, capture: Any, what: str = "this capture") -> Verdict:
    """Exercise: round trips before the first protected byte, counted in ``capture``
    (a :class:`labsupport.wire.capture.Capture`)."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: how many round trips in {what}?")
    expected = capture.round_trips()
    try:
        said = int(value)
    except (TypeError, ValueError):
        return Verdict("wrong", "the answer should be a whole number of round trips.")
    if said == expected:
        return Verdict("right", f"right: {what} waits {expected} round trips before its first "
                       "protected byte.")
    return Verdict("wrong", f"not {said}. Hint: count each time the client sends and must "
                   "wait for the server: the TCP handshake, each command in the clear before "
                   "TLS, and TLS 1.3's own round trip (capture.summary() lists them).")


def judge_stolen_password(answer: Any, capture: Any) -> Verdict:
    """Exercise: the password read from a capture of a downgraded session."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: which password crossed the wire?")
    found = capture.dialogue().credentials()
    passwords = found[1::2] if len(found) > 1 else found
    if str(value) in passwords:
        return Verdict("right", "right: that password was readable by anyone on the path; "
                       "base64 is an encoding, not encryption.")
    if str(value) in found:
        return Verdict("wrong", "that is the user name. Hint: AUTH PLAIN carries "
                       "NUL, user name, NUL, password.")
    return Verdict("wrong", "not that. Hint: find the AUTH PLAIN line in "
                   "capture.dialogue() and decode its base64 (base64.b64decode).")


def judge_verifying_context(answer: Any, port: int, hostname: str = "smtp.lab.test") -> Verdict:
    """Exercise: an ``ssl.SSLContext`` that verifies the lab's certificate and host name.
    The check connects to the implicit-TLS role at ``port`` with it."""
    import socket
    import ssl

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: build an ssl.SSLContext.")
    if not isinstance(value, ssl.SSLContext):
        return Verdict("wrong", "the answer should be an ssl.SSLContext, e.g. from "
                       "ssl.create_default_context(...).")
    if value.verify_mode != ssl.CERT_REQUIRED or not value.check_hostname:
        return Verdict("wrong", "this context does not check the certificate and the host "
                       "name: anyone in the middle could answer. Hint: do not turn "
                       "verify_mode or check_hostname off.")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                value.wrap_socket(raw, server_hostname=hostname):
            pass
    except ssl.SSLCertVerificationError as exc:
        return Verdict("wrong", f"it verifies, but refuses the lab's server: "
                       f"{exc.verify_message}. Hint: trust the lab CA (cafile=lab.ca.ca_file).")
    except (OSError, ssl.SSLError) as exc:
        return Verdict("wrong", f"the TLS connection failed: {exc}")
    return Verdict("right", f"right: it verifies the lab's certificate for {hostname}.")


def judge_imap_message_id(answer: Any, store: Any, address: str) -> Verdict:
    """Exercise: the Message-ID of the newest message in ``address``'s INBOX, read over
    IMAP; the expected one is read from the lab's Maildir (``store``, ``lab.mail``)."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: the Message-ID of {address}'s "
                       "newest message?")
    messages = store.messages(address)
    if not messages:
        return Verdict("wrong", f"{address}'s INBOX is empty: send the lesson's messages "
                       "first (run the cells above).")
    expected = str(messages[-1].message["Message-ID"] or "").strip()
    said = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    said = said.strip()
    if said.lower().startswith("message-id:"):
        said = said.split(":", 1)[1].strip()
    if said == expected:
        return Verdict("right", f"right: {expected} is the newest message in {address}'s "
                       "INBOX, read over IMAP on implicit TLS.")
    older = {str(m.message["Message-ID"] or "").strip() for m in messages[:-1]}
    if said in older:
        return Verdict("wrong", "that is an older message. Hint: IMAP numbers messages "
                       "from 1, oldest first; the newest has the highest number "
                       "(SEARCH ALL lists them).")
    return Verdict("wrong", f"{address}'s INBOX has no message with that Message-ID. Hint: "
                   "log in with imaplib.IMAP4_SSL and the lab CA, select INBOX, and fetch "
                   "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] of the last message.")


def check_imap_message_id(answer: Any, store: Any, address: str) -> None:
    """Check cell for :func:`judge_imap_message_id`."""
    report(judge_imap_message_id(answer, store, address))


def check_round_trips(answer: Any, capture: Any, what: str = "this capture") -> None:
    """Check cell for :func:`judge_round_trips`."""
    report(judge_round_trips(answer, capture, what))


def check_stolen_password(answer: Any, capture: Any) -> None:
    """Check cell for :func:`judge_stolen_password`."""
    report(judge_stolen_password(answer, capture))


def check_verifying_context(answer: Any, port: int, hostname: str = "smtp.lab.test") -> None:
    """Check cell for :func:`judge_verifying_context`."""
    report(judge_verifying_context(answer, port, hostname))
