"""labsupport.lab.lab_mail and the lab's DNSSEC: the services a lab starts beside DNS and
SMTP (the MTA-STS policy host, the delivering MTA's policy fetcher), the signed zones'
keys in the state directory, and what ``lab.reset()`` puts back."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from shutil import which

import pytest

import labsupport
from labsupport import cli
from labsupport.dns.dnssec_validate import validate
from labsupport.lab.lab import DNSSEC_KEYS, Lab
from labsupport.mail.mtasts_server import LAB_POLICIES

TESTING = LAB_POLICIES["northwind.test"].replace("mode: enforce", "mode: testing")


# -- MTA-STS -------------------------------------------------------------------------------


def test_the_lab_serves_mta_sts_and_its_queue_applies_it(lab: Lab) -> None:
    assert lab.mta_sts.running and lab.mta_sts.domains() == ["northwind.test"]
    assert lab.info()["mta_sts"] == {"host": "127.0.0.1", "port": lab.mta_sts.port,
                                     "domains": ["northwind.test"]}
    assert lab.mta_sts_fetcher is not None and lab.queue.mtasts is lab.mta_sts_fetcher
    assert lab.mta_sts_fetcher.ca_file == lab.ca.ca_file
    assert lab.mta_sts_fetcher.https_port() == lab.mta_sts.port
    assert f"127.0.0.1 port {lab.mta_sts.port} (HTTPS, for mta-sts.northwind.test)" in str(lab)


@pytest.mark.skipif(which("curl") is None, reason="curl is not installed")
def test_the_banner_lists_the_policy_host_and_a_working_curl(lab: Lab) -> None:
    banner = cli._banner(lab)
    command = lab.mta_sts.curl_command("northwind.test")
    assert f"MTA-STS       127.0.0.1 port {lab.mta_sts.port}" in banner
    assert command in banner
    done = subprocess.run(command.split(), capture_output=True, timeout=20, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == LAB_POLICIES["northwind.test"].encode()  # CRLF lines, as served


def test_reset_serves_the_published_policies_and_forgets_the_cache(clean_lab: Lab) -> None:
    lab = clean_lab
    assert lab.mta_sts_fetcher is not None
    assert lab.mta_sts_fetcher.policy_for("northwind.test").verdict == "enforce"
    assert lab.mta_sts_fetcher.cached("northwind.test") is not None
    lab.mta_sts.set_policy("northwind.test", TESTING)
    lab.mta_sts.set_policy("campus.test", TESTING.replace("northwind", "campus"))
    lab.reset()
    assert lab.mta_sts_fetcher.cached("northwind.test") is None
    assert lab.mta_sts.domains() == ["northwind.test"]
    assert lab.mta_sts.policy("northwind.test") == LAB_POLICIES["northwind.test"]
    assert lab.mta_sts.requests == []


# -- DNSSEC --------------------------------------------------------------------------------


def test_dnssec_keys_stay_in_the_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = labsupport.start(state)
    try:
        keys = state / DNSSEC_KEYS
        assert stat.S_IMODE(keys.stat().st_mode) == 0o700
        assert first.dns.dnssec is not None
        dnskey = first.query("northwind.test", "DNSKEY").answers
        assert len(dnskey) == 1 and " 257 3 13 " in dnskey[0]
        saved = sorted(keys.iterdir())
        assert saved and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in saved)
    finally:
        first.stop()
    again = labsupport.start(state)  # the same keys: the same DNSKEY and DS
    try:
        assert again.query("northwind.test", "DNSKEY").answers == dnskey
    finally:
        again.stop()


def test_reset_repairs_the_signatures(clean_lab: Lab) -> None:
    lab = clean_lab
    signer = lab.dns.dnssec
    assert signer is not None
    assert validate("mx1.northwind.test", "A", lab).verdict == "secure"
    signer.corrupt("mx1.northwind.test", "A")
    assert validate("mx1.northwind.test", "A", lab).verdict == "bogus"
    lab.reset()
    assert validate("mx1.northwind.test", "A", lab).verdict == "secure"
    signer.hold()
    lab.zones.set("mx1.northwind.test", "A", "192.0.2.99")
    assert validate("mx1.northwind.test", "A", lab).verdict == "bogus"
    lab.reset()  # the zone as its file has it, signed again, and no longer held
    lab.zones.set("mx1.northwind.test", "A", "192.0.2.98")
    assert validate("mx1.northwind.test", "A", lab).verdict == "secure"
