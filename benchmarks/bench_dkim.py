"""How fast the lab verifies DKIM, next to dkimpy, on the same signed 10 KB messages.

    python benchmarks/bench_dkim.py            # print a Markdown table
    python benchmarks/bench_dkim.py --quick    # fewer repetitions

For RSA-2048 and Ed25519, a plain-text message (about 140 lines, a few header fields,
10 KB once signed) is signed once with relaxed/relaxed canonicalization and its key put
in one in-memory ZoneSet; then it is verified again and again by
``labsupport.auth.dkim.verify`` (with its full trace) and by ``dkim.verify`` from dkimpy, whose
DNS function asks the same ZoneSet. Each figure is the median time of one verification
over several rounds (the two alternate, round by round, so a busy moment of the machine
hits both); the ratio is dkimpy's time over the lab's. Target: the lab at least 5 times
faster than dkimpy for RSA-2048. ``main()`` returns the rows, ``(measure, result)``
pairs, in the form ``benchmarks/run_all.py`` puts into its Markdown table.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests" / "auth"):  # dkimpy_helpers: the tests' oracle glue
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from dkimpy_helpers import dnsfunc_for as dkimpy_dns  # noqa: E402

from labsupport import dkim  # noqa: E402
from labsupport.auth.dkim_keys import generate_key, publish  # noqa: E402
from labsupport.dns.zone import ZoneSet  # noqa: E402

DOMAIN = "northwind.test"
TARGET_RSA_RATIO = 5.0

_WORDS = ("mail", "the", "lab", "signature", "domain", "key", "header", "body", "hash",
          "relay", "northwind", "canonical", "selector", "DNS", "record", "and", "of")


def make_message(size: int = 10_240, seed: int = 6) -> bytes:
    """A plain-text message of about ``size`` octets, with the odd double space,
    trailing blank and tab that relaxed canonicalization has to clean up."""
    rng = random.Random(seed)
    head = (b"From: Ann Example <ann@northwind.test>\r\n"
            b"To: Bob Example <bob@campus.test>\r\n"
            b"Subject: Quarterly figures, as promised\r\n"
            b"Date: Mon, 05 Jan 2026 09:30:00 +0000\r\n"
            b"Message-ID: <bench-1@northwind.test>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
    lines: list[bytes] = []
    total = len(head)
    while total < size:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 12))]
        line = " ".join(words)
        if rng.random() < 0.2:
            line = line.replace(" ", "  ", 1)
        if rng.random() < 0.2:
            line += " \t"
        encoded = line.encode("ascii") + b"\r\n"
        lines.append(encoded)
        total += len(encoded)
    return head + b"".join(lines) + b"\r\n\r\n"


def _per_call(func: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - started) / calls


def measure(kind: str, calls: int, rounds: int) -> tuple[float, float, int]:
    """(lab seconds per verification, dkimpy seconds per verification, message size)."""
    import dkim as dkimpy

    zones = ZoneSet.empty()
    key = generate_key(kind)
    publish(zones, DOMAIN, "bench", key)
    probe = b"From: ann@northwind.test\r\n\r\n"
    overhead = len(dkim.sign(probe, domain=DOMAIN, selector="bench", private_key=key,
                             timestamp=time.time())) - len(probe)
    message = make_message(10_240 - overhead)
    signed = dkim.sign(message, domain=DOMAIN, selector="bench", private_key=key,
                       canonicalization=("relaxed", "relaxed"), timestamp=time.time())
    dnsfunc = dkimpy_dns(zones)
    lab = dkim.verify(signed, zones)
    if lab.verdict != "pass" or not dkimpy.verify(signed, dnsfunc=dnsfunc):
        raise RuntimeError(f"the {kind} benchmark message does not verify: {lab.summary}")
    # Warm up both (caches, the parsed key), then alternate rounds between the two, so
    # that a busy moment of the machine hits both.
    _per_call(lambda: dkim.verify(signed, zones), 20)
    _per_call(lambda: dkimpy.verify(signed, dnsfunc=dnsfunc), 20)
    lab_times, dkimpy_times = [], []
    for _ in range(rounds):
        lab_times.append(_per_call(lambda: dkim.verify(signed, zones), calls))
        dkimpy_times.append(_per_call(lambda: dkimpy.verify(signed, dnsfunc=dnsfunc), calls))
    return statistics.median(lab_times), statistics.median(dkimpy_times), len(signed)


def main(quick: bool = False) -> list[tuple[str, str]]:
    """Markdown rows ``(measure, result)`` for ``benchmarks/run_all.py``."""
    try:
        import dkim as _dkimpy  # noqa: F401
    except ImportError:
        return [("DKIM verification vs dkimpy", "skipped: dkimpy is not installed")]
    calls, rounds = (50, 5) if quick else (200, 11)
    rows = []
    for kind, label in (("rsa", "RSA-2048"), ("ed25519", "Ed25519")):
        lab_time, dkimpy_time, size = measure(kind, calls, rounds)
        ratio = dkimpy_time / lab_time
        target = f"; target ≥ {TARGET_RSA_RATIO:.0f}×" if kind == "rsa" else ""
        rows.append((f"DKIM verify, {label}, {size / 1024:.1f} KB message, lab (trace on) "
                     "vs dkimpy",
                     f"{lab_time * 1e3:.3f} ms vs {dkimpy_time * 1e3:.3f} ms: "
                     f"{ratio:.1f}× faster{target}"))
    return rows


if __name__ == "__main__":
    from bench_table import table_cli  # beside this script

    sys.exit(table_cli(__doc__.splitlines()[0], main))
