"""DANE for SMTP (RFC 7672, RFC 6698/7671): TLSA records from the lab's certificates,
published and signed in the lab's zones, the certificate match, and the delivering MTA
refusing the STARTTLS downgrade relay of notebook 03 where DANE applies."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trustme

import labsupport
from labsupport.dns.dnssec_validate import validate
from labsupport.dns.nameserver import DNSServer
from labsupport.mail.dane import (
    DANEError,
    TLSARecord,
    lab_tlsa,
    match_certificate,
    publish_tlsa,
    tlsa_for_certificate,
    tlsa_name,
)
from labsupport.mail.dane_enforce import DaneValidator, dane_status, peer_chain
from labsupport.mail.delivery import Queue
from labsupport.mail.mitm import Downgrader
from labsupport.wire.tls import LabCA

HOSTS = ("mx-a.campus.test", "mx-b.campus.test")
SUBJECT = "DANE lesson"
MESSAGE = (f"From: Bob <bob@northwind.test>\r\nTo: carol@campus.test\r\nSubject: {SUBJECT}"
           "\r\n\r\nHello over authenticated TLS, I hope.\r\n").encode()


# -- TLSA records -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    return LabCA.load_or_create(tmp_path_factory.mktemp("dane-ca"), ["campus.test"])


def _openssl_spki_sha256(pem_file: Path) -> str:
    def run(*args: str, data: bytes | None = None) -> bytes:
        return subprocess.run(["/usr/bin/openssl", *args], input=data, capture_output=True,
                              timeout=30, check=True).stdout

    public = run("x509", "-in", str(pem_file), "-pubkey", "-noout")
    der = run("pkey", "-pubin", "-outform", "DER", data=public)
    return run("dgst", "-sha256", "-r", data=der).split()[0].decode()


@pytest.mark.skipif(not Path("/usr/bin/openssl").exists(), reason="openssl is not installed")
def test_tlsa_records_match_openssl(ca: LabCA) -> None:
    ee = lab_tlsa(ca)
    assert (ee.usage, ee.selector, ee.matching) == (3, 1, 1)
    assert ee.data.hex() == _openssl_spki_sha256(ca.server_cert_file)
    ta = lab_tlsa(ca, usage=2)
    assert ta.text() == f"2 1 1 {_openssl_spki_sha256(ca.ca_file)}"
    assert ta.data != ee.data
    # The same record from DER bytes, from PEM text and from the file.
    pem = ca.server_cert_file.read_text()
    der = ssl.PEM_cert_to_DER_cert(pem)
    assert tlsa_for_certificate(der) == tlsa_for_certificate(pem) == ee
    full = tlsa_for_certificate(der, usage=3, selector=0, matching=0)
    assert full.data == der and full.matches(der)


def test_tlsa_records_parse_and_say_which_are_unusable() -> None:
    record = TLSARecord.parse("_25._tcp.mx-a.campus.test. 3600 IN TLSA 3 1 1 " + "ab" * 32)
    assert record.text() == "3 1 1 " + "ab" * 32 and record.usable
    assert record.label() == "DANE-EE(3) SPKI(1) SHA2-256(1)"
    assert tlsa_name("MX-A.campus.test.") == "_25._tcp.mx-a.campus.test."
    pkix = TLSARecord.parse("1 1 1 " + "ab" * 32)
    assert not pkix.usable and "unusable for SMTP" in (pkix.unusable_reason() or "")
    short = TLSARecord.parse("3 1 1 abcd")
    assert short.unusable_reason() == ("the data is 2 bytes, but a SHA2-256 digest is "
                                       "32 bytes")
    assert TLSARecord.parse("3 1 7 " + "ab" * 32).unusable_reason() == \
        "matching type 7 is not defined"
    with pytest.raises(DANEError, match="is not a TLSA record"):
        TLSARecord.parse("3 one 1 abcd")
    with pytest.raises(DANEError, match="has no certificate association data"):
        TLSARecord.parse("3 1 1")


def test_publish_tlsa_for_the_mx_hosts_of_campus(clean_lab: labsupport.Lab) -> None:
    lines = publish_tlsa(clean_lab.zones, clean_lab.ca)
    record = lab_tlsa(clean_lab.ca)
    assert lines == [f"_25._tcp.{h}. TLSA {record.text()}" for h in HOSTS]
    result = validate("_25._tcp.mx-a.campus.test", "TLSA", clean_lab.dns)
    assert result.verdict == "secure", result.text()
    assert any(record.data.hex() in line.lower() for line in result.answer)


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")
def test_dig_dnssec_shows_the_tlsa_record_and_its_rrsig(clean_lab: labsupport.Lab) -> None:
    publish_tlsa(clean_lab.zones, clean_lab.ca)
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(clean_lab.dns.port), "+dnssec",
                          "+norec", "_25._tcp.mx-a.campus.test", "TLSA"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    assert "status: NOERROR" in out
    [tlsa] = [ln for ln in out.splitlines() if "\tTLSA\t" in ln and not ln.startswith(";")]
    data = "".join(tlsa.split("\tTLSA\t")[1].split()[3:]).lower()
    assert tlsa.split("\tTLSA\t")[1].startswith("3 1 1 ")
    assert data == lab_tlsa(clean_lab.ca).data.hex()
    assert "RRSIG\tTLSA 13 " in out


# -- matching a chain -----------------------------------------------------------------------


def _der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def test_dane_ee_matches_the_key_and_ignores_names() -> None:
    authority = trustme.CA()
    leaf = _der(authority.issue_cert("something-else.example").cert_chain_pems[0].bytes())
    record = tlsa_for_certificate(leaf)
    match = match_certificate([record], [leaf], "mx-a.campus.test")
    assert match.ok and match.record == record.text()
    assert "DANE-EE checks neither names nor dates" in match.text()
    other = _der(trustme.CA().issue_cert("mx-a.campus.test").cert_chain_pems[0].bytes())
    miss = match_certificate([record], [other], "mx-a.campus.test")
    assert miss.verdict == "no-match"
    assert miss.summary.startswith("mx-a.campus.test: certificate does not match any TLSA "
                                   "record (DANE-EE 3 1 1 ")
    only_pkix = match_certificate(["1 1 1 " + "00" * 32], [leaf], "mx-a.campus.test")
    assert only_pkix.verdict == "no-usable-records"


def test_dane_ta_needs_the_anchor_in_the_chain_and_the_right_name() -> None:
    authority = trustme.CA()
    leaf = _der(authority.issue_cert("*.campus.test").cert_chain_pems[0].bytes())
    root = _der(authority.cert_pem.bytes())
    record = tlsa_for_certificate(root, usage=2)
    assert match_certificate([record], [leaf, root], "mx-a.campus.test").ok
    wrong_name = match_certificate([record], [leaf, root], "mx1.northwind.test")
    assert wrong_name.verdict == "no-match"
    assert "the certificate does not name mx1.northwind.test" in wrong_name.summary
    alone = match_certificate([record], [leaf], "mx-a.campus.test")
    assert "the server did not send the trust anchor's certificate" in alone.summary
    stranger = _der(trustme.CA().cert_pem.bytes())
    forged = match_certificate([tlsa_for_certificate(stranger, usage=2)], [leaf, stranger],
                               "mx-a.campus.test")
    assert "the chain is broken at certificate 0" in forged.summary


def test_peer_chain_reads_what_the_server_sent(tmp_path: Path) -> None:
    authority = trustme.CA()
    leaf = authority.issue_cert("mx-a.campus.test")
    chain_file = tmp_path / "chain.pem"
    chain_file.write_bytes(leaf.cert_chain_pems[0].bytes() + authority.cert_pem.bytes())
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(leaf.private_key_pem.bytes())
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(chain_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with server_context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_context = ssl.create_default_context()
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
            client_context.wrap_socket(raw, server_hostname="mx-a.campus.test") as tls:
        chain = peer_chain(tls)
        tls.sendall(b"x")
    thread.join(timeout=10)
    listener.close()
    assert chain == (_der(leaf.cert_chain_pems[0].bytes()), _der(authority.cert_pem.bytes()))
    record = tlsa_for_certificate(authority.cert_pem.bytes(), usage=2)
    assert match_certificate([record], chain, "mx-a.campus.test").ok


# -- the delivering MTA -----------------------------------------------------------------------


@pytest.fixture
def dane_lab(clean_lab: labsupport.Lab) -> Iterator[tuple[labsupport.Lab, DNSServer]]:
    """The session lab with TLSA records for campus.test's MX hosts, and a DNS server of
    its own over the same zones (its signer can be broken without touching the lab's)."""
    publish_tlsa(clean_lab.zones, clean_lab.ca)
    yield clean_lab, DNSServer(clean_lab.zones, clock=clean_lab.clock)


def _queue(lab: labsupport.Lab, directory: Path, dane: Any, mx_port: Any) -> Queue:
    queue = Queue(directory, resolver=lab.resolver, clock=lab.clock, store=lab.mail,
                  mx_port=mx_port, dane=dane, timeout=10)
    queue.submit("bob@northwind.test", ["carol@campus.test"], MESSAGE,
                 sender_domain="northwind.test")
    return queue


def _relay_in_front_of_mx(lab: labsupport.Lab) -> Downgrader:
    """The downgrade relay of notebook 03, standing in front of the MX role."""
    front = SimpleNamespace(smtp=SimpleNamespace(port=lambda role: lab.smtp.port("mx")))
    return Downgrader(front, "submission")  # type: ignore[arg-type]


def _stored(lab: labsupport.Lab) -> list[Any]:
    return [m for m in lab.mail.messages("carol@campus.test")
            if m.message["Subject"] == SUBJECT]


def test_delivery_to_a_dane_domain_goes_over_matched_tls(
        dane_lab: tuple[labsupport.Lab, DNSServer], tmp_path: Path) -> None:
    lab, server = dane_lab
    queue = _queue(lab, tmp_path / "q", server, lambda: lab.smtp.port("mx"))
    [attempt] = queue.run()
    assert attempt.verdict == "delivered", attempt.text()
    text = attempt.text()
    assert "DANE: the MX records are signed" in text
    assert f"the certificate of {attempt.host} matches TLSA 3 1 1" in text
    assert text.index("-> STARTTLS") < text.index("-> MAIL FROM")
    [stored] = _stored(lab)
    assert "with ESMTPS" in stored.message["Received"]


def test_dane_defeats_the_downgrade_relay(dane_lab: tuple[labsupport.Lab, DNSServer],
                                          tmp_path: Path) -> None:
    lab, server = dane_lab
    with _relay_in_front_of_mx(lab) as mitm:
        queue = _queue(lab, tmp_path / "q", DaneValidator(server), lambda: mitm.port)
        [attempt] = queue.run()
    assert attempt.verdict == "deferred", attempt.text()
    assert not _stored(lab) and len(queue.items()) == 1
    assert sorted((t.host, t.outcome) for t in attempt.tried) == [
        (h, "temporary") for h in HOSTS]
    for tried in attempt.tried:
        assert tried.reply == (f"454 4.7.4 DANE: {tried.host} does not offer STARTTLS, yet "
                               "its signed TLSA records promise TLS (a downgrade, or TLS "
                               "switched off)")
    assert "does not offer STARTTLS" in attempt.summary
    assert "-> MAIL FROM" not in attempt.text()  # nothing was sent in the clear


def test_the_lab_publishes_tlsa_for_campus_and_keeps_it_through_a_reset(
        clean_lab: labsupport.Lab) -> None:
    expected = lab_tlsa(clean_lab.ca).text()
    for host in HOSTS:
        assert [r.to_text() for r in clean_lab.zones.resolve(tlsa_name(host), "TLSA")] == [
            expected]
        clean_lab.zones.remove(tlsa_name(host), "TLSA")
    clean_lab.reset()
    for host in HOSTS:
        assert [r.to_text() for r in clean_lab.zones.resolve(tlsa_name(host), "TLSA")] == [
            expected]
    edits = clean_lab.state_dir / "dns-edits.jsonl"
    assert not edits.exists() or "TLSA" not in edits.read_text()


def test_the_lab_queue_enforces_dane(clean_lab: labsupport.Lab) -> None:
    assert clean_lab.queue.dane is clean_lab.dns


def test_without_tlsa_records_the_relay_still_wins(clean_lab: labsupport.Lab,
                                                   tmp_path: Path) -> None:
    for host in HOSTS:  # the lab publishes them: take them away (a reset puts them back)
        clean_lab.zones.remove(tlsa_name(host), "TLSA")
    server = DNSServer(clean_lab.zones, clock=clean_lab.clock)
    with _relay_in_front_of_mx(clean_lab) as mitm:
        queue = _queue(clean_lab, tmp_path / "q", server, lambda: mitm.port)
        [attempt] = queue.run()
    assert attempt.verdict == "delivered", attempt.text()
    assert "has no TLSA record: DANE does not apply, deliver as usual" in attempt.text()
    assert "-> STARTTLS" not in attempt.text()


def test_a_tlsa_record_for_another_key_defers(dane_lab: tuple[labsupport.Lab, DNSServer],
                                              tmp_path: Path) -> None:
    lab, server = dane_lab
    stranger = trustme.CA().issue_cert("mx-a.campus.test").cert_chain_pems[0].bytes()
    for host in HOSTS:
        lab.zones.set(tlsa_name(host), "TLSA", tlsa_for_certificate(stranger).text())
    queue = _queue(lab, tmp_path / "q", server, lambda: lab.smtp.port("mx"))
    [attempt] = queue.run()
    assert attempt.verdict == "deferred", attempt.text()
    assert not _stored(lab)
    for tried in attempt.tried:
        assert tried.reply.startswith(f"454 4.7.5 DANE: {tried.host}: certificate does not "
                                      "match any TLSA record (DANE-EE 3 1 1 ")
    assert "certificate does not match any TLSA record" in attempt.summary


def test_dane_ta_fails_when_the_server_does_not_send_its_ca(
        dane_lab: tuple[labsupport.Lab, DNSServer], tmp_path: Path) -> None:
    lab, server = dane_lab
    publish_tlsa(lab.zones, lab.ca, usage=2)  # 2 1 1: the lab CA, which the MX role omits
    queue = _queue(lab, tmp_path / "q", server, lambda: lab.smtp.port("mx"))
    [attempt] = queue.run()
    assert attempt.verdict == "deferred", attempt.text()
    assert "the server did not send the trust anchor's certificate" in attempt.tried[0].reply


def test_insecure_tlsa_means_the_usual_delivery(dane_lab: tuple[labsupport.Lab, DNSServer],
                                                tmp_path: Path) -> None:
    lab, server = dane_lab
    assert server.dnssec is not None
    server.dnssec.leave_unsigned("campus.test")
    queue = _queue(lab, tmp_path / "q", server, lambda: lab.smtp.port("mx"))
    [attempt] = queue.run()
    assert attempt.verdict == "delivered", attempt.text()
    text = attempt.text()
    assert "campus.test. MX: not signed" in text
    assert "DANE does not apply to this domain: deliver as before" in text
    assert "TLSA" not in text
    assert "-> STARTTLS (opportunistic: encrypt, without checking the certificate)" in text
    assert len(_stored(lab)) == 1


def test_bogus_tlsa_records_defer(dane_lab: tuple[labsupport.Lab, DNSServer],
                                  tmp_path: Path) -> None:
    lab, server = dane_lab
    assert server.dnssec is not None
    for host in HOSTS:
        server.dnssec.corrupt(tlsa_name(host), "TLSA")
    queue = _queue(lab, tmp_path / "q", server, lambda: lab.smtp.port("mx"))
    [attempt] = queue.run()
    assert attempt.verdict == "deferred", attempt.text()
    assert not _stored(lab)
    assert sorted((t.host, t.outcome) for t in attempt.tried) == [(h, "refused") for h in HOSTS]
    for tried in attempt.tried:
        assert tried.reply == (f"451 4.4.3 DANE: the TLSA records of {tried.host} do not "
                               "validate (bogus)")
    text = attempt.text()
    assert "the signature does not match the records" in text
    assert "connect to" not in text  # no connection is made to a host that fails DANE


def test_bogus_mx_records_defer_the_whole_domain(dane_lab: tuple[labsupport.Lab, DNSServer],
                                                 tmp_path: Path) -> None:
    lab, server = dane_lab
    assert server.dnssec is not None
    server.dnssec.corrupt("campus.test", "MX")
    queue = _queue(lab, tmp_path / "q", server, lambda: lab.smtp.port("mx"))
    [attempt] = queue.run()
    assert attempt.verdict == "deferred", attempt.text()
    assert all(t.outcome == "refused" and "the MX records of campus.test do not validate"
               in t.reply for t in attempt.tried)
    assert not _stored(lab)


def test_dane_status_says_which_hosts_are_protected(
        dane_lab: tuple[labsupport.Lab, DNSServer]) -> None:
    lab, server = dane_lab
    status = dane_status("campus.test", server)
    assert status.verdict == "dane", status.text()
    assert status.hosts == tuple((h, "dane") for h in HOSTS)
    lab.zones.remove(tlsa_name(HOSTS[1]), "TLSA")
    partial = dane_status("campus.test", server)
    assert partial.verdict == "partial" and partial.hosts[1] == (HOSTS[1], "no DANE")
    assert dane_status("northwind.test", server).verdict == "none"
    assert server.dnssec is not None
    server.dnssec.leave_unsigned("campus.test")
    assert dane_status("campus.test", server).verdict == "insecure"
