"""labsupport.lab.cli: ``python -m labsupport`` against a running ``serve`` subprocess.

Some commands run as real subprocesses (exit status, stderr, no traceback); the rest
call ``cli.main`` in this process, which drives the same serve subprocess through its
control channel.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_helpers import Served, run_cli, start_serve, stop_serve

from labsupport import cli
from labsupport.lab.statedir import RUNTIME_FILE, StateLock


@pytest.fixture
def run(served: Served, capsys: pytest.CaptureFixture[str]) -> Iterator:
    """``run("mx", "careless.test")`` -> (exit status, stdout, stderr) of cli.main, aimed
    at the serve subprocess; the served lab is reset afterwards."""

    def _run(*args: str) -> tuple[int, str, str]:
        status = cli.main([*args, "--state-dir", str(served.state_dir)])
        out, err = capsys.readouterr()
        return status, out, err

    yield _run
    assert cli.main(["reset", "--state-dir", str(served.state_dir)]) == 0


def test_status_json(served: Served) -> None:
    done = run_cli("status", "--json", "--state-dir", str(served.state_dir), home=served.home)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["dns"]["port"] == served.port and info["pid"] == served.proc.pid
    assert set(info) == {"dns", "state_dir", "pid", "zones", "clock",
                                "smtp", "ca_file", "accounts", "mta_sts", "imap"}


def test_status_finds_the_only_running_lab(served: Served) -> None:
    done = run_cli("status", home=served.home)  # no --state-dir: the only lab in the home
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"running (pid {served.proc.pid}), DNS on 127.0.0.1 port "
                                  f"{served.port}")


def test_fixing_careless_with_dns_set_then_reset(run) -> None:
    status, out, _ = run("mx", "careless.test")
    assert status == 0 and "alias" in out
    status, out, _ = run("dns", "set", "careless.test", "MX", "10 server.careless.test.")
    assert (status, out.strip()) == (0, "done")
    status, out, _ = run("mx", "careless.test")
    assert status == 0
    assert out.startswith("Mail for careless.test: mx\n")
    assert "server.careless.test" in out and "alias" not in out
    status, out, _ = run("reset")
    assert (status, out.strip()) == (0, "the lab is back to its known state")
    status, out, _ = run("mx", "careless.test")
    assert "alias" in out and "mail.careless.test" in out


def test_dns_add_remove_show_and_zone_reset(run) -> None:
    assert run("dns", "add", "northwind.test", "TXT", "v=spf1 -all")[0] == 0
    status, out, _ = run("dns", "show", "northwind.test")
    assert status == 0 and '"v=spf1 -all"' in out and "mx1.northwind.test." in out
    assert run("dns", "remove", "northwind.test", "TXT")[0] == 0
    assert '"v=spf1 -all"' not in run("dns", "show", "northwind.test")[1]
    assert run("dns", "remove", "mx2.northwind.test")[0] == 0
    assert "mx2.northwind.test. 3600 IN A" not in run("dns", "show", "northwind.test")[1]
    assert run("dns", "reset", "northwind.test")[0] == 0
    assert "mx2.northwind.test. 3600 IN A" in run("dns", "show", "northwind.test")[1]


def test_clock_set_freeze_and_advance(run, served: Served) -> None:
    status, out, _ = run("clock", "--set", "2030-01-01T00:00:00+00:00", "--freeze")
    assert (status, out.strip()) == (0, "2030-01-01T00:00:00+00:00")
    status, out, _ = run("clock", "--advance", "3600")
    assert (status, out.strip()) == (0, "2030-01-01T01:00:00+00:00")
    status, out, _ = run("status", "--json")
    assert json.loads(out)["clock"] == "2030-01-01T01:00:00+00:00"
    status, out, _ = run("clock", "--real")
    assert status == 0 and not out.startswith("2030")


def test_clock_refuses_to_go_back(run) -> None:
    status, out, err = run("clock", "--advance", "-5")
    assert status == 2 and out == ""
    assert err.startswith("error: the lab clock only moves forward")


def test_log_shows_recent_queries(run) -> None:
    run("mx", "tinyshop.test")
    status, out, _ = run("log", "--last", "5")
    assert status == 0 and "tinyshop.test." in out and " -> " in out


def test_a_bad_value_is_an_error_without_traceback(served: Served) -> None:
    done = run_cli("dns", "set", "careless.test", "MX", "mail.careless.test.",
                   "--state-dir", str(served.state_dir), home=served.home)
    assert done.returncode == 2
    assert done.stderr.startswith("error: 'mail.careless.test.' is not a valid MX value")
    assert "10 mx1.northwind.test." in done.stderr  # the example of a right value
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("dns", "set", "bad..name.careless.test", "A", "192.0.2.1"), "not a valid domain name"),
    (("dns", "add", "careless.test", "XYZ", "1"), "not a DNS record type"),
    (("dns", "set", "example.com", "A", "192.0.2.1"), "not in any lab zone"),
    (("dns", "add", "careless.test", "MX"), "at least one value"),
    (("dns", "set", "careless.test", "MX"), "at least one value"),
    (("dns", "remove", "careless.test"), "apex"),
    (("dns", "show", "nosuch.test"), "not a lab zone"),
    (("clock", "--set", "next tuesday"), "isoformat"),
], ids=["bad-name", "bad-type", "outside", "add-nothing", "set-nothing", "apex", "show-unknown",
        "bad-time"])
def test_mistakes_are_one_line_errors(run, served: Served, args: tuple[str, ...],
                                      message: str) -> None:
    status, out, err = run(*args)
    assert status == 2 and out == ""
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    # The lab is still there and unchanged.
    status, out, _ = run("mx", "careless.test")
    assert status == 0 and "alias" in out


def test_mx_without_a_running_lab_reads_the_zone_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["mx", "campus.test", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Mail for campus.test: mx\n") and "mx-a.campus.test" in out


def test_status_without_a_lab_exits_2(tmp_path: Path) -> None:
    done = run_cli("status", home=tmp_path / "nobody-home")
    assert done.returncode == 2
    assert done.stderr.startswith("error: no lab is running under ")
    assert "python -m labsupport serve" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("status", "--state-dir", str(tmp_path), home=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: no running lab in {tmp_path}")


def test_unknown_subcommands_and_actions_are_usage_errors(
        capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["fly"], ["dns", "rename", "x"], []):
        with pytest.raises(SystemExit) as caught:
            cli.main(argv)
        assert caught.value.code == 2
    assert "usage: python -m labsupport" in capsys.readouterr().err


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "short-lived"
    running = start_serve(tmp_path, state, "--quiet")
    assert (state / RUNTIME_FILE).exists()
    assert not StateLock(state).is_free()
    assert stop_serve(running) == 0
    assert not (state / RUNTIME_FILE).exists()
    assert StateLock(state).is_free()
    assert not any("Traceback" in line for line in running.errors), running.errors


def test_the_banner_says_how_to_reach_the_lab(lab) -> None:
    banner = cli._banner(lab)
    assert f"127.0.0.1 port {lab.dns.port} (UDP and TCP)" in banner
    assert lab.dig_command("northwind.test", "MX") in banner
    assert "northwind.test" in banner and str(lab.state_dir) in banner


def test_queue_show_and_flush(served: Served) -> None:
    state = ["--state-dir", str(served.state_dir)]
    shown = run_cli("queue", *state, home=served.home)
    assert shown.returncode == 0, shown.stderr
    assert "the queue is empty" in shown.stdout or "id" in shown.stdout.lower()
    flushed = run_cli("queue", "flush", *state, home=served.home)
    assert flushed.returncode == 0, flushed.stderr
    bad = run_cli("queue", "sideways", *state, home=served.home)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_greylist_on_show_off(served: Served) -> None:
    state = ["--state-dir", str(served.state_dir)]
    on = run_cli("greylist", "on", "tinyshop.test", "--delay", "120", *state, home=served.home)
    assert on.returncode == 0, on.stderr
    assert "greylisting mail to tinyshop.test" in on.stdout and "after 120 s" in on.stdout
    shown = run_cli("greylist", *state, home=served.home)
    assert shown.returncode == 0 and "tinyshop.test" in shown.stdout
    missing = run_cli("greylist", "on", *state, home=served.home)
    assert missing.returncode == 2 and "at least one recipient domain" in missing.stderr
    off = run_cli("greylist", "off", *state, home=served.home)
    assert off.returncode == 0 and "Greylisting is off" in off.stdout
