"""The vocabulary of mail ports and TLS modes, and whether a port and a mode belong together.

Holds the two TLS modes (:data:`STARTTLS`, :data:`IMPLICIT_TLS`), the services, the RFC
sections the rules come from, :data:`WELL_KNOWN` (each well-known mail port with its one
TLS mode, as :class:`PortRule`), the loose readers :func:`tls_mode` and
:func:`service_name`, and :func:`pairing` with its result :class:`Pairing`.
Part of :mod:`labsupport.teach.providers`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..core.errors import LabError
from ..core.results import Result, TraceBuilder

# -- the vocabulary ------------------------------------------------------------------------

STARTTLS = "STARTTLS"
IMPLICIT_TLS = "implicit TLS"
#: The two ways a mail connection gets TLS, exactly as the CSV file spells them.
TLS_MODES = (STARTTLS, IMPLICIT_TLS)

#: What each service is for, in words.
SERVICES = {
    "submission": "sending mail (SMTP message submission)",
    "imap": "reading mail (IMAP)",
    "pop3": "downloading mail (POP3)",
}

# The rules being applied, named once (RFC and section).
RFC_SUBMISSION_PORT = "RFC 6409 section 3.1"
RFC_SMTP_STARTTLS = "RFC 3207 section 4"
RFC_STARTTLS_STRIPPING = "RFC 3207 section 6"
RFC_RELAY = "RFC 5321"
RFC_PORT25_BLOCKING = "RFC 5068"
RFC_IMPLICIT = "RFC 8314 section 3"
RFC_IMPLICIT_POP = "RFC 8314 section 3.1"
RFC_IMPLICIT_IMAP = "RFC 8314 section 3.2"
RFC_IMPLICIT_SUBMISSION = "RFC 8314 section 3.3"
RFC_IMAP_STARTTLS = "RFC 9051 section 6.2.1 (RFC 3501 section 6.2.1)"
RFC_POP_STLS = "RFC 2595 section 4"
RFC_SERVER_IDENTITY = "RFC 7817, required by RFC 8314 section 5.3"
RFC_SMTP_AUTH = "RFC 4954"
RFC_OAUTHBEARER = "RFC 7628"


@dataclass(frozen=True)
class PortRule:
    """What the RFCs say one well-known port is for.

    ``service`` is ``"submission"``, ``"imap"``, ``"pop3"`` or ``"relay"`` (port 25,
    server to server); ``tls`` is how TLS starts there; ``name`` is the IANA service
    name; ``greeting`` is how the server's first line begins.
    """

    port: int
    service: str
    tls: str
    name: str
    rfc: str
    greeting: str
    job: str


#: The ports of mail, and the one TLS mode that belongs to each.
WELL_KNOWN: dict[int, PortRule] = {
    25: PortRule(25, "relay", STARTTLS, "smtp", f"{RFC_RELAY}; STARTTLS per {RFC_SMTP_STARTTLS}",
                 "220", "mail servers hand mail to each other here (the MX side)"),
    587: PortRule(587, "submission", STARTTLS, "submission", RFC_SUBMISSION_PORT, "220",
                  "mail programs hand new mail to their provider here, after logging in"),
    465: PortRule(465, "submission", IMPLICIT_TLS, "submissions", RFC_IMPLICIT_SUBMISSION,
                  "220", "mail programs hand new mail to their provider here, inside TLS "
                  "from the first byte"),
    143: PortRule(143, "imap", STARTTLS, "imap", RFC_IMAP_STARTTLS, "* OK",
                  "mail programs read the mailbox here"),
    993: PortRule(993, "imap", IMPLICIT_TLS, "imaps", RFC_IMPLICIT_IMAP, "* OK",
                  "mail programs read the mailbox here, inside TLS from the first byte"),
    110: PortRule(110, "pop3", STARTTLS, "pop3", RFC_POP_STLS, "+OK",
                  "mail programs download mail here (POP3 calls its STARTTLS command STLS)"),
    995: PortRule(995, "pop3", IMPLICIT_TLS, "pop3s", RFC_IMPLICIT_POP, "+OK",
                  "mail programs download mail here, inside TLS from the first byte"),
}

_IMPLICIT_WORDS = {"implicit tls", "implicit", "ssl", "ssl/tls", "tls/ssl", "tls", "ssl tls",
                   "implicit ssl", "tls from the start", "smtps", "imaps", "pop3s"}
_STARTTLS_WORDS = {"starttls", "start tls", "stls", "explicit tls", "explicit"}


def tls_mode(value: Any) -> str:
    """``"STARTTLS"`` or ``"implicit TLS"`` for a TLS mode written loosely.

    Mail programs call implicit TLS "SSL", "SSL/TLS" or "TLS", and STARTTLS "STARTTLS"
    (some say "explicit TLS"); anything else raises :class:`LabError`.
    """
    said = re.sub(r"[\s_-]+", " ", str(value).strip().lower())
    if said in _IMPLICIT_WORDS:
        return IMPLICIT_TLS
    if said in _STARTTLS_WORDS:
        return STARTTLS
    raise LabError(f"{value!r} is not a TLS mode: say 'STARTTLS' (the connection starts in "
                   "clear, then upgrades) or 'implicit TLS' (also written 'SSL', 'SSL/TLS' "
                   "or 'TLS': TLS from the first byte)")


def service_name(value: Any) -> str:
    """``"submission"``, ``"imap"`` or ``"pop3"``; anything else raises :class:`LabError`."""
    said = str(value).strip().lower()
    said = {"pop": "pop3", "smtp submission": "submission"}.get(said, said)
    if said not in SERVICES:
        raise LabError(f"{value!r} is not a service here: use one of {', '.join(SERVICES)}")
    return said


def _port_number(value: Any) -> int:
    """A port as an int from 1 to 65535, or :class:`LabError`."""
    if isinstance(value, bool):
        raise LabError(f"{value!r} is not a port number")
    try:
        port = int(str(value).strip())
    except ValueError:
        raise LabError(f"{value!r} is not a port number (a whole number from 1 to 65535)") \
            from None
    if not 1 <= port <= 65535:
        raise LabError(f"{port} is not a port number: TCP ports go from 1 to 65535")
    return port


def _ports_for(service: str) -> dict[str, int]:
    """The well-known port of ``service`` for each TLS mode."""
    return {r.tls: r.port for r in WELL_KNOWN.values() if r.service == service}


# -- port and TLS mode: do they belong together? -----------------------------------------


@dataclass(frozen=True, kw_only=True)
class Pairing(Result):
    """Whether ``port`` and ``tls`` belong together for ``service``, and why.

    ``verdict`` is ``"match"``, ``"mismatch"``, ``"wrong service"``, ``"relay port"`` or
    ``"unknown port"``; ``ok`` is True only for a match. The trace gives the reasons with
    their RFC sections; :attr:`why` is the same as text.
    """

    port: int
    tls: str
    service: str
    ok: bool

    def title(self) -> str:
        return f"Port {self.port} with {self.tls} for {self.service}: {self.verdict}"

    @property
    def why(self) -> str:
        """The reasons, one per line, each with the RFC section it comes from."""
        return "\n".join(step.as_text() for step in self.trace)


def _mismatch_steps(t: TraceBuilder, rule: PortRule) -> str:
    """Add what a client with the wrong mode sees on ``rule``'s port; return the summary."""
    if rule.tls == IMPLICIT_TLS:
        t.add(f"Port {rule.port} is implicit TLS: the server waits for the client's TLS "
              "ClientHello before it says anything.", kind="info", rfc=rule.rfc)
        t.add(f"A STARTTLS client connects and waits for the server's '{rule.greeting}' "
              "greeting, in clear.", kind="info")
        t.add("Neither side speaks: the client times out waiting for a greeting that "
              "never comes.", kind="error")
        return (f"{rule.port} is implicit TLS: a STARTTLS client waits for a greeting that "
                "never comes (the server is waiting for a TLS ClientHello), so it times out")
    t.add(f"Port {rule.port} starts in clear: the server greets with '{rule.greeting} ...' "
          "at once and offers STARTTLS later.", kind="info", rfc=rule.rfc)
    t.add("An implicit-TLS client sends a TLS ClientHello and expects a TLS record back.",
          kind="info", rfc=RFC_IMPLICIT)
    t.add(f"It gets the plaintext '{rule.greeting} ...' instead, which is no TLS record: "
          "OpenSSL reports 'wrong version number' and the handshake fails.", kind="error")
    return (f"{rule.port} starts in clear (STARTTLS): an implicit-TLS client gets the "
            f"plaintext greeting '{rule.greeting} ...' where it expects a TLS record, and "
            "fails with 'wrong version number'")


def pairing(port: int, tls: str, service: str = "submission") -> Pairing:
    """Do ``port`` and the TLS mode ``tls`` belong together for ``service``? Say why.

    >>> pairing(587, "STARTTLS").ok, pairing(465, "STARTTLS").ok
    (True, False)
    """
    number = _port_number(port)
    mode = tls_mode(tls)
    svc = service_name(service)
    right = _ports_for(svc)
    t = TraceBuilder()
    rule = WELL_KNOWN.get(number)

    def done(verdict: str, summary: str, ok: bool = False) -> Pairing:
        return Pairing(verdict=verdict, summary=summary, trace=t.freeze(), port=number,
                       tls=mode, service=svc, ok=ok)

    fix = (f"For {SERVICES[svc]} use {right[STARTTLS]} with STARTTLS or "
           f"{right[IMPLICIT_TLS]} with implicit TLS; {RFC_IMPLICIT} recommends implicit TLS.")
    if rule is None:
        t.add(f"No RFC gives port {number} to {SERVICES[svc]}.", kind="warning")
        t.add(fix, kind="decision", rfc=RFC_IMPLICIT)
        return done("unknown port", f"{number} is not a port the RFCs give to {svc}: "
                    "a provider that uses it must say which TLS mode it speaks")
    if rule.service == "relay":
        t.add(f"Port 25 is SMTP relay: {rule.job}.", kind="info", rfc=RFC_RELAY)
        t.add("Mail programs submit on 587 (STARTTLS) or 465 (implicit TLS) and log in "
              f"first ({RFC_SMTP_AUTH}).", kind="info",
              rfc=f"{RFC_SUBMISSION_PORT}; {RFC_IMPLICIT_SUBMISSION}")
        t.add(f"{RFC_SUBMISSION_PORT} lets a site take submissions on 25 too, but networks "
              "often block outgoing port 25 for end users, and providers document 587 or 465 "
              "for mail programs.", kind="warning", rfc=RFC_PORT25_BLOCKING)
        if mode != rule.tls:
            _mismatch_steps(t, rule)
        t.add(fix, kind="decision")
        return done("relay port", "25 is where mail servers relay to each other (the MX "
                    "side), not the port for mail programs: use 587 with STARTTLS or 465 with "
                    "implicit TLS")
    if rule.service != svc:
        t.add(f"Port {number} is {rule.name}: {rule.job}; it is for "
              f"{SERVICES[rule.service]}, not {SERVICES[svc]}.", kind="error", rfc=rule.rfc)
        t.add(fix, kind="decision")
        return done("wrong service", f"{number} is the {rule.service} port, for "
                    f"{SERVICES[rule.service]}, not {svc}: use {right[mode]} for {svc} with "
                    f"{mode}")
    if mode == rule.tls:
        if mode == STARTTLS:
            what = {"submission": f"The server greets in clear, the client sends EHLO, sees "
                                  f"STARTTLS offered and upgrades ({RFC_SMTP_STARTTLS}).",
                    "imap": "The server greets in clear, the client sends STARTTLS and "
                            "upgrades.",
                    "pop3": "The server greets in clear, the client sends STLS and upgrades."}
            t.add(f"Port {number} is {rule.name}: {rule.job}.", kind="ok", rfc=rule.rfc)
            t.add(what[svc], kind="info")
            t.add("The client must refuse to go on if STARTTLS is not offered: an attacker "
                  "can strip the offer from the cleartext greeting.", kind="warning",
                  rfc=RFC_STARTTLS_STRIPPING)
            t.add(f"{RFC_IMPLICIT} recommends implicit TLS ({right[IMPLICIT_TLS]}) where a "
                  "provider offers both.", kind="info", rfc=RFC_IMPLICIT)
            summary = (f"{number} with STARTTLS: the {rule.name} port; the connection starts "
                       "in clear and the client upgrades it to TLS")
        else:
            t.add(f"Port {number} is {rule.name}: {rule.job}.", kind="ok", rfc=rule.rfc)
            t.add("The client sends its TLS ClientHello at once; the server's greeting "
                  "arrives inside TLS, so nothing crosses in clear.", kind="info")
            t.add(f"{RFC_IMPLICIT} recommends implicit TLS over STARTTLS.", kind="info",
                  rfc=RFC_IMPLICIT)
            summary = (f"{number} with implicit TLS: the {rule.name} port; TLS starts with "
                       "the first byte")
        return done("match", summary, ok=True)
    summary = _mismatch_steps(t, rule)
    t.add(f"Fix: {number} with {rule.tls}, or {right[mode]} if you want {mode}.",
          kind="decision")
    return done("mismatch", summary)
