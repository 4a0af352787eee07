"""The lab's re-sending addresses (labsupport.mail.aliases): the list's own decisions."""

from __future__ import annotations

import pytest

from labsupport import aliases, server
from labsupport.dns.zone import ZoneSet

LIST = next(a for a in aliases.LAB_ALIASES if isinstance(a, aliases.MailingList))


def _post(author: str) -> bytes:
    return (f"From: Someone <{author}>\r\nTo: {LIST.address}\r\nSubject: hi\r\n\r\n"
            "Hello list.\r\n").encode()


def test_server_re_exports_the_same_objects() -> None:
    assert server.MailingList is aliases.MailingList
    assert server.LAB_ALIASES is aliases.LAB_ALIASES


def test_the_list_signs_as_its_organisation() -> None:
    assert LIST.sender_domain == "lists.campus.test"
    assert LIST.signing_domain == "campus.test"


@pytest.mark.parametrize(("author", "rewrites"), [
    ("bob@northwind.test", True),        # p=reject
    ("frank@mailcloud.example", True),   # p=quarantine
    ("carol@campus.test", False),        # p=none
    ("mallory@phisher.example", False),  # no DMARC record
])
def test_the_list_rewrites_from_only_for_strict_policies(world: ZoneSet, author: str,
                                                         rewrites: bool) -> None:
    assert LIST.rewrites_from(_post(author), world) is rewrites


def test_no_resolver_or_no_from_means_no_rewrite(world: ZoneSet) -> None:
    assert LIST.rewrites_from(_post("bob@northwind.test"), None) is False
    assert LIST.rewrites_from(b"Subject: no author\r\n\r\nbody\r\n", world) is False


def test_a_post_that_went_through_the_list_is_recognised() -> None:
    posted = LIST.post(_post("carol@campus.test"))
    assert LIST.carries_own_id(posted)
    assert not LIST.carries_own_id(_post("carol@campus.test"))
