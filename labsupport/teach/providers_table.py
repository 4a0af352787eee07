"""The table of providers' client settings: reading it, and each row in words.

Holds :class:`ClientSetting` (one row), :class:`ProviderTable`, :func:`load` (which reads
and validates ``data/providers/client-settings.csv``), :func:`explain` (each field of a
row in words), and the HTML the explorer shows (:func:`settings_html`,
:func:`pairing_html`). Part of :mod:`labsupport.teach.providers`.
"""

from __future__ import annotations

import csv
import html
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import LabError
from ..core.paths import DATA_DIR
from ..core.results import html_table, text_table
from .providers_rules import (
    IMPLICIT_TLS,
    RFC_IMPLICIT,
    RFC_OAUTHBEARER,
    RFC_SERVER_IDENTITY,
    RFC_SMTP_STARTTLS,
    RFC_STARTTLS_STRIPPING,
    SERVICES,
    STARTTLS,
    TLS_MODES,
    WELL_KNOWN,
    pairing,
    service_name,
)

# -- the table of providers -----------------------------------------------------------------

#: Where the default table lives, and the columns it must have.
DEFAULT_PATH = DATA_DIR / "providers" / "client-settings.csv"
COLUMNS = ("provider", "service", "host", "port", "tls", "auth", "source", "checked", "notes")
_REQUIRED = ("provider", "service", "host", "port", "tls", "auth", "source")


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
