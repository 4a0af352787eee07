"""DKIM against the public reference examples in ../shared/conformance/dkim (see its README).

* RFC 6376 section 3.4.6: the canonicalization example, byte for byte, both algorithms,
  header and body.
* RFC 8463 Appendix A: the example message signed with Ed25519 (selector ``brisbane``) and
  RSA (selector ``test``), keys served from an in-memory ZoneSet as the README gives them.

The folder is always present in CI; elsewhere these tests are skipped with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labsupport import dkim
from labsupport.auth.dkim_canon import (
    canonicalize_body_relaxed,
    canonicalize_body_simple,
    canonicalize_header_relaxed,
    canonicalize_header_simple,
    parse_message,
)
from labsupport.dns.zone import ZoneSet

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT.parent / "shared" / "conformance" / "dkim"

pytestmark = pytest.mark.skipif(
    not CONFORMANCE.is_dir(),
    reason=f"the conformance material is not at {CONFORMANCE} (CI always has it)",
)

DOMAIN = "football.example.com"
ED25519_RECORD = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
#: The signatures carry t= in 2018 and no x=; verify at a fixed time all the same.
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def canon_example() -> dict[str, str]:
    return json.loads((CONFORMANCE / "dkim-canon-rfc6376-3.4.6.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def football() -> ZoneSet:
    """The two keys of the RFC 8463 example, as the conformance README gives them."""
    zones = ZoneSet.empty()
    zones.add(f"brisbane._domainkey.{DOMAIN}", "TXT", ED25519_RECORD)
    zones.add(f"test._domainkey.{DOMAIN}", "TXT",
              (CONFORMANCE / "test.txt").read_text("utf-8").strip())
    return zones


def _raw(example: dict[str, str]) -> bytes:
    return example["raw_message"].encode("utf-8")


def test_relaxed_headers_match_section_3_4_6(canon_example: dict[str, str]) -> None:
    parsed = parse_message(_raw(canon_example))
    got = b"".join(canonicalize_header_relaxed(h.raw) for h in parsed.headers)
    assert got == canon_example["relaxed_headers"].encode()


def test_simple_headers_match_section_3_4_6(canon_example: dict[str, str]) -> None:
    parsed = parse_message(_raw(canon_example))
    got = b"".join(canonicalize_header_simple(h.raw) for h in parsed.headers)
    assert got == canon_example["simple_headers"].encode()


def test_relaxed_body_matches_section_3_4_6(canon_example: dict[str, str]) -> None:
    body = parse_message(_raw(canon_example)).body
    assert canonicalize_body_relaxed(body) == canon_example["relaxed_body"].encode()


def test_simple_body_matches_section_3_4_6(canon_example: dict[str, str]) -> None:
    body = parse_message(_raw(canon_example)).body
    assert canonicalize_body_simple(body) == canon_example["simple_body"].encode()


def test_the_example_parses_as_two_fields_one_with_a_space_before_the_colon(
        canon_example: dict[str, str]) -> None:
    # "B : Y" is obsolete syntax (RFC 5322 section 4.5) that a verifier must still read.
    parsed = parse_message(_raw(canon_example))
    assert [h.name for h in parsed.headers] == [b"A", b"B"]
    assert parsed.problems == ()


def test_rfc8463_message_both_signatures_verify(football: ZoneSet) -> None:
    message = (CONFORMANCE / "rfc6376.signed.msg").read_bytes()
    result = dkim.verify(message, football, now=NOW)
    assert result.verdict == "pass", result.text()
    assert result.results == ("pass", "pass")
    ed, rsa = result.signatures
    assert (ed.algorithm, ed.selector, ed.domain) == ("ed25519-sha256", "brisbane", DOMAIN)
    assert (rsa.algorithm, rsa.selector, rsa.domain) == ("rsa-sha256", "test", DOMAIN)
    assert ed.body_hash == ed.claimed_body_hash == "4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ="
    assert ed.key_type == "ed25519" and rsa.key_bits == 1024


def test_rfc8463_rsa_signed_message_verifies(football: ZoneSet) -> None:
    message = (CONFORMANCE / "rfc6376.signed.rsa.msg").read_bytes()
    result = dkim.verify(message, football, now=NOW)
    assert result.verdict == "pass", result.text()
    assert result.results == ("pass",)


def test_conformance_files_are_stored_with_bare_lf_and_read_as_crlf(football: ZoneSet) -> None:
    message = (CONFORMANCE / "rfc6376.signed.msg").read_bytes()
    assert b"\r\n" not in message
    result = dkim.verify(message, football, now=NOW)
    assert result.lf_fixed == message.count(b"\n")
    assert dkim.verify(message.replace(b"\n", b"\r\n"), football, now=NOW).verdict == "pass"


def test_a_changed_subject_fails_both_signatures(football: ZoneSet) -> None:
    message = (CONFORMANCE / "rfc6376.signed.msg").read_bytes()
    tampered = message.replace(b"Is dinner ready?", b"Is lunch ready?")
    result = dkim.verify(tampered, football, now=NOW)
    assert result.results == ("fail", "fail")


def test_the_unsigned_example_has_no_signature(football: ZoneSet) -> None:
    message = (CONFORMANCE / "rfc6376.msg").read_bytes()
    assert dkim.verify(message, football, now=NOW).verdict == "none"


def test_the_lab_signs_the_example_the_same_way_as_rfc8463(football: ZoneSet) -> None:
    """Same tags, same canonicalization, same body: the lab's body hash is the RFC's."""
    message = (CONFORMANCE / "rfc6376.msg").read_bytes()
    done = dkim.sign_traced(
        message, domain=DOMAIN, selector="brisbane",
        private_key=dkim.generate_key("ed25519"), canonicalization=("simple", "simple"),
        headers=["from", "to", "subject", "date", "message-id", "from", "subject", "date"],
        oversign=())
    assert done.verdict == "signed"
    assert done.body_hash == "4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ="
