"""Exercise checks of ``notebooks/03-starttls-vs-implicit-tls.ipynb``: round trips before
the first protected byte, the password read from a downgraded session, and an
``ssl.SSLContext`` that verifies the lab's server. Part of :mod:`labsupport.teach.checks`.
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


def check_round_trips(answer: Any, capture: Any, what: str = "this capture") -> None:
    """Check cell for :func:`judge_round_trips`."""
    report(judge_round_trips(answer, capture, what))


def check_stolen_password(answer: Any, capture: Any) -> None:
    """Check cell for :func:`judge_stolen_password`."""
    report(judge_stolen_password(answer, capture))


def check_verifying_context(answer: Any, port: int, hostname: str = "smtp.lab.test") -> None:
    """Check cell for :func:`judge_verifying_context`."""
    report(judge_verifying_context(answer, port, hostname))
