"""labsupport.dns.query: ask() and its dig-style rendering, and the real dig against
``python -m labsupport serve``."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import dns.message
import pytest
from lab_helpers import PROCESS_TIMEOUT, Served

from labsupport.dns.nameserver import free_port_pair
from labsupport.dns.query import DNSExchange, ask, dig, dig_available, flags_text

POOL = "pool.mailcloud.example"


# -- ask() and DNSExchange -----------------------------------------------------------------


def test_ask_an_authoritative_answer(lab) -> None:
    exchange = ask("northwind.test", "MX", port=lab.dns.port)
    assert isinstance(exchange, DNSExchange)
    assert exchange.verdict == exchange.rcode == "NOERROR"
    assert exchange.flags == ["qr", "aa", "rd"]
    assert len(exchange.answers) == 2
    assert all(" IN MX " in line for line in exchange.answers)
    assert exchange.summary == "An authoritative answer: 2 MX record(s) for northwind.test."
    assert exchange.title() == "northwind.test MX via UDP: NOERROR"
    assert [s.kind for s in exchange.trace] == ["query", "answer"]


def test_dig_text_is_laid_out_like_dig(lab) -> None:
    text = ask("northwind.test", "MX", port=lab.dns.port).dig_text()
    assert ";; ->>HEADER<<- opcode: QUERY, status: NOERROR" in text
    assert ";; flags: qr aa rd; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 0" in text
    assert "; EDNS: version: 0, flags:; udp: 1232" in text
    sections = re.findall(r"^;; (\w+) SECTION:$", text, re.M)
    assert sections == ["QUESTION", "ANSWER"]
    # Every record line is tab-separated, as dig prints it (the order varies: servers
    # shuffle the records of an RRset).
    for record in (r"10 mx1\.northwind\.test\.", r"20 mx2\.northwind\.test\."):
        assert re.search(rf"^northwind\.test\.\t3600\tIN\tMX\t{record}$", text, re.M), text
    assert f";; SERVER: 127.0.0.1#{lab.dns.port}(127.0.0.1) (UDP)" in text


def test_ask_without_edns_shows_no_opt(lab) -> None:
    exchange = ask("northwind.test", "MX", port=lab.dns.port, edns=False)
    assert exchange.response is not None and exchange.response.edns == -1
    assert "OPT PSEUDOSECTION" not in exchange.dig_text()


def test_ask_negative_answers_explain_themselves(lab) -> None:
    nx = ask("nosuch.northwind.test", "A", port=lab.dns.port)
    assert nx.verdict == "NXDOMAIN" and nx.summary.startswith("NXDOMAIN:")
    assert ";; AUTHORITY SECTION:" in nx.dig_text()
    nodata = ask("northwind.test", "AAAA", port=lab.dns.port)
    assert nodata.verdict == "NOERROR" and "(NODATA)" in nodata.summary
    refused = ask("www.example.com", "A", port=lab.dns.port)
    assert refused.verdict == "REFUSED" and "not authoritative" in refused.summary


def test_ask_a_big_answer_over_udp_and_tcp(lab) -> None:
    udp = ask(POOL, "A", port=lab.dns.port)
    assert "tc" in udp.flags and udp.answers == []
    assert "truncated" in udp.summary
    tcp = ask(POOL, "A", port=lab.dns.port, tcp=True)
    assert "tc" not in tcp.flags and len(tcp.answers) == 100
    assert tcp.title().endswith("via TCP: NOERROR")
    assert "(TCP)" in tcp.dig_text()


def test_ask_something_that_is_not_a_question() -> None:
    exchange = ask("bad..name", "A")
    assert exchange.verdict == "invalid" and exchange.response is None
    assert exchange.rcode == "no answer" and exchange.flags == [] and exchange.answers == []
    assert exchange.dig_text().startswith(";; cannot ask that")


def test_ask_a_server_that_is_not_there() -> None:
    port = free_port_pair()
    tcp = ask("northwind.test", "MX", port=port, tcp=True, timeout=2)
    assert tcp.verdict == "error" and "failed" in tcp.summary
    udp = ask("northwind.test", "MX", port=port, timeout=0.2)
    assert udp.verdict in ("timeout", "error")
    assert udp.trace[-1].kind == "error"


def test_exchange_html_is_escaped(lab) -> None:
    exchange = ask("northwind.test", "MX", port=lab.dns.port)
    page = exchange._repr_html_()
    assert "<pre>" in page and ";; -&gt;&gt;HEADER&lt;&lt;-" in page
    assert "->>HEADER<<-" not in page
    assert exchange.text().startswith(exchange.summary)


def test_flags_text_uses_digs_order() -> None:
    query = dns.message.make_query("northwind.test", "MX")
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA | dns.flags.TC
    assert flags_text(response) == "qr aa tc rd"


def test_dig_available_matches_the_path() -> None:
    assert dig_available() is (shutil.which("dig") is not None)


# -- the real dig against `python -m labsupport serve` -------------------------------------


@pytest.fixture
def dig_exe() -> str:
    exe = shutil.which("dig")
    if exe is None:
        pytest.skip("dig is not installed (Debian/Ubuntu: apt-get install bind9-dnsutils)")
    return exe


def run_dig(exe: str, served: Served, *args: str) -> str:
    done = subprocess.run(
        [exe, "@127.0.0.1", "-p", str(served.port), "+time=3", "+tries=1", *args],
        capture_output=True, text=True, timeout=PROCESS_TIMEOUT, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def section(text: str, name: str) -> list[str]:
    """The record lines of one section of dig's output."""
    match = re.search(rf"^;; {name} SECTION:\n(.*?)(?:\n\n|\Z)", text, re.M | re.S)
    return match.group(1).splitlines() if match else []


def header(text: str) -> tuple[str, set[str]]:
    status = re.search(r"status: (\w+)", text)
    flags = re.search(r";; flags: ([a-z ]+);", text)
    assert status and flags, text
    return status.group(1), set(flags.group(1).split())


def test_serve_json_first_line(served: Served) -> None:
    assert set(served.info) == {"dns", "state_dir", "pid", "zones", "clock",
                                "smtp", "ca_file", "accounts", "mta_sts", "imap"}
    assert served.info["dns"]["host"] == "127.0.0.1" and served.port > 0
    assert served.info["pid"] == served.proc.pid
    assert "northwind.test" in served.info["zones"]


def test_dig_mx(dig_exe: str, served: Served) -> None:
    out = run_dig(dig_exe, served, "northwind.test", "MX")
    status, flags = header(out)
    assert status == "NOERROR"
    assert "aa" in flags and "qr" in flags and "tc" not in flags
    answers = section(out, "ANSWER")
    assert len(answers) == 2
    assert any(re.search(r"\tMX\t10 mx1\.northwind\.test\.$", a) for a in answers)
    assert any(re.search(r"\tMX\t20 mx2\.northwind\.test\.$", a) for a in answers)


def test_dig_nxdomain_shows_the_soa(dig_exe: str, served: Served) -> None:
    out = run_dig(dig_exe, served, "nosuch.northwind.test", "A")
    status, flags = header(out)
    assert status == "NXDOMAIN" and "aa" in flags
    (soa,) = section(out, "AUTHORITY")
    assert re.match(r"northwind\.test\.\s+300\s+IN\s+SOA\s+ns\.lab\.test\. hostmaster\.lab\.test\.",
                    soa)


def test_dig_nodata_shows_the_soa(dig_exe: str, served: Served) -> None:
    out = run_dig(dig_exe, served, "northwind.test", "AAAA")
    status, _flags = header(out)
    assert status == "NOERROR"
    assert section(out, "ANSWER") == []
    (soa,) = section(out, "AUTHORITY")
    assert "\tSOA\t" in soa


def test_dig_over_tcp(dig_exe: str, served: Served) -> None:
    out = run_dig(dig_exe, served, "+tcp", "campus.test", "MX")
    status, flags = header(out)
    assert status == "NOERROR" and "aa" in flags
    assert len(section(out, "ANSWER")) == 2
    assert "(TCP)" in out


def test_dig_retries_a_truncated_answer_over_tcp(dig_exe: str, served: Served) -> None:
    out = run_dig(dig_exe, served, POOL, "A")
    assert "Truncated, retrying in TCP mode" in out
    _status, flags = header(out)
    assert "tc" not in flags
    assert "ANSWER: 100," in out
    assert len(section(out, "ANSWER")) == 100


def test_dig_refused_outside_the_lab(dig_exe: str, served: Served) -> None:
    status, flags = header(run_dig(dig_exe, served, "www.example.com", "A"))
    assert status == "REFUSED" and "aa" not in flags


def test_serve_prints_each_query(dig_exe: str, served: Served) -> None:
    run_dig(dig_exe, served, "out.northwind.test", "A")
    wanted = "udp out.northwind.test. A -> NOERROR"
    for _ in range(100):  # the line is printed right after the reply; poll for it
        if any(line.startswith("dns: ") and wanted in line for line in served.output):
            break
        time.sleep(0.05)
    assert any(wanted in line for line in served.output), served.output[-5:]


def test_the_dig_helper_runs_dig(dig_exe: str, served: Served) -> None:
    out = dig(f"dig @127.0.0.1 -p {served.port} +time=3 +tries=1 parked.test MX")
    assert "status: NOERROR" in out and "MX\t0 ." in out
    out = dig(["@127.0.0.1", "-p", str(served.port), "+short", "mx1.northwind.test", "A"])
    assert out.strip() == "192.0.2.25"
