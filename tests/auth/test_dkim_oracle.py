"""The lab's DKIM next to dkimpy, the reference library, in both directions.

What dkimpy signs, the lab verifies; what the lab signs, dkimpy verifies; across both
algorithms (rsa-sha256, ed25519-sha256) and all four canonicalization pairs, on fixed
messages and on random ones (hypothesis, limited to what dkimpy itself accepts: it rejects
some legal headers, such as a space before the colon, and canonicalizes a body without a
final line end differently from RFC 6376 section 3.4.4). dkimpy's DNS is served from the
same in-memory ZoneSet as the lab's (its ``dnsfunc`` argument).

dkimpy (and PyNaCl, for Ed25519) are test-only dependencies: without them these tests are
skipped with the reason.
"""

from __future__ import annotations

import pytest

dkimpy = pytest.importorskip("dkim", reason="dkimpy is not installed (pip install dkimpy)")
pytest.importorskip("nacl", reason="PyNaCl is not installed (dkimpy needs it for Ed25519)")

from dkimpy_helpers import dkimpy_key, dnsfunc_for  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from labsupport import dkim  # noqa: E402
from labsupport.auth.dkim_keys import LabKey, generate_key, publish  # noqa: E402
from labsupport.dns.zone import ZoneSet  # noqa: E402

DOMAIN = "northwind.test"
CANONICALIZATIONS = [("simple", "simple"), ("simple", "relaxed"), ("relaxed", "simple"),
                     ("relaxed", "relaxed")]
ALGORITHMS = ["rsa-sha256", "ed25519-sha256"]

MESSAGE = (
    b"From: Ann Example <ann@northwind.test>\r\n"
    b"To: bob@campus.test,\r\n"
    b"   carol@campus.test\r\n"
    b"Subject:  Quarterly   figures\t \r\n"
    b"Date: Mon, 05 Jan 2026 09:30:00 +0000\r\n"
    b"Message-ID: <oracle-1@northwind.test>\r\n"
    b"\r\n"
    b"Hello Bob,  \r\n"
    b"\r\n"
    b"\tthe figures are   attached.\r\n"
    b"Ann\r\n"
    b"\r\n"
    b"\r\n"
)


@pytest.fixture(scope="module")
def keys() -> dict[str, LabKey]:
    return {"rsa-sha256": generate_key("rsa"), "ed25519-sha256": generate_key("ed25519")}


@pytest.fixture(scope="module")
def zones(keys: dict[str, LabKey]) -> ZoneSet:
    zones = ZoneSet.empty()
    publish(zones, DOMAIN, "rsa", keys["rsa-sha256"])
    publish(zones, DOMAIN, "ed", keys["ed25519-sha256"])
    return zones


SELECTORS = {"rsa-sha256": "rsa", "ed25519-sha256": "ed"}


def dkimpy_sign(message: bytes, key: LabKey, algorithm: str, canon: tuple[str, str],
                headers: list[str] | None = None, length: bool = False) -> bytes:
    field = dkimpy.sign(message, SELECTORS[algorithm].encode(), DOMAIN.encode(),
                        dkimpy_key(key), canonicalize=(canon[0].encode(), canon[1].encode()),
                        signature_algorithm=algorithm.encode(),
                        include_headers=[h.encode() for h in headers] if headers else None,
                        length=length)
    return field + message


def lab_sign(message: bytes, key: LabKey, algorithm: str, canon: tuple[str, str],
             **options: object) -> bytes:
    return dkim.sign(message, domain=DOMAIN, selector=SELECTORS[algorithm], private_key=key,
                     algorithm=algorithm, canonicalization=canon, **options)  # type: ignore[arg-type]


# -- fixed messages ----------------------------------------------------------------------


@pytest.mark.parametrize("canon", CANONICALIZATIONS, ids="/".join)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_what_dkimpy_signs_the_lab_verifies(keys: dict[str, LabKey], zones: ZoneSet,
                                            algorithm: str, canon: tuple[str, str]) -> None:
    signed = dkimpy_sign(MESSAGE, keys[algorithm], algorithm, canon)
    result = dkim.verify(signed, zones)
    assert result.verdict == "pass", result.text()
    assert result[0].algorithm == algorithm
    assert result[0].canonicalization == canon


@pytest.mark.parametrize("canon", CANONICALIZATIONS, ids="/".join)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_what_the_lab_signs_dkimpy_verifies(keys: dict[str, LabKey], zones: ZoneSet,
                                            algorithm: str, canon: tuple[str, str]) -> None:
    signed = lab_sign(MESSAGE, keys[algorithm], algorithm, canon)
    assert dkimpy.verify(signed, dnsfunc=dnsfunc_for(zones))


@pytest.mark.parametrize("canon", CANONICALIZATIONS, ids="/".join)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_both_agree_that_a_changed_body_fails(keys: dict[str, LabKey], zones: ZoneSet,
                                              algorithm: str, canon: tuple[str, str]) -> None:
    for signed in (lab_sign(MESSAGE, keys[algorithm], algorithm, canon),
                   dkimpy_sign(MESSAGE, keys[algorithm], algorithm, canon)):
        tampered = signed.replace(b"attached", b"ATTACHED")
        assert dkim.verify(tampered, zones).verdict == "fail"
        assert not dkimpy.verify(tampered, dnsfunc=dnsfunc_for(zones))


@pytest.mark.parametrize("variant", ["lf-line-ends", "empty-body", "utf8-subject",
                                     "body-length", "no-oversigning"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_both_directions_on_special_messages(keys: dict[str, LabKey], zones: ZoneSet,
                                             algorithm: str, variant: str) -> None:
    message = MESSAGE
    options: dict[str, object] = {}
    length = False
    if variant == "lf-line-ends":
        message = MESSAGE.replace(b"\r\n", b"\n")
    elif variant == "empty-body":
        message = MESSAGE.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    elif variant == "utf8-subject":  # RFC 8616: UTF-8 in header fields
        message = MESSAGE.replace(b"Quarterly", "Quartalszahlen für Zürich".encode())
    elif variant == "body-length":
        options["body_length"] = True
        length = True
    else:
        options["oversign"] = ()
    dnsfunc = dnsfunc_for(zones)
    for canon in CANONICALIZATIONS:
        ours = lab_sign(message, keys[algorithm], algorithm, canon, **options)
        assert dkimpy.verify(ours, dnsfunc=dnsfunc), (variant, canon)
        theirs = dkimpy_sign(message, keys[algorithm], algorithm, canon, length=length)
        result = dkim.verify(theirs, zones)
        assert result.verdict == "pass", (variant, canon, result.text())


def test_dkimpy_and_the_lab_compute_the_same_body_hash(keys: dict[str, LabKey]) -> None:
    for canon in CANONICALIZATIONS:
        signed = dkimpy_sign(MESSAGE, keys["rsa-sha256"], "rsa-sha256", canon)
        tags = dkimpy.util.parse_tag_value(signed.split(b"\r\nFrom:")[0]
                                           .split(b":", 1)[1].replace(b"\r\n", b""))
        ours = dkim.sign_traced(MESSAGE, domain=DOMAIN, selector="rsa",
                                private_key=keys["rsa-sha256"], canonicalization=canon)
        assert ours.body_hash == tags[b"bh"].decode(), canon


# -- random messages ---------------------------------------------------------------------

# Header field names dkimpy accepts (printable, no space before the colon), avoiding the
# names it refuses to sign (Received, Return-Path, ...), From (added once on purpose) and
# DKIM-Signature.
_REFUSED = {"from", "dkim-signature", "received", "return-path", "comments", "keywords",
            "bcc", "resent-bcc"}
names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,14}", fullmatch=True).filter(
    lambda n: n.lower() not in _REFUSED)
# Values: printable ASCII, spaces and tabs, sometimes folded onto a continuation line.
words = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=12)
gaps = st.sampled_from([" ", "  ", "\t", " \t ", "\r\n ", "\r\n\t", "\r\n  "])


@st.composite
def header_values(draw: st.DrawFn) -> str:
    parts = draw(st.lists(words, min_size=1, max_size=5))
    text = draw(st.sampled_from(["", " ", "  ", "\t"])) + parts[0]
    for part in parts[1:]:
        text += draw(gaps) + part
    return text + draw(st.sampled_from(["", " ", "\t "]))


body_lines = st.lists(
    st.text(alphabet=st.sampled_from(list("abcXYZ019.,;:-_ \t")), max_size=40),
    max_size=8)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    fields = [(draw(names), draw(header_values())) for _ in range(draw(st.integers(0, 5)))]
    fields.insert(draw(st.integers(0, len(fields))), ("From", " ann@northwind.test"))
    header = "".join(f"{name}:{value}\r\n" for name, value in fields)
    lines = draw(body_lines)
    body = "".join(line + "\r\n" for line in lines) + "\r\n" * draw(st.integers(0, 3))
    message = (header + "\r\n" + body).encode("ascii")
    if draw(st.booleans()):
        message = message.replace(b"\r\n", b"\n")
    return message


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(message=messages(), canon=st.sampled_from(CANONICALIZATIONS),
       algorithm=st.sampled_from(ALGORITHMS), sign_all=st.booleans())
def test_random_messages_both_directions(keys: dict[str, LabKey], zones: ZoneSet,
                                         message: bytes, canon: tuple[str, str],
                                         algorithm: str, sign_all: bool) -> None:
    parsed = dkim.parse_message(message)
    assert parsed.problems == ()
    headers = ([h.name.decode().lower() for h in parsed.headers] if sign_all else None)
    ours = lab_sign(message, keys[algorithm], algorithm, canon,
                    **({"headers": headers} if headers else {}))
    assert dkimpy.verify(ours, dnsfunc=dnsfunc_for(zones)), ours
    theirs = dkimpy_sign(message, keys[algorithm], algorithm, canon, headers=headers)
    result = dkim.verify(theirs, zones)
    assert result.verdict == "pass", result.text()
