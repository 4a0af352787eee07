"""labsupport.auth.authres: the Authentication-Results header (RFC 8601), without a running lab."""

from __future__ import annotations

import pytest

from labsupport.auth.authres import (
    LAB_AUTHSERV_ID,
    MAX_EVALUATIONS,
    AuthEvaluation,
    AuthResultsError,
    EvaluationLog,
    authenticate,
    authserv_id_of,
    format_authres,
    header_field,
    parse_authres,
    strip_own,
)
from labsupport.auth.dkim import sign, verify
from labsupport.auth.dkim_keys import lab_key
from labsupport.auth.spf import spf_verdict
from labsupport.dns.zone import ZoneSet

MESSAGE = (b"From: Alice <alice@northwind.test>\r\nTo: carol@campus.test\r\n"
           b"Subject: Course notes\r\nDate: Sun, 01 Mar 2026 12:00:00 +0000\r\n"
           b"Message-ID: <notes@northwind.test>\r\n\r\nHello Carol.\r\n")


def signed(message: bytes = MESSAGE, domain: str = "northwind.test") -> bytes:
    return sign(message, domain=domain, selector="lab2026-rsa", private_key=lab_key(domain))


# -- writing and reading -------------------------------------------------------------------


def test_format_spf_and_dkim_pass(world: ZoneSet) -> None:
    spf = spf_verdict("192.0.2.10", "alice@northwind.test", "out.northwind.test", world)
    dkim = verify(signed(), world)
    value = format_authres(LAB_AUTHSERV_ID, spf, dkim)
    assert value.startswith("mx.lab.test; spf=pass (")
    assert "smtp.mailfrom=alice@northwind.test; dkim=pass (" in value
    assert "header.d=northwind.test header.i=@northwind.test header.s=lab2026-rsa " \
           "header.a=rsa-sha256 header.b=" in value
    assert "\n" not in value


def test_format_and_parse_round_trip(world: ZoneSet) -> None:
    spf = spf_verdict("203.0.113.66", "ceo@northwind.test", "out.phisher.example", world)
    dkim = verify(signed(), world)
    value = format_authres(LAB_AUTHSERV_ID, spf, dkim)
    parsed = parse_authres(value)
    assert parsed.authserv_id == "mx.lab.test" and parsed.version is None
    assert parsed.methods() == ["spf", "dkim"]
    spf_result = parsed.find("spf")
    assert spf_result is not None and spf_result.result == "fail"
    assert spf_result.props == {"smtp.mailfrom": "ceo@northwind.test"}
    assert spf_result.comment is not None and "203.0.113.66" in spf_result.comment
    dkim_result = parsed.find("dkim")
    assert dkim_result is not None and dkim_result.result == "pass"
    assert dkim_result.get("header.d") == "northwind.test"
    assert dkim_result.get("header.s") == "lab2026-rsa"
    assert dkim_result.get("HEADER.I") == "@northwind.test"
    b_value = dict(dkim.signatures[0].tags)["b"]
    assert dkim_result.get("header.b") == "".join(b_value.split())[:8]
    # Written out again, it reads the same.
    assert parse_authres(parsed.text()) == parsed


def test_header_field_is_folded_and_parses_like_the_value(world: ZoneSet) -> None:
    spf = spf_verdict("192.0.2.10", "alice@northwind.test", "out.northwind.test", world)
    value = format_authres(LAB_AUTHSERV_ID, spf, verify(signed(), world))
    field = header_field(value)
    assert field.startswith(b"Authentication-Results: mx.lab.test;\r\n\t")
    assert field.endswith(b"\r\n") and field.count(b"\r\n") >= 3
    assert all(len(line) < 998 for line in field.split(b"\r\n"))
    assert parse_authres(field) == parse_authres(value)


def test_nothing_checked_is_none(world: ZoneSet) -> None:
    assert format_authres(LAB_AUTHSERV_ID) == "mx.lab.test; none"
    parsed = parse_authres("mx.lab.test; none")
    assert parsed.results == () and parsed.text() == "mx.lab.test; none"
    unsigned = verify(MESSAGE, world)
    assert format_authres(LAB_AUTHSERV_ID, dkim=unsigned).startswith("mx.lab.test; dkim=none")


def test_helo_identity_for_the_null_sender(world: ZoneSet) -> None:
    spf = spf_verdict("192.0.2.10", "", "out.northwind.test", world)
    parsed = parse_authres(format_authres(LAB_AUTHSERV_ID, spf))
    result = parsed.find("spf")
    assert result is not None and result.props == {"smtp.helo": "out.northwind.test"}


def test_values_that_are_not_tokens_are_quoted() -> None:
    value = format_authres(LAB_AUTHSERV_ID, extra=['dkim=pass header.b="ab/cd+="'])
    assert parse_authres(value).results[0].get("header.b") == "ab/cd+="
    with pytest.raises(AuthResultsError):
        format_authres("not an id")


@pytest.mark.parametrize("value, expected", [
    # RFC 8601 Appendix B examples.
    ("example.org 1; none", ("example.org", "1", [])),
    ("example.com; spf=pass smtp.mailfrom=example.net",
     ("example.com", None, [("spf", "pass", {"smtp.mailfrom": "example.net"})])),
    ("example.com;\r\n  auth=pass (cram-md5) smtp.auth=sender@example.net;\r\n"
     "  spf=pass smtp.mailfrom=example.net",
     ("example.com", None, [("auth", "pass", {"smtp.auth": "sender@example.net"}),
                            ("spf", "pass", {"smtp.mailfrom": "example.net"})])),
    ("mail-router.example.net; dkim=pass (good signature) header.d=newyork.example.com "
     "header.b=oINEO8hg; dkim=fail (bad signature) header.d=newyork.example.com "
     "header.b=EToRSuvU",
     ("mail-router.example.net", None,
      [("dkim", "pass", {"header.d": "newyork.example.com", "header.b": "oINEO8hg"}),
       ("dkim", "fail", {"header.d": "newyork.example.com", "header.b": "EToRSuvU"})])),
    ("foo.example.net (foobar) 1 (baz);\r\n dkim (Because I like it) / 1 (One yay) = (wait "
     "for it) fail\r\n policy (A dot can go here) . (like that) expired\r\n (this surprised "
     "me) = (as I wasn't expecting it) 1362471462",
     ("foo.example.net", "1", [("dkim", "fail", {"policy.expired": "1362471462"})])),
    ('"mx.lab.test"; spf=softfail reason="not listed" smtp.mailfrom="odd user"@campus.test',
     ("mx.lab.test", None, [("spf", "softfail",
                             {"smtp.mailfrom": '"odd user"@campus.test'})])),
])
def test_parses_rfc_examples(value: str, expected: tuple[str, str | None, list]) -> None:
    parsed = parse_authres(value)
    authserv_id, version, results = expected
    assert (parsed.authserv_id, parsed.version) == (authserv_id, version)
    assert [(r.method, r.result, r.props) for r in parsed.results] == results


def test_reason_and_comment_are_kept() -> None:
    parsed = parse_authres('mx.lab.test; dkim=fail reason="body hash mismatch" (tampered) '
                           "header.d=northwind.test")
    result = parsed.results[0]
    assert result.reason == "body hash mismatch" and result.comment == "tampered"
    assert parse_authres(str(parsed)) == parsed


@pytest.mark.parametrize("value", [
    "", "mx.lab.test", "mx.lab.test; spf", "mx.lab.test; spf=", "mx.lab.test; spf=pass smtp",
    "mx.lab.test; spf=pass smtp.mailfrom", "mx.lab.test; spf=pass (never closed",
    'mx.lab.test; spf=pass smtp.mailfrom="never closed', "; spf=pass",
])
def test_malformed_values_raise_with_a_reason(value: str) -> None:
    with pytest.raises(AuthResultsError, match="RFC 8601 section 2.2"):
        parse_authres(value)


def test_authserv_id_of() -> None:
    assert authserv_id_of(" (comment) MX.lab.test; garbage ((") == "MX.lab.test"
    assert authserv_id_of(b'"quoted.example"; none') == "quoted.example"
    assert authserv_id_of(";") is None


# -- removing our own fields from incoming mail (RFC 8601 section 5) ------------------------


FORGED = (b"Authentication-Results: mx.lab.test;\r\n\tspf=pass smtp.mailfrom=ceo@northwind.test;"
          b"\r\n\tdkim=pass header.d=northwind.test\r\n"
          b"From: CEO <ceo@northwind.test>\r\n"
          b"Authentication-Results: relay.other.example; dkim=pass header.d=other.example\r\n"
          b"authentication-results:   MX.LAB.TEST ; spf=pass\r\n"
          b"Subject: Urgent\r\n\r\n"
          b"Authentication-Results: mx.lab.test; this line is body text\r\n")


def test_strip_own_removes_forged_fields_and_keeps_others() -> None:
    stripped = strip_own(FORGED, "mx.lab.test")
    assert stripped == (
        b"From: CEO <ceo@northwind.test>\r\n"
        b"Authentication-Results: relay.other.example; dkim=pass header.d=other.example\r\n"
        b"Subject: Urgent\r\n\r\n"
        b"Authentication-Results: mx.lab.test; this line is body text\r\n")


def test_strip_own_with_lf_endings_and_nothing_to_strip() -> None:
    lf = FORGED.replace(b"\r\n", b"\n")
    stripped = strip_own(lf)
    assert b"mx.lab.test;\n\tspf" not in stripped and b"relay.other.example" in stripped
    assert stripped.endswith(b"\n\nAuthentication-Results: mx.lab.test; this line is body text\n")
    assert strip_own(MESSAGE) == MESSAGE
    assert strip_own(b"no separator at all") == b"no separator at all"
    assert strip_own(FORGED, "relay.other.example").count(b"relay.other.example") == 0


# -- what the MX role runs -------------------------------------------------------------------


def test_authenticate_checks_spf_and_dkim(world: ZoneSet) -> None:
    evaluation = authenticate(signed(), client_ip="192.0.2.10",
                              mail_from="alice@northwind.test", helo="out.northwind.test",
                              resolver=world, recipients=["carol@campus.test"], now=1772366400)
    assert evaluation.spf is not None and evaluation.spf.verdict == "pass"
    assert evaluation.dkim is not None and evaluation.dkim.verdict == "pass"
    assert evaluation.message_id == "<notes@northwind.test>"
    assert evaluation.recipients == ("carol@campus.test",)
    assert evaluation.spf_result == "pass" and evaluation.dkim_results == ("pass",)
    found = evaluation.results.find("dkim")
    assert found is not None and found.get("header.d") == "northwind.test"
    assert "spf=pass" in str(evaluation) and "spf=pass" in evaluation._repr_html_()


def test_authenticate_without_a_usable_address(world: ZoneSet) -> None:
    evaluation = authenticate(MESSAGE, client_ip="not-an-ip", mail_from="a@northwind.test",
                              helo=None, resolver=world)
    assert evaluation.spf is None and evaluation.header.startswith("mx.lab.test; dkim=none")


def test_evaluation_log_is_bounded_newest_last(world: ZoneSet) -> None:
    log = EvaluationLog(maxlen=3)
    made = [AuthEvaluation(time=float(i), client_ip="192.0.2.10", helo=None,
                           mail_from=f"u{i}@northwind.test", recipients=("carol@campus.test",),
                           message_id=None, spf=None, dkim=None, header="mx.lab.test; none")
            for i in range(5)]
    for evaluation in made:
        log.append(evaluation)
    assert len(log) == 3 and list(log) == made[2:] and log[-1] is made[4]
    assert log.last() is made[4] and len(log.for_recipient("CAROL@campus.test")) == 3
    assert "u4@northwind.test" in str(log) and "u4@northwind.test" in log._repr_html_()
    log.clear()
    assert not log and log.last() is None
    assert EvaluationLog()._items.maxlen == MAX_EVALUATIONS


def test_header_field_folds_only_between_resinfos(world: ZoneSet) -> None:
    # homebrew.example's summary says "...is not a mechanism; the mechanism...": the
    # semicolon inside the comment is not a place to fold.
    spf = spf_verdict("203.0.113.82", "owner@homebrew.example", "homebrew.example", world)
    assert spf.verdict == "permerror" and "; " in spf.summary
    value = format_authres(LAB_AUTHSERV_ID, spf, verify(MESSAGE, world))
    field = header_field(value)
    lines = field.decode().split("\r\n")
    assert [line.rstrip().endswith(";") for line in lines if line] == [
        True, False, False, True, False]
    assert lines[4] == "\tdkim=none (The message has no DKIM-Signature: it is not signed.)"
    assert parse_authres(field) == parse_authres(value)
