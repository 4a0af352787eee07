"""DKIM signing and verification (labsupport/auth/dkim.py, dkim_canon.py, dkim_keys.py).

Each test names the rule it checks: RFC 6376 (DKIM), RFC 8301 (algorithm and key size
requirements), RFC 8463 (Ed25519), RFC 8601 (result names), RFC 8616 (UTF-8), RFC 5322
(message format).
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.zone
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from labsupport import dkim
from labsupport.auth.dkim_canon import (
    canonicalize_body,
    canonicalize_body_relaxed,
    canonicalize_body_simple,
    canonicalize_header,
    canonicalize_header_relaxed,
    canonicalize_header_simple,
    parse_message,
    show_whitespace,
)
from labsupport.auth.dkim_keys import (
    LAB_KEY_DIR,
    LAB_SIGNING_DOMAINS,
    DKIMKeyError,
    KeyRecordError,
    LabKey,
    TagListError,
    generate_key,
    key_record,
    lab_key,
    lab_keys,
    load_private_key,
    parse_key_record,
    parse_tag_list,
    publish,
    revoke,
    rotate,
    txt_strings,
)
from labsupport.core.clock import LabClock
from labsupport.core.errors import LabError
from labsupport.dns.zone import ZoneSet

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "northwind.test"
NOW = 1_767_600_000  # 2026-01-05, the lab's "now" in these tests

MESSAGE = (
    b"From: Ann Example <ann@northwind.test>\r\n"
    b"To: bob@campus.test\r\n"
    b"Subject: Quarterly figures\r\n"
    b"Date: Mon, 05 Jan 2026 09:30:00 +0000\r\n"
    b"Message-ID: <t-1@northwind.test>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"\r\n"
    b"the figures are attached.  \r\n"
    b"Ann\r\n"
)


# -- keys and zones shared by the tests --------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> LabKey:
    return generate_key("rsa")


@pytest.fixture(scope="module")
def ed_key() -> LabKey:
    return generate_key("ed25519")


@pytest.fixture
def zones(rsa_key: LabKey, ed_key: LabKey) -> ZoneSet:
    zones = ZoneSet.empty()
    publish(zones, DOMAIN, "rsa", rsa_key)
    publish(zones, DOMAIN, "ed", ed_key)
    return zones


def signed_rsa(key: LabKey, message: bytes = MESSAGE, **options: object) -> bytes:
    return dkim.sign(message, domain=DOMAIN, selector="rsa", private_key=key,
                     **options)  # type: ignore[arg-type]


def small_rsa_key(bits: int = 512) -> rsa.RSAPrivateKey:
    """An RSA key shorter than cryptography will generate, built from two primes."""
    rng = random.Random(bits)

    def is_prime(n: int) -> bool:
        small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
        if any(n % p == 0 for p in small):
            return n in small
        d, s = n - 1, 0
        while d % 2 == 0:
            d, s = d // 2, s + 1
        for a in small:
            x = pow(a, d, n)
            if x in (1, n - 1):
                continue
            for _ in range(s - 1):
                x = pow(x, 2, n)
                if x == n - 1:
                    break
            else:
                return False
        return True

    def prime(size: int) -> int:
        while True:
            candidate = rng.getrandbits(size) | (3 << (size - 2)) | 1
            if is_prime(candidate) and (candidate - 1) % 65537:
                return candidate

    p, q = prime(bits // 2), prime(bits // 2)
    e = 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                    rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key()


def verdicts(result: dkim.DKIMVerification) -> tuple[str, ...]:
    return result.results


# -- canonicalization (RFC 6376 section 3.4) ---------------------------------------------


def test_header_simple_changes_nothing_rfc6376_3_4_1() -> None:
    field = b"SuBject :  Hello\t World \r\n continued  \r\n"
    assert canonicalize_header_simple(field) == field
    assert canonicalize_header(b"SUB: x\r\n", "simple") == b"SUB: x\r\n"


def test_header_relaxed_rfc6376_3_4_2() -> None:
    # Lower-case the name, unfold, squeeze white space, strip it around the colon and at
    # the end of the value.
    field = b"SuBject \t:  Hello\t World \r\n continued  \r\n"
    assert canonicalize_header_relaxed(field) == b"subject:Hello World continued\r\n"
    assert canonicalize_header_relaxed(b"X-Empty:\r\n") == b"x-empty:\r\n"
    assert canonicalize_header_relaxed(b"A:  \r\n\t\r\n") == b"a:\r\n"


def test_header_functions_read_bare_lf_and_add_the_final_line_end() -> None:
    assert canonicalize_header_simple(b"A: x\n y") == b"A: x\r\n y\r\n"
    assert canonicalize_header_relaxed(b"A: x\n y") == b"a:x y\r\n"


def test_body_simple_rfc6376_3_4_3() -> None:
    assert canonicalize_body_simple(b"a \r\n\tb\r\n\r\n\r\n") == b"a \r\n\tb\r\n"
    assert canonicalize_body_simple(b"") == b"\r\n"  # an empty body is one CR LF
    assert canonicalize_body_simple(b"\r\n\r\n") == b"\r\n"
    assert canonicalize_body_simple(b"no line end") == b"no line end\r\n"
    assert canonicalize_body_simple(b"x\r\r\n\r\n") == b"x\r\r\n"  # a bare CR stays


def test_body_relaxed_rfc6376_3_4_4() -> None:
    assert canonicalize_body_relaxed(b" a  \t b \t\r\n\r\n") == b" a b\r\n"
    assert canonicalize_body_relaxed(b"") == b""  # an empty body stays empty
    assert canonicalize_body_relaxed(b"\r\n \r\n\t\r\n") == b""
    assert canonicalize_body_relaxed(b"end  ") == b"end\r\n"
    assert canonicalize_body_relaxed(b"a" + b" " * 37 + b"b\r\n") == b"a b\r\n"


def test_body_functions_read_bare_lf_as_crlf_rfc5322_2_1() -> None:
    assert canonicalize_body_simple(b"a\nb\n\n") == b"a\r\nb\r\n"
    assert canonicalize_body_relaxed(b"a \nb\n") == b"a\r\nb\r\n"


def test_unknown_canonicalization_is_refused() -> None:
    with pytest.raises(ValueError, match="simple"):
        canonicalize_body(b"", "loose")
    with pytest.raises(ValueError, match="relaxed"):
        canonicalize_header(b"A: b\r\n", "loose")


def test_show_whitespace_marks_line_ends_spaces_and_tabs() -> None:
    assert show_whitespace(b"a b\tc\r\n") == "a·b→c␍␊"
    assert show_whitespace(b"a\rb\nc") == "a␍b␊\nc"
    assert show_whitespace(b"") == "(empty)"
    assert show_whitespace("é x\r\n") == "é·x␍␊"
    long = b"".join(b"line %d\r\n" % i for i in range(100))
    shown = show_whitespace(long, max_lines=9)
    assert shown.startswith("line·0␍␊\n") and shown.endswith("line·99␍␊")
    assert "… 91 lines" in shown


# -- reading a message (RFC 5322) --------------------------------------------------------


def test_parse_message_reads_fields_and_body() -> None:
    parsed = parse_message(b"A: 1\r\nB : 2\r\n  two\r\n\r\nbody\r\n")
    assert [h.name for h in parsed.headers] == [b"A", b"B"]
    assert parsed.headers[1].raw == b"B : 2\r\n  two\r\n"
    assert parsed.headers[1].value == b" 2\r\n  two"
    assert parsed.body == b"body\r\n"
    assert parsed.count("b") == 1 and parsed.fields("A")[0].text() == "A: 1"


def test_parse_message_reports_lines_that_are_not_fields_rfc5322_2_2() -> None:
    parsed = parse_message(b" stray\r\nA: 1\r\nno colon here\r\nBad Name: x\r\n\r\n")
    assert len(parsed.problems) == 4
    assert "line 1 starts with white space" in parsed.problems[0]
    assert "line 3 is not a header field (it has no colon)" in parsed.problems[1]
    assert "'Bad Name' is not a field name" in parsed.problems[2]
    assert "perhaps the empty line that separates header and body" in parsed.problems[3]


def test_a_message_without_body_is_all_header_rfc5322_3_5() -> None:
    parsed = parse_message(b"A: 1\r\nB: 2")
    assert parsed.problems == () and parsed.separator is False and parsed.body == b""
    assert parsed.headers[-1].raw == b"B: 2\r\n"


def test_an_mbox_from_line_is_set_aside() -> None:
    parsed = parse_message(b"From ann@northwind.test Mon Jan  5 09:30:00 2026\nA: 1\n\nx\n")
    assert parsed.mbox_line is not None and parsed.problems == ()
    assert parsed.lf_fixed == 4


# -- signing and verifying (RFC 6376 sections 5 and 6) -----------------------------------


@pytest.mark.parametrize("canon", [("simple", "simple"), ("simple", "relaxed"),
                                   ("relaxed", "simple"), ("relaxed", "relaxed")],
                         ids="/".join)
@pytest.mark.parametrize("selector", ["rsa", "ed"])
def test_sign_then_verify_rfc6376_and_rfc8463(zones: ZoneSet, rsa_key: LabKey,
                                             ed_key: LabKey, selector: str,
                                             canon: tuple[str, str]) -> None:
    key = rsa_key if selector == "rsa" else ed_key
    signed = dkim.sign(MESSAGE, domain=DOMAIN, selector=selector, private_key=key,
                       canonicalization=canon)
    assert signed.startswith(b"DKIM-Signature: v=1; a=")
    assert signed.endswith(MESSAGE)
    result = dkim.verify(signed, zones, now=NOW)
    assert result.verdict == "pass", result.text()
    sig = result.signatures[0]
    assert sig.result == "pass" and sig.passed
    assert (sig.domain, sig.selector) == (DOMAIN, selector)
    assert sig.algorithm == key.algorithm
    assert sig.canonicalization == canon
    assert dict(sig.tags)["c"] == "/".join(canon)


def test_canonicalization_can_be_given_as_text() -> None:
    key = generate_key("ed25519")
    done = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="s", private_key=key,
                            canonicalization="relaxed")
    assert done.canonicalization == ("relaxed", "simple")  # body simple by default (3.5)
    done = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="s", private_key=key,
                            canonicalization="relaxed/relaxed")
    assert done.canonicalization == ("relaxed", "relaxed")
    refused = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="s", private_key=key,
                               canonicalization=("loose", "simple"))
    assert refused.verdict == "refused" and "loose" in refused.summary


def test_relaxed_survives_rewrapping_simple_does_not_rfc6376_3_4(zones: ZoneSet,
                                                                 rsa_key: LabKey) -> None:
    rewrapped = (MESSAGE.replace(b"Subject: Quarterly figures", b"Subject: Quarterly\r\n\tfigures")
                 .replace(b"are attached.  ", b"are  attached."))
    for canon, expected in ((("relaxed", "relaxed"), "pass"), (("simple", "simple"), "fail")):
        signed = signed_rsa(rsa_key, canonicalization=canon)
        moved = signed.replace(MESSAGE, rewrapped)
        assert dkim.verify(moved, zones, now=NOW).verdict == expected, canon


def test_the_trace_shows_every_step(zones: ZoneSet, rsa_key: LabKey) -> None:
    result = dkim.verify(signed_rsa(rsa_key), zones, now=NOW)
    sig = result.signatures[0]
    text = sig.text()
    assert "read the tags" in text and "v=1" in text  # the parsed tags
    assert "ask DNS for the TXT record at rsa._domainkey.northwind.test" in text
    assert "v=DKIM1; k=rsa; p=" in text  # the key record
    assert "2 strings joined" in text  # an RSA-2048 record does not fit one string
    assert f"computed {sig.body_hash}, claimed bh={sig.claimed_body_hash}" in text
    assert "the signature is valid" in text
    # The canonicalized header and body exactly as hashed, white space made visible.
    assert "from:Ann·Example·<ann@northwind.test>␍␊" in text
    assert "the·figures·are·attached.␍␊" in text
    assert "dkim-signature:v=1;·a=rsa-sha256;" in text and "b=\n" in text + "\n"
    # ... and the raw bytes are on the result.
    assert sig.canonical_body == b"Hello Bob,\r\n\r\nthe figures are attached.\r\nAnn\r\n"
    assert sig.canonical_headers is not None
    assert sig.canonical_headers.startswith(b"from:Ann Example <ann@northwind.test>\r\n")
    assert sig.canonical_headers.endswith(b"b=")
    assert sig.show_body() == show_whitespace(sig.canonical_body)
    assert "␍␊" in sig.show_headers()
    kinds = [step.kind for step in sig.trace]
    assert kinds[0] == "info" and kinds[-1] == "ok" and "query" in kinds


def test_the_trace_cuts_a_long_body_but_keeps_the_bytes(zones: ZoneSet,
                                                        rsa_key: LabKey) -> None:
    body = b"".join(b"line %d\r\n" % i for i in range(500))
    message = MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n\r\n" + body
    sig = dkim.verify(signed_rsa(rsa_key, message), zones, now=NOW)[0]
    assert sig.passed and sig.canonical_body == body
    assert "lines" in sig.text() and "not shown" in sig.text()
    assert "line·499␍␊" in sig.text()  # the end of the body, where footers go, is shown
    fast = dkim.verify(signed_rsa(rsa_key, message), zones, now=NOW, trace=False)[0]
    assert fast.passed and all(step.detail is None for step in fast.trace)


def test_renderings_work(zones: ZoneSet, rsa_key: LabKey, ed_key: LabKey) -> None:
    signed = dkim.sign(signed_rsa(rsa_key), domain=DOMAIN, selector="ed", private_key=ed_key)
    result = dkim.verify(signed, zones, now=NOW)
    html = result._repr_html_()
    assert "<table>" in html and html.count("<details>") == 2
    assert "DKIM signature 2 (d=northwind.test s=rsa): pass" in str(result)
    assert "Signed by northwind.test, verified." in result.summary
    assert len(result) == 2 and result[1].selector == "rsa"


def test_authentication_results_entries_rfc8601_2_7_1(zones: ZoneSet,
                                                       rsa_key: LabKey) -> None:
    result = dkim.verify(signed_rsa(rsa_key), zones, now=NOW)
    entry = result.authres()[0]
    assert entry.startswith("dkim=pass (")
    assert "header.d=northwind.test header.i=@northwind.test header.s=rsa" in entry
    assert "header.a=rsa-sha256 header.b=" in entry
    assert dkim.verify(MESSAGE, zones).authres() == ["dkim=none"]


def test_an_unsigned_message_has_the_result_none(zones: ZoneSet) -> None:
    result = dkim.verify(MESSAGE, zones)
    assert result.verdict == "none" and result.signatures == ()


# -- h=, oversigning and the added From (RFC 6376 sections 5.4 and 8.15) -----------------


def test_default_headers_and_oversigned_from_rfc6376_5_4(rsa_key: LabKey) -> None:
    done = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="rsa", private_key=rsa_key)
    assert done.signed_headers == ("from", "to", "subject", "date", "message-id", "from")
    assert dict(done.tags)["h"] == "from:to:subject:date:message-id:from"
    assert "oversigned: from" in done.text()


def test_oversigning_makes_an_added_from_break_the_signature_rfc6376_8_15(
        zones: ZoneSet, rsa_key: LabKey) -> None:
    forged = b"From: Boss <boss@northwind.test>\r\n"
    oversigned = signed_rsa(rsa_key)
    assert dkim.verify(forged + oversigned, zones, now=NOW).verdict == "fail"
    # Without oversigning the bottom From still verifies: the attack works, and the
    # trace warns about the unsigned From.
    plain = signed_rsa(rsa_key, oversign=())
    result = dkim.verify(forged + plain, zones, now=NOW)
    assert result.verdict == "pass"
    assert "2 From fields but the signature covers 1" in result.text()


def test_oversign_can_protect_fields_the_message_lacks(zones: ZoneSet,
                                                      rsa_key: LabKey) -> None:
    signed = signed_rsa(rsa_key, oversign=("from", "reply-to"))
    assert b"h=from:to:subject:date:message-id:from:reply-to;" in signed
    added = signed.replace(b"\r\n\r\n", b"\r\nReply-To: evil@phisher.example\r\n\r\n", 1)
    assert dkim.verify(signed, zones, now=NOW).verdict == "pass"
    assert dkim.verify(added, zones, now=NOW).verdict == "fail"


def test_explicit_headers_must_include_from_rfc6376_5_4(rsa_key: LabKey) -> None:
    with pytest.raises(dkim.DKIMSigningError, match="From field must be signed"):
        dkim.sign(MESSAGE, domain=DOMAIN, selector="rsa", private_key=rsa_key,
                  headers=["subject"], oversign=())
    done = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="rsa", private_key=rsa_key,
                            headers="from:subject", oversign=())
    assert done.signed_headers == ("from", "subject")


def test_a_signature_without_from_in_h_is_a_permerror_rfc6376_6_1_1(zones: ZoneSet,
                                                                     rsa_key: LabKey) -> None:
    signed = signed_rsa(rsa_key).replace(b"h=from:to:subject:date:message-id:from;",
                                         b"h=to:subject:date:message-id;", 1)
    sig = dkim.verify(signed, zones, now=NOW)[0]
    assert sig.verdict == "permerror" and "does not include From" in sig.summary


def test_fields_are_taken_from_the_bottom_rfc6376_5_4_2(zones: ZoneSet,
                                                        rsa_key: LabKey) -> None:
    message = MESSAGE.replace(b"\r\n\r\n", b"\r\nX-Tag: one\r\nX-Tag: two\r\n\r\n", 1)
    signed = signed_rsa(rsa_key, message, headers=["from", "x-tag"], oversign=())
    sig = dkim.verify(signed, zones, now=NOW)[0]
    assert sig.passed and sig.canonical_headers is not None
    assert b"x-tag:two\r\n" in sig.canonical_headers  # the last one, not the first
    assert b"x-tag:one" not in sig.canonical_headers
    swapped = signed.replace(b"X-Tag: one\r\nX-Tag: two", b"X-Tag: two\r\nX-Tag: one")
    assert dkim.verify(swapped, zones, now=NOW).verdict == "fail"


# -- l= (RFC 6376 sections 3.5 and 8.2) --------------------------------------------------


def test_body_length_signs_a_prefix_and_the_trace_warns_rfc6376_8_2(zones: ZoneSet,
                                                                    rsa_key: LabKey) -> None:
    signed = signed_rsa(rsa_key, body_length=True)
    assert b" l=" in signed or b"\tl=" in signed
    footer = b"-- \r\nSent through the campus list. Unsubscribe: ...\r\n"
    result = dkim.verify(signed + footer, zones, now=NOW)
    assert result.verdict == "pass"
    sig = result[0]
    assert sig.unsigned_body_octets == len(canonicalize_body_relaxed(footer))
    assert "could be anything" in sig.text()


def test_body_length_as_a_number(zones: ZoneSet, rsa_key: LabKey) -> None:
    signed = signed_rsa(rsa_key, body_length=10, canonicalization=("relaxed", "simple"))
    sig = dkim.verify(signed.replace(b"figures are", b"FIGURES ARE"), zones, now=NOW)[0]
    assert sig.passed and sig.body_length == 10 and sig.canonical_body == b"Hello Bob,"


def test_body_length_beyond_the_body(zones: ZoneSet, rsa_key: LabKey) -> None:
    refused = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="rsa", private_key=rsa_key,
                               body_length=10_000)
    assert refused.verdict == "refused" and "l=10000" in refused.summary
    signed = signed_rsa(rsa_key, body_length=True)
    cut = signed.replace(b"Ann\r\n", b"")
    sig = dkim.verify(cut, zones, now=NOW)[0]
    assert sig.verdict == "permerror" and "claims more body than there is" in sig.summary


# -- t=, x= and the lab clock (RFC 6376 section 3.5) -------------------------------------


def test_timestamp_and_expiry_from_the_lab_clock(zones: ZoneSet, rsa_key: LabKey) -> None:
    clock = LabClock()
    clock.freeze(at=NOW)
    signed = signed_rsa(rsa_key, timestamp=clock, expire=timedelta(days=7))
    assert f"t={NOW};".encode() in signed and f"x={NOW + 7 * 86400};".encode() in signed
    clock.advance(6 * 86400)
    sig = dkim.verify(signed, zones, now=clock)[0]
    assert sig.passed and (sig.timestamp, sig.expiration) == (NOW, NOW + 7 * 86400)
    assert "6 days ago" in sig.text() and "expires at" in sig.text()
    clock.advance(2 * 86400)
    sig = dkim.verify(signed, zones, now=clock)[0]
    assert sig.verdict == "permerror" and "expired" in sig.summary


def test_timestamps_as_datetimes_and_numbers(zones: ZoneSet, rsa_key: LabKey) -> None:
    when = datetime(2026, 1, 5, tzinfo=UTC)
    signed = signed_rsa(rsa_key, timestamp=when, expire=when.timestamp() + 60)
    stamp = int(when.timestamp())
    assert f"t={stamp};".encode() in signed and f"x={stamp + 60};".encode() in signed
    assert dkim.verify(signed, zones, now=when).verdict == "pass"
    assert dkim.verify(signed, zones, now=when + timedelta(minutes=2)).verdict == "permerror"


def test_expiry_must_follow_the_timestamp(zones: ZoneSet, rsa_key: LabKey) -> None:
    refused = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="rsa", private_key=rsa_key,
                               timestamp=NOW, expire=NOW)
    assert refused.verdict == "refused"
    no_start = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="rsa", private_key=rsa_key,
                                expire=timedelta(days=1))
    assert no_start.verdict == "refused" and "timestamp" in no_start.summary
    signed = signed_rsa(rsa_key, timestamp=NOW, expire=NOW + 100)
    broken = signed.replace(f"x={NOW + 100}".encode(), f"x={NOW - 100}".encode())
    sig = dkim.verify(broken, zones, now=NOW)[0]
    assert sig.verdict == "permerror" and "not later than t=" in sig.summary


def test_a_signature_from_the_future_is_flagged(zones: ZoneSet, rsa_key: LabKey) -> None:
    signed = signed_rsa(rsa_key, timestamp=NOW + 86400)
    sig = dkim.verify(signed, zones, now=NOW)[0]
    assert sig.passed and "claims a time in the future" in sig.text()


def test_no_timestamp_by_default_and_true_means_now(rsa_key: LabKey) -> None:
    stamp = re.compile(rb"[ \t]t=(\d+);")
    assert stamp.search(signed_rsa(rsa_key)) is None
    found = stamp.search(signed_rsa(rsa_key, timestamp=True))
    assert found is not None and abs(int(found[1]) - LabClock().time()) < 60


# -- i= and the key flags t=y and t=s (RFC 6376 sections 3.5 and 3.6.1) ------------------


def test_identity_in_the_domain_or_a_subdomain(zones: ZoneSet, rsa_key: LabKey) -> None:
    for identity in ("ann@northwind.test", "@sales.northwind.test", "ann@a.b.northwind.test"):
        signed = signed_rsa(rsa_key, identity=identity)
        sig = dkim.verify(signed, zones, now=NOW)[0]
        assert sig.passed and sig.identity == identity
    refused = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="rsa", private_key=rsa_key,
                               identity="ann@evilnorthwind.test")
    assert refused.verdict == "refused"
    forged = signed_rsa(rsa_key, identity="ann@northwind.test").replace(
        b"i=ann@northwind.test", b"i=ann@campus.test")
    sig = dkim.verify(forged, zones, now=NOW)[0]
    assert sig.verdict == "permerror" and "not in the signing domain" in sig.summary


def test_strict_key_refuses_a_subdomain_identity_rfc6376_3_6_1(rsa_key: LabKey) -> None:
    zones = ZoneSet.empty()
    publish(zones, DOMAIN, "rsa", rsa_key, strict=True)
    exact = signed_rsa(rsa_key, identity="ann@northwind.test")
    assert dkim.verify(exact, zones, now=NOW).verdict == "pass"
    sub = signed_rsa(rsa_key, identity="ann@sales.northwind.test")
    sig = dkim.verify(sub, zones, now=NOW)[0]
    assert sig.verdict == "permerror" and "t=s" in sig.summary


def test_testing_key_rfc6376_3_6_1(rsa_key: LabKey) -> None:
    zones = ZoneSet.empty()
    publish(zones, DOMAIN, "rsa", rsa_key, testing=True)
    signed = signed_rsa(rsa_key)
    sig = dkim.verify(signed, zones, now=NOW)[0]
    assert sig.passed and sig.testing and "testing DKIM" in sig.summary
    broken = dkim.verify(signed.replace(b"attached", b"ATTACHED"), zones, now=NOW)[0]
    assert broken.verdict == "neutral" and "t=y" in broken.summary


# -- several signatures (RFC 6376 section 4.2) -------------------------------------------


def test_several_signatures_are_each_verified(zones: ZoneSet, rsa_key: LabKey,
                                              ed_key: LabKey) -> None:
    both = dkim.sign(signed_rsa(rsa_key), domain=DOMAIN, selector="ed", private_key=ed_key)
    result = dkim.verify(both, zones, now=NOW)
    assert verdicts(result) == ("pass", "pass")
    assert [s.algorithm for s in result.signatures] == ["ed25519-sha256", "rsa-sha256"]
    assert result.passing_domains == (DOMAIN, DOMAIN)
    zones.remove("ed._domainkey.northwind.test")
    result = dkim.verify(both, zones, now=NOW)
    assert verdicts(result) == ("permerror", "pass") and result.verdict == "pass"
    assert "No signature verified" in dkim.verify(
        both.replace(b"attached", b"ATTACHED"), zones, now=NOW).summary


def test_the_summary_prefers_a_temporary_error_to_a_failure(zones: ZoneSet,
                                                           rsa_key: LabKey,
                                                           ed_key: LabKey) -> None:
    both = dkim.sign(signed_rsa(rsa_key), domain=DOMAIN, selector="ed", private_key=ed_key)
    zones.fail("ed._domainkey.northwind.test", "timeout")
    result = dkim.verify(both.replace(b"attached", b"ATTACHED"), zones, now=NOW)
    assert verdicts(result) == ("temperror", "fail") and result.verdict == "temperror"


# -- RFC 8301: rsa-sha1 and short keys are refused ----------------------------------------


def test_rsa_sha1_is_refused_for_signing_and_verifying_rfc8301_3_1(zones: ZoneSet,
                                                                   rsa_key: LabKey) -> None:
    with pytest.raises(dkim.DKIMSigningError, match="RFC 8301"):
        signed_rsa(rsa_key, algorithm="rsa-sha1")
    with pytest.raises(DKIMKeyError, match="RFC 8301"):
        generate_key("rsa-sha1")
    signed = signed_rsa(rsa_key).replace(b"a=rsa-sha256", b"a=rsa-sha1", 1)
    sig = dkim.verify(signed, zones, now=NOW)[0]
    assert sig.verdict == "permerror" and "RFC 8301" in sig.summary


def test_short_rsa_keys_are_refused_rfc8301_3_2() -> None:
    with pytest.raises(DKIMKeyError, match="1024"):
        generate_key("rsa", bits=512)
    short = small_rsa_key(512)
    refused = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="old", private_key=short)
    assert refused.verdict == "refused" and "only 512 bits" in refused.summary
    with pytest.raises(dkim.DKIMSigningError):
        dkim.sign(MESSAGE, domain=DOMAIN, selector="old", private_key=short)


def test_a_short_key_in_dns_is_a_permerror_rfc8301_3_2(rsa_key: LabKey) -> None:
    short = small_rsa_key(512)
    zones = ZoneSet.empty()
    public = short.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    zones.add(f"old._domainkey.{DOMAIN}", "TXT",
              key_record("rsa", base64.b64encode(public).decode()))
    # Signed by a 2048-bit key but published as a 512-bit one: refused before any check.
    signed = dkim.sign(MESSAGE, domain=DOMAIN, selector="old", private_key=rsa_key)
    sig = dkim.verify(signed, zones, now=NOW)[0]
    assert sig.verdict == "permerror" and "512 bits" in sig.summary


def test_a_1024_bit_key_is_accepted_with_a_note(zones: ZoneSet) -> None:
    key = generate_key("rsa", bits=1024)
    publish(zones, DOMAIN, "k1024", key)
    signed = dkim.sign(MESSAGE, domain=DOMAIN, selector="k1024", private_key=key)
    sig = dkim.verify(signed, zones, now=NOW)[0]
    assert sig.passed and sig.key_bits == 1024 and "recommends 2048" in sig.text()


def test_the_algorithm_must_fit_the_key(zones: ZoneSet, rsa_key: LabKey,
                                        ed_key: LabKey) -> None:
    refused = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="rsa", private_key=rsa_key,
                               algorithm="ed25519-sha256")
    assert refused.verdict == "refused" and "needs a ed25519 key" in refused.summary
    unknown = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="rsa", private_key=rsa_key,
                               algorithm="rsa-sha512")
    assert unknown.verdict == "refused"
    # A signature claiming Ed25519 whose selector holds an RSA key.
    signed = dkim.sign(MESSAGE, domain=DOMAIN, selector="rsa", private_key=ed_key)
    sig = dkim.verify(signed, zones, now=NOW)[0]
    assert sig.verdict == "permerror" and "k=rsa" in sig.summary


# -- bad input: permerror or temperror with a reason, never an exception ------------------


def _with_tags(signed: bytes, old: bytes, new: bytes) -> bytes:
    assert old in signed, old
    return signed.replace(old, new, 1)


@pytest.mark.parametrize(("old", "new", "reason"), [
    (b"v=1;", b"v=2;", "version 1"),
    (b"v=1;", b"", "lacks the required tag v="),
    (b"a=rsa-sha256;", b"a=rsa-md5;", "not a known signing algorithm"),
    (b"c=relaxed/relaxed;", b"c=loose/relaxed;", "not a known canonicalization"),
    (b"d=northwind.test;", b"d=north wind;", "not a domain name"),
    (b"s=rsa;", b"s=-bad-;", "not a valid selector"),
    (b"v=1;", b"v=1; v=1;", "appears twice"),
    (b"v=1;", b"v=1;;", "empty tag"),
    (b"v=1;", b"v=1; 9x=1;", "not a tag name"),
    (b"v=1;", b"v=1; q=http/x;", "dns/txt"),
    (b"v=1;", b"v=1; l=ten;", "not a number"),
    (b"v=1;", b"v=1; t=yesterday;", "not a number of seconds"),
    (b"v=1;", b"v=1; i=nobody;", "has no @"),
    (b"h=from:", b"h=::from:", "invalid header field name"),
    (b"bh=", b"bh=!!!!", "not valid base64"),
])
def test_malformed_signatures_are_permerrors_rfc6376_6_1_1(zones: ZoneSet, rsa_key: LabKey,
                                                          old: bytes, new: bytes,
                                                          reason: str) -> None:
    signed = _with_tags(signed_rsa(rsa_key), old, new)
    result = dkim.verify(signed, zones, now=NOW)
    sig = result.signatures[0]
    assert sig.verdict == "permerror", sig.text()
    assert reason in sig.summary
    assert result.verdict == "permerror"


def test_broken_signature_values(zones: ZoneSet, rsa_key: LabKey) -> None:
    signed = signed_rsa(rsa_key)
    head, rest = signed.split(b"\r\n\tb=", 1)
    sig_value, message = rest.split(b"\r\nFrom:", 1)
    for bad, reason in ((b"%%%%", "not valid base64"), (b"", "b= tag is empty"),
                        (b"QUJD", "did not verify")):
        broken = head + b"\r\n\tb=" + bad + b"\r\nFrom:" + message
        sig = dkim.verify(broken, zones, now=NOW)[0]
        assert reason in sig.summary, (bad, sig.summary)
        assert sig.verdict in ("permerror", "fail")


def test_a_signature_that_is_not_a_tag_list(zones: ZoneSet) -> None:
    message = b"DKIM-Signature: this is not a tag list\r\n" + MESSAGE
    sig = dkim.verify(message, zones, now=NOW)[0]
    assert sig.verdict == "permerror" and "not a valid tag list" in sig.summary


@pytest.mark.parametrize(("record", "reason"), [
    ("v=DKIM2; p=MIIB", "v=DKIM1"),
    ("k=rsa; v=DKIM1; p=MIIB", "first tag"),
    ("v=DKIM1; k=rsa", "no p= tag"),
    ("v=DKIM1; k=rsa; p=", "revoked"),
    ("v=DKIM1; k=rsa; p=%%%%", "not valid base64"),
    ("v=DKIM1; k=rsa; p=QUJDRA==", "does not hold an RSA public key"),
    ("v=DKIM1; k=dsa; p=QUJDRA==", "unknown key type"),
    ("v=DKIM1; h=sha1; k=rsa; p=QUJDRA==", "not sha256"),
    ("v=DKIM1; s=tlsrpt; p=QUJDRA==", "not for email"),
    ("v=DKIM1; k=ed25519; p=QUJDRA==", "32 octets"),
    ("garbage without tags", "not a tag list"),
    ("v=spf1 -all", "a DKIM key record has v=DKIM1"),
])
def test_garbage_key_records_are_permerrors_rfc6376_3_6_1(rsa_key: LabKey, record: str,
                                                          reason: str) -> None:
    zones = ZoneSet.empty()
    zones.add(f"rsa._domainkey.{DOMAIN}", "TXT", record)
    sig = dkim.verify(signed_rsa(rsa_key), zones, now=NOW)[0]
    assert sig.verdict == "permerror", sig.text()
    assert reason in sig.summary
    assert sig.key_record == record


def test_the_first_usable_of_several_key_records_is_used(rsa_key: LabKey) -> None:
    zones = ZoneSet.empty()
    zones.add(f"rsa._domainkey.{DOMAIN}", "TXT", "v=spf1 -all")
    zones.add(f"rsa._domainkey.{DOMAIN}", "TXT", rsa_key.record)
    sig = dkim.verify(signed_rsa(rsa_key), zones, now=NOW)[0]
    assert sig.passed and "skipped 1 unusable record" in sig.text()


def test_absent_keys_rfc6376_6_1_2(rsa_key: LabKey) -> None:
    zones = ZoneSet.empty()
    sig = dkim.verify(signed_rsa(rsa_key), zones, now=NOW)[0]
    assert sig.verdict == "permerror" and "NXDOMAIN" in sig.summary
    zones.add(f"rsa._domainkey.{DOMAIN}", "A", "192.0.2.1")
    sig = dkim.verify(signed_rsa(rsa_key), zones, now=NOW)[0]
    assert sig.verdict == "permerror" and "has no TXT record" in sig.summary


@pytest.mark.parametrize("how", ["timeout", "servfail"])
def test_dns_failures_are_temperrors_rfc6376_6_1_2(zones: ZoneSet, rsa_key: LabKey,
                                                   how: str) -> None:
    zones.fail(f"rsa._domainkey.{DOMAIN}", how)
    sig = dkim.verify(signed_rsa(rsa_key), zones, now=NOW)[0]
    assert sig.verdict == "temperror" and "try again later" in sig.summary


def test_a_name_outside_the_zones_is_a_temperror(rsa_key: LabKey) -> None:
    zones = ZoneSet.empty("lab.test")
    sig = dkim.verify(signed_rsa(rsa_key), zones, now=NOW)[0]
    assert sig.verdict == "temperror" and "refused" in sig.summary


def test_a_malformed_message_gives_permerror_rfc5322_2_2(zones: ZoneSet,
                                                        rsa_key: LabKey) -> None:
    signed = signed_rsa(rsa_key)
    no_colon = signed.replace(b"To: bob@campus.test", b"To bob at campus")
    result = dkim.verify(no_colon, zones, now=NOW)
    assert result.results == ("permerror",)
    assert "has no colon" in result.signatures[0].summary
    no_separator = signed.replace(b"\r\n\r\nHello", b"\r\nHello")
    result = dkim.verify(no_separator, zones, now=NOW)
    assert result.verdict == "permerror"
    assert "empty line that separates header and body" in result.text()
    garbage = dkim.verify(b"just some text\r\nwithout any header\r\n", zones)
    assert garbage.verdict == "permerror" and "cannot be read" in garbage.summary


def test_signing_a_malformed_message_is_refused(rsa_key: LabKey) -> None:
    refused = dkim.sign_traced(b"From: a@northwind.test\r\nno colon\r\n\r\nx\r\n",
                               domain=DOMAIN, selector="rsa", private_key=rsa_key)
    assert refused.verdict == "refused" and "no colon" in refused.summary
    for bad in ({"domain": "not a domain"}, {"selector": "a..b"}):
        options = {"domain": DOMAIN, "selector": "rsa", **bad}
        assert dkim.sign_traced(MESSAGE, private_key=rsa_key, **options).verdict == "refused"
    assert dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="rsa",
                            private_key=b"not a key").verdict == "refused"


def test_random_bytes_never_raise(zones: ZoneSet, rsa_key: LabKey) -> None:
    rng = random.Random(6376)
    signed = signed_rsa(rsa_key)
    alphabet = b"ab:; =\r\n\t\x00\xff"
    for _ in range(300):
        mutated = bytearray(signed)
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(mutated))
            mutated[position] = rng.choice(alphabet)
        result = dkim.verify(bytes(mutated), zones, now=NOW)
        assert result.verdict in ("pass", "fail", "neutral", "temperror", "permerror", "none")
    for _ in range(100):
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
        dkim.verify(b"DKIM-Signature:" + junk, zones, now=NOW)
        dkim.verify(junk, zones, now=NOW)


# -- legal input stays legal -------------------------------------------------------------


def test_bare_lf_messages_are_read_as_crlf_rfc5322_2_1(zones: ZoneSet,
                                                       rsa_key: LabKey) -> None:
    lf_message = MESSAGE.replace(b"\r\n", b"\n")
    signed = signed_rsa(rsa_key, lf_message)
    assert b"\r" not in signed  # the new field follows the message's line ends
    result = dkim.verify(signed, zones, now=NOW)
    assert result.verdict == "pass" and result.lf_fixed == signed.count(b"\n")
    assert dkim.verify(signed.replace(b"\n", b"\r\n"), zones, now=NOW).verdict == "pass"
    crlf_signed = signed_rsa(rsa_key)
    assert dkim.verify(crlf_signed.replace(b"\r\n", b"\n"), zones, now=NOW).verdict == "pass"


@pytest.mark.parametrize("body_canon", ["simple", "relaxed"])
def test_an_empty_body_verifies_rfc6376_3_4_3(zones: ZoneSet, rsa_key: LabKey,
                                              body_canon: str) -> None:
    for message in (MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n\r\n",
                    MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n"):
        signed = signed_rsa(rsa_key, message, canonicalization=("relaxed", body_canon))
        sig = dkim.verify(signed, zones, now=NOW)[0]
        assert sig.passed, sig.text()
        assert sig.canonical_body == (b"\r\n" if body_canon == "simple" else b"")


def test_utf8_headers_rfc8616(zones: ZoneSet, ed_key: LabKey) -> None:
    message = ("From: Zoë Müller <zoë@northwind.test>\r\n"
               "Subject: Grüße aus Zürich\r\n\r\nHallo!\r\n").encode()
    for canon in (("simple", "simple"), ("relaxed", "relaxed")):
        signed = dkim.sign(message, domain=DOMAIN, selector="ed", private_key=ed_key,
                           identity="zoë@northwind.test", canonicalization=canon)
        sig = dkim.verify(signed, zones, now=NOW)[0]
        assert sig.passed and sig.identity == "zoë@northwind.test"
        assert "grüße" not in sig.text()  # relaxed lower-cases names, never values
        assert "Grüße·aus·Zürich" in sig.text()
    as_text = dkim.verify(signed.decode("utf-8"), zones, now=NOW)
    assert as_text.verdict == "pass"


# -- keys (RFC 6376 section 3.6, RFC 8463) -----------------------------------------------


def test_generate_key_gives_record_and_pem() -> None:
    key = generate_key("ed25519", domain=DOMAIN, selector="s1")
    assert key.key_type == "ed25519" and key.algorithm == "ed25519-sha256"
    assert key.bits == 256 and key.record.startswith("v=DKIM1; k=ed25519; p=")
    assert key.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key.dns_name == "s1._domainkey.northwind.test"
    assert "PRIVATE" not in repr(key) and str(key) == \
        "Ed25519 key (256 bits) for s1._domainkey.northwind.test"
    rsa_key = generate_key("rsa-sha256", bits=1024)
    assert rsa_key.bits == 1024 and rsa_key.algorithm == "rsa-sha256"
    record = parse_key_record(rsa_key.txt_record(testing=True, strict=True, notes="lab"))
    assert record.testing and record.strict and record.notes == "lab" and record.bits == 1024
    with pytest.raises(DKIMKeyError, match="unknown DKIM algorithm"):
        generate_key("dsa")


def test_publish_splits_a_long_record_into_strings(rsa_key: LabKey) -> None:
    zones = ZoneSet.empty()
    done = publish(zones, DOMAIN, "s1", rsa_key)
    assert done.verdict == "published" and done.name == "s1._domainkey.northwind.test"
    answer = zones.resolve("s1._domainkey.northwind.test", "TXT")
    strings = answer[0].strings
    assert len(strings) == 2 and all(len(s) <= 255 for s in strings)
    assert b"".join(strings).decode() == rsa_key.record
    assert "2 strings" in done.text()
    assert txt_strings("x" * 600) == ["x" * 255, "x" * 255, "x" * 90]


def test_publish_into_the_lab_world(zones_world: ZoneSet, ed_key: LabKey) -> None:
    publish(zones_world, DOMAIN, "extra", ed_key)
    signed = dkim.sign(MESSAGE, domain=DOMAIN, selector="extra", private_key=ed_key)
    assert dkim.verify(signed, zones_world, now=NOW).verdict == "pass"


@pytest.fixture
def zones_world() -> ZoneSet:
    return ZoneSet.from_directory(ROOT / "data" / "zones")


def test_revoke_rfc6376_3_6_1(zones: ZoneSet, rsa_key: LabKey) -> None:
    signed = signed_rsa(rsa_key)
    done = revoke(zones, DOMAIN, "rsa")
    assert done.verdict == "revoked"
    sig = dkim.verify(signed, zones, now=NOW)[0]
    assert sig.verdict == "permerror" and "revoked" in sig.summary


@pytest.mark.parametrize("old", ["keep", "revoke", "remove"])
def test_rotate_a_selector(zones: ZoneSet, rsa_key: LabKey, old: str) -> None:
    before = signed_rsa(rsa_key)
    rotation = rotate(zones, DOMAIN, "rsa", "rsa2027", algorithm="ed25519", old=old)
    assert rotation.verdict == "rotated" and rotation.key.selector == "rsa2027"
    after = dkim.sign(MESSAGE, domain=DOMAIN, selector="rsa2027", private_key=rotation.key)
    assert dkim.verify(after, zones, now=NOW).verdict == "pass"
    expected = {"keep": "pass", "revoke": "permerror", "remove": "permerror"}[old]
    assert dkim.verify(before, zones, now=NOW).verdict == expected
    with pytest.raises(DKIMKeyError):
        rotate(zones, DOMAIN, "rsa2027", "rsa2027")
    with pytest.raises(DKIMKeyError):
        rotate(zones, DOMAIN, "rsa2027", "x", old="forget")


def test_private_keys_load_from_many_forms(tmp_path: Path, ed_key: LabKey) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(ed_key.private_pem)
    for form in (ed_key, ed_key.private_key, ed_key.private_pem,
                 ed_key.private_pem.decode(), path):
        assert load_private_key(form).public_key() == ed_key.private_key.public_key()
    with pytest.raises(DKIMKeyError, match="cannot read"):
        load_private_key(tmp_path / "missing.pem")
    with pytest.raises(DKIMKeyError, match="not an unencrypted PEM"):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----\n")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(DKIMKeyError, match="RSA or Ed25519"):
        load_private_key(ec_pem)
    with pytest.raises(DKIMKeyError):
        load_private_key(42)


def test_tag_lists_rfc6376_3_2() -> None:
    assert parse_tag_list(" v = DKIM1 ;\r\n\tk=rsa; p=AB\r\n CD;") == \
        {"v": "DKIM1", "k": "rsa", "p": "AB CD"}
    assert parse_tag_list("") == {}
    for bad in ("a=1;;b=2", "a=1; a=2", "=x", "a", "a=\x01"):
        with pytest.raises(TagListError):
            parse_tag_list(bad)


def test_key_record_errors_say_revoked() -> None:
    with pytest.raises(KeyRecordError) as caught:
        parse_key_record("v=DKIM1; p=")
    assert caught.value.revoked


def test_every_error_is_a_lab_error() -> None:
    for cls in (dkim.DKIMError, dkim.DKIMSigningError, DKIMKeyError, KeyRecordError,
                TagListError):
        assert issubclass(cls, LabError)


# -- the lab's own keys (data/keys) ------------------------------------------------------


def test_every_signing_domain_has_both_keys() -> None:
    keys = lab_keys()
    assert sorted({k.domain for k in keys}) == sorted(LAB_SIGNING_DOMAINS)
    assert sorted(k.key_type for k in keys) == ["ed25519"] * 3 + ["rsa"] * 3
    assert all(k.bits == 2048 for k in keys if k.key_type == "rsa")
    assert lab_key("northwind.test").selector == "lab2026-rsa"
    assert lab_key("campus.test", "ed25519").selector == "lab2026-ed25519"
    with pytest.raises(DKIMKeyError, match="signing domains"):
        lab_key("phisher.example")


def test_the_records_fragment_publishes_every_lab_key() -> None:
    text = (LAB_KEY_DIR / "dkim-records.txt").read_text("utf-8")
    zone = dns.zone.from_text(text, origin=".", relativize=False, check_origin=False)
    zones = ZoneSet.empty()
    for name, rdataset in zone.iterate_rdatasets():
        for rdata in rdataset:
            zones.add(name.to_text(), "TXT", [s.decode() for s in rdata.strings])
    for key in lab_keys():
        assert key.dns_name is not None
        answer = zones.resolve(key.dns_name, "TXT")
        assert b"".join(answer[0].strings).decode() == key.record
        signed = dkim.sign(MESSAGE, domain=key.domain or "", selector=key.selector or "",
                           private_key=key)
        assert dkim.verify(signed, zones, now=NOW).verdict == "pass"


def test_the_keys_readme_says_they_are_lab_only() -> None:
    readme = (LAB_KEY_DIR / "README.md").read_text("utf-8")
    assert "LAB-ONLY" in readme and "never for real mail" in readme
    assert "python -m labsupport.auth.dkim_keys regenerate" in readme


def test_regenerating_keys_writes_pems_and_records(tmp_path: Path) -> None:
    from labsupport.auth.dkim_keys import main

    assert main(["regenerate", str(tmp_path)]) == 0
    keys = lab_keys(tmp_path)
    assert len(keys) == 2 * len(LAB_SIGNING_DOMAINS)
    records = (tmp_path / "dkim-records.txt").read_text("utf-8")
    assert all(key.zone_line() in records for key in keys)
    assert main([]) == 2


# -- the module itself -------------------------------------------------------------------


def test_import_is_cheap() -> None:
    code = ("import sys, labsupport.auth.dkim; "
            "print(sorted(m for m in ('matplotlib', 'ipywidgets', 'dkim', 'nacl') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_public_names_are_there() -> None:
    for name in dkim.__all__:
        assert hasattr(dkim, name), name
