"""Cross-check labsupport.auth.dmarc (method="psl", RFC 7489) against authheaders.

authheaders is a test-only dependency (``pip install authheaders``; it brings
publicsuffix2 and its own copy of the Public Suffix List). Its RFC 7489 mode finds the
Organizational Domain with that bundled list; ours uses the lab's list
(``data/psl``). Both are fed from the same in-memory :class:`ZoneSet`: authheaders
through its ``dnsfunc`` hook (:func:`authheaders_dnsfunc`), ours through the resolver
contract. Every case runs with sockets and dnspython's own resolver switched off, so
authheaders cannot ask the network anything.

The cases use names under com, net and org, where the two lists agree. Where
authheaders departs from RFC 7489, the difference is in :data:`KNOWN_DIFFERENCES` and
shown by a small test of its own; any other difference fails.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.resolver
import pytest

from labsupport.auth.dkim import DKIMResult, DKIMVerification
from labsupport.auth.dmarc import DMARCResult, evaluate, lab_public_suffix_list
from labsupport.auth.spf import SPFResult
from labsupport.dns.zone import ZoneSet

authheaders = pytest.importorskip("authheaders")
authres_lib = pytest.importorskip("authres")

#: Where authheaders (0.16) departs from RFC 7489, and the section it departs from.
KNOWN_DIFFERENCES = {
    "psl-unlisted-tld": "publicsuffix2 makes an unlisted top-level name (test, example) the "
                        "registrable domain itself, so every name under .test shares the "
                        "Organizational Domain 'test'; the list's implicit rule '*' "
                        "(RFC 7489 section 3.2) makes it northwind.test",
    "sp-for-own-record": "authheaders applies sp= even when the record is the From domain's "
                         "own (RFC 7489 section 6.6.3 step 6 applies sp only to subdomains "
                         "found through the Organizational Domain)",
    "np": "authheaders applies RFC 9091's np= in its RFC 7489 mode (and tests existence with "
          "its TXT hook); RFC 7489 has no np, and neither has method='psl'",
}


def authheaders_dnsfunc(resolver: Any) -> Callable[..., str | None]:
    """A ``dnsfunc`` for authheaders: the text of the first DMARC TXT record, or None."""

    def lookup(name: str, qtype: str = "TXT") -> str | None:
        try:
            answer = resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return None
        except dns.exception.DNSException:
            return None
        texts = [b"".join(r.strings).decode() for r in answer]
        dmarc = [t for t in texts if t.startswith("v=DMARC1")]
        return dmarc[0] if len(dmarc) == 1 else (texts[0] if texts else None)

    return lookup


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt by either side to reach a real name server fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a network query was attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "sendto", refuse)
    monkeypatch.setattr(dns.resolver, "resolve", refuse)
    monkeypatch.setattr(authheaders.dmarc_lookup, "resolve", refuse)
    yield


@dataclass(frozen=True)
class Case:
    records: tuple[tuple[str, str], ...]
    author: str
    spf: tuple[str, str] | None   # (domain, result)
    dkim: tuple[str, str] | None  # (d=, result)

    def zone(self) -> ZoneSet:
        z = ZoneSet.empty()
        for name, value in self.records:
            z.add(name, "TXT", value)
        z.add(self.author, "A", "192.0.2.1")
        return z


def ours(case: Case) -> DMARCResult:
    raw = f"From: Alice <alice@{case.author}>\r\nTo: b@example.net\r\n\r\nhi\r\n".encode()
    spf = (SPFResult(verdict=case.spf[1], summary="t", ip="192.0.2.1", domain=case.spf[0],
                     sender=f"b@{case.spf[0]}") if case.spf else None)
    dkim = (DKIMVerification(verdict=case.dkim[1], summary="t", signatures=(
        DKIMResult(verdict=case.dkim[1], summary="t", domain=case.dkim[0], selector="s"),))
        if case.dkim else None)
    return evaluate(raw, mail_from=f"b@{case.spf[0]}" if case.spf else "", spf=spf,
                    dkim=dkim, resolver=case.zone(), method="psl")


def theirs(case: Case) -> Any:
    raw = f"From: Alice <alice@{case.author}>\r\nTo: b@example.net\r\n\r\nhi\r\n".encode()
    spf = (authres_lib.SPFAuthenticationResult(result=case.spf[1],
                                               smtp_mailfrom=f"b@{case.spf[0]}")
           if case.spf else None)
    dkim = (authres_lib.DKIMAuthenticationResult(result=case.dkim[1], header_d=case.dkim[0])
            if case.dkim else None)
    return authheaders.check_dmarc(raw, spf_result=spf, dkim_result=dkim,
                                   dnsfunc=authheaders_dnsfunc(case.zone()))


def compare(case: Case) -> None:
    mine, other = ours(case), theirs(case)
    assert mine.verdict == other.result, (case, str(mine), other)
    if mine.verdict in ("pass", "fail"):
        assert mine.requested == other.policy, (case, str(mine), other.policy)


# -- the lab's scenarios, under com/net/org ------------------------------------------------

SCENARIOS = [
    # a domain with its own reject record; its own SPF passes
    Case((("_dmarc.example.com", "v=DMARC1; p=reject"),), "example.com",
         ("example.com", "pass"), None),
    # a spoof: SPF passes for the attacker's domain only
    Case((("_dmarc.example.com", "v=DMARC1; p=reject"),), "example.com",
         ("attacker.example.net", "pass"), None),
    # relaxed alignment through the Organizational Domain
    Case((("_dmarc.example.com", "v=DMARC1; p=quarantine"),), "news.example.com",
         ("bounces.example.com", "pass"), ("mail.example.com", "pass")),
    # strict SPF alignment fails for a subdomain, DKIM (relaxed) passes
    Case((("_dmarc.example.com", "v=DMARC1; p=reject; aspf=s"),), "news.example.com",
         ("bounces.example.com", "pass"), ("example.com", "pass")),
    # strict both: nothing aligns
    Case((("_dmarc.example.com", "v=DMARC1; p=reject; aspf=s; adkim=s"),), "news.example.com",
         ("bounces.example.com", "pass"), ("example.com", "pass")),
    # sp= for a subdomain without a record of its own
    Case((("_dmarc.example.org", "v=DMARC1; p=none; sp=reject"),), "shop.example.org",
         None, ("other.example.net", "pass")),
    # no record anywhere
    Case((), "example.net", ("example.net", "pass"), None),
    # a failing DKIM signature of the right domain
    Case((("_dmarc.example.net", "v=DMARC1; p=quarantine"),), "example.net",
         ("example.net", "fail"), ("example.net", "fail")),
    # the subdomain's own record wins over the Organizational Domain's
    Case((("_dmarc.example.com", "v=DMARC1; p=none"),
          ("_dmarc.mail.example.com", "v=DMARC1; p=reject")), "mail.example.com",
         None, None),
]


@pytest.mark.parametrize("case", SCENARIOS, ids=lambda c: c.author)
def test_scenarios_agree_with_authheaders(case: Case) -> None:
    compare(case)


def generated_cases(n: int, seed: int = 9989) -> list[Case]:
    rng = random.Random(seed)
    orgs = ["example.com", "example.net", "example.org"]
    subs = ["", "mail.", "a.b.", "news."]
    policies = ["none", "quarantine", "reject"]
    cases = []
    for _ in range(n):
        org = rng.choice(orgs)
        author = rng.choice(subs) + org
        records: list[tuple[str, str]] = []
        if rng.random() < 0.85:
            tags = [f"p={rng.choice(policies)}"]
            if rng.random() < 0.3:
                tags.append(f"aspf={rng.choice('rs')}")
            if rng.random() < 0.3:
                tags.append(f"adkim={rng.choice('rs')}")
            if author != org and rng.random() < 0.5:
                tags.append(f"sp={rng.choice(policies)}")
            records.append((f"_dmarc.{org}", "v=DMARC1; " + "; ".join(tags)))
        if author != org and rng.random() < 0.2:
            # no sp= here: authheaders applies sp even to a domain's own record
            records.append((f"_dmarc.{author}", f"v=DMARC1; p={rng.choice(policies)}"))

        def ident() -> tuple[str, str] | None:
            if rng.random() < 0.25:
                return None
            return (rng.choice(subs) + rng.choice(orgs), rng.choice(["pass", "pass", "fail"]))

        cases.append(Case(tuple(records), author, ident(), ident()))
    return cases


@pytest.mark.parametrize("case", generated_cases(150))
def test_generated_cases_agree_with_authheaders(case: Case) -> None:
    compare(case)


# -- where authheaders departs ------------------------------------------------------------


def test_known_difference_psl_unlisted_tld() -> None:
    from authheaders.dmarc_lookup import get_org_domain

    assert "psl-unlisted-tld" in KNOWN_DIFFERENCES
    assert get_org_domain("mail.northwind.test") == "test"
    assert lab_public_suffix_list().organizational_domain("mail.northwind.test") == \
        "northwind.test"
    case = Case((("_dmarc.northwind.test", "v=DMARC1; p=reject"),), "northwind.test",
                ("phisher.test", "pass"), None)
    assert theirs(case).result == "pass"  # the spoof aligns for authheaders
    assert ours(case).verdict == "fail"


def test_known_difference_sp_for_own_record() -> None:
    assert "sp-for-own-record" in KNOWN_DIFFERENCES
    case = Case((("_dmarc.example.com", "v=DMARC1; p=none; sp=reject"),), "example.com",
                ("attacker.example.net", "pass"), None)
    assert theirs(case).policy == "reject"
    assert ours(case).requested == "none" and ours(case).policy == "p"


def test_known_difference_np() -> None:
    assert "np" in KNOWN_DIFFERENCES
    case = Case((("_dmarc.example.com", "v=DMARC1; p=none; sp=quarantine; np=reject"),),
                "ghost.example.com", None, None)
    # authheaders' existence test asks its TXT hook, which finds nothing: np applies
    assert theirs(case).policy == "reject"
    assert ours(case).requested == "quarantine"


def test_no_network_guard_works() -> None:
    with pytest.raises(AssertionError, match="network"):
        authheaders.dmarc_lookup.dns_query("_dmarc.example.com")
