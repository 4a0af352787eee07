"""labsupport.mail.faults: deterministic lesson faults, from Python and from the command line.

(The server applying each kind of fault is tested in test_server.py.)"""

from __future__ import annotations

import json
import threading

import pytest
from lab_helpers import Served, run_cli

from labsupport.core.errors import LabError
from labsupport.mail.faults import STAGES, FaultRule, Faults


def test_a_rule_fires_where_it_matches_as_often_as_asked() -> None:
    faults = Faults()
    rule = faults.add("rcpt", "451 4.7.1 Greylisted, try again later", match="BOB@")
    assert rule == FaultRule(id=1, stage="rcpt", reply="451 4.7.1 Greylisted, try again later",
                             match="BOB@")
    assert faults.take("rcpt", "mx", "carol@campus.test") is None       # no match
    assert faults.take("mail", "mx", "bob@northwind.test") is None      # other stage
    assert faults.take("rcpt", "submission", "bob@northwind.test") is None  # other role
    taken = faults.take("rcpt", "mx", "Bob@Northwind.test")
    assert taken is not None and taken.used == 1 and taken.remaining == 0
    assert faults.take("rcpt", "mx", "bob@northwind.test") is None      # used up
    assert faults.rules()[0].remaining == 0                             # still listed


def test_times_none_fires_every_time_and_star_matches_every_role() -> None:
    faults = Faults()
    faults.add("banner", "554 5.3.2 No service", times=None, role="*")
    for role in ("mx", "submission", "submissions", "legacy"):
        taken = faults.take("banner", role)
        assert taken is not None and taken.remaining is None
    assert faults.rules()[0].used == 4


def test_rules_apply_in_the_order_they_were_added() -> None:
    faults = Faults()
    faults.add("data", "421 4.3.2 Closing")
    faults.add("data", "452 4.3.1 Disk full", times=2)
    assert [faults.take("data", "mx").reply for _ in range(3)] == [  # type: ignore[union-attr]
        "421 4.3.2 Closing", "452 4.3.1 Disk full", "452 4.3.1 Disk full"]
    assert faults.take("data", "mx") is None


def test_rule_properties_and_description() -> None:
    faults = Faults()
    closing = faults.add("data", "421 4.3.2 Closing", delay=1.5)
    assert closing.closes and closing.code == 421 and closing.delay == 1.5
    assert closing.describe() == ("#1 data on the mx role: 421 4.3.2 Closing, after 1.5 s "
                                  "(1 of 1 use(s) left)")
    slow = faults.add("delay-banner", delay=3, role="*")
    assert slow.code == 0 and not slow.closes
    assert "(the normal reply)" in slow.describe() and "every role" in slow.describe()
    assert closing.as_dict()["remaining"] == 1


@pytest.mark.parametrize("args, kwargs, message", [
    (("helo", "550 no"), {}, "unknown fault stage 'helo'"),
    (("rcpt", "451"), {"role": "relay"}, "unknown role 'relay'"),
    (("rcpt", "greylisted"), {}, "is not an SMTP reply"),
    (("rcpt", "45 too short"), {}, "is not an SMTP reply"),
    (("rcpt", "651 6.0.0 no such class"), {}, "is not an SMTP reply"),
    (("rcpt", ""), {}, "is not an SMTP reply"),
    (("rcpt", "451 4.7.1 x"), {"times": 0}, "times must be 1 or more"),
    (("rcpt", "451 4.7.1 x"), {"delay": -1}, "delay must be between"),
    (("delay-banner", ""), {}, "needs a delay"),
])
def test_mistakes_are_explained(args: tuple[str, str], kwargs: dict[str, object],
                                message: str) -> None:
    with pytest.raises(LabError, match=message):
        Faults().add(*args, **kwargs)  # type: ignore[arg-type]


def test_remove_clear_and_renderings() -> None:
    faults = Faults()
    assert str(faults) == "no fault rules"
    first = faults.add("mail", "550 5.7.1 Go away", match="mallory@")
    faults.add("ehlo", "421 4.3.2 Busy")
    faults.host_down("mx1.northwind.test")
    text = str(faults)
    assert "550 5.7.1 Go away" in text and "mallory@" in text
    assert "hosts down: mx1.northwind.test" in text
    assert "Fault rules (hosts down: mx1.northwind.test)" in faults._repr_html_()
    assert repr(faults) == "<Faults: 2 rule(s), 1 host(s) down>"
    faults.remove(first.id)
    assert [r.stage for r in faults.rules()] == ["ehlo"]
    with pytest.raises(LabError, match="no fault rule #1"):
        faults.remove(first.id)
    faults.clear()
    assert faults.rules() == [] and faults.down_hosts() == []


def test_hosts_go_down_and_up_without_regard_to_case_or_final_dot() -> None:
    faults = Faults()
    faults.host_down("MX1.Northwind.Test.")
    assert faults.is_down("mx1.northwind.test") and faults.is_down("mx1.northwind.test.")
    assert not faults.is_down("mx2.northwind.test")
    faults.host_up("mx1.northwind.test")
    assert not faults.is_down("mx1.northwind.test")
    with pytest.raises(LabError, match="which host"):
        faults.host_down("  ")


def test_take_is_thread_safe() -> None:
    faults = Faults()
    faults.add("rcpt", "451 4.7.1 Greylisted", times=50)
    taken: list[FaultRule | None] = []

    def worker() -> None:
        for _ in range(40):
            taken.append(faults.take("rcpt", "mx", "bob@northwind.test"))

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(rule is not None for rule in taken) == 50
    assert faults.rules()[0].used == 50


def test_stages_in_dialogue_order() -> None:
    assert STAGES == ("delay-banner", "banner", "ehlo", "mail", "rcpt", "data")


# -- python -m labsupport faults, on a running lab -------------------------------------


def test_the_command_line_adds_lists_and_clears(served: Served) -> None:
    home = served.home
    try:
        added = run_cli("faults", "add", "rcpt", "451 4.7.1 Greylisted, try again later",
                        "--match", "bob@", "--times", "2", home=home)
        assert added.returncode == 0, added.stderr
        assert added.stdout.startswith("added #") and "451 4.7.1 Greylisted" in added.stdout
        down = run_cli("faults", "down", "mx1.northwind.test", home=home)
        assert "mx1.northwind.test is down" in down.stdout
        listed = run_cli("faults", "list", "--json", home=home)
        data = json.loads(listed.stdout)
        [rule] = data["rules"]
        assert (rule["stage"], rule["match"], rule["times"], rule["remaining"]) == (
            "rcpt", "bob@", 2, 2)
        assert data["down"] == ["mx1.northwind.test"]
        text = run_cli("faults", "list", home=home).stdout
        assert "Greylisted" in text and "hosts down: mx1.northwind.test" in text
        forever = run_cli("faults", "add", "banner", "554 5.3.2 No service", "--always",
                          "--role", "submission", "--json", home=home)
        assert json.loads(forever.stdout)["rules"][-1]["times"] is None
        removed = run_cli("faults", "remove", str(json.loads(forever.stdout)["rules"][-1]["id"]),
                          home=home)
        assert "removed" in removed.stdout
        assert "is up again" in run_cli("faults", "up", "mx1.northwind.test", home=home).stdout
        delay = run_cli("faults", "add", "delay-banner", "--delay", "2", home=home)
        assert "delay-banner" in delay.stdout and "after 2 s" in delay.stdout
    finally:
        cleared = run_cli("faults", "clear", home=home)
    assert cleared.returncode == 0 and "every fault rule removed" in cleared.stdout
    assert json.loads(run_cli("faults", "list", "--json", home=home).stdout)["rules"] == []


@pytest.mark.parametrize("args, message", [
    (("faults", "add", "helo", "550 no"), "unknown fault stage 'helo'"),
    (("faults", "add", "rcpt", "greylisted"), "is not an SMTP reply"),
    (("faults", "add", "rcpt"), "needs a stage and a reply"),
    (("faults", "add"), "needs a stage and a reply"),
    (("faults", "down"), "needs a host name"),
    (("faults", "remove", "x"), "needs a rule number"),
    (("faults", "remove", "999"), "no fault rule #999"),
])
def test_command_line_mistakes_are_one_line_errors(served: Served, args: tuple[str, ...],
                                                   message: str) -> None:
    done = run_cli(*args, home=served.home)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
