"""The exercise checks of the providers' lesson.

Holds :func:`judge_client_settings` (host, port and TLS mode of a provider's service, from
the table) and :func:`judge_lab_pairing` (a lab port and TLS mode, tried for real), with
their check cells. Part of :mod:`labsupport.teach.providers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core.errors import LabError
from .providers_lab import LAB_ROLES, try_pairing
from .providers_rules import SERVICES, WELL_KNOWN, _port_number, pairing, service_name, tls_mode
from .providers_table import ProviderTable
from .verdicts import Verdict, answer_of, report

if TYPE_CHECKING:
    from ..lab.lab import Lab


# -- exercise checks ----------------------------------------------------------------------


def _answer_fields(value: Any, keys: tuple[str, ...], example: str) -> dict[str, Any] | Verdict:
    if not isinstance(value, Mapping):
        return Verdict("wrong", f"the answer should be a dict like {example}.")
    missing = [k for k in keys if value.get(k) in (None, "", Ellipsis)]
    if missing:
        return Verdict("wrong", f"the answer lacks {', '.join(missing)}: give a dict like "
                       f"{example}.")
    return dict(value)


def judge_client_settings(answer: Any, table: ProviderTable, provider: str,
                          service: str = "submission") -> Verdict:
    """Exercise: host, port and TLS mode for ``provider``'s ``service``.

    The answer is a dict ``{"host": ..., "port": ..., "tls": ...}``; it is right when it
    matches any documented row (host in any case; the mode written loosely, "SSL" or
    "TLS" for implicit TLS). A wrong answer gets a hint naming the part that is wrong.
    """
    svc = service_name(service)
    rows = list(table.for_provider(provider, svc))
    if not rows:
        raise LabError(f"the table has no {svc} setting for {provider}")
    name = rows[0].provider
    example = "{'host': 'smtp.example.com', 'port': 587, 'tls': 'STARTTLS'}"
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: which host, port and TLS mode does "
                       f"{name} document for {SERVICES[svc]}? Answer like {example}.")
    fields = _answer_fields(value, ("host", "port", "tls"), example)
    if isinstance(fields, Verdict):
        return fields
    host = str(fields["host"]).strip().rstrip(".").lower()
    try:
        port = _port_number(fields["port"])
        mode = tls_mode(fields["tls"])
    except LabError as exc:
        return Verdict("wrong", f"{exc}.")
    hosts = sorted({r.host for r in rows})
    if host not in hosts:
        return Verdict("wrong", f"{host!r} is not the {svc} host {name} documents. Hint: "
                       f"look at table.for_provider({name!r}, {svc!r}), or the provider's "
                       "page in the source column.")
    documented = [r for r in rows if r.host == host]
    if any(r.port == port and r.tls == mode for r in documented):
        return Verdict("right", f"right: {name} documents {host}:{port} with {mode} for "
                       f"{SERVICES[svc]}.")
    verdict = pairing(port, mode, svc)
    if not verdict.ok:
        return Verdict("wrong", f"the host is right, but {verdict.summary}.")
    ways = f"{len(documented)} way{'s' if len(documented) != 1 else ''}"
    return Verdict("wrong", f"the host is right and {port} with {mode} is a valid pair, "
                   f"but {name} does not document it for {host}, so its server may not "
                   f"listen there. Hint: {name} documents {ways} in; read its rows with "
                   f"table.for_provider({name!r}, {svc!r}).")


def check_client_settings(answer: Any, table: ProviderTable, provider: str,
                          service: str = "submission") -> None:
    """Check cell for :func:`judge_client_settings`."""
    report(judge_client_settings(answer, table, provider, service))


def judge_lab_pairing(answer: Any, lab: Lab, timeout: float = 1.0) -> Verdict:
    """Exercise: a lab port and TLS mode that send through the lab's submission service.

    The answer is ``{"port": <a port of the running lab>, "tls": ...}``. The check tries
    it for real (:func:`try_pairing`): right when the dialogue works on one of the two
    submission roles.
    """
    example = "{'port': lab.smtp.port('submission'), 'tls': 'STARTTLS'}"
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: which of the lab's ports, with which "
                       f"TLS mode, takes your mail? Answer like {example}.")
    fields = _answer_fields(value, ("port", "tls"), example)
    if isinstance(fields, Verdict):
        return fields
    try:
        port = _port_number(fields["port"])
        mode = tls_mode(fields["tls"])
    except LabError as exc:
        return Verdict("wrong", f"{exc}.")
    ports = lab.smtp.ports()
    role_of = {number: role for role, number in ports.items()}
    if port not in role_of:
        if port in LAB_ROLES.values():
            return Verdict("wrong", f"{port} is the port on the Internet; the lab listens on "
                           "its own ports on 127.0.0.1. Hint: lab.smtp.port('submission') is "
                           "the one doing 587's job, lab.smtp.port('submissions') 465's.")
        return Verdict("wrong", f"none of the lab's mail roles listens on {port}. Hint: "
                       "lab.smtp.ports() lists them.")
    role = role_of[port]
    if role not in ("submission", "submissions"):
        job = "port 25's job, mail between servers" if role == "mx" else "an insecure demo"
        return Verdict("wrong", f"{port} is the lab's {role} role ({job}), not a submission "
                       "service. Hint: lab.smtp.port('submission') or "
                       "lab.smtp.port('submissions').")
    tried = try_pairing(lab, role, mode, timeout=timeout)
    if tried.worked:
        return Verdict("right", f"right: {port} with {mode} works: {tried.summary}.")
    expected = WELL_KNOWN[LAB_ROLES[role]].tls
    return Verdict("wrong", f"{port} with {mode} does not work: {tried.summary}. Hint: this "
                   f"is the lab's {role} role, which does port {LAB_ROLES[role]}'s job and "
                   f"speaks {expected}.")


def check_lab_pairing(answer: Any, lab: Lab, timeout: float = 1.0) -> None:
    """Check cell for :func:`judge_lab_pairing`."""
    report(judge_lab_pairing(answer, lab, timeout))
