"""The OpenSPF RFC 7208 test suite (../shared/conformance/spf/rfc7208-tests.yml).

Every scenario's zone data is served from an in-memory :class:`ZoneSet` the way the
reference runner serves it (see ../shared/conformance/README.md):

* an ``SPF`` entry is also served as TXT, unless the name has an explicit ``TXT`` entry;
  ``TXT: NONE`` means no TXT record at all;
* ``TIMEOUT`` makes the name time out (``zones.fail(name, "timeout")``); when records of
  some types come before it in the list, the reference runner answers those types and
  times out the others, which a thin wrapper around the zone does here;
* a name with a label over 63 octets does not resolve (dnspython cannot even hold it);
* CNAMEs are followed by the zone, as a resolver would;
* a TXT record with no strings at all (``SPF: [ ]``) cannot exist in dnspython; it is
  served as one empty string, which is just as much "not an SPF record".

Each test is checked the way a receiver checks it (:func:`spf_verdict`: the MAIL FROM
identity, or postmaster@HELO for an empty reverse-path) with the default explanation
"DEFAULT"; where a test lists several results, any one of them passes; where it gives an
explanation, it must match exactly. The final test runs the whole suite again and
reports the count.

The helpers here (``load_suite``, ``scenario_resolver``, ``run_case``) are also used by
``benchmarks/bench_spf.py``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.resolver
import pytest
from lab_helpers import SuiteReport

from labsupport.auth.spf import SPFResult, spf_verdict
from labsupport.dns.zone import ZoneSet

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT.parent / "shared" / "conformance" / "spf" / "rfc7208-tests.yml"

#: The reference runner's default explanation (README of the conformance folder).
DEFAULT_EXPLANATION = "DEFAULT"


@dataclass(frozen=True)
class Case:
    """One test of the suite, with the scenario it belongs to."""

    scenario: int
    scenario_name: str
    name: str
    helo: str
    host: str
    mailfrom: str
    results: tuple[str, ...]
    explanation: str | None
    spec: str

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.scenario_name.lower()).strip("-")
        return f"{slug}/{self.name}"


class PartialTimeouts:
    """The zone, except that some names answer only some types and time out for the
    others (the reference runner's reading of ``TIMEOUT`` after records)."""

    def __init__(self, zones: ZoneSet, answered: dict[str, set[str]]) -> None:
        self.zones = zones
        self.answered = answered

    def resolve(self, qname: Any, rdtype: Any = "A", *args: Any, **kwargs: Any) -> Any:
        key = str(qname).rstrip(".").lower()
        types = self.answered.get(key)
        if types is not None and str(rdtype).upper() not in types:
            raise dns.resolver.LifetimeTimeout(timeout=0.0, errors=[])
        return self.zones.resolve(qname, rdtype, *args, **kwargs)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    strings = [str(v) for v in value] or [""]  # dnspython holds no TXT without strings
    out: list[str] = []
    for s in strings:
        raw = s.encode("utf-8")
        while len(raw) > 255:  # a character-string holds 255 octets (RFC 1035 3.3)
            out.append(raw[:255].decode("utf-8", "ignore"))
            raw = raw[255:]
        out.append(raw.decode("utf-8"))
    return out


def _absolute(host: str) -> str:
    return "." if not host else (host if host.endswith(".") else host + ".")


def build_zone(zonedata: dict[str, list[Any]]) -> tuple[ZoneSet, Any]:
    """The scenario's zone data as a ZoneSet, and the resolver to use for it."""
    zones = ZoneSet.empty()
    partial: dict[str, set[str]] = {}
    for name, entries in (zonedata or {}).items():
        if any(len(label.encode("utf-8")) > 63 for label in name.split(".")):
            continue  # such a name cannot be asked for, so it never resolves
        has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
        answered: set[str] = set()
        timeout = False
        generated: list[list[str]] = []
        for entry in entries:
            if entry == "TIMEOUT":
                timeout = True
                break
            ((rdtype, value),) = entry.items()
            if value == "NONE":
                continue
            answered.add(rdtype)
            if rdtype in ("TXT", "SPF"):
                zones.add(name, rdtype, _strings(value))
                if rdtype == "SPF" and not has_txt:
                    generated.append(_strings(value))
            elif rdtype == "MX":
                preference, host = value
                zones.add(name, "MX", f"{preference} {_absolute(str(host))}")
            elif rdtype in ("PTR", "CNAME"):
                zones.add(name, rdtype, _absolute(str(value)))
            else:
                zones.add(name, rdtype, str(value))
        if timeout and not answered:
            zones.fail(name, "timeout")
            continue
        # The reference runner serves generated TXT records after everything else, so
        # past a TIMEOUT they time out too.
        if not timeout:
            for strings in generated:
                zones.add(name, "TXT", strings)
        else:
            partial[dns.name.from_text(name).to_text(omit_final_dot=True).lower()] = answered
    return zones, (PartialTimeouts(zones, partial) if partial else zones)


def load_suite(path: Path = SUITE) -> list[tuple[dict[str, Any], list[Case]]]:
    """Every scenario of the suite: its zone data and its cases."""
    import yaml

    scenarios = []
    with path.open(encoding="utf-8") as handle:
        for number, document in enumerate(yaml.safe_load_all(handle)):
            if not document:
                continue
            cases = []
            for name, test in document.get("tests", {}).items():
                result = test["result"]
                cases.append(Case(
                    scenario=number, scenario_name=document.get("description", str(number)),
                    name=name, helo=str(test.get("helo", "")), host=str(test["host"]),
                    mailfrom=str(test.get("mailfrom", "")),
                    results=tuple(result) if isinstance(result, list) else (result,),
                    explanation=test.get("explanation"), spec=str(test.get("spec", "")),
                ))
            scenarios.append((document.get("zonedata") or {}, cases))
    return scenarios


def run_case(case: Case, resolver: Any, *, trace: bool = True) -> SPFResult:
    """Check one case as a receiver would, with the suite's default explanation."""
    return spf_verdict(case.host, case.mailfrom, case.helo, resolver,
                       default_explanation=DEFAULT_EXPLANATION, receiver="receiver.test",
                       timestamp=1_400_000_000, trace=trace)


def verdict_problem(case: Case, result: SPFResult) -> str | None:
    """Why ``result`` does not satisfy ``case``, or None."""
    if result.verdict not in case.results:
        return f"result {result.verdict!r}, expected one of {list(case.results)}"
    if case.explanation is not None and result.explanation != case.explanation:
        return f"explanation {result.explanation!r}, expected {case.explanation!r}"
    return None


# -- the tests --------------------------------------------------------------------------

_SKIP = f"the conformance folder is absent ({SUITE}); CI always has it"


def _cases() -> Iterator[Any]:
    if not SUITE.exists():
        yield pytest.param(None, None, id="suite-absent",
                           marks=pytest.mark.skip(reason=_SKIP))
        return
    for index, (_zonedata, cases) in enumerate(load_suite()):
        for case in cases:
            yield pytest.param(index, case, id=case.id)


_RESOLVERS: dict[int, Any] = {}
_SCENARIOS: list[tuple[dict[str, Any], list[Case]]] = []


def _resolver_for(index: int) -> Any:
    if not _SCENARIOS:
        _SCENARIOS.extend(load_suite())
    if index not in _RESOLVERS:
        _RESOLVERS[index] = build_zone(_SCENARIOS[index][0])[1]
    return _RESOLVERS[index]


@pytest.mark.parametrize(("scenario", "case"), list(_cases()))
def test_rfc7208_case(scenario: int, case: Case) -> None:
    result = run_case(case, _resolver_for(scenario))
    problem = verdict_problem(case, result)
    assert problem is None, (
        f"{case.id} (RFC 7208 {case.spec}): {problem}\n\n{result.text()}"
    )


@pytest.mark.skipif(not SUITE.exists(), reason=_SKIP)
def test_rfc7208_suite_count(request: pytest.FixtureRequest) -> None:
    """The whole suite in one go: every test passes, and the count is reported."""
    scenarios = load_suite()
    total = sum(len(cases) for _, cases in scenarios)
    failures = []
    for zonedata, cases in scenarios:
        resolver = build_zone(zonedata)[1]
        for case in cases:
            problem = verdict_problem(case, run_case(case, resolver))
            if problem:
                failures.append(f"{case.id}: {problem}")
    passed = total - len(failures)
    line = f"RFC 7208 test suite (rfc7208-tests.yml): {passed} of {total} tests passed"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    under_xdist = hasattr(request.config, "workerinput")
    if reporter is not None and not under_xdist:

        class _Summary:
            @staticmethod
            def pytest_terminal_summary(terminalreporter: Any) -> None:
                terminalreporter.write_sep("-", "SPF conformance")
                terminalreporter.write_line(line)

        if not request.config.pluginmanager.has_plugin("spf-conformance-summary"):
            request.config.pluginmanager.register(_Summary(), "spf-conformance-summary")
    else:
        warnings.warn(SuiteReport(line), stacklevel=1)
    assert total == 203, f"the suite should hold 203 tests, found {total}"
    assert not failures, line + ":\n" + "\n".join(failures)


def test_partial_timeout_wrapper_times_out_other_types() -> None:
    """The harness itself: TIMEOUT after a TXT answers TXT and times out the rest."""
    _zones, resolver = build_zone({"t.example.com": [{"TXT": "v=spf1 -all"}, "TIMEOUT"]})
    assert resolver.resolve("t.example.com.", "TXT").rrset is not None
    with pytest.raises(dns.exception.Timeout):
        resolver.resolve("t.example.com.", "A")
