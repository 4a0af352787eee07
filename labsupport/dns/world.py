"""The lab world read from its zones: who is in it, and where each one's mail goes.

The zone files in ``data/zones/`` describe a small world of organisations (see the README
there). :func:`lab_world` reads it back the way a curious student would, from DNS alone:
for every mail domain, its MX hosts in the order a sender tries them (with
:func:`~labsupport.dns.mx.mx_hosts`, so a null MX, an implicit MX or a broken MX shows as
such), its submission host (``smtp.<domain>``), its outbound host (``out.<domain>``), and
any subdomain with mail of its own (``lists.campus.test``). Each organisation's one-line
description is the first line of its zone file (``; northwind.test -- Northwind Traders,
the well-run company.``), so the world and its story live in one place.

Nothing here draws: :func:`labsupport.teach.plots.world_map` draws the map.

Introduced in ``notebooks/00-start-here.ipynb``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.resolver

from ..core.paths import DATA_DIR
from ..core.results import Result, html_table, text_table
from .mx import MXResult, mx_hosts
from .zone import ZoneSet

#: Where the zone files (and so the organisations' descriptions) are.
ZONES_DIR = DATA_DIR / "zones"


@dataclass(frozen=True)
class Organisation:
    """One mail domain of the lab world, as DNS shows it.

    ``kind`` is ``"attacker"`` when its zone file says it is one, ``"broken"`` when the
    zone file says its set-up is broken on purpose, and ``"organisation"`` otherwise.
    ``submission`` and ``outbound`` are the addresses of ``smtp.<domain>`` and
    ``out.<domain>`` (empty when there is no such host); ``subdomains`` holds names under
    the domain that receive mail of their own, with their MX selection.
    """

    domain: str
    description: str
    kind: str
    mx: MXResult
    submission: tuple[str, ...] = ()
    outbound: tuple[str, ...] = ()
    subdomains: tuple[tuple[str, MXResult], ...] = ()

    @property
    def mail_hosts(self) -> list[str]:
        """The MX hosts a sender would try, in order (usable or not)."""
        return [host.name for host in self.mx.hosts]


@dataclass(frozen=True, kw_only=True)
class World(Result):
    """The lab world: every organisation with its mail hosts, and the name server."""

    organisations: tuple[Organisation, ...] = ()
    name_server: tuple[str, str] = ("ns.lab.test", "")

    def organisation(self, domain: str) -> Organisation:
        """The organisation whose domain is ``domain`` (KeyError with the known ones)."""
        for org in self.organisations:
            if org.domain == domain.rstrip(".").lower():
                return org
        known = ", ".join(o.domain for o in self.organisations)
        raise KeyError(f"{domain!r} is not a domain of the lab world; it has {known}")

    def title(self) -> str:
        return f"The lab world: {len(self.organisations)} mail domains"

    def _rows(self) -> list[list[object]]:
        rows: list[list[object]] = []
        for org in self.organisations:
            mx = ", ".join(f"{h.preference} {h.name}" for h in org.mx.hosts) or org.mx.verdict
            rows.append([org.domain, org.description, mx,
                         ", ".join(org.submission) or "-", ", ".join(org.outbound) or "-"])
        return rows

    def text(self) -> str:
        head = ["domain", "who", "MX (in the order a sender tries)", "submission", "outbound"]
        return f"{self.title()}\n  {self.summary}\n" + text_table(head, self._rows())

    def _repr_html_(self) -> str:
        head = ["domain", "who", "MX (in the order a sender tries)", "submission", "outbound"]
        return (f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
                + html_table(head, self._rows()))


def describe_zone(path: Path) -> tuple[str, str]:
    """The description and kind written in a zone file's first comment lines.

    The lab's zone files begin ``; <domain> -- <who they are>``; a file that says
    ``BROKEN ON PURPOSE`` is a broken set-up, one that calls itself an attacker is one.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return "", "organisation"
    paragraphs: list[str] = []
    words: list[str] = []
    for line in lines:
        if not line.startswith(";"):
            break
        text = line.lstrip(";").strip()
        if text:
            words.append(text)
        elif words:
            paragraphs.append(" ".join(words))
            words = []
    if words:
        paragraphs.append(" ".join(words))
    comment = " ".join(paragraphs)
    first = paragraphs[0] if paragraphs else ""
    description = first.split(" -- ", 1)[1] if " -- " in first else ""
    description = re.sub(r"\s*\([^)]*\)", "", description.replace("BROKEN ON PURPOSE.", ""))
    description = description.strip().rstrip(".")
    if not description:  # a broken set-up says what it teaches instead
        lesson = next((p for p in paragraphs if p.startswith("Lesson")), "")
        description = lesson.split(":", 1)[-1].strip().split(". ")[0].rstrip(".")
    if "attacker" in comment.lower():
        kind = "attacker"
    elif "BROKEN ON PURPOSE" in comment:
        kind = "broken"
    else:
        kind = "organisation"
    return description, kind


def _addresses(zones: ZoneSet, name: str) -> tuple[str, ...]:
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = zones.resolve(name, rdtype, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.exception.DNSException):
            continue
        if answer.rrset is not None:
            found.extend(rd.to_text() for rd in answer.rrset)
    return tuple(found)


def _has_mx(zones: ZoneSet, name: str) -> bool:
    try:
        answer = zones.resolve(name, "MX", raise_on_no_answer=False)
    except dns.exception.DNSException:
        return False
    return answer.rrset is not None


def lab_world(zones: ZoneSet, zones_dir: str | Path = ZONES_DIR) -> World:
    """The lab world as ``zones`` serve it now (a live lab's ``lab.zones`` included).

    The name server's own zone (``lab.test``) is not a mail domain and is left out of the
    organisations; its server's address is ``World.name_server``.
    """
    directory = Path(zones_dir)
    organisations = []
    for domain in zones.mail_domains():
        if domain == "lab.test":
            continue
        description, kind = describe_zone(directory / f"{domain}.zone")
        subdomains = tuple(
            (name, mx_hosts(name, zones))
            for name in zones.names()
            if name.endswith("." + domain) and not name.startswith("_")
            and zones.zone_for(name) is not None and _has_mx(zones, name)
        )
        organisations.append(Organisation(
            domain=domain, description=description, kind=kind, mx=mx_hosts(domain, zones),
            submission=_addresses(zones, f"smtp.{domain}"),
            outbound=_addresses(zones, f"out.{domain}"), subdomains=subdomains))
    ns = _addresses(zones, "ns.lab.test")
    hosts = sum(len(o.mx.hosts) for o in organisations)
    return World(
        verdict="lab world",
        summary=f"{len(organisations)} mail domains with {hosts} MX hosts between them, "
                f"all served by one name server, ns.lab.test ({', '.join(ns) or 'no address'})",
        organisations=tuple(organisations), name_server=("ns.lab.test", ns[0] if ns else ""))


__all__ = ["Organisation", "World", "ZONES_DIR", "describe_zone", "lab_world"]
