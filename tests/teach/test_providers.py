"""Providers' client settings and the port/TLS pairing rules (labsupport/teach/providers.py):
the table in data/providers, pairing() against the RFCs, the exercise checks, the real
connections to the running lab, and the explorer widget."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest

import labsupport
from labsupport import providers, widgets
from labsupport.core.errors import CheckFailed, LabError
from labsupport.teach.providers import IMPLICIT_TLS, STARTTLS, ClientSetting, ProviderTable

HEADER = "provider,service,host,port,tls,auth,source,checked,notes\n"
GOOD = ("Example,submission,smtp.example.com,587,STARTTLS,an app password,"
        "https://example.com/help,2026-11-28,\n")


@pytest.fixture(scope="module")
def table() -> ProviderTable:
    return providers.load()


# -- the table ----------------------------------------------------------------------------


def test_the_table_loads_and_every_row_is_complete(table: ProviderTable) -> None:
    assert len(table) >= 14
    assert {"Gmail", "Outlook.com", "Microsoft 365", "Fastmail"} <= set(table.providers())
    for setting in table:
        assert setting.service in ("submission", "imap"), setting
        assert setting.tls in (STARTTLS, IMPLICIT_TLS), setting
        assert setting.source.startswith("https://"), setting
        assert setting.checked == "2026-11-28", setting
        assert setting.auth and setting.host == setting.host.lower(), setting
        assert setting.line >= 2
    for name in table.providers():
        services = {s.service for s in table.for_provider(name)}
        assert services == {"submission", "imap"}, name


def test_gmail_documents_both_submission_ports(table: ProviderTable) -> None:
    gmail = {(s.port, s.tls) for s in table.for_provider("gmail", "submission")}
    assert gmail == {(465, IMPLICIT_TLS), (587, STARTTLS)}
    assert table.for_provider("GMAIL", "imap").settings[0].host == "imap.gmail.com"


@pytest.mark.parametrize("row", providers.load().settings, ids=lambda s: f"{s.provider}-{s.port}")
def test_every_documented_setting_is_a_valid_pair(row: ClientSetting) -> None:
    verdict = providers.pairing(row.port, row.tls, row.service)
    assert verdict.ok, f"line {row.line}: {verdict.summary}"
    assert verdict.verdict == "match"


def test_the_table_renders_with_its_date(table: ProviderTable) -> None:
    text = str(table)
    assert "smtp.gmail.com" in text and "As documented on 2026-11-28" in text
    page = table._repr_html_()
    assert page.startswith("<table>") and "providers change their settings" in page
    assert page.count("<tr>") == len(table) + 1


def test_an_unknown_provider_is_named_with_the_known_ones(table: ProviderTable) -> None:
    with pytest.raises(LabError, match="no provider called 'Hotmale'.*Gmail"):
        table.for_provider("Hotmale")


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("bad", "message"), [
    (GOOD.replace(",587,", ",abc,"), "line 3: port 'abc' is not a whole number"),
    (GOOD.replace(",587,", ",70000,"), "line 3: port '70000' is not a whole number from 1"),
    (GOOD.replace(",587,", ",0,"), "line 3: port '0'"),
    (GOOD.replace("STARTTLS", "SSL"), "line 3: tls 'SSL' must be exactly"),
    (GOOD.replace("submission", "smtp"), "line 3: service 'smtp' is not one of"),
    (GOOD.replace("smtp.example.com", ""), "line 3: the host column is empty"),
    (GOOD.replace("smtp.example.com", "smtp example"), "line 3: host 'smtp example'"),
    (GOOD.replace("https://", "http://"), "line 3: source"),
    (GOOD.replace("2026-11-28", "yesterday"), "line 3: checked 'yesterday'"),
    (GOOD.replace("an app password", "app, password"), "line 3: more fields than the header"),
])
def test_a_bad_row_names_its_line(tmp_path: Path, bad: str, message: str) -> None:
    path = _csv(tmp_path, HEADER + GOOD + bad)
    with pytest.raises(LabError, match=message):
        providers.load(path)


def test_a_good_file_of_ones_own_loads(tmp_path: Path) -> None:
    loaded = providers.load(_csv(tmp_path, HEADER + GOOD))
    assert [(s.provider, s.port, s.tls, s.line) for s in loaded] == [
        ("Example", 587, STARTTLS, 2)]


def test_a_file_without_rows_or_columns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="has a header but no rows"):
        providers.load(_csv(tmp_path, HEADER))
    with pytest.raises(LabError, match="line 1: the header lacks the column.*tls"):
        providers.load(_csv(tmp_path, "provider,service,host,port,auth,source\n"))
    with pytest.raises(LabError, match="cannot read the provider table"):
        providers.load(tmp_path / "missing.csv")


# -- pairing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("port", "tls", "service", "rfc"), [
    (587, "STARTTLS", "submission", "RFC 6409 section 3.1"),
    (465, "implicit TLS", "submission", "RFC 8314 section 3.3"),
    (143, "starttls", "imap", "RFC 9051 section 6.2.1"),
    (993, "SSL", "imap", "RFC 8314 section 3.2"),
    (110, "STARTTLS", "pop3", "RFC 2595 section 4"),
    (995, "ssl/tls", "pop3", "RFC 8314 section 3.1"),
])
def test_the_pairs_the_rfcs_define(port: int, tls: str, service: str, rfc: str) -> None:
    verdict = providers.pairing(port, tls, service)
    assert (verdict.ok, verdict.verdict) == (True, "match")
    assert rfc in verdict.why
    assert "RFC 8314 section 3" in verdict.why  # which mode RFC 8314 recommends


def test_starttls_on_an_implicit_port_times_out() -> None:
    verdict = providers.pairing(465, "STARTTLS")
    assert (verdict.ok, verdict.verdict) == (False, "mismatch")
    assert "465 is implicit TLS" in verdict.summary and "times out" in verdict.summary
    assert "ClientHello" in verdict.summary and "RFC 8314 section 3.3" in verdict.why
    assert "Fix: 465 with implicit TLS, or 587" in verdict.why


def test_implicit_tls_on_a_starttls_port_reads_the_plaintext_greeting() -> None:
    verdict = providers.pairing(587, "tls")
    assert (verdict.ok, verdict.verdict) == (False, "mismatch")
    assert "'220 ...'" in verdict.summary and "wrong version number" in verdict.summary
    imap = providers.pairing(143, "implicit", "imap")
    assert not imap.ok and "'* OK ...'" in imap.summary
    assert "times out" in providers.pairing(993, "STARTTLS", "imap").summary


def test_port_25_is_relay_not_submission() -> None:
    verdict = providers.pairing(25, "STARTTLS")
    assert (verdict.ok, verdict.verdict) == (False, "relay port")
    assert "mail servers relay to each other" in verdict.summary
    assert "RFC 6409 section 3.1" in verdict.why and "RFC 5321" in verdict.why
    assert "wrong version number" in providers.pairing(25, "SSL").why


def test_a_port_of_another_service_or_no_service() -> None:
    verdict = providers.pairing(993, "implicit TLS", "submission")
    assert (verdict.ok, verdict.verdict) == (False, "wrong service")
    assert "use 465 for submission" in verdict.summary
    assert providers.pairing(2525, "STARTTLS").verdict == "unknown port"
    assert not providers.pairing(2525, "STARTTLS").ok


def test_pairing_renders_as_text_and_html() -> None:
    verdict = providers.pairing(465, "STARTTLS")
    assert str(verdict).startswith("Port 465 with STARTTLS for submission: mismatch")
    page = verdict._repr_html_()
    assert "mismatch" in page and "[RFC 8314 section 3.3]" in page
    assert page == providers.pairing_html(465, "STARTTLS")


@pytest.mark.parametrize(("said", "mode"), [
    ("SSL", IMPLICIT_TLS), ("ssl/tls", IMPLICIT_TLS), ("TLS", IMPLICIT_TLS),
    ("implicit", IMPLICIT_TLS), ("Implicit TLS", IMPLICIT_TLS), ("starttls", STARTTLS),
    (" STARTTLS ", STARTTLS), ("explicit TLS", STARTTLS),
])
def test_tls_modes_written_loosely(said: str, mode: str) -> None:
    assert providers.tls_mode(said) == mode


@pytest.mark.parametrize(("args", "message"), [
    ((0, "STARTTLS"), "TCP ports go from 1 to 65535"),
    (("five", "STARTTLS"), "'five' is not a port number"),
    ((587, "maybe"), "'maybe' is not a TLS mode"),
    ((587, "STARTTLS", "ftp"), "'ftp' is not a service"),
])
def test_pairing_refuses_what_it_cannot_judge(args: tuple, message: str) -> None:
    with pytest.raises(LabError, match=message):
        providers.pairing(*args)


# -- explain ------------------------------------------------------------------------------


@pytest.mark.parametrize("row", providers.load().settings, ids=lambda s: f"{s.provider}-{s.port}")
def test_explain_mentions_each_field(row: ClientSetting) -> None:
    text = providers.explain(row)
    for part in (f"host {row.host}", f"port {row.port}", f"tls {row.tls}",
                 f"auth: {row.auth}", row.source):
        assert part in text, part
    assert "Together: " in text


def test_explain_says_why_not_the_account_password(table: ProviderTable) -> None:
    gmail = providers.explain(table.for_provider("Gmail", "submission").settings[0])
    assert "the program never sees your password" in gmail  # OAuth 2.0
    assert "revoke it alone" in gmail  # app password
    fastmail = providers.explain(table.for_provider("Fastmail", "imap").settings[0])
    assert "revoke it alone" in fastmail and "OAuth" not in fastmail
    odd = ClientSetting("Odd", "submission", "smtp.odd.example", 2525, STARTTLS,
                        "the account password", "https://odd.example")
    text = providers.explain(odd)
    assert "not a port the RFCs assign" in text and "whoever reads it" in text


# -- the exercise: a provider's settings --------------------------------------------------


@pytest.mark.parametrize("answer", [
    {"host": "SMTP.Gmail.com", "port": 465, "tls": "SSL"},
    {"host": "smtp.gmail.com.", "port": "587", "tls": "starttls"},
    {"host": "smtp.gmail.com", "port": 465, "tls": "implicit"},
])
def test_client_settings_right(table: ProviderTable, answer: dict) -> None:
    verdict = providers.judge_client_settings(answer, table, "Gmail")
    assert verdict.status == "right", verdict


def test_client_settings_for_reading(table: ProviderTable) -> None:
    answer = {"host": "imap.gmail.com", "port": 993, "tls": "TLS"}
    assert providers.judge_client_settings(answer, table, "gmail", "imap").right
    verdict = providers.judge_client_settings(answer, table, "gmail")  # not for sending
    assert verdict.status == "wrong" and "not the submission host" in verdict.message


@pytest.mark.parametrize(("provider", "answer", "hint"), [
    ("Gmail", {"host": "smtp.google.com", "port": 587, "tls": "STARTTLS"},
     "'smtp.google.com' is not the submission host Gmail documents"),
    ("Gmail", {"host": "smtp.gmail.com", "port": 465, "tls": "STARTTLS"},
     "the host is right, but 465 is implicit TLS"),
    ("Gmail", {"host": "smtp.gmail.com", "port": 587, "tls": "SSL"},
     "the host is right, but 587 starts in clear"),
    ("Gmail", {"host": "smtp.gmail.com", "port": 25, "tls": "STARTTLS"},
     "25 is where mail servers relay"),
    ("Fastmail", {"host": "smtp.fastmail.com", "port": 587, "tls": "STARTTLS"},
     "is a valid pair, but Fastmail does not document it"),
    ("Gmail", {"host": "smtp.gmail.com", "port": 587, "tls": "maybe"}, "not a TLS mode"),
    ("Gmail", {"host": "smtp.gmail.com", "port": 587}, "the answer lacks tls"),
    ("Gmail", "smtp.gmail.com:587", "should be a dict"),
])
def test_client_settings_wrong_with_a_hint(table: ProviderTable, provider: str, answer: object,
                                           hint: str) -> None:
    verdict = providers.judge_client_settings(answer, table, provider)
    assert verdict.status == "wrong"
    assert hint in verdict.message


def test_client_settings_not_answered_yet(table: ProviderTable) -> None:
    def placeholder() -> dict:
        raise NotImplementedError

    for answer in (None, placeholder, lambda: undefined_name):  # type: ignore[name-defined]  # noqa: F821
        verdict = providers.judge_client_settings(answer, table, "Gmail")
        assert verdict.status == "unanswered"
        assert "Gmail" in verdict.message


def test_check_client_settings_reports(table: ProviderTable,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    providers.check_client_settings({"host": "smtp.mailbox.org", "port": 465, "tls": "SSL/TLS"},
                                    table, "mailbox.org")
    assert "right" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="465 is implicit TLS"):
        providers.check_client_settings(
            {"host": "smtp.mailbox.org", "port": 465, "tls": "STARTTLS"}, table, "mailbox.org")
    with pytest.raises(LabError, match="no provider called"):
        providers.judge_client_settings({}, table, "Nobody")


# -- trying pairs against the running lab --------------------------------------------------


def test_starttls_on_the_starttls_listener_works(lab: labsupport.Lab) -> None:
    tried = providers.try_pairing(lab, "submission", "STARTTLS")
    assert (tried.worked, tried.verdict, tried.acts_as) == (True, "works", 587)
    assert tried.port == lab.smtp.port("submission")
    assert tried.seen[0].startswith("S: 220 smtp.lab.test")
    assert "C: STARTTLS" in tried.seen and "S: 250-STARTTLS" in tried.seen
    assert any(line.startswith("TLS started: TLSv1") for line in tried.seen)
    assert tried.seen[-1].startswith("S: 221")  # QUIT was answered


def test_implicit_tls_on_the_implicit_listener_works(lab: labsupport.Lab) -> None:
    tried = providers.try_pairing(lab, "submissions", "SSL")
    assert (tried.worked, tried.verdict, tried.acts_as) == (True, "works", 465)
    assert tried.seen[0] == "C: TLS ClientHello"
    assert tried.seen[1].startswith("TLS started: TLSv1")
    assert tried.seen[2].startswith("S: 220 smtp.lab.test")  # the greeting came inside TLS
    assert "C: STARTTLS" not in tried.seen


def test_starttls_on_the_implicit_listener_times_out(lab: labsupport.Lab) -> None:
    tried = providers.try_pairing(lab, "submissions", "STARTTLS", timeout=0.5)
    assert (tried.worked, tried.verdict) == (False, "timeout")
    assert "no greeting within 0.5 s" in tried.summary
    assert "ClientHello" in tried.summary
    assert not any(line.startswith("S:") for line in tried.seen)


def test_implicit_tls_on_the_starttls_listener_fails_the_handshake(lab: labsupport.Lab) -> None:
    tried = providers.try_pairing(lab, "submission", "implicit TLS")
    assert (tried.worked, tried.verdict) == (False, "tls error")
    assert "the TLS handshake failed" in tried.summary
    assert "'220 smtp.lab.test" in tried.summary  # what the plaintext bytes were
    assert "starts in clear" in tried.summary


def test_try_pairing_renders_and_takes_conventional_ports(lab: labsupport.Lab) -> None:
    tried = providers.try_pairing(lab, 587, "STARTTLS")
    assert tried.role == "submission"
    assert str(tried).startswith(f"127.0.0.1:{tried.port} (the lab's submission role, port "
                                 "587's job) with STARTTLS: works")
    assert "S: 220 2.0.0" in tried._repr_html_()
    with pytest.raises(LabError, match="'imap' is not one of the lab's mail roles"):
        providers.try_pairing(lab, "imap", "STARTTLS")


def test_try_pairing_leaves_no_socket_open(lab: labsupport.Lab) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for role in ("submission", "submissions"):
            for mode in (STARTTLS, IMPLICIT_TLS):
                providers.try_pairing(lab, role, mode, timeout=0.3)
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)
             and "laddr=('127.0.0.1'" in str(w.message)]
    assert leaks == []


# -- the exercise: the lab's own submission service ----------------------------------------


def test_lab_pairing_right_both_ways(lab: labsupport.Lab) -> None:
    for role, tls in (("submission", "STARTTLS"), ("submissions", "SSL")):
        answer = {"port": lab.smtp.port(role), "tls": tls}
        verdict = providers.judge_lab_pairing(answer, lab)
        assert verdict.status == "right", verdict


def test_lab_pairing_wrong_mode_is_tried_and_explained(lab: labsupport.Lab) -> None:
    verdict = providers.judge_lab_pairing(
        {"port": lab.smtp.port("submission"), "tls": "implicit TLS"}, lab)
    assert verdict.status == "wrong"
    assert "wrong version number" in verdict.message or "handshake failed" in verdict.message
    assert "speaks STARTTLS" in verdict.message
    verdict = providers.judge_lab_pairing(
        {"port": lab.smtp.port("submissions"), "tls": "STARTTLS"}, lab, timeout=0.5)
    assert verdict.status == "wrong" and "speaks implicit TLS" in verdict.message


@pytest.mark.parametrize(("port_of", "hint"), [
    (lambda lab: 587, "is the port on the Internet"),
    (lambda lab: lab.smtp.port("mx"), "is the lab's mx role"),
    (lambda lab: 1, "none of the lab's mail roles listens on 1"),
])
def test_lab_pairing_wrong_port(lab: labsupport.Lab, port_of, hint: str) -> None:  # type: ignore[no-untyped-def]
    verdict = providers.judge_lab_pairing({"port": port_of(lab), "tls": "STARTTLS"}, lab)
    assert verdict.status == "wrong" and hint in verdict.message


def test_lab_pairing_unanswered_and_check(lab: labsupport.Lab,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert providers.judge_lab_pairing(None, lab).status == "unanswered"
    assert providers.judge_lab_pairing({"port": "x", "tls": "TLS"}, lab).status == "wrong"
    providers.check_lab_pairing({"port": lab.smtp.port("submission"), "tls": "starttls"}, lab)
    assert "right" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="is the lab's mx role"):
        providers.check_lab_pairing({"port": lab.smtp.port("mx"), "tls": "starttls"}, lab)


# -- presentation -------------------------------------------------------------------------


def test_settings_html_explains_one_provider(table: ProviderTable) -> None:
    page = providers.settings_html(table, "Zoho Mail", "submission")
    assert page.count("smtp.zoho.com") >= 2 and "imap.zoho.com" not in page
    assert page.count("<pre") == 2  # one explanation for each documented way in


def test_the_explorer_builds_and_reacts(table: ProviderTable) -> None:
    pytest.importorskip("ipywidgets")
    panel = widgets.provider_explorer(table)
    controls, views = panel.controls, panel.views
    assert controls["provider"].value == "Gmail"
    assert "smtp.gmail.com" in views["settings"].value
    assert "match" in views["pairing"].value  # 587 with STARTTLS
    controls["provider"].value = "Fastmail"
    assert "smtp.fastmail.com" in views["settings"].value
    assert "smtp.gmail.com" not in views["settings"].value
    controls["service"].value = "imap"
    assert "imap.fastmail.com" in views["settings"].value
    assert "wrong service" in views["pairing"].value  # 587 is not for IMAP
    controls["service"].value = "submission"
    controls["port"].value = 465
    assert "mismatch" in views["pairing"].value and "times out" in views["pairing"].value
    controls["tls"].value = IMPLICIT_TLS
    assert "submission: match" in views["pairing"].value
    controls["port"].value = 25
    assert "relay port" in views["pairing"].value
