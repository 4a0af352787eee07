"""The lab's mail accounts: who may log in to the submission roles, and which mailboxes exist.

Every lab generates its own passwords the first time it starts (Python's ``secrets``) and
keeps them in ``accounts.json`` in its state directory, readable by its owner only, so a
restarted lab has the same accounts and passwords. The accounts are people of the lab world
(``data/zones/README.md``): two at Northwind, two at Campus, one each at the shop, MailCloud
and the alumni forwarder, Mallory at the phishing domain, and Nina at NewCo
(``newco.test``, the domain the capstone lab secures). A lab whose ``accounts.json`` was
written before an account was added to the course gains it on its next start.

A mailbox exists for every account and for ``postmaster`` at every receiving domain, as
RFC 5321 section 4.5.1 requires ("postmaster" is matched without regard to case).

Introduced in ``notebooks/02-smtp-dialogue.ipynb``.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import LabError
from ..core.results import html_table, text_table

#: The people of the lab world: (address, display name).
DEFAULT_ACCOUNTS: tuple[tuple[str, str], ...] = (
    ("alice@northwind.test", "Alice Adams"),
    ("bob@northwind.test", "Bob Brown"),
    ("carol@campus.test", "Carol Clark"),
    ("dave@campus.test", "Dave Davis"),
    ("erin@tinyshop.test", "Erin Evans"),
    ("frank@mailcloud.example", "Frank Fischer"),
    ("grace@alumni.example", "Grace Green"),
    ("mallory@phisher.example", "Mallory Mallet"),
    ("nina@newco.test", "Nina Novak"),
)

#: The receiving domains of the lab world (``lab.zones.mail_domains()`` when a lab runs).
DEFAULT_DOMAINS: tuple[str, ...] = (
    "alumni.example", "campus.test", "careless.test", "homebrew.example", "lab.test",
    "mailcloud.example", "newco.test", "northwind.test", "oldsite.example", "parked.test",
    "phisher.example", "tinyshop.test",
)

#: Letters and digits that cannot be mistaken for each other when read aloud or typed
#: from a screen (no 0/O, 1/l/I).
_PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
PASSWORD_LENGTH = 14

#: Compared against when the user does not exist, so a wrong name costs as long as a
#: wrong password.
_DUMMY_PASSWORD = "x" * PASSWORD_LENGTH


def new_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password from an unambiguous alphabet (``secrets``, not ``random``)."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def normalise_address(address: str) -> str:
    """An address as the lab compares it: surrounding space and angle brackets removed,
    lower case (the lab's mailboxes are case-insensitive, as most real ones are)."""
    return address.strip().strip("<>").strip().lower()


@dataclass(frozen=True)
class Account:
    """One lab account: its address (also the login name), password and display name."""

    address: str
    password: str
    name: str

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


class Accounts:
    """The lab's accounts, loaded from (or created in) one JSON file.

    >>> accounts = Accounts([Account("alice@northwind.test", "pw", "Alice Adams")])
    >>> accounts.check("Alice@Northwind.test", "pw"), accounts.check("alice@northwind.test", "no")
    (True, False)
    """

    def __init__(self, accounts: Iterable[Account],
                 domains: Iterable[str] = DEFAULT_DOMAINS) -> None:
        self._accounts = {normalise_address(a.address): a for a in accounts}
        self._domains = tuple(sorted({d.lower().rstrip(".") for d in domains}))
        self.path: Path | None = None

    @classmethod
    def load_or_create(cls, path: Path, *, domains: Iterable[str] = DEFAULT_DOMAINS
                       ) -> Accounts:
        """The accounts kept in ``path``, made with fresh passwords the first time.

        Accounts the course added since the file was written are added with new
        passwords; existing passwords never change. The file is written atomically with
        mode 0600.
        """
        path = Path(path)
        stored: list[Account] = []
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                stored = [Account(str(a["address"]), str(a["password"]), str(a.get("name", "")))
                          for a in data["accounts"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise LabError(f"the lab's accounts file {path} is unreadable ({exc}); "
                               "delete it to make new accounts") from exc
        known = {normalise_address(a.address) for a in stored}
        added = [Account(address, new_password(), name)
                 for address, name in DEFAULT_ACCOUNTS if address not in known]
        accounts = cls(stored + added, domains)
        accounts.path = path
        if added or not path.exists():
            accounts.save(path)
        return accounts

    def save(self, path: Path) -> None:
        """Write the accounts to ``path`` (mode 0600, atomically)."""
        payload = {"accounts": [{"address": a.address, "password": a.password, "name": a.name}
                                for a in self._accounts.values()]}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    # -- questions -----------------------------------------------------------------------

    def all(self) -> list[Account]:
        """Every account, in the order of the lab world."""
        return list(self._accounts.values())

    def get(self, address: str) -> Account | None:
        """The account for ``address`` (any case, with or without angle brackets)."""
        return self._accounts.get(normalise_address(address))

    def check(self, username: str, password: str) -> bool:
        """True when ``username`` is an account and ``password`` is its password.

        The comparison takes the same time whatever the password (``hmac.compare_digest``),
        and an unknown user costs the same as a wrong password.
        """
        account = self.get(username)
        expected = account.password if account is not None else _DUMMY_PASSWORD
        same = hmac.compare_digest(expected.encode("utf-8"), password.encode("utf-8"))
        return account is not None and same

    @property
    def domains(self) -> tuple[str, ...]:
        """The receiving domains whose postmaster mailbox exists."""
        return self._domains

    def mailboxes(self) -> set[str]:
        """The addresses that exist: every account, and postmaster@ every receiving
        domain (RFC 5321 section 4.5.1)."""
        return set(self._accounts) | {f"postmaster@{d}" for d in self._domains}

    def exists(self, address: str) -> bool:
        """True when mail for ``address`` has a mailbox to go to (postmaster in any case)."""
        local, _, domain = normalise_address(address).rpartition("@")
        return f"{local}@{domain}" in self.mailboxes()

    # -- renderings ----------------------------------------------------------------------

    def _rows(self) -> list[list[object]]:
        return [[a.address, a.password, a.name] for a in self._accounts.values()]

    def __len__(self) -> int:
        return len(self._accounts)

    def __repr__(self) -> str:
        return f"<Accounts: {', '.join(self._accounts)}>"

    def __str__(self) -> str:
        return text_table(["address (login)", "password", "name"], self._rows())

    def _repr_html_(self) -> str:
        return html_table(["address (login)", "password", "name"], self._rows(),
                          caption="The lab's accounts")


__all__ = ["Account", "Accounts", "DEFAULT_ACCOUNTS", "DEFAULT_DOMAINS", "new_password",
           "normalise_address"]
