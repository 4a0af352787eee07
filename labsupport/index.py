"""Where each name of labsupport is taught: the index of names to lessons."""

from __future__ import annotations

#: name in ``labsupport`` -> the notebook that introduces it.
LESSONS: dict[str, str] = {
    "start": "00-start-here.ipynb",
    "Lab": "00-start-here.ipynb",
    "LabClock": "00-start-here.ipynb",
    "claim": "00-start-here.ipynb",
    "claim_true": "00-start-here.ipynb",
    "Result": "01-dns-mx.ipynb",
    "ZoneSet": "01-dns-mx.ipynb",
    "DNSServer": "01-dns-mx.ipynb",
    "ask": "01-dns-mx.ipynb",
    "dig": "01-dns-mx.ipynb",
    "mx_hosts": "01-dns-mx.ipynb",
    "order_by_preference": "01-dns-mx.ipynb",
    "plots.mx_spread": "01-dns-mx.ipynb",
    "plots.mx_diagram": "01-dns-mx.ipynb",
    "widgets.mx_explorer": "01-dns-mx.ipynb",
    "SMTPSession": "02-smtp-dialogue.ipynb",
    "Reply": "02-smtp-dialogue.ipynb",
    "Transcript": "02-smtp-dialogue.ipynb",
    "send_mail": "02-smtp-dialogue.ipynb",
    "explain_reply": "02-smtp-dialogue.ipynb",
    "reply_code_table": "02-smtp-dialogue.ipynb",
    "dot_stuff": "02-smtp-dialogue.ipynb",
    "received_chain": "02-smtp-dialogue.ipynb",
    "plots.smtp_sequence": "02-smtp-dialogue.ipynb",
    "widgets.smtp_console": "02-smtp-dialogue.ipynb",
    "widgets.mailbox_viewer": "02-smtp-dialogue.ipynb",
    "capture.capture": "03-starttls-vs-implicit-tls.ipynb",
    "capture.load": "03-starttls-vs-implicit-tls.ipynb",
    "mitm.run_scenario": "03-starttls-vs-implicit-tls.ipynb",
    "authres.parse_authres": "04-spf.ipynb",
    "authres.format_authres": "04-spf.ipynb",
    "spf.check_host": "04-spf.ipynb",
    "spf.spf_verdict": "04-spf.ipynb",
    "spf.parse_record": "04-spf.ipynb",
    "spf.SPFResult": "04-spf.ipynb",
    "widgets.spf_explorer": "04-spf.ipynb",
    "dkim.sign": "05-dkim.ipynb",
    "dkim.sign_traced": "05-dkim.ipynb",
    "dkim.verify": "05-dkim.ipynb",
    "dkim.DKIMResult": "05-dkim.ipynb",
    "dkim.DKIMVerification": "05-dkim.ipynb",
    "dkim.DKIMSigning": "05-dkim.ipynb",
    "dkim.canonicalize_header_simple": "05-dkim.ipynb",
    "dkim.canonicalize_header_relaxed": "05-dkim.ipynb",
    "dkim.canonicalize_body_simple": "05-dkim.ipynb",
    "dkim.canonicalize_body_relaxed": "05-dkim.ipynb",
    "dkim.show_whitespace": "05-dkim.ipynb",
    "dkim.lab_key": "05-dkim.ipynb",
    "dkim.generate_key": "05-dkim.ipynb",
    "dkim.publish": "05-dkim.ipynb",
    "dkim.revoke": "05-dkim.ipynb",
    "dkim.rotate": "05-dkim.ipynb",
    "widgets.dkim_explorer": "05-dkim.ipynb",
    "plots.capture_ladder": "03-starttls-vs-implicit-tls.ipynb",
    "plots.round_trips_chart": "03-starttls-vs-implicit-tls.ipynb",
    "widgets.tls_panel": "03-starttls-vs-implicit-tls.ipynb",
}


def where_taught(name: str) -> str:
    """The notebook that introduces ``name`` (``"mx_hosts"`` -> ``"01-dns-mx.ipynb"``)."""
    try:
        return LESSONS[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in the index; known: {', '.join(sorted(LESSONS))}")\
            from None
