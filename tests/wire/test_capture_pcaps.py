"""The reference captures in data/pcaps/ (written by scripts/make_pcaps.py) are complete,
well formed and teach what their README says."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from labsupport.wire.capture import load

PCAPS = Path(__file__).resolve().parents[2] / "data" / "pcaps"
NAMES = ["dns-mx", "smtp-plain", "auth-in-the-clear", "starttls", "implicit-tls", "downgrade"]


@pytest.mark.parametrize("name", NAMES)
def test_reference_capture_reads(name: str) -> None:
    cap = load(PCAPS / f"{name}.pcap")
    assert cap.summary().rows
    assert name in (PCAPS / "README.md").read_text(encoding="utf-8")


def test_what_each_capture_shows() -> None:
    assert "DNS MX query for northwind.test." in load(PCAPS / "dns-mx.pcap").summary().whats()
    assert load(PCAPS / "smtp-plain.pcap").dialogue().contains("Here are the notes.")
    assert load(PCAPS / "auth-in-the-clear.pcap").dialogue().credentials()
    assert load(PCAPS / "downgrade.pcap").dialogue().credentials()
    for name in ("starttls", "implicit-tls"):
        cap = load(PCAPS / f"{name}.pcap")
        assert not cap.dialogue().contains("Here are the notes.")
        view = cap.decrypt(PCAPS / f"{name}.keylog")
        assert view.contains("Here are the notes.") and view.contains("AUTH PLAIN")


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", NAMES)
def test_tshark_reads_reference_capture(name: str) -> None:
    done = subprocess.run(["tshark", "-r", str(PCAPS / f"{name}.pcap")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and "Malformed" not in done.stdout, done.stdout + done.stderr
    protocol = "DNS" if name == "dns-mx" else ("TLS" if "tls" in name else "SMTP")
    assert protocol in done.stdout
