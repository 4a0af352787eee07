"""Exercise checks of notebooks/05-dkim.ipynb (in-memory lab zones, no running lab)."""

from __future__ import annotations

import pytest

from labsupport import dkim
from labsupport.auth.dkim_keys import lab_key
from labsupport.core.errors import CheckFailed
from labsupport.dns.zone import ZoneSet
from labsupport.teach.checks import (
    DKIM_CHANGES,
    DKIM_EXERCISE_MESSAGE,
    check_key_rotation,
    check_relaxed_only,
    dkim_survival,
    judge_key_rotation,
    judge_relaxed_only,
)

DOMAIN = "northwind.test"


def _placeholder() -> object:
    raise NotImplementedError("your answer here")


# -- which change survives relaxed but not simple ------------------------------------------


def test_the_changes_do_what_their_words_say(world: ZoneSet) -> None:
    fates = {k: dkim_survival(change, world) for k, (_w, change) in DKIM_CHANGES.items()}
    assert fates == {
        "a": {"simple": "fail", "relaxed": "fail"},
        "b": {"simple": "fail", "relaxed": "pass"},
        "c": {"simple": "fail", "relaxed": "fail"},
        "d": {"simple": "pass", "relaxed": "pass"},
        "e": {"simple": "fail", "relaxed": "pass"},
        "f": {"simple": "fail", "relaxed": "pass"},
    }
    for _what, change in DKIM_CHANGES.values():
        assert change(DKIM_EXERCISE_MESSAGE) != DKIM_EXERCISE_MESSAGE


@pytest.mark.parametrize("answer", [{"b", "e", "f"}, "bef", "b, e, F", ["f", "e", "b"]])
def test_relaxed_only_right(world: ZoneSet, answer: object) -> None:
    verdict = judge_relaxed_only(answer, world)
    assert verdict.right, verdict
    assert "b, e, f survive relaxed" in verdict.message


def test_relaxed_only_wrong(world: ZoneSet) -> None:
    both = judge_relaxed_only({"b", "d", "e", "f"}, world)
    assert both.status == "wrong" and "(d) survives both" in both.message
    broken = judge_relaxed_only("abef", world)
    assert broken.status == "wrong" and "(a) breaks both" in broken.message
    short = judge_relaxed_only("b", world)
    assert short.status == "wrong" and "2 change(s)" in short.message
    unknown = judge_relaxed_only({"b", "z"}, world)
    assert unknown.status == "wrong" and "'z' is not one of the changes" in unknown.message
    assert judge_relaxed_only(42, world).status == "wrong"
    assert judge_relaxed_only("", world).status == "wrong"
    with pytest.raises(CheckFailed, match="breaks both"):
        check_relaxed_only("c", world)


def test_relaxed_only_unanswered(world: ZoneSet) -> None:
    assert judge_relaxed_only(_placeholder, world).status == "unanswered"
    assert judge_relaxed_only(lambda: undefined_name, world).status == "unanswered"  # noqa: F821
    assert judge_relaxed_only(None, world).status == "unanswered"
    check_relaxed_only(_placeholder, world)  # prints, does not raise


# -- key rotation ---------------------------------------------------------------------------


def _signed(key: dkim.LabKey, selector: str, domain: str = DOMAIN) -> bytes:
    return dkim.sign(DKIM_EXERCISE_MESSAGE, domain=domain, selector=selector, private_key=key)


def test_rotation_right(zones: ZoneSet, world: ZoneSet) -> None:
    key = dkim.generate_key("ed25519")
    dkim.publish(zones, DOMAIN, "2026-12", key)
    verdict = judge_key_rotation(_signed(key, "2026-12"), zones, DOMAIN, shipped=world)
    assert verdict.right, verdict
    assert "2026-12._domainkey.northwind.test" in verdict.message
    text = _signed(key, "2026-12").decode()  # text is accepted as well as bytes
    assert judge_key_rotation(lambda: text, zones, DOMAIN, shipped=world).right
    rotated = dkim.rotate(zones, DOMAIN, "lab2026-rsa", "winter",
                          key=dkim.generate_key("ed25519"))
    assert judge_key_rotation(_signed(rotated.key, "winter"), zones, DOMAIN).right


def test_rotation_wrong(zones: ZoneSet, world: ZoneSet) -> None:
    old = judge_key_rotation(_signed(lab_key(DOMAIN), "lab2026-rsa"), zones, DOMAIN,
                             shipped=world)
    assert old.status == "wrong" and "course already publishes" in old.message
    key = dkim.generate_key("ed25519")
    unpublished = judge_key_rotation(_signed(key, "spring"), zones, DOMAIN, shipped=world)
    assert unpublished.status == "wrong" and "dkim.publish(" in unpublished.message
    dkim.publish(zones, DOMAIN, "spring", dkim.generate_key("ed25519"))
    other_key = judge_key_rotation(_signed(key, "spring"), zones, DOMAIN, shipped=world)
    assert other_key.status == "wrong" and "not the one that signed" in other_key.message
    dkim.publish(zones, "campus.test", "spring", key)
    other_domain = judge_key_rotation(_signed(key, "spring", "campus.test"), zones, DOMAIN,
                                      shipped=world)
    assert other_domain.status == "wrong" and "signed for campus.test" in other_domain.message
    unsigned = judge_key_rotation(DKIM_EXERCISE_MESSAGE, zones, DOMAIN, shipped=world)
    assert unsigned.status == "wrong" and "no DKIM-Signature" in unsigned.message
    shape = judge_key_rotation(key, zones, DOMAIN, shipped=world)
    assert shape.status == "wrong" and "not a LabKey" in shape.message
    with pytest.raises(CheckFailed, match="course already publishes"):
        check_key_rotation(_signed(lab_key(DOMAIN), "lab2026-rsa"), zones, DOMAIN, world)


def test_rotation_unanswered(zones: ZoneSet) -> None:
    assert judge_key_rotation(_placeholder, zones, DOMAIN).status == "unanswered"
    assert judge_key_rotation(lambda: rotated_message, zones, DOMAIN).status == \
        "unanswered"  # noqa: F821
    check_key_rotation(_placeholder, zones, DOMAIN)  # prints, does not raise
