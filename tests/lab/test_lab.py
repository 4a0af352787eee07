"""labsupport.lab.lab and labsupport.lab.control: starting, stopping, state directories, the
journal of zone edits, the default resolver and the control channel."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dns.resolver
import pytest
from lab_helpers import Served

import labsupport
import labsupport.lab.lab as labmod
from labsupport import control
from labsupport.core.errors import LabError, LabNotRunning, StateDirBusy
from labsupport.dns.nameserver import free_port_pair
from labsupport.lab.lab import Lab
from labsupport.lab.statedir import RUNTIME_FILE, StateLock, labs_home, read_runtime, running_labs


@pytest.fixture
def own_lab(tmp_path: Path) -> Iterator[Lab]:
    """A second lab, on its own state directory, stopped after the test."""
    started = labsupport.start(tmp_path / "own")
    yield started
    started.stop()


def mx_target(lab: Lab, domain: str) -> str:
    return lab.zones.resolve(domain, "MX")[0].exchange.to_text()


# -- starting ------------------------------------------------------------------------------


def test_start_is_idempotent_within_a_process(lab: Lab) -> None:
    assert labsupport.start(lab.state_dir) is lab
    assert labsupport.start(str(lab.state_dir)) is lab
    assert labsupport.start() is lab  # no state dir: the lab this process runs
    assert labsupport.current() is lab
    assert lab.running


def test_a_second_lab_gets_other_ports(lab: Lab, own_lab: Lab) -> None:
    assert own_lab is not lab
    assert own_lab.dns.port != lab.dns.port
    assert read_runtime(own_lab.state_dir)["control"]["port"] != (
        read_runtime(lab.state_dir)["control"]["port"])
    assert own_lab.query("northwind.test", "MX").rcode == "NOERROR"
    # Each lab has its own zones: an edit in one is not seen by the other.
    own_lab.zones.set("careless.test", "MX", "10 server.careless.test.")
    assert mx_target(own_lab, "careless.test") == "server.careless.test."
    assert mx_target(lab, "careless.test") == "mail.careless.test."


def test_a_state_dir_held_by_another_process_is_busy(served: Served) -> None:
    with pytest.raises(StateDirBusy, match="another lab is running on"):
        labsupport.start(served.state_dir)
    assert served.state_dir.resolve() not in labmod._RUNNING
    # The failed start left the other lab alone: its runtime file is still there.
    assert read_runtime(served.state_dir)["pid"] == served.proc.pid


def test_no_state_dir_falls_back_to_lab_2(served: Served, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setenv("MAIL_LABS_HOME", str(served.home))
    monkeypatch.setattr(labmod, "_RUNNING", {})  # hide the session's labs in this process
    second = labsupport.start()
    try:
        assert second.state_dir == served.home / "lab-2"
        assert second.running and second.dns.port != served.port
        assert sorted(running_labs()) == [served.home / "lab", served.home / "lab-2"]
    finally:
        second.stop()
    assert labmod._RUNNING == {}
    assert running_labs() == [served.home / "lab"]


def test_labs_home_follows_the_environment(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("MAIL_LABS_HOME", str(tmp_path / "home"))
    assert labs_home() == tmp_path / "home"
    assert running_labs() == []  # the folder does not even exist


# -- stopping ------------------------------------------------------------------------------


def test_stop_releases_the_lock_and_removes_lab_json(tmp_path: Path) -> None:
    state = tmp_path / "state"
    started = labsupport.start(state)
    runtime = state / RUNTIME_FILE
    assert runtime.exists()
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o600  # it holds the control token
    assert not StateLock(state).is_free()
    started.stop()
    assert not started.running
    assert not runtime.exists()
    assert StateLock(state).is_free()
    assert state.resolve() not in labmod._RUNNING
    with pytest.raises(LabNotRunning):
        read_runtime(state)
    pending = _nothing()
    with pytest.raises(LabError, match="not running"):
        started.run_coroutine(pending)
    pending.close()
    again = labsupport.start(state)  # the same directory can be used again at once
    try:
        assert again is not started and again.running
    finally:
        again.stop()


async def _nothing() -> int:
    return 42


def test_run_coroutine_runs_on_the_labs_loop(lab: Lab) -> None:
    assert lab.run_coroutine(_nothing()) == 42


# -- the journal of zone edits -------------------------------------------------------------


def test_zone_edits_survive_a_restart_and_reset_clears_them(tmp_path: Path) -> None:
    state = tmp_path / "journal"
    first = labsupport.start(state)
    first.zones.set("careless.test", "MX", "10 server.careless.test.")
    first.zones.add("www.northwind.test", "TXT", "v=spf1 -all")
    first.zones.set("campus.test", "MX", "10 mx-a.campus.test.")
    first.zones.reset("campus.test")
    first.stop()

    second = labsupport.start(state)
    try:
        assert mx_target(second, "careless.test") == "server.careless.test."
        assert second.zones.resolve("www.northwind.test", "TXT")[0].strings == (b"v=spf1 -all",)
        assert len(second.zones.resolve("campus.test", "MX")) == 2
        assert second.mx("careless.test").problems == []  # the server sees it too
        second.reset()
        assert mx_target(second, "careless.test") == "mail.careless.test."
    finally:
        second.stop()

    third = labsupport.start(state)
    try:
        assert mx_target(third, "careless.test") == "mail.careless.test."
        with pytest.raises(dns.resolver.NoAnswer):
            third.zones.resolve("www.northwind.test", "TXT")
    finally:
        third.stop()


def test_journal_lines_that_no_longer_fit_are_dropped(tmp_path: Path) -> None:
    state = tmp_path / "old-journal"
    state.mkdir(mode=0o700)
    journal = state / "dns-edits.jsonl"
    journal.write_text(
        '{"op": "add", "name": "gone.example.org", "type": "A", "values": ["192.0.2.1"]}\n'
        "not json\n"
        '{"op": "add", "name": "new.northwind.test", "type": "A", "values": ["192.0.2.7"]}\n',
        encoding="utf-8")
    journal.chmod(0o600)  # as the lab writes it (an open one is tightened, with a warning)
    started = labsupport.start(state)
    try:
        assert started.zones.resolve("new.northwind.test", "A")[0].address == "192.0.2.7"
    finally:
        started.stop()


# -- what students use ---------------------------------------------------------------------


def test_use_as_default_resolver_and_stop_restores_it(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    previous = dns.resolver.Resolver(configure=False)
    monkeypatch.setattr(dns.resolver, "default_resolver", previous)
    started = labsupport.start(tmp_path / "resolver")
    try:
        assert started.use_as_default_resolver() is started.resolver
        answer = dns.resolver.resolve("northwind.test", "MX")
        assert sorted(r.preference for r in answer) == [10, 20]
        assert answer.nameserver == "127.0.0.1" and answer.port == started.dns.port
    finally:
        started.stop()
    assert dns.resolver.default_resolver is previous


def test_use_as_default_resolver_works_without_resolv_conf(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An offline machine may have no /etc/resolv.conf: dnspython cannot build its own
    # default resolver there, and the lab must not need it to.
    def no_configuration(self, *_args):
        raise dns.resolver.NoResolverConfiguration("no /etc/resolv.conf here")

    monkeypatch.setattr(dns.resolver.Resolver, "read_resolv_conf", no_configuration)
    monkeypatch.setattr(dns.resolver, "default_resolver", None)
    started = labsupport.start(tmp_path / "offline")
    try:
        started.use_as_default_resolver()
        assert len(dns.resolver.resolve("campus.test", "MX")) == 2
    finally:
        started.stop()
    assert dns.resolver.default_resolver is None


def test_info_has_the_documented_keys(lab: Lab) -> None:
    info = lab.info()
    assert set(info) == {"dns", "state_dir", "pid", "zones", "clock",
                                "smtp", "ca_file", "accounts", "mta_sts", "imap"}
    assert info["dns"] == {"host": "127.0.0.1", "port": lab.dns.port}
    assert info["state_dir"] == str(lab.state_dir)
    assert info["pid"] == os.getpid()
    assert "northwind.test" in info["zones"] and "2.0.192.in-addr.arpa" in info["zones"]
    assert datetime.fromisoformat(info["clock"]).tzinfo is not None
    assert set(info["smtp"]) >= {"mx", "submission", "submissions"}
    assert all(role["host"] == "127.0.0.1" and role["port"] > 0
               for role in info["smtp"].values() if role)
    assert os.path.exists(info["ca_file"])
    assert {"address", "password"} <= set(info["accounts"][0])
    assert json.loads(json.dumps(info)) == info


def test_runtime_file_says_how_to_reach_the_lab(lab: Lab) -> None:
    runtime = read_runtime(lab.state_dir)
    assert runtime["dns"]["port"] == lab.dns.port
    assert runtime["control"]["port"] > 0 and len(runtime["control"]["token"]) >= 24


def test_renderings_name_the_port(lab: Lab) -> None:
    command = f"dig @127.0.0.1 -p {lab.dns.port} northwind.test MX"
    assert lab.dig_command("northwind.test", "MX") == command
    assert lab.dig_command("pool.mailcloud.example", tcp=True).endswith(" A +tcp")
    assert command in str(lab) and command in lab._repr_html_()
    assert f"127.0.0.1:{lab.dns.port}" in repr(lab) and "running" in repr(lab)


def test_lab_query_and_mx(lab: Lab) -> None:
    assert lab.query("northwind.test", "MX").answers
    assert lab.mx("northwind.test").order == ["mx1.northwind.test", "mx2.northwind.test"]


def test_reset_puts_everything_back(clean_lab: Lab) -> None:
    lab = clean_lab
    called: list[bool] = []
    lab.on_reset(lambda: called.append(True))
    try:
        lab.zones.set("careless.test", "MX", "10 server.careless.test.")
        lab.zones.fail("campus.test", "servfail")
        lab.clock.freeze(at=0)
        lab.query("northwind.test", "MX")
        lab.reset()
        assert mx_target(lab, "careless.test") == "mail.careless.test."
        assert len(lab.zones.resolve("campus.test", "MX")) == 2
        assert not lab.clock.frozen and lab.clock.time() > 1e9
        assert len(lab.dns.log) == 0
        assert called == [True]
        assert not (lab.state_dir / "dns-edits.jsonl").exists()
    finally:
        lab._resetters.remove(lab._resetters[-1])


# -- the control channel -------------------------------------------------------------------


def test_control_call_runs_commands(lab: Lab) -> None:
    status = control.call(lab.state_dir, "status")
    assert status["dns"] == lab.info()["dns"] and status["pid"] == os.getpid()
    lab.add_command("echo", lambda text="": text.upper())
    try:
        assert control.call(lab.state_dir, "echo", text="hello") == "HELLO"
    finally:
        del lab.commands["echo"]


def test_control_call_with_a_wrong_token_fails(lab: Lab, tmp_path: Path) -> None:
    forged = read_runtime(lab.state_dir)
    forged["control"]["token"] = "not-the-token"
    (tmp_path / RUNTIME_FILE).write_text(json.dumps(forged), encoding="utf-8")
    with pytest.raises(LabError, match="wrong or missing token"):
        control.call(tmp_path, "status")


def test_control_call_errors_come_back_as_lab_errors(lab: Lab) -> None:
    with pytest.raises(LabError, match="unknown command 'fly'; known: .*status"):
        control.call(lab.state_dir, "fly")
    with pytest.raises(LabError, match="unexpected keyword argument"):
        control.call(lab.state_dir, "status", verbose=True)

    def broken() -> None:
        raise KeyError("a bug in a command")

    lab.add_command("broken", broken)
    try:
        # An unexpected exception still gets a reply that says what happened.
        with pytest.raises(LabError, match="could not run 'broken': KeyError"):
            control.call(lab.state_dir, "broken")
    finally:
        del lab.commands["broken"]
    assert control.call(lab.state_dir, "status")["pid"] == os.getpid()


def test_control_call_without_a_lab(tmp_path: Path) -> None:
    with pytest.raises(LabNotRunning, match="no running lab"):
        control.call(tmp_path, "status")
    stale = {"control": {"port": free_port_pair(), "token": "x"}}  # nobody listens there
    (tmp_path / RUNTIME_FILE).write_text(json.dumps(stale), encoding="utf-8")
    with pytest.raises(LabNotRunning, match="does not answer"):
        control.call(tmp_path, "status", timeout=5)


def test_missing_course_data_is_explained(tmp_path) -> None:
    from labsupport.core.errors import LabError
    from labsupport.lab.lab import Lab

    with pytest.raises(LabError, match="MAIL_LABS_DATA"):
        Lab(tmp_path / "state", data_dir=tmp_path / "nowhere")
