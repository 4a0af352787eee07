"""Public mail providers' client settings, and why each port goes with one TLS mode.

A mail program needs four facts to reach a provider: a host, a port, a TLS mode and a
way to log in. :func:`load` reads them for a few well-known providers from
``data/providers/client-settings.csv`` (as each provider documented them on the day in
its ``checked`` column) into a :class:`ProviderTable`, and :func:`explain` says what each
field of a row means.

The port and the TLS mode are not independent choices. The RFCs give each port one way
of starting TLS, and :func:`pairing` says whether a port and a mode belong together, and
what a client sees when they do not:

* 587 is the submission port (RFC 6409 section 3.1): the connection starts in clear and
  the client upgrades it with STARTTLS (RFC 3207).
* 465 is submission over implicit TLS (RFC 8314 section 3.3): TLS begins with the very
  first byte, and RFC 8314 section 3 recommends implicit TLS where both exist.
* 143 is IMAP with STARTTLS (RFC 9051 section 6.2.1), 993 is IMAP over implicit TLS
  (RFC 8314 section 3.2); 110 and 995 are the same pair for POP3 (RFC 2595 section 4,
  RFC 8314 section 3.1).
* 25 is where mail servers relay to each other (the MX side, RFC 5321), not the port
  for mail programs.

A STARTTLS client on an implicit-TLS port waits for a greeting that never comes (the
server is waiting for the client's TLS ClientHello), so it times out. An implicit-TLS
client on a STARTTLS port sends a ClientHello and gets back the plaintext greeting
``220 ...``, which its TLS library cannot read as a TLS record ("wrong version number" in
OpenSSL's words). :func:`try_pairing` makes both mistakes, and the two right choices, for
real against the running lab's own listeners.

:func:`explorer` puts the table and the pairing rules in one widget, and
:func:`judge_client_settings` and :func:`judge_lab_pairing` are the exercise checks.

Introduced in ``notebooks/08-troubleshooting.ipynb``.
"""

from __future__ import annotations

import csv
import html
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import LabError
from ..core.paths import DATA_DIR
from ..core.results import Result, TraceBuilder, html_table, text_table
from .verdicts import Verdict, answer_of, report

if TYPE_CHECKING:
    from ..lab.lab import Lab

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

#: Where the default table lives, and the columns it must have.
DEFAULT_PATH = DATA_DIR / "providers" / "client-settings.csv"
COLUMNS = ("provider", "service", "host", "port", "tls", "auth", "source", "checked", "notes")
_REQUIRED = ("provider", "service", "host", "port", "tls", "auth", "source")

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


# -- the table of providers -----------------------------------------------------------------


@dataclass(frozen=True)
class ClientSetting:
    """One documented way for a mail program to reach a provider's service.

    ``tls`` is ``"STARTTLS"`` or ``"implicit TLS"``; ``auth`` says in words how the
    program logs in; ``source`` is the provider's own page; ``checked`` the day it was
    read; ``line`` the line of the CSV file the row came from.
    """

    provider: str
    service: str
    host: str
    port: int
    tls: str
    auth: str
    source: str
    checked: str = ""
    notes: str = ""
    line: int = field(default=0, compare=False)

    def describe(self) -> str:
        """``"smtp.gmail.com:587 with STARTTLS"``."""
        return f"{self.host}:{self.port} with {self.tls}"

    def __str__(self) -> str:
        return f"{self.provider} {self.service}: {self.describe()}; log in with {self.auth}"


_HEADERS = ["provider", "service", "host", "port", "tls", "auth"]


@dataclass(frozen=True)
class ProviderTable:
    """The providers' client settings: iterate over it, or pick one provider's rows."""

    settings: tuple[ClientSetting, ...]
    path: Path | None = None

    def __iter__(self) -> Iterator[ClientSetting]:
        return iter(self.settings)

    def __len__(self) -> int:
        return len(self.settings)

    def providers(self) -> list[str]:
        """The providers, in the order of the file."""
        return list(dict.fromkeys(s.provider for s in self.settings))

    def for_provider(self, name: str, service: str | None = None) -> ProviderTable:
        """The rows of provider ``name`` (any case), optionally of one ``service`` only."""
        wanted = str(name).strip().lower()
        rows = [s for s in self.settings if s.provider.lower() == wanted]
        if not rows:
            raise LabError(f"no provider called {name!r} in the table; it has "
                           f"{', '.join(self.providers())}")
        if service is not None:
            svc = service_name(service)
            rows = [s for s in rows if s.service == svc]
        return ProviderTable(tuple(rows), self.path)

    def checked(self) -> str:
        """The day (or days) the rows were checked against the providers' pages."""
        days = sorted({s.checked for s in self.settings if s.checked})
        return ", ".join(days) if days else "an unrecorded day"

    def _rows(self) -> list[list[object]]:
        return [[s.provider, s.service, s.host, s.port, s.tls, s.auth] for s in self.settings]

    def text(self) -> str:
        return (text_table(_HEADERS, self._rows())
                + f"\nAs documented on {self.checked()}; providers change their settings, "
                "so check each row's source.")

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        caption = (f"As the providers documented them on {self.checked()}; providers change "
                   "their settings, so check each row's source.")
        return html_table(_HEADERS, self._rows(), caption=caption)


def _cell(row: Mapping[str, str | None], name: str) -> str:
    return (row.get(name) or "").strip()


def _setting_of(row: Mapping[str, str | None], where: str, line: int) -> ClientSetting:
    """Validate one CSV row; every problem names the file and line."""
    for name in _REQUIRED:
        if not _cell(row, name):
            raise LabError(f"{where} line {line}: the {name} column is empty")
    service = _cell(row, "service")
    if service not in SERVICES:
        raise LabError(f"{where} line {line}: service {service!r} is not one of "
                       f"{', '.join(SERVICES)}")
    port_text = _cell(row, "port")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise LabError(f"{where} line {line}: port {port_text!r} is not a whole number from "
                       "1 to 65535")
    tls = _cell(row, "tls")
    if tls not in TLS_MODES:
        raise LabError(f"{where} line {line}: tls {tls!r} must be exactly 'STARTTLS' or "
                       "'implicit TLS'")
    host = _cell(row, "host")
    if not re.fullmatch(r"[A-Za-z0-9.-]+", host) or "." not in host:
        raise LabError(f"{where} line {line}: host {host!r} is not a host name")
    source = _cell(row, "source")
    if not source.startswith("https://"):
        raise LabError(f"{where} line {line}: source {source!r} should be the provider's "
                       "https:// page")
    checked = _cell(row, "checked")
    if checked and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", checked):
        raise LabError(f"{where} line {line}: checked {checked!r} should be a date like "
                       "2026-11-28")
    return ClientSetting(provider=_cell(row, "provider"), service=service, host=host.lower(),
                         port=int(port_text), tls=tls, auth=_cell(row, "auth"), source=source,
                         checked=checked, notes=_cell(row, "notes"), line=line)


def load(path: str | Path | None = None) -> ProviderTable:
    """Read and check the providers' client settings (``data/providers/client-settings.csv``
    unless ``path`` says otherwise).

    Every row is validated: a known service, a port from 1 to 65535, a TLS mode spelled
    ``STARTTLS`` or ``implicit TLS``, a host name and an https source. A bad row raises
    :class:`LabError` naming its line.
    """
    file = Path(path) if path is not None else DEFAULT_PATH
    try:
        handle = file.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise LabError(f"cannot read the provider table {file}: {exc.strerror or exc}") \
            from None
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise LabError(f"{file.name} line 1: the header lacks the column(s) "
                           f"{', '.join(missing)}; it should be {','.join(COLUMNS)}")
        settings: list[ClientSetting] = []
        start = reader.line_num + 1
        for row in reader:
            if None in row:
                raise LabError(f"{file.name} line {start}: more fields than the header has "
                               "(is a comma inside an unquoted field?)")
            settings.append(_setting_of(row, file.name, start))
            start = reader.line_num + 1
    if not settings:
        raise LabError(f"{file.name} has a header but no rows")
    return ProviderTable(tuple(settings), file)


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


# -- one row in words ---------------------------------------------------------------------


def _auth_words(auth: str) -> list[str]:
    words = auth.lower()
    out: list[str] = []
    if "oauth" in words:
        out.append("OAuth 2.0: you sign in on the provider's own page (with its second "
                   "factor), and the program receives a token that allows mail access only "
                   "and expires; the program never sees your password. SMTP and IMAP carry "
                   f"the token with the SASL mechanism XOAUTH2 (or OAUTHBEARER, "
                   f"{RFC_OAUTHBEARER}).")
    if "app" in words and "password" in words:
        out.append("An app password is a long random password made for one program. It "
                   "works where the program cannot do the second step of 2-step "
                   "verification, and you can revoke it alone without changing your "
                   "account password.")
    if not out and "password" in words:
        out.append("The account password itself: whoever reads it has the whole account, "
                   "which is why it must only ever cross inside TLS.")
    return out


def explain(setting: ClientSetting) -> str:
    """Each field of ``setting`` in words: host, port, tls, auth (and where it came from)."""
    rule = WELL_KNOWN.get(setting.port)
    lines = [f"{setting.provider}, {SERVICES.get(setting.service, setting.service)}:"]
    lines.append(f"- host {setting.host}: the name your mail program connects to. The "
                 "server's certificate must carry this name, and the program checks it "
                 f"({RFC_SERVER_IDENTITY}); a certificate for another name means someone "
                 "else answered.")
    if rule is not None:
        lines.append(f"- port {setting.port}: the {rule.name} port; {rule.job} [{rule.rfc}].")
    else:
        lines.append(f"- port {setting.port}: not a port the RFCs assign; the provider's "
                     "page is the only authority for it.")
    if setting.tls == STARTTLS:
        lines.append("- tls STARTTLS: the connection starts in clear, the server offers "
                     "STARTTLS, and the client upgrades before it logs in "
                     f"[{RFC_SMTP_STARTTLS}]. The program must insist on the upgrade: an "
                     f"attacker can delete the offer [{RFC_STARTTLS_STRIPPING}].")
    else:
        rfc = rule.rfc if rule is not None and rule.tls == IMPLICIT_TLS else RFC_IMPLICIT
        lines.append("- tls implicit TLS: TLS starts with the first byte, before the server "
                     f"says anything [{rfc}]; mail programs often call this 'SSL' or "
                     "'SSL/TLS'.")
    verdict = pairing(setting.port, setting.tls, setting.service)
    lines.append(f"  Together: {verdict.summary}.")
    lines.append(f"- auth: {setting.auth}.")
    lines.extend(f"  {words}" for words in _auth_words(setting.auth))
    lines.append(f"- source: {setting.source}"
                 + (f" (checked {setting.checked})" if setting.checked else ""))
    if setting.notes:
        lines.append(f"- notes: {setting.notes}")
    return "\n".join(lines)


# -- trying a pair against the running lab ------------------------------------------------

#: The lab's mail roles, the port whose job each does on the Internet, and its TLS mode.
LAB_ROLES = {"submission": 587, "submissions": 465, "mx": 25}
_LAB_HOST = "127.0.0.1"
_EHLO_NAME = "client.lab.test"


@dataclass(frozen=True, kw_only=True)
class LabPairing(Result):
    """What a client saw when it tried ``tls`` on one of the lab's listeners.

    ``verdict`` is ``"works"``, ``"timeout"``, ``"tls error"``, ``"refused"``,
    ``"closed"`` or ``"no starttls"``; ``worked`` is True only for ``"works"``. The trace
    holds every line that crossed (``C:`` from the client, ``S:`` from the server).
    """

    role: str
    port: int
    acts_as: int
    tls: str
    worked: bool
    seen: tuple[str, ...] = ()

    def title(self) -> str:
        return (f"127.0.0.1:{self.port} (the lab's {self.role} role, port {self.acts_as}'s "
                f"job) with {self.tls}: {self.verdict}")


def _seen_lines(transcript: Any, implicit: bool, version: str | None) -> list[str]:
    """The lines of ``transcript`` that crossed the wire, ``C:`` and ``S:``, with a marker
    where TLS began (the ClientHello first, for implicit TLS)."""
    seen = ["C: TLS ClientHello"] if implicit else []
    in_tls = False
    for line in transcript.lines:
        if line.kind == "note":
            continue
        if line.tls and not in_tls:
            seen.append(f"TLS started: {version or 'TLS'}")
            in_tls = True
        seen.append(("C: " if line.from_client else "S: ") + line.text)
    return seen


def _peek_greeting(port: int, timeout: float) -> str | None:
    """The first line a plain connection to ``port`` receives, or None."""
    try:
        with socket.create_connection((_LAB_HOST, port), timeout=timeout) as plain:
            data = plain.recv(512)
    except OSError:
        return None
    return data.split(b"\r\n", 1)[0].decode("utf-8", errors="replace") or None


def _resolve_role(lab: Lab, port_role: str | int) -> tuple[str, int]:
    roles = {str(conventional): role for role, conventional in LAB_ROLES.items()}
    role = roles.get(str(port_role).strip(), str(port_role).strip().lower())
    if role not in LAB_ROLES:
        raise LabError(f"{port_role!r} is not one of the lab's mail roles here: use "
                       f"{', '.join(repr(r) for r in LAB_ROLES)} (or 587, 465, 25)")
    return role, lab.smtp.port(role)


def try_pairing(lab: Lab, port_role: str | int, tls: str, timeout: float = 1.0) -> LabPairing:
    """Connect to the running lab's ``port_role`` listener with TLS mode ``tls``; report
    what the client saw.

    ``port_role`` is ``"submission"`` (STARTTLS, port 587's job), ``"submissions"``
    (implicit TLS, port 465's job) or ``"mx"`` (port 25's job); the conventional numbers
    587, 465 and 25 name the same roles. The client is the lab's transcript client
    (:class:`~labsupport.mail.smtp.SMTPSession`): it checks the server's certificate against
    the lab CA, waits at most ``timeout`` seconds for each answer, closes its socket, and
    sends QUIT when the dialogue works.
    """
    from ..mail.server import ROLES
    from ..mail.smtp import SMTPConnectError, SMTPSession, SMTPTimeout, SMTPTLSError

    role, port = _resolve_role(lab, port_role)
    mode = tls_mode(tls)
    implicit = mode == IMPLICIT_TLS
    acts_as = LAB_ROLES[role]
    server_name = ROLES[role].hostname
    rule = WELL_KNOWN[acts_as]
    t = TraceBuilder()
    t.add(f"The lab's {role} role does port {acts_as}'s job: {rule.tls}.", kind="info",
          rfc=rule.rfc)
    session = SMTPSession(_LAB_HOST, port, implicit_tls=implicit, ca_file=lab.ca.ca_file,
                          verify=True, server_hostname=server_name, timeout=timeout)

    def done(verdict: str, summary: str) -> LabPairing:
        seen = _seen_lines(session.transcript, implicit, session.tls_version)
        for line in seen:
            t.add(line, kind="query" if line.startswith("C:") else
                  "ok" if line.startswith("TLS") else "answer")
        return LabPairing(verdict=verdict, summary=summary, trace=t.freeze(), role=role,
                          port=port, acts_as=acts_as, tls=mode, worked=verdict == "works",
                          seen=tuple(seen))

    try:
        session.connect()
        session.ehlo(_EHLO_NAME)
        if mode == STARTTLS:
            if not session.has_extension("STARTTLS"):
                return done("no starttls", "the server did not offer STARTTLS; a careful "
                            "client stops here instead of going on in clear")
            answer = session.starttls()
            if answer.code != 220:
                return done("no starttls", f"STARTTLS was refused: {answer.first_line}")
            session.ehlo(_EHLO_NAME)
        session.quit()
    except SMTPConnectError as exc:
        return done("refused", str(exc))
    except SMTPTLSError as exc:
        reason = str(exc).rpartition("failed: ")[2].replace("_", " ").lower()
        if not implicit or session.transcript.replies:
            return done("tls error", f"the TLS handshake after STARTTLS failed: {reason}")
        first = _peek_greeting(port, timeout)
        if first is not None:
            t.add(f"A plain connection to the same port receives: {first!r}", kind="info")
        shown = f"'{first}'" if first else "plaintext"
        return done("tls error",
                    f"the TLS handshake failed ({reason}): the server spoke first, in clear "
                    f"({shown}), and those bytes are no TLS record. This port starts in "
                    "clear and upgrades with STARTTLS")
    except SMTPTimeout:
        if session.transcript.replies:
            return done("timeout", f"the server stopped answering within {timeout:g} s")
        if implicit:
            return done("timeout", f"the server sent no TLS answer within {timeout:g} s")
        return done("timeout",
                    f"no greeting within {timeout:g} s: the client waited for the "
                    "server's '220', while the server waited for the client's TLS "
                    "ClientHello. This port is implicit TLS: start TLS first")
    except LabError as exc:
        return done("closed", f"the server closed the connection ({exc})")
    finally:
        session.close()
    how = ("greeting in clear, STARTTLS, then TLS" if mode == STARTTLS
           else "TLS first, then the greeting inside it")
    return done("works", f"{how}; the server answered EHLO ({mode} is the right mode for "
                f"port {acts_as}'s job)")


# -- presentation: plain functions, then the widget --------------------------------------


def settings_html(table: ProviderTable, provider: str, service: str = "submission") -> str:
    """One provider's rows for ``service``, each with its fields explained (HTML)."""
    rows = table.for_provider(provider, service)
    if not len(rows):
        return (f"<p>{html.escape(provider)} documents no {html.escape(service)} setting "
                "in this table.</p>")
    parts = [html_table(_HEADERS, rows._rows())]
    for setting in rows:
        parts.append(f"<pre style='white-space:pre-wrap;margin:6px 0'>"
                     f"{html.escape(explain(setting))}</pre>")
    return "".join(parts)


def pairing_html(port: int, tls: str, service: str = "submission") -> str:
    """The verdict of :func:`pairing` as HTML, for the explorer."""
    return pairing(port, tls, service)._repr_html_()


# -- exercise checks ----------------------------------------------------------------------


def _answer_fields(value: Any, keys: tuple[str, ...], example: str) -> dict[str, Any] | Verdict:
    if not isinstance(value, Mapping):
        return Verdict("wrong", f"the answer should be a dict like {example}.")
    missing = [k for k in keys if value.get(k) in (None, "", Ellipsis)]
    if missing:
        return Verdict("wrong", f"the answer lacks {', '.join(missing)}: give a dict like "
                       f"{example}.")
    return dict(value)


def judge_client_settings(answer: Any, table: ProviderTable, provider: str,
                          service: str = "submission") -> Verdict:
    """Exercise: host, port and TLS mode for ``provider``'s ``service``.

    The answer is a dict ``{"host": ..., "port": ..., "tls": ...}``; it is right when it
    matches any documented row (host in any case; the mode written loosely, "SSL" or
    "TLS" for implicit TLS). A wrong answer gets a hint naming the part that is wrong.
    """
    svc = service_name(service)
    rows = list(table.for_provider(provider, svc))
    if not rows:
        raise LabError(f"the table has no {svc} setting for {provider}")
    name = rows[0].provider
    example = "{'host': 'smtp.example.com', 'port': 587, 'tls': 'STARTTLS'}"
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: which host, port and TLS mode does "
                       f"{name} document for {SERVICES[svc]}? Answer like {example}.")
    fields = _answer_fields(value, ("host", "port", "tls"), example)
    if isinstance(fields, Verdict):
        return fields
    host = str(fields["host"]).strip().rstrip(".").lower()
    try:
        port = _port_number(fields["port"])
        mode = tls_mode(fields["tls"])
    except LabError as exc:
        return Verdict("wrong", f"{exc}.")
    hosts = sorted({r.host for r in rows})
    if host not in hosts:
        return Verdict("wrong", f"{host!r} is not the {svc} host {name} documents. Hint: "
                       f"look at table.for_provider({name!r}, {svc!r}), or the provider's "
                       "page in the source column.")
    documented = [r for r in rows if r.host == host]
    if any(r.port == port and r.tls == mode for r in documented):
        return Verdict("right", f"right: {name} documents {host}:{port} with {mode} for "
                       f"{SERVICES[svc]}.")
    verdict = pairing(port, mode, svc)
    if not verdict.ok:
        return Verdict("wrong", f"the host is right, but {verdict.summary}.")
    ways = f"{len(documented)} way{'s' if len(documented) != 1 else ''}"
    return Verdict("wrong", f"the host is right and {port} with {mode} is a valid pair, "
                   f"but {name} does not document it for {host}, so its server may not "
                   f"listen there. Hint: {name} documents {ways} in; read its rows with "
                   f"table.for_provider({name!r}, {svc!r}).")


def check_client_settings(answer: Any, table: ProviderTable, provider: str,
                          service: str = "submission") -> None:
    """Check cell for :func:`judge_client_settings`."""
    report(judge_client_settings(answer, table, provider, service))


def judge_lab_pairing(answer: Any, lab: Lab, timeout: float = 1.0) -> Verdict:
    """Exercise: a lab port and TLS mode that send through the lab's submission service.

    The answer is ``{"port": <a port of the running lab>, "tls": ...}``. The check tries
    it for real (:func:`try_pairing`): right when the dialogue works on one of the two
    submission roles.
    """
    example = "{'port': lab.smtp.port('submission'), 'tls': 'STARTTLS'}"
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: which of the lab's ports, with which "
                       f"TLS mode, takes your mail? Answer like {example}.")
    fields = _answer_fields(value, ("port", "tls"), example)
    if isinstance(fields, Verdict):
        return fields
    try:
        port = _port_number(fields["port"])
        mode = tls_mode(fields["tls"])
    except LabError as exc:
        return Verdict("wrong", f"{exc}.")
    ports = lab.smtp.ports()
    role_of = {number: role for role, number in ports.items()}
    if port not in role_of:
        if port in LAB_ROLES.values():
            return Verdict("wrong", f"{port} is the port on the Internet; the lab listens on "
                           "its own ports on 127.0.0.1. Hint: lab.smtp.port('submission') is "
                           "the one doing 587's job, lab.smtp.port('submissions') 465's.")
        return Verdict("wrong", f"none of the lab's mail roles listens on {port}. Hint: "
                       "lab.smtp.ports() lists them.")
    role = role_of[port]
    if role not in ("submission", "submissions"):
        job = "port 25's job, mail between servers" if role == "mx" else "an insecure demo"
        return Verdict("wrong", f"{port} is the lab's {role} role ({job}), not a submission "
                       "service. Hint: lab.smtp.port('submission') or "
                       "lab.smtp.port('submissions').")
    tried = try_pairing(lab, role, mode, timeout=timeout)
    if tried.worked:
        return Verdict("right", f"right: {port} with {mode} works: {tried.summary}.")
    expected = WELL_KNOWN[LAB_ROLES[role]].tls
    return Verdict("wrong", f"{port} with {mode} does not work: {tried.summary}. Hint: this "
                   f"is the lab's {role} role, which does port {LAB_ROLES[role]}'s job and "
                   f"speaks {expected}.")


def check_lab_pairing(answer: Any, lab: Lab, timeout: float = 1.0) -> None:
    """Check cell for :func:`judge_lab_pairing`."""
    report(judge_lab_pairing(answer, lab, timeout))
