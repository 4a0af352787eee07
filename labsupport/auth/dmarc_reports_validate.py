"""DMARC aggregate reports, checking the structure: :func:`validate_report`, the strict
check of a report against RFC 9990 section 3 (element order, required elements, the
allowed values). Part of :mod:`labsupport.auth.dmarc_reports`.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET

from .dmarc_reports_model import (
    ALIGNED_RESULTS,
    DISPOSITIONS,
    DKIM_RESULTS,
    FIRST_LEVEL,
    METADATA_ALLOWED,
    METADATA_REQUIRED,
    NAMESPACE,
    OVERRIDE_TYPES,
    POLICIES,
    POLICY_ALLOWED,
    POLICY_REQUIRED,
    SPF_RESULTS,
    DMARCReportError,
)
from .dmarc_reports_read import _child, _children, _load, _local, _text

# -- checking the structure ----------------------------------------------------------------


def _check_order(parent: ET.Element, allowed: tuple[tuple[str, bool], ...], where: str,
                 problems: list[str]) -> None:
    names = [_local(c.tag) for c in parent]
    order = [name for name, _ in allowed]
    for name, required in allowed:
        if required and name not in names:
            problems.append(f"{where}: <{name}> is required")
    known = [n for n in names if n in order]
    positions = [order.index(n) for n in known]
    if positions != sorted(positions):
        problems.append(f"{where}: elements out of order ({', '.join(known)}); RFC 9990 "
                        f"asks for {', '.join(order)}")
    for name in names:
        if name not in order:
            problems.append(f"{where}: <{name}> is not an element here")


def _check_value(element: ET.Element | None, name: str, allowed: tuple[str, ...], where: str,
                 problems: list[str]) -> None:
    value = _text(element, name)
    if value is not None and value not in allowed:
        problems.append(f"{where}/{name}: {value!r} is not one of {', '.join(allowed)}")


def validate_report(xml: bytes | str) -> list[str]:
    """The ways ``xml`` departs from the RFC 9990 report structure (section 3 and the
    XML schema of appendix A): namespace, element order, required elements, allowed
    values, source addresses, counts. An empty list: it conforms."""
    try:
        root = _load(xml)
    except DMARCReportError as exc:
        return [str(exc)]
    problems: list[str] = []
    if not root.tag.startswith("{" + NAMESPACE + "}"):
        problems.append(f"<feedback> is not in the namespace {NAMESPACE} (an RFC 7489 "
                        "report?)")
    for element in root.iter():
        if element.tag.startswith("{") and not element.tag.startswith("{" + NAMESPACE + "}") \
                and element is not root and _local(element.tag) != "extension":
            continue  # namespaced extension elements are allowed
        stray = (element.tail or "").strip()
        if stray:
            problems.append(f"stray text {stray!r} after <{_local(element.tag)}>")
    _check_order(root, FIRST_LEVEL, "feedback", problems)
    version = _text(root, "version")
    if version is not None and version != "1.0":
        problems.append(f"feedback/version: {version!r}, RFC 9990 says 1.0")
    meta = _child(root, "report_metadata")
    if meta is not None:
        names = [_local(c.tag) for c in meta]
        problems += [f"report_metadata: <{n}> is required" for n in METADATA_REQUIRED
                     if n not in names]
        problems += [f"report_metadata: <{n}> is not an element here" for n in names
                     if n not in METADATA_ALLOWED]
        dates = _child(meta, "date_range")
        for bound in ("begin", "end"):
            if not (_text(dates, bound) or "").isdigit():
                problems.append(f"report_metadata/date_range/{bound}: not seconds since the "
                                "epoch")
    pub = _child(root, "policy_published")
    if pub is not None:
        names = [_local(c.tag) for c in pub]
        problems += [f"policy_published: <{n}> is required" for n in POLICY_REQUIRED
                     if n not in names]
        problems += [f"policy_published: <{n}> is not an element here (removed from "
                     f"DMARC?)" for n in names if n not in POLICY_ALLOWED]
        for name in ("p", "sp", "np"):
            _check_value(pub, name, POLICIES, "policy_published", problems)
        for name in ("adkim", "aspf"):
            _check_value(pub, name, ("r", "s"), "policy_published", problems)
        _check_value(pub, "testing", ("n", "y"), "policy_published", problems)
        _check_value(pub, "discovery_method", ("psl", "treewalk"), "policy_published",
                     problems)
    for number, record in enumerate(_children(root, "record"), start=1):
        where = f"record {number}"
        own = tuple((n, True) for n in ("row", "identifiers", "auth_results"))
        names = [_local(c.tag) for c in record if not c.tag.startswith("{") or
                 c.tag.startswith("{" + NAMESPACE + "}")]
        positions = [[n for n, _ in own].index(n) for n in names if n in dict(own)]
        problems += [f"{where}: <{n}> is required" for n, _ in own if n not in names]
        if positions != sorted(positions):
            problems.append(f"{where}: row, identifiers, auth_results out of order")
        row = _child(record, "row")
        if row is not None:
            source = _text(row, "source_ip") or ""
            try:
                ipaddress.ip_address(source)
            except ValueError:
                problems.append(f"{where}/row/source_ip: {source!r} is not an IP address")
            if not (_text(row, "count") or "").isdigit():
                problems.append(f"{where}/row/count: not a whole number")
            evaluated = _child(row, "policy_evaluated")
            if evaluated is None:
                problems.append(f"{where}/row: <policy_evaluated> is required")
            else:
                _check_order(evaluated, (("disposition", True), ("dkim", True),
                                         ("spf", True), ("reason", False)),
                             f"{where}/row/policy_evaluated", problems)
                _check_value(evaluated, "disposition", DISPOSITIONS, where, problems)
                _check_value(evaluated, "dkim", ALIGNED_RESULTS, where, problems)
                _check_value(evaluated, "spf", ALIGNED_RESULTS, where, problems)
                for reason in _children(evaluated, "reason"):
                    _check_value(reason, "type", OVERRIDE_TYPES, f"{where}/reason", problems)
        ids = _child(record, "identifiers")
        if ids is not None and not _text(ids, "header_from"):
            problems.append(f"{where}/identifiers: <header_from> is required")
        auth = _child(record, "auth_results")
        if auth is not None:
            kinds = [_local(c.tag) for c in auth]
            if kinds != sorted(kinds):  # every dkim before the spf
                problems.append(f"{where}/auth_results: <dkim> elements come before <spf>")
            if kinds.count("spf") > 1:
                problems.append(f"{where}/auth_results: at most one <spf> (MAIL FROM)")
            for dkim in _children(auth, "dkim"):
                for name in ("domain", "selector", "result"):
                    if _text(dkim, name) is None:
                        problems.append(f"{where}/auth_results/dkim: <{name}> is required")
                _check_value(dkim, "result", DKIM_RESULTS, f"{where}/auth_results", problems)
            for spf in _children(auth, "spf"):
                for name in ("domain", "result"):
                    if _text(spf, name) is None:
                        problems.append(f"{where}/auth_results/spf: <{name}> is required")
                _check_value(spf, "result", SPF_RESULTS, f"{where}/auth_results", problems)
                _check_value(spf, "scope", ("mfrom",), f"{where}/auth_results", problems)
    return problems
