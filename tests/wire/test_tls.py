"""labsupport.wire.tls: the lab CA is made once, reloaded after, and its contexts verify."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest

from labsupport.core.errors import LabError
from labsupport.wire.tls import CA_FILE, CA_KEY_FILE, SERVER_KEY_FILE, LabCA, server_names

NAMES = ["mx.lab.test", *server_names(["northwind.test", "campus.test"])]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    return LabCA.load_or_create(tmp_path_factory.mktemp("tls"), NAMES)


def handshake(ca: LabCA, server_hostname: str, client: ssl.SSLContext | None = None) -> str:
    """A TLS handshake over a socket pair: server side in a thread, the client verifying
    ``server_hostname``; returns the negotiated protocol version."""
    left, right = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with ca.server_context().wrap_socket(right, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        context = client or ca.client_context()
        with context.wrap_socket(left, server_hostname=server_hostname) as tls:
            version = str(tls.version())
            tls.sendall(b"x")
    finally:
        thread.join(5)
        right.close()
    return version


def test_files_are_made_once_with_a_private_key(ca: LabCA) -> None:
    assert ca.ca_file == ca.directory / CA_FILE and ca.ca_file.read_bytes().startswith(
        b"-----BEGIN CERTIFICATE-----")
    for private in (CA_KEY_FILE, SERVER_KEY_FILE):
        mode = stat.S_IMODE((ca.directory / private).stat().st_mode)
        assert mode == 0o600, (private, oct(mode))
    assert stat.S_IMODE(ca.directory.stat().st_mode) == 0o700
    assert ca.hostnames[-2:] == ("localhost", "127.0.0.1")


def test_a_restart_reuses_the_ca_and_the_server_certificate(ca: LabCA) -> None:
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in ca.directory.iterdir()}
    again = LabCA.load_or_create(ca.directory, NAMES)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in again.directory.iterdir()}
    assert after == before
    assert not again.created


def test_new_names_get_a_new_server_certificate_from_the_same_ca(tmp_path: Path) -> None:
    first = LabCA.load_or_create(tmp_path, ["mx.lab.test"])
    ca_pem = first.ca_file.read_bytes()
    cert = first.server_cert_file.read_bytes()
    second = LabCA.load_or_create(tmp_path, ["mx.lab.test", "smtp.lab.test"])
    assert second.ca_file.read_bytes() == ca_pem
    assert second.server_cert_file.read_bytes() != cert
    assert handshake(second, "smtp.lab.test")


@pytest.mark.parametrize("name", ["mx.lab.test", "northwind.test", "mx1.northwind.test",
                                  "lists.campus.test", "localhost", "127.0.0.1"])
def test_the_server_certificate_verifies_for_lab_names(ca: LabCA, name: str) -> None:
    assert handshake(ca, name) in ("TLSv1.2", "TLSv1.3")


def test_other_names_fail_verification(ca: LabCA) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|doesn't match"):
        handshake(ca, "mx.phisher.example")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ca, "a.b.northwind.test")  # a wildcard covers one label only


def test_a_client_that_does_not_verify_accepts_anything(ca: LabCA, tmp_path: Path) -> None:
    careless = ca.client_context(verify=False)
    assert careless.verify_mode == ssl.CERT_NONE and not careless.check_hostname
    assert handshake(ca, "mx.phisher.example", careless)
    stranger = LabCA.load_or_create(tmp_path / "other", ["mx.lab.test"])
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        handshake(ca, "mx.lab.test", stranger.client_context())


def test_keylog_file_records_session_keys(ca: LabCA, tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    handshake(ca, "mx.lab.test", ca.client_context(keylog_file=keylog))
    assert "CLIENT_" in keylog.read_text() or "SERVER_" in keylog.read_text()


def test_a_damaged_ca_is_explained(tmp_path: Path) -> None:
    LabCA.load_or_create(tmp_path, ["mx.lab.test"])
    (tmp_path / CA_KEY_FILE).write_text("garbage")
    with pytest.raises(LabError, match="CA .* is unreadable"):
        LabCA.load_or_create(tmp_path, ["smtp.lab.test"])


def test_server_names_has_each_domain_and_a_wildcard() -> None:
    assert server_names(["Northwind.Test.", "campus.test"]) == [
        "campus.test", "*.campus.test", "northwind.test", "*.northwind.test"]
    assert repr(LabCA(Path("/x"), ("mx.lab.test",))) == \
        "<LabCA /x/ca.pem, server certificate for 1 names>"
