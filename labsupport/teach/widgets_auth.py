"""The email authentication explorers of the notebooks (ipywidgets), imported only when used.

Holds the DKIM explorer of ``notebooks/05-dkim.ipynb`` (sign, change on the way, verify),
the SPF explorer of ``notebooks/04-spf.ipynb`` and the DMARC alignment explorer of
``notebooks/06-dmarc.ipynb``. Re-exported by :mod:`labsupport.teach.widgets`.
"""

from __future__ import annotations

import html
from typing import Any

from ..core.results import html_table
from ..dns.mx import ResolverLike
from .widgets_core import field_setter

# -- DKIM (notebooks/05-dkim.ipynb) -------------------------------------------------------

_DKIM_SAMPLE = (
    "From: Alice Adams <alice@northwind.test>\n"
    "To: Bob <bob@northwind.test>\n"
    "Subject: Quarterly figures\n"
    "Date: Sat, 28 Nov 2026 10:00:00 +0000\n"
    "Message-ID: <explorer@northwind.test>\n"
    "\n"
    "Hi Bob,\n"
    "the figures are attached.\n"
)


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def dkim_explorer(resolver: ResolverLike, message: str | None = None, *,
                  key: Any = None) -> Any:
    """Sign a message, change it on its way, and watch DKIM verification react.

    The upper box is the message as the signer sends it; it is signed with ``key``
    (by default Northwind's lab key, ``lab2026-rsa``) using the canonicalization and
    signed header fields picked above it. The lower box is the message as it arrives:
    edit it (a word, a space, a folded line, a footer) and the signature made over the
    original is checked against it with ``resolver`` (``lab.zones`` or
    ``lab.resolver``). Shown: the DKIM-Signature, the body hash signed and the one
    computed on arrival, the header data that is hashed (white space made visible), and
    the verdict with its reason.

    The panel has ``result()`` (the :class:`~labsupport.auth.dkim.DKIMVerification`),
    ``signing()`` (the :class:`~labsupport.auth.dkim.DKIMSigning`) and ``controls`` (the
    widgets by name: ``sent``, ``received``, ``header_c``, ``body_c``, ``headers``,
    ``oversign``) for notebooks and tests.
    """
    import ipywidgets as w

    from ..auth.dkim import sign_traced, verify
    from ..auth.dkim_canon import parse_message, show_whitespace
    from ..auth.dkim_keys import lab_key

    key = key if key is not None else lab_key("northwind.test")
    if not key.domain or not key.selector:
        raise ValueError("the key must say where it is published: use key.at(domain, selector)")
    text = message if message is not None else _DKIM_SAMPLE
    text = text.replace("\r\n", "\n")

    def names_in(raw: str) -> list[str]:
        found = [h.name.decode("ascii", "replace").lower()
                 for h in parse_message(_crlf(raw)).headers]
        return list(dict.fromkeys(found))

    wide = w.Layout(width="640px", height="170px")
    sent = w.Textarea(value=text, description="Sent:", continuous_update=False, layout=wide)
    received = w.Textarea(value=text, description="Received:", continuous_update=False,
                          layout=wide)
    header_c = w.ToggleButtons(options=["simple", "relaxed"], value="relaxed",
                               description="Header c=")
    body_c = w.ToggleButtons(options=["simple", "relaxed"], value="relaxed",
                             description="Body c=")
    present = names_in(text)
    headers = w.SelectMultiple(options=present, value=tuple(present), rows=min(6, len(present)),
                               description="Sign (h=):")
    oversign = w.Checkbox(value=True, description="oversign From (one extra 'from' in h=)")
    reset_button = w.Button(description="received = sent", icon="undo",
                            tooltip="undo the changes made on the way")
    verdict_box = w.HTML()
    detail = w.HTML()
    state: dict[str, Any] = {"signing": None, "result": None}

    def block(title: str, body: str) -> str:
        return (f"<div><b>{html.escape(title)}</b><pre style='margin:2px 0 6px 0;padding:2px "
                f"6px;background:#f4f4f4;font-size:85%'>{html.escape(body)}</pre></div>")

    def update(*_args: Any) -> None:
        order = [n for n in headers.options if n in headers.value]
        signing = sign_traced(_crlf(sent.value), domain=key.domain, selector=key.selector,
                              private_key=key, canonicalization=(header_c.value, body_c.value),
                              headers=order, oversign=("from",) if oversign.value else (),
                              trace=False)
        state["signing"] = signing
        if signing.signature_field is None:
            state["result"] = None
            verdict_box.value = (f"<b style='color:#b00020'>not signed</b>: "
                                 f"{html.escape(signing.summary)}")
            detail.value = ""
            return
        result = verify(signing.signature_field + _crlf(received.value), resolver)
        state["result"] = result
        sig = result.signatures[0]
        colour = "#2f6f2f" if sig.passed else "#b00020"
        verdict_box.value = (f"<b style='color:{colour}'>dkim={html.escape(sig.verdict)}</b>: "
                             f"{html.escape(sig.summary)}")
        same = sig.body_hash == signing.body_hash
        rows: list[list[object]] = [
            ["body hash signed (bh=)", signing.body_hash or "-"],
            ["body hash on arrival", sig.body_hash or "-"],
            ["body hashes", "match" if same else "differ"],
        ]
        parts = [html_table(["", ""], rows),
                 block("DKIM-Signature added by the signer",
                       signing.signature_field.decode("utf-8", "replace").rstrip("\r\n")
                       .replace("\r\n", "\n")),
                 block(f"Body as hashed on arrival ({body_c.value})",
                       show_whitespace(sig.canonical_body or b"", max_lines=16)),
                 block(f"Header data hashed on arrival ({header_c.value}; the input of the "
                       "header hash that b= signs)",
                       show_whitespace(sig.canonical_headers or b"(not reached)")),
                 block("Header data the signer hashed",
                       show_whitespace(signing.canonical_headers or b""))]
        detail.value = "".join(parts)

    def sent_changed(*_args: Any) -> None:
        now = names_in(sent.value)
        if list(headers.options) != now:
            chosen = [n for n in now if n in headers.value or n not in headers.options]
            headers.options = now
            headers.value = tuple(chosen)
        received.value = sent.value  # runs update()
        update()

    sent.observe(sent_changed, names="value")
    for control in (received, header_c, body_c, headers, oversign):
        control.observe(update, names="value")
    reset_button.on_click(lambda _b: setattr(received, "value", sent.value))
    update()
    panel = w.VBox([
        w.HBox([header_c, body_c]),
        w.HBox([headers, oversign]),
        sent,
        w.HBox([received, reset_button]),
        verdict_box,
        detail,
    ])
    panel.result = lambda: state["result"]  # type: ignore[attr-defined]
    panel.signing = lambda: state["signing"]  # type: ignore[attr-defined]
    panel.controls = {  # type: ignore[attr-defined]
        "sent": sent, "received": received, "header_c": header_c, "body_c": body_c,
        "headers": headers, "oversign": oversign,
    }
    return panel


# -- SPF (notebooks/04-spf.ipynb) ---------------------------------------------------------


def spf_explorer(zones: Any, domain: str = "northwind.test", ip: str = "192.0.2.10",
                 record: str | None = None) -> Any:
    """Edit an SPF record and a client address: see the verdict and the trace update.

    ``zones`` is the lab's zone set (``lab.zones``). The record is evaluated in a scratch
    copy of it (taken when the explorer opens), so the lab's zones are never changed;
    ``record`` defaults to the one ``domain`` publishes. The sender checked is
    ``postmaster@<domain>``. The panel has ``set(record=..., ip=..., domain=...)`` and
    ``result()`` for notebooks and tests.
    """
    import ipywidgets as w
    from IPython.display import HTML, display

    from ..auth.spf import SPFArgumentError, check_host
    from ..core.errors import LabError
    from .checks import put_spf_record, spf_record_of, spf_scratch_zones

    scratch = spf_scratch_zones(zones)
    domain_box = w.Text(value=domain, description="Domain:", continuous_update=False,
                        layout=w.Layout(width="360px"))
    ip_box = w.Text(value=ip, description="Client IP:", continuous_update=False,
                    layout=w.Layout(width="300px"))
    record_box = w.Textarea(value=record if record is not None
                            else spf_record_of(domain, scratch) or "v=spf1 -all",
                            description="Record:", continuous_update=False,
                            layout=w.Layout(width="95%", height="70px"))
    reset_button = w.Button(description="published record", icon="undo",
                            tooltip="put back the record the domain publishes in the lab")
    status = w.HTML()
    out = w.Output()
    state: dict[str, Any] = {"result": None, "quiet": False}

    def say(text: str, error: bool = False) -> None:
        colour = "#b00020" if error else "#555"
        status.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def show(*_args: Any) -> None:
        if state["quiet"]:
            return
        name = domain_box.value.strip().rstrip(".")
        text = " ".join(record_box.value.split())
        state["result"] = None
        out.clear_output(wait=True)
        try:
            scratch.reset()
            put_spf_record(scratch, name, text)
            result = check_host(ip_box.value.strip(), name, f"postmaster@{name}",
                                resolver=scratch)
        except SPFArgumentError as exc:
            say(f"{exc}", error=True)
            return
        except LabError as exc:
            say(f"The record cannot be tried here: {exc}", error=True)
            return
        state["result"] = result
        say(f"The record is tried in a scratch copy of the lab's zones; "
            f"the lab's {name} is unchanged.")
        with out:
            display(HTML(result._repr_html_()))

    def published(*_args: Any) -> None:
        scratch.reset()
        record_box.value = spf_record_of(domain_box.value.strip(), scratch) or "v=spf1 -all"

    def set_values(record: str | None = None, ip: str | None = None,
                   domain: str | None = None) -> Any:
        state["quiet"] = True
        try:
            if domain is not None:
                domain_box.value = domain
            if ip is not None:
                ip_box.value = ip
            if record is not None:
                record_box.value = record
        finally:
            state["quiet"] = False
        show()
        return state["result"]

    for box in (domain_box, ip_box, record_box):
        box.observe(show, names="value")
    reset_button.on_click(published)
    show()
    panel = w.VBox([w.HBox([domain_box, ip_box, reset_button]), record_box, status, out])
    panel.set = set_values  # type: ignore[attr-defined]
    panel.result = lambda: state["result"]  # type: ignore[attr-defined]
    return panel



# -- DMARC (notebooks/06-dmarc.ipynb) ------------------------------------------------------


def alignment_explorer(zones: Any, from_domain: str = "northwind.test",
                       mail_from_domain: str = "phisher.example",
                       dkim_domain: str = "", aspf: str = "r", adkim: str = "r") -> Any:
    """Type a From domain, a MAIL FROM domain and a DKIM ``d=``; pick relaxed or strict
    alignment for each: see whether each identifier aligns, and the DMARC verdict.

    ``zones`` is the lab's zone set (``lab.zones``); Organizational Domains are found by
    the DNS Tree Walk in an in-memory scratch copy of it (no network, the lab unchanged),
    with :func:`labsupport.teach.checks.alignment_of`: both identifiers are taken to have
    passed SPF and DKIM, so only alignment decides. An empty field means no such
    identifier. The panel has ``set(...)`` (same names as the arguments) and
    ``result()`` for notebooks and tests.
    """
    import ipywidgets as w

    from .checks import alignment_of, dmarc_scratch_zones

    scratch = dmarc_scratch_zones(zones)
    modes = [("relaxed (r)", "r"), ("strict (s)", "s")]
    boxes = {
        "from_domain": w.Text(value=from_domain, description="From:", continuous_update=False),
        "mail_from_domain": w.Text(value=mail_from_domain, description="MAIL FROM:",
                                   continuous_update=False),
        "dkim_domain": w.Text(value=dkim_domain, description="DKIM d=",
                              continuous_update=False, placeholder="(not signed)"),
        "aspf": w.Dropdown(options=modes, value=aspf, description="aspf:"),
        "adkim": w.Dropdown(options=modes, value=adkim, description="adkim:"),
    }
    verdict = w.HTML()
    detail = w.HTML()
    state: dict[str, Any] = {"result": None, "quiet": False}

    def show(*_args: Any) -> None:
        if state["quiet"]:
            return
        author = boxes["from_domain"].value.strip()
        if not author:
            verdict.value = "<i>type a From domain</i>"
            state["result"] = None
            return
        result = alignment_of(author, mail_from_domain=boxes["mail_from_domain"].value.strip()
                              or None, dkim_domain=boxes["dkim_domain"].value.strip() or None,
                              zones=zones, aspf=boxes["aspf"].value,
                              adkim=boxes["adkim"].value, scratch=scratch)
        state["result"] = result
        colour = {"pass": "#2f6f2f", "fail": "#b00020"}.get(result.verdict, "#555")
        verdict.value = (f'<div style="font-size:120%;color:{colour}"><b>DMARC '
                         f"{html.escape(result.verdict)}</b>, disposition "
                         f"{html.escape(result.disposition)}</div>"
                         f"<div>{html.escape(result.summary)}</div>")
        rows: list[list[object]] = [
            ["From (Author Domain)", result.from_domain or "-",
             result.organizational_domain or "-", "", ""]]
        for a in result.alignments:
            rows.append([f"{a.mechanism.upper()} ({'MAIL FROM' if a.mechanism == 'spf' else 'd='})",
                         a.domain, a.organizational_domain or "-", a.mode,
                         ("aligned" if a.aligned else "not aligned") + f": {a.reason}"])
        detail.value = html_table(["identity", "domain", "Organizational Domain", "mode",
                                   "alignment"], rows,
                                  caption="Both identifiers are taken to have passed; "
                                  "found by the DNS Tree Walk in a scratch copy of the "
                                  "lab's zones")

    set_values = field_setter(boxes, state, show)

    for box in boxes.values():
        box.observe(show, names="value")
    show()
    panel = w.VBox([w.HBox([boxes["from_domain"], boxes["mail_from_domain"],
                            boxes["dkim_domain"]]),
                    w.HBox([boxes["aspf"], boxes["adkim"]]), verdict, detail])
    panel.set = set_values  # type: ignore[attr-defined]
    panel.result = lambda: state["result"]  # type: ignore[attr-defined]
    panel.controls = boxes  # type: ignore[attr-defined]
    return panel
