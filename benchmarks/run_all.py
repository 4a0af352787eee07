"""Measure what the course promises to be fast, and print (or record) the figures.

    python benchmarks/run_all.py            # print a Markdown table
    python benchmarks/run_all.py --readme   # also write it into README.md's development section
    python benchmarks/run_all.py --quick    # fewer repetitions, no notebook run

Figures: the time of ``import labsupport`` (fresh interpreter, median), lab start-up
(``labsupport.start()`` on a fresh state directory, median), DNS queries per second over
UDP from dnspython against the lab server (one client, four client threads, and a raw
socket client that shows the server's own pace), the
in-memory zone's ``resolve()`` per call, opening and triaging the troubleshooting lab's
tickets, and the wall time of every notebook under nbval.
Then the mail server (messages per second against a bare aiosmtpd sink), the SPF evaluator
against pyspf and DKIM verification against dkimpy (benchmarks/bench_*.py, each also
runnable alone). Targets on a 2-core machine: lab start under 0.3 s, all notebooks under
60 s, SPF at least as fast as pyspf, DKIM RSA-2048 verification 5 times dkimpy's speed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _median_of(code: str, runs: int, env: dict[str, str]) -> float:
    samples = []
    for _ in range(runs):
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True,
                             env=env, cwd=ROOT)
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def bench_import(runs: int, env: dict[str, str]) -> float:
    return _median_of("import time; t = time.perf_counter(); import labsupport; "
                      "print(time.perf_counter() - t)", runs, env)


def bench_start(runs: int, env: dict[str, str]) -> float:
    code = ("import tempfile, time, labsupport; d = tempfile.mkdtemp(); "
            "t = time.perf_counter(); lab = labsupport.start(d); "
            "dt = time.perf_counter() - t; lab.stop(); print(dt)")
    return _median_of(code, runs, env)


def bench_dns_udp(queries: int, threads: int) -> float:
    import dns.message
    import dns.query

    import labsupport

    lab = labsupport.start(tempfile.mkdtemp(prefix="mail-labs-bench-"))
    names = [("northwind.test", "MX"), ("mx1.northwind.test", "A"), ("campus.test", "MX"),
             ("nosuchhost.northwind.test", "A"), ("www.tinyshop.test", "A")]
    wires = [dns.message.make_query(n, t) for n, t in names]
    per_thread = queries // threads
    errors: list[BaseException] = []

    def client() -> None:
        try:
            for i in range(per_thread):
                dns.query.udp(wires[i % len(wires)], "127.0.0.1", port=lab.dns.port, timeout=2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    lab.stop()
    if errors:
        raise RuntimeError(f"queries failed: {errors[0]}")
    return per_thread * threads / elapsed


def bench_dns_raw(queries: int) -> float:
    """The server's own pace: one reused UDP socket sending ready-made queries."""
    import socket

    import dns.message

    import labsupport

    lab = labsupport.start(tempfile.mkdtemp(prefix="mail-labs-bench-"))
    wire = dns.message.make_query("northwind.test", "MX").to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.connect(("127.0.0.1", lab.dns.port))
        started = time.perf_counter()
        for _ in range(queries):
            sock.send(wire)
            sock.recv(2048)
        elapsed = time.perf_counter() - started
    lab.stop()
    return queries / elapsed


def bench_memory_resolve(calls: int) -> float:
    from labsupport.dns.zone import ZoneSet

    zones = ZoneSet.from_directory(ROOT / "data" / "zones")
    zones.resolve("northwind.test", "MX")
    started = time.perf_counter()
    for _ in range(calls):
        zones.resolve("northwind.test", "MX")
    return (time.perf_counter() - started) / calls * 1e6


def bench_hunt(runs: int) -> tuple[float, float]:
    """Median seconds to open the troubleshooting lab (``BugHunt(lab)``: a 2048-bit key,
    two TLS listeners) and to triage all eight tickets with the lab's tools."""
    import labsupport
    from labsupport.teach.troubleshoot import BugHunt

    lab = labsupport.start(tempfile.mkdtemp(prefix="mail-labs-bench-hunt-"))
    opening, triage = [], []
    try:
        for _ in range(runs):
            lab.reset()
            started = time.perf_counter()
            hunt = BugHunt(lab)
            opening.append(time.perf_counter() - started)
            started = time.perf_counter()
            hunt.triage_all()
            triage.append(time.perf_counter() - started)
    finally:
        lab.stop()
    return statistics.median(opening), statistics.median(triage)


def bench_notebooks(env: dict[str, str]) -> tuple[float, str]:
    cmd = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile",
           "--nbval-lax", "--nbval-current-env", "notebooks"]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - started
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    return elapsed, last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    parser.add_argument("--quick", action="store_true", help="fewer runs, skip the notebooks")
    args = parser.parse_args()
    runs = 3 if args.quick else 9
    env = {**os.environ, "MAIL_LABS_HOME": tempfile.mkdtemp(prefix="mail-labs-bench-home-")}
    os.environ["MAIL_LABS_HOME"] = env["MAIL_LABS_HOME"]

    rows = [
        ("`import labsupport` (median, fresh interpreter)", f"{bench_import(runs, env):.3f} s"),
        ("lab start-up, `labsupport.start()` (median)", f"{bench_start(runs, env):.3f} s"),
        ("DNS over UDP, one dnspython client", f"{bench_dns_udp(3000, 1):,.0f} queries/s"),
        ("DNS over UDP, four client threads", f"{bench_dns_udp(4000, 4):,.0f} queries/s"),
        ("DNS over UDP, raw socket client (server's pace)",
         f"{bench_dns_raw(10000):,.0f} queries/s"),
        ("in-memory `ZoneSet.resolve()`, cached answer",
         f"{bench_memory_resolve(20000):.1f} µs per call"),
    ]
    opening, triage = bench_hunt(3 if args.quick else 7)
    rows.append(("troubleshooting lab: open the tickets, `BugHunt(lab)` (median)",
                  f"{opening:.3f} s"))
    rows.append(("troubleshooting lab: triage all eight tickets with the lab's tools (median)",
                  f"{triage:.3f} s"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_dkim
    import bench_peers
    import bench_smtp
    import bench_spf

    extra: list[str] = []
    extra += bench_smtp.main(["--quick"] if args.quick else [])
    extra += bench_spf.main(3 if args.quick else 9)
    extra += [f"| {name} | {value} |" for name, value in bench_dkim.main(quick=args.quick)]
    extra += [f"| {name} | {value} |" for name, value in bench_peers.main(quick=args.quick)]
    if not args.quick:
        elapsed, summary = bench_notebooks(env)
        rows.append(("all notebooks under nbval (`-n 2`)", f"{elapsed:.1f} s ({summary})"))
    machine = (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    table = "\n".join(["| measure | result |", "|---|---|"]
                      + [f"| {name} | {value} |" for name, value in rows] + extra)
    text = f"{table}\n\n({machine})"
    print(text)
    if args.readme:
        readme = ROOT / "README.md"
        content = readme.read_text(encoding="utf-8")
        block = f"<!-- bench:start -->\n{text}\n<!-- bench:end -->"
        new = re.sub(r"<!-- bench:start -->.*?<!-- bench:end -->", lambda _m: block, content,
                     flags=re.S)
        readme.write_text(new, encoding="utf-8")
        print("README.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
