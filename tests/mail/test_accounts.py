"""labsupport.mail.accounts: the lab's accounts, made once per lab and kept in a 0600 file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from labsupport.core.errors import LabError
from labsupport.mail.accounts import (
    DEFAULT_ACCOUNTS,
    DEFAULT_DOMAINS,
    PASSWORD_LENGTH,
    Account,
    Accounts,
    new_password,
    normalise_address,
)


def test_first_load_makes_every_account_with_a_random_password(tmp_path: Path) -> None:
    accounts = Accounts.load_or_create(tmp_path / "accounts.json")
    assert [a.address for a in accounts.all()] == [a for a, _ in DEFAULT_ACCOUNTS]
    assert accounts.get("alice@northwind.test") == Account(
        "alice@northwind.test", accounts.all()[0].password, "Alice Adams")
    passwords = [a.password for a in accounts.all()]
    assert len(set(passwords)) == len(passwords)
    assert all(len(p) == PASSWORD_LENGTH and p.isalnum() for p in passwords)
    assert not set("0O1lI") & set("".join(passwords))  # nothing to misread


def test_the_file_is_private_and_reloaded_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    first = Accounts.load_or_create(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    again = Accounts.load_or_create(path)
    assert again.all() == first.all()
    assert json.loads(path.read_text())["accounts"][0]["address"] == "alice@northwind.test"


def test_accounts_the_course_adds_later_join_with_new_passwords(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps({"accounts": [
        {"address": "alice@northwind.test", "password": "kept", "name": "Alice Adams"}]}))
    accounts = Accounts.load_or_create(path)
    assert accounts.get("alice@northwind.test").password == "kept"  # type: ignore[union-attr]
    assert len(accounts) == len(DEFAULT_ACCOUNTS)
    assert Accounts.load_or_create(path).all() == accounts.all()


def test_an_unreadable_file_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text("{not json")
    with pytest.raises(LabError, match="accounts file .* is unreadable.*delete it"):
        Accounts.load_or_create(path)


def test_check_compares_names_without_case_and_passwords_exactly() -> None:
    accounts = Accounts([Account("alice@northwind.test", "S3cret", "Alice Adams")])
    assert accounts.check("alice@northwind.test", "S3cret")
    assert accounts.check("<Alice@NorthWind.TEST>", "S3cret")
    assert not accounts.check("alice@northwind.test", "s3cret")
    assert not accounts.check("alice@northwind.test", "")
    assert not accounts.check("nobody@northwind.test", "S3cret")
    assert not accounts.check("nobody@northwind.test", "x" * PASSWORD_LENGTH)  # the dummy


def test_mailboxes_are_the_accounts_and_every_postmaster() -> None:
    accounts = Accounts([Account("bob@northwind.test", "pw", "Bob")], domains=["Campus.Test."])
    assert accounts.mailboxes() == {"bob@northwind.test", "postmaster@campus.test"}
    assert accounts.exists("PostMaster@campus.test")  # RFC 5321 section 4.5.1
    assert accounts.exists("Bob@Northwind.test")
    assert not accounts.exists("postmaster@nowhere.example")
    default = Accounts([])
    assert {f"postmaster@{d}" for d in DEFAULT_DOMAINS} == default.mailboxes()


def test_renderings_list_every_password() -> None:
    accounts = Accounts([Account("carol@campus.test", "pw-carol", "Carol Clark")])
    assert "pw-carol" in str(accounts) and "pw-carol" in accounts._repr_html_()
    assert "carol@campus.test" in repr(accounts) and "pw-carol" not in repr(accounts)
    assert Account("carol@campus.test", "x", "Carol").domain == "campus.test"


def test_helpers() -> None:
    assert normalise_address(" <Bob@Northwind.Test> ") == "bob@northwind.test"
    assert new_password() != new_password()
    assert len(new_password(20)) == 20
