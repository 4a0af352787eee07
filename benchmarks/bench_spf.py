"""Time the SPF evaluator (trace on) and pyspf over the whole RFC 7208 test suite.

    python benchmarks/bench_spf.py            # print the figures as Markdown rows
    python benchmarks/bench_spf.py --runs 3   # fewer repetitions

Both evaluators answer every test of ``../shared/conformance/spf/rfc7208-tests.yml``
from the same in-memory zones (one :class:`~labsupport.dns.zone.ZoneSet` per scenario,
built and warmed once): ours through the resolver contract, pyspf through its
``spf.DNSLookup`` hook, which reads the same ``ZoneSet.resolve`` answers. A run is one
pass over all 203 tests; the figure is the fastest of several runs (the least disturbed
by whatever else the machine does), the two evaluators taking turns. The target is a
ratio of at least 1 (ours at least as fast as pyspf).

``main()`` returns the Markdown rows, for ``benchmarks/run_all.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests", ROOT / "tests" / "auth"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from test_spf_conformance import (  # noqa: E402 - after the path set-up above
    SUITE,
    build_zone,
    load_suite,
    run_case,
    verdict_problem,
)


def _prepare() -> list[tuple[Any, list[Any]]]:
    return [(build_zone(zonedata)[1], cases) for zonedata, cases in load_suite()]


def _ours(prepared: list[tuple[Any, list[Any]]]) -> Callable[[], int]:
    def one_pass() -> int:
        passed = 0
        for resolver, cases in prepared:
            for case in cases:
                if verdict_problem(case, run_case(case, resolver, trace=True)) is None:
                    passed += 1
        return passed

    return one_pass


def _pyspf(prepared: list[tuple[Any, list[Any]]], spf: Any) -> Callable[[], int]:
    from test_spf_oracle import pyspf_check, pyspf_lookup

    hooks = [pyspf_lookup(resolver, spf) for resolver, _cases in prepared]

    def one_pass() -> int:
        passed = 0
        for hook, (_resolver, cases) in zip(hooks, prepared, strict=True):
            spf.DNSLookup = hook
            for case in cases:
                result, text = pyspf_check(spf, case.host, case.mailfrom, case.helo)
                if result in case.results and (case.explanation is None
                                               or text == case.explanation):
                    passed += 1
        return passed

    return one_pass


def _time_one(run: Callable[[], int], times: list[float]) -> None:
    started = time.perf_counter()
    run()
    times.append(time.perf_counter() - started)


def measure(runs: int = 9) -> dict[str, Any]:
    """Seconds per pass for each evaluator (the fastest of ``runs``), the tests each
    passed, and the ratio."""
    prepared = _prepare()
    total = sum(len(cases) for _resolver, cases in prepared)
    ours = _ours(prepared)
    ours_passed = ours()  # warm the zones' answer caches and the record parse cache
    figures: dict[str, Any] = {"tests": total, "ours_passed": ours_passed}
    try:
        import spf
    except ImportError:
        spf = None
    theirs = _pyspf(prepared, spf) if spf is not None else None
    if theirs is not None:
        saved = spf.DNSLookup
        try:
            figures["pyspf_passed"] = theirs()
            ours_times: list[float] = []
            theirs_times: list[float] = []
            for _ in range(runs):
                _time_one(ours, ours_times)
                _time_one(theirs, theirs_times)
        finally:
            spf.DNSLookup = saved
        figures["pyspf"] = min(theirs_times)
        figures["pyspf_version"] = getattr(spf, "__version__", "?")
    else:
        ours_times = []
        for _ in range(runs):
            _time_one(ours, ours_times)
    figures["ours"] = min(ours_times)
    if "pyspf" in figures:
        figures["ratio"] = figures["pyspf"] / figures["ours"]
    return figures


def main(runs: int = 9) -> list[str]:
    """The figures as Markdown table rows (``| measure | result |``)."""
    if not SUITE.exists():
        return [f"| SPF evaluator over the RFC 7208 suite | not run: {SUITE} is absent |"]
    f = measure(runs)
    n = f["tests"]
    rows = [
        f"| SPF `check_host` (trace on), RFC 7208 suite ({n} tests, "
        f"{f['ours_passed']} pass) | {f['ours'] * 1e3:.1f} ms per pass, "
        f"{f['ours'] / n * 1e6:.0f} µs per test |",
    ]
    if "pyspf" in f:
        rows.append(
            f"| pyspf {f['pyspf_version']}, same suite and zones ({f['pyspf_passed']} pass) "
            f"| {f['pyspf'] * 1e3:.1f} ms per pass, {f['pyspf'] / n * 1e6:.0f} µs per test |")
        rows.append(f"| SPF speed-up over pyspf (target ≥ 1) | {f['ratio']:.2f}× |")
    else:
        rows.append("| pyspf | not installed (pip install pyspf) |")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="passes per evaluator")
    args = parser.parse_args()
    print("| measure | result |\n|---|---|")
    print("\n".join(main(args.runs)))
