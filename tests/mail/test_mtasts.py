"""MTA-STS (RFC 8461): the record and the policy, MX patterns, the lab's HTTPS policy host,
the sender's fetcher and cache, and the delivering MTA enforcing the policy against the
STARTTLS downgrade relay of notebook 03."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trustme

import labsupport
from labsupport.core.clock import LabClock
from labsupport.dns.zone import ZoneSet
from labsupport.mail.delivery import Queue
from labsupport.mail.mitm import Downgrader
from labsupport.mail.mtasts_enforce import validate_certificate
from labsupport.mail.mtasts_fetch import PolicyFetcher
from labsupport.mail.mtasts_policy import (
    MTASTSError,
    match_mx,
    mx_matches,
    parse_policy,
    parse_record,
    read_policy,
    read_record,
)
from labsupport.mail.mtasts_server import LAB_POLICIES, PolicyServer
from labsupport.wire.tls import LabCA

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
GOOD = ("version: STSv1\r\nmode: enforce\r\nmx: mx1.northwind.test\r\n"
        "mx: *.northwind.test\r\nmax_age: 86400\r\n")
TESTING = GOOD.replace("mode: enforce", "mode: testing")


# -- the TXT record ------------------------------------------------------------------------


def test_a_record_gives_its_id_and_keeps_extensions() -> None:
    record = parse_record("v=STSv1; id=2026112801; ext.a=1;")
    assert record.id == "2026112801" and record.extensions == (("ext.a", "1"),)
    assert parse_record("v=STSv1;id=A1").id == "A1"


@pytest.mark.parametrize(("text", "message"), [
    ("v=STSv2; id=1", "'v=STSv2; id=1' is not an MTA-STS record: it must begin with "
                      "'v=STSv1' (RFC 8461 section 3.1)"),
    ("v=STSv1", "'v=STSv1' has no id field; a sender needs it to know when the policy "
                "changed (RFC 8461 section 3.1)"),
    ("v=STSv1; id=2026-11-28", "id='2026-11-28' is not 1 to 32 letters and digits "
                               "(RFC 8461 section 3.1: sts-id = \"id=\" 1*32(ALPHA / DIGIT))"),
    ("v=STSv1; id=" + "1" * 33, "id='" + "1" * 33 + "' is not 1 to 32 letters and digits "
                                "(RFC 8461 section 3.1: sts-id = \"id=\" 1*32(ALPHA / DIGIT))"),
    ("v=STSv1; id=1; id=2", "'v=STSv1; id=1; id=2' has more than one id field "
                            "(RFC 8461 section 3.1)"),
    ("v=STSv1; id=1; junk", "'junk' in 'v=STSv1; id=1; junk' is not a name=value field "
                            "(RFC 8461 section 3.1)"),
])
def test_bad_records_are_explained(text: str, message: str) -> None:
    with pytest.raises(MTASTSError) as caught:
        parse_record(text)
    assert str(caught.value) == message


def test_read_record_discards_other_txt_and_wants_exactly_one() -> None:
    found = read_record(["v=spf1 -all", "v=STSv1; id=abc"], "northwind.test")
    assert found.verdict == "valid" and found.record is not None and found.record.id == "abc"
    assert "1 record(s) do not begin with 'v=STSv1' and are discarded" in found.text()
    assert read_record(["v=spf1 -all"], "x.test").verdict == "none"
    two = read_record(["v=STSv1; id=a", "v=STSv1; id=b"], "x.test")
    assert two.verdict == "invalid"
    assert two.summary == ("_mta-sts.x.test has 2 records beginning with 'v=STSv1'; there must "
                           "be exactly one, so the sender assumes no policy is available.")
    bad = read_record(["v=STSv1; id=no-dashes"], "x.test")
    assert bad.verdict == "invalid" and "is not 1 to 32 letters and digits" in bad.summary


# -- the policy file -----------------------------------------------------------------------


def test_a_policy_with_lf_or_crlf_and_an_extension() -> None:
    policy = parse_policy(GOOD)
    assert (policy.mode, policy.max_age, policy.mx) == (
        "enforce", 86400, ("mx1.northwind.test", "*.northwind.test"))
    assert policy.lines[0] == "version: STSv1" and policy.active
    lf = parse_policy("version: STSv1\nmode: none\nmax_age: 0\nowner: ops team\n")
    assert lf.mode == "none" and lf.mx == () and not lf.active
    assert lf.extensions == (("owner", "ops team"),)
    read = read_policy(GOOD, "northwind.test")
    assert read.verdict == "valid"
    assert "mx: *.northwind.test (any single label under northwind.test)" in read.text()


@pytest.mark.parametrize(("text", "message"), [
    ("", "the policy is empty: it needs version, mode, mx and max_age (RFC 8461 section 3.2)"),
    ("mode: enforce\nmx: a.test\nmax_age: 60\n",
     "the policy has no 'version' field; version, mode and max_age are required "
     "(RFC 8461 section 3.2)"),
    ("version: STSv1\nmode: enforce\nmx: a.test\n",
     "the policy has no 'max_age' field; version, mode and max_age are required "
     "(RFC 8461 section 3.2)"),
    ("version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 60\n",
     "version 'STSv2' is not 'STSv1', the only version (RFC 8461 section 3.2)"),
    ("version: STSv1\nmode: Enforce\nmx: a.test\nmax_age: 60\n",
     "mode 'Enforce' is not enforce, testing or none (lower case) (RFC 8461 section 3.2)"),
    ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1 day\n",
     "max_age '1 day' is not a whole number of seconds (RFC 8461 section 3.2: 1*10(DIGIT))"),
    ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",
     "max_age 31557601 is more than 31557600 seconds (one year), the largest a policy may ask "
     "for (RFC 8461 section 3.2)"),
    ("version: STSv1\nmode: testing\nmax_age: 60\n",
     "the policy names no mx pattern, so in mode testing no MX host could ever match "
     "(RFC 8461 section 3.2)"),
    ("version: STSv1\nmode: enforce\nmx: mail.*.test\nmax_age: 60\n",
     "line 3: mx 'mail.*.test' is not a host name or a '*.' wildcard followed by one; a "
     "wildcard may only stand for the whole left-most label (RFC 8461 section 3.2, "
     "RFC 8461 section 4.1)"),
    ("version: STSv1\nmode: enforce\nmode: testing\nmx: a.test\nmax_age: 60\n",
     "line 3: 'mode' appears twice (RFC 8461 section 3.2)"),
    ("version: STSv1\nmode enforce\nmx: a.test\nmax_age: 60\n",
     "line 2 'mode enforce' is not 'key: value' (RFC 8461 section 3.2)"),
])
def test_bad_policies_are_explained(text: str, message: str) -> None:
    with pytest.raises(MTASTSError) as caught:
        parse_policy(text)
    assert str(caught.value) == message
    result = read_policy(text, "a.test")
    assert result.verdict == "invalid" and result.summary.startswith(message)


# -- MX host validation (section 4.1) ------------------------------------------------------


@pytest.mark.parametrize(("pattern", "host", "expected"), [
    ("*.example.com", "mail.example.com", True),     # the RFC's own three examples
    ("*.example.com", "example.com", False),
    ("*.example.com", "foo.bar.example.com", False),
    ("mail.example.com", "MAIL.Example.COM.", True),  # no case, no trailing dot
    ("mail.example.com", "mail2.example.com", False),
    ("*.example.com", "mail.example.net", False),
])
def test_mx_patterns_follow_the_rfc(pattern: str, host: str, expected: bool) -> None:
    assert mx_matches(pattern, host) is expected


def test_match_mx_says_why() -> None:
    policy = parse_policy("version: STSv1\nmode: enforce\nmx: *.northwind.test\nmax_age: 60\n")
    assert match_mx(policy, "mx2.northwind.test").pattern == "*.northwind.test"
    deep = match_mx(policy, "a.b.northwind.test")
    assert deep.verdict == "no-match"
    assert "the wildcard covers one label only, not 'a.b'" in deep.text()
    apex = match_mx(policy, "northwind.test")
    assert "the wildcard needs a label in front of northwind.test" in apex.text()


# -- the HTTPS policy host -----------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    return LabCA.load_or_create(tmp_path_factory.mktemp("mtasts-ca"), ["northwind.test"])


@pytest.fixture
def server(ca: LabCA) -> Iterator[PolicyServer]:
    with PolicyServer(ca) as running:
        yield running


def _get(port: int, host: str, cafile: Path, path: str = "/.well-known/mta-sts.txt",
         sni: str | None = None) -> tuple[int, str, str]:
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=sni or host) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                    .encode())
        response = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
        response.begin()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()


def test_the_server_serves_the_policy_over_https_with_the_lab_ca(server: PolicyServer,
                                                                 ca: LabCA) -> None:
    status, kind, body = _get(server.port, "mta-sts.northwind.test", ca.ca_file)
    assert (status, kind, body) == (200, "text/plain; charset=utf-8",
                                    LAB_POLICIES["northwind.test"])
    assert server.certificate_names == ("mta-sts.northwind.test",)
    assert _get(server.port, "mta-sts.northwind.test", ca.ca_file, "/")[0] == 404
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _get(server.port, "mta-sts.campus.test", ca.ca_file)
    other = trustme.CA()
    with other.cert_pem.tempfile() as foreign, pytest.raises(ssl.SSLCertVerificationError):
        _get(server.port, "mta-sts.northwind.test", Path(foreign))
    assert "GET https://mta-sts.northwind.test/.well-known/mta-sts.txt -> 200" in \
        server.requests


def test_another_user_is_refused_before_tls(server: PolicyServer, ca: LabCA,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from labsupport.core.peers import PeerCheck
    from labsupport.mail import mtasts_server

    def another_user(sock: socket.socket) -> PeerCheck:  # made up: no second Unix user
        return PeerCheck(verdict="other-user", summary="belongs to uid 4242",
                         transport="tcp", local=("127.0.0.1", 1), peer=("127.0.0.1", 2),
                         own_uid=0, peer_uid=4242, supported=True)

    monkeypatch.setattr(mtasts_server, "check_socket", another_user)
    with pytest.raises((ssl.SSLError, OSError)):
        _get(server.port, "mta-sts.northwind.test", ca.ca_file)
    assert server.refused[-1].peer_uid == 4242
    assert any(r.startswith("refused 127.0.0.1:") and "uid 4242" in r for r in server.requests)
    assert not any(r.startswith("GET ") for r in server.requests)
    monkeypatch.undo()  # the owner is served again
    assert _get(server.port, "mta-sts.northwind.test", ca.ca_file)[0] == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_fetches_the_policy_verifying_the_lab_ca(server: PolicyServer) -> None:
    command = server.curl_command("northwind.test").split()
    done = subprocess.run([*command, "-sS", "--noproxy", "*"], capture_output=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == LAB_POLICIES["northwind.test"]
    wrong = [c.replace("mta-sts.northwind.test", "mta-sts.campus.test") for c in command]
    refused = subprocess.run([*wrong, "-sS", "--noproxy", "*"], capture_output=True,
                             timeout=30, check=False)
    assert refused.returncode == 60, refused.stderr.decode()  # certificate name mismatch


def test_a_new_domain_gets_a_certificate_and_a_bad_policy_is_refused(ca: LabCA) -> None:
    with PolicyServer(ca, {}) as running:
        assert running.certificate_names == ()
        running.set_policy("campus.test", TESTING)
        assert running.certificate_names == ("mta-sts.campus.test",)
        assert _get(running.port, "mta-sts.campus.test", ca.ca_file)[2] == TESTING
        with pytest.raises(MTASTSError, match="mode 'strict'"):
            running.set_policy("campus.test", TESTING.replace("testing", "strict"))
        running.remove_policy("campus.test")
        assert _get(running.port, "mta-sts.campus.test", ca.ca_file)[0] == 404
        running.set_policy("campus.test", TESTING)
        running.reset()
        assert running.domains() == [] and running.requests == []


# -- the sender's fetcher and cache --------------------------------------------------------


def _fetcher(zones: ZoneSet, server: PolicyServer, ca_file: Path,
             clock: LabClock) -> PolicyFetcher:
    return PolicyFetcher(zones, ca_file=ca_file, https_port=lambda: server.port, clock=clock)


def test_the_fetcher_caches_by_id_for_max_age(zones: ZoneSet, server: PolicyServer,
                                               ca: LabCA) -> None:
    clock = LabClock()
    clock.freeze(at=T0)
    fetcher = _fetcher(zones, server, ca.ca_file, clock)
    first = fetcher.policy_for("northwind.test")
    assert (first.verdict, first.source, first.policy_id) == ("enforce", "fetched", "2026112801")
    assert "GET https://mta-sts.northwind.test/.well-known/mta-sts.txt" in first.text()
    requests = len(server.requests)
    again = fetcher.policy_for("northwind.test")
    assert again.source == "cache" and len(server.requests) == requests
    server.set_policy("northwind.test", TESTING)
    assert fetcher.policy_for("northwind.test").verdict == "enforce"  # same id: cached
    zones.set("_mta-sts.northwind.test", "TXT", "v=STSv1; id=2026112802")
    changed = fetcher.policy_for("northwind.test")
    assert (changed.verdict, changed.source) == ("testing", "fetched")
    assert "differs from the cached policy's (2026112801)" in changed.text()
    zones.remove("_mta-sts.northwind.test", "TXT")
    kept = fetcher.policy_for("northwind.test")
    assert kept.source == "cache" and kept.verdict == "testing"
    clock.advance(86400)
    gone = fetcher.policy_for("northwind.test")
    assert gone.verdict == "no-policy" and "expired" in gone.text()
    assert fetcher.policy_for("campus.test").verdict == "no-policy"


def test_fetch_failures_are_named_as_tls_rpt_does(zones: ZoneSet, ca: LabCA,
                                                  tmp_path: Path) -> None:
    clock = LabClock()
    foreign = LabCA.load_or_create(tmp_path / "other-ca", ["northwind.test"])
    with PolicyServer(foreign) as impostor:  # a certificate the sender does not trust
        lookup = _fetcher(zones, impostor, ca.ca_file, clock).policy_for("northwind.test")
    assert (lookup.verdict, lookup.failure) == ("no-policy", "sts-webpki-invalid")
    assert "the certificate of mta-sts.northwind.test does not validate" in lookup.summary
    with pytest.raises(MTASTSError, match="no 'version' field"):
        PolicyServer(ca, {"northwind.test": "mode: enforce\n"})
    broken = PolicyServer(ca, {})
    broken.set_policy("northwind.test", TESTING.replace("testing", "strict"), check=False)
    with broken:
        lookup = _fetcher(zones, broken, ca.ca_file, clock).policy_for("northwind.test")
    assert lookup.failure == "sts-policy-invalid"
    assert lookup.summary == (
        "northwind.test announces an MTA-STS policy but it could not be fetched (mode "
        "'strict' is not enforce, testing or none (lower case) (RFC 8461 section 3.2)); "
        "nothing is cached, so deliver as if it had none.")
    with PolicyServer(ca, {}) as bare:  # no policy, so no certificate either
        lookup = _fetcher(zones, bare, ca.ca_file, clock).policy_for("northwind.test")
    assert lookup.failure == "sts-policy-fetch-error" and "handshake" in lookup.summary
    with PolicyServer(ca) as withdrawn:
        withdrawn.remove_policy("northwind.test")
        lookup = _fetcher(zones, withdrawn, ca.ca_file, clock).policy_for("northwind.test")
    assert lookup.failure == "sts-policy-fetch-error"
    assert "answered HTTP 404 (only 200 OK carries a policy)" in lookup.summary
    zones.remove("mta-sts.northwind.test", "A")
    with PolicyServer(ca) as running:
        lookup = _fetcher(zones, running, ca.ca_file, clock).policy_for("northwind.test")
    assert "mta-sts.northwind.test has no address in DNS" in lookup.summary


# -- certificates of MX hosts (section 4.2) ------------------------------------------------


def _der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def test_certificate_checks_name_their_tls_rpt_result(ca: LabCA) -> None:
    lab = trustme.CA.from_pem(ca.ca_file.read_bytes(), ca.key_file.read_bytes())
    good = _der(lab.issue_cert("*.northwind.test"))
    assert validate_certificate(good, "mx1.northwind.test", ca.ca_file).ok
    mismatch = validate_certificate(good, "mx.campus.test", ca.ca_file)
    assert mismatch.result == "certificate-host-mismatch"
    assert mismatch.reason == "none of its names (*.northwind.test) is mx.campus.test"
    assert validate_certificate(good, "a.b.northwind.test", ca.ca_file).result == \
        "certificate-host-mismatch"
    old = lab.issue_cert("mx1.northwind.test",
                         not_before=datetime.now(UTC) - timedelta(days=30),
                         not_after=datetime.now(UTC) - timedelta(days=1))
    assert validate_certificate(_der(old), "mx1.northwind.test", ca.ca_file).result == \
        "certificate-expired"
    stranger = _der(trustme.CA().issue_cert("mx1.northwind.test"))
    assert validate_certificate(stranger, "mx1.northwind.test", ca.ca_file).result == \
        "certificate-not-trusted"
    assert validate_certificate(None, "mx1.northwind.test", ca.ca_file).result == \
        "validation-failure"


# -- the delivering MTA enforcing a policy -------------------------------------------------

MESSAGE = (b"From: Carol <carol@campus.test>\r\nTo: alice@northwind.test\r\n"
           b"Subject: MTA-STS lesson\r\n\r\nHello over TLS, I hope.\r\n")


def _queue(lab: labsupport.Lab, directory: Path, server: PolicyServer,
           mx_port: Any) -> Queue:
    fetcher = PolicyFetcher(lab.resolver, ca_file=lab.ca.ca_file,
                            https_port=lambda: server.port, clock=lab.clock)
    return Queue(directory, resolver=lab.resolver, clock=lab.clock, store=lab.mail,
                 mx_port=mx_port, mtasts=fetcher, timeout=10)


def _relay_in_front_of_mx(lab: labsupport.Lab) -> Downgrader:
    """The downgrade relay of notebook 03, standing in front of the MX role."""
    front = SimpleNamespace(smtp=SimpleNamespace(port=lambda role: lab.smtp.port("mx")))
    return Downgrader(front, "submission")  # type: ignore[arg-type]


def _stored(lab: labsupport.Lab) -> list[Any]:
    return [m for m in lab.mail.messages("alice@northwind.test")
            if m.message["Subject"] == "MTA-STS lesson"]


def test_enforce_delivers_over_validated_tls(clean_lab: labsupport.Lab,
                                             tmp_path: Path) -> None:
    with PolicyServer(clean_lab.ca) as server:
        queue = _queue(clean_lab, tmp_path / "q", server, lambda: clean_lab.smtp.port("mx"))
        queue.submit("carol@campus.test", ["alice@northwind.test"], MESSAGE,
                     sender_domain="campus.test")
        [attempt] = queue.run()
    assert attempt.verdict == "delivered", attempt.text()
    assert [(s.mx_host, s.result, s.delivered) for s in attempt.tls] == [
        ("mx1.northwind.test", "success", True)]
    assert "MTA-STS: mx1.northwind.test passed: STARTTLS and a valid certificate" in \
        attempt.text()
    [stored] = _stored(clean_lab)
    assert "with ESMTPS" in stored.message["Received"]


def test_enforce_skips_an_mx_host_the_policy_does_not_name(clean_lab: labsupport.Lab,
                                                           tmp_path: Path) -> None:
    only_mx2 = GOOD.replace("mx: mx1.northwind.test\r\nmx: *.northwind.test",
                            "mx: mx2.northwind.test")
    with PolicyServer(clean_lab.ca, {"northwind.test": only_mx2}) as server:
        queue = _queue(clean_lab, tmp_path / "q", server, lambda: clean_lab.smtp.port("mx"))
        queue.submit("carol@campus.test", ["alice@northwind.test"], MESSAGE,
                     sender_domain="campus.test")
        [attempt] = queue.run()
    assert attempt.verdict == "delivered" and attempt.host == "mx2.northwind.test"
    assert [(t.host, t.outcome) for t in attempt.tried] == [
        ("mx1.northwind.test", "refused"), ("mx2.northwind.test", "delivered")]
    assert "MTA-STS enforce: skip mx1.northwind.test, the policy does not name it" in \
        attempt.text()
    assert [s.result for s in attempt.tls] == ["validation-failure", "success"]


def test_enforce_refuses_delivery_through_the_downgrade_relay(clean_lab: labsupport.Lab,
                                                              tmp_path: Path) -> None:
    with PolicyServer(clean_lab.ca) as server, _relay_in_front_of_mx(clean_lab) as mitm:
        queue = _queue(clean_lab, tmp_path / "q", server, lambda: mitm.port)
        queue.submit("carol@campus.test", ["alice@northwind.test"], MESSAGE,
                     sender_domain="campus.test")
        [attempt] = queue.run()
    assert attempt.verdict == "deferred", attempt.text()
    assert not _stored(clean_lab) and len(queue.items()) == 1
    assert [(t.host, t.outcome) for t in attempt.tried] == [
        ("mx1.northwind.test", "temporary"), ("mx2.northwind.test", "temporary")]
    assert attempt.tried[0].reply.startswith("454 4.7.4 MTA-STS: mx1.northwind.test does not "
                                             "offer STARTTLS")
    assert [s.result for s in attempt.tls] == ["starttls-not-supported"] * 2
    assert not any(s.delivered for s in attempt.tls)
    text = attempt.text()
    assert ("MTA-STS enforce: mx1.northwind.test does not offer STARTTLS (a downgrade, or TLS "
            "switched off) (starttls-not-supported): do not deliver through "
            "mx1.northwind.test") in text
    assert "-> MAIL FROM" not in text  # nothing was sent in the clear


def test_without_a_fetcher_delivery_is_unchanged(clean_lab: labsupport.Lab,
                                                 tmp_path: Path) -> None:
    with _relay_in_front_of_mx(clean_lab) as mitm:
        queue = Queue(tmp_path / "q", resolver=clean_lab.resolver, clock=clean_lab.clock,
                      store=clean_lab.mail, mx_port=lambda: mitm.port, timeout=10)
        queue.submit("carol@campus.test", ["alice@northwind.test"], MESSAGE,
                     sender_domain="campus.test")
        [attempt] = queue.run()
    assert attempt.verdict == "delivered" and attempt.tls == ()
    assert "MTA-STS" not in attempt.text()
