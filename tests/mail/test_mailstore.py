"""labsupport.mail.mailstore: Maildir mailboxes that never show half a message."""

from __future__ import annotations

import mailbox
import os
import threading
import time
from pathlib import Path

import pytest

from labsupport.core.errors import LabError
from labsupport.mail.mailstore import INBOX, JUNK, MailStore, StoredMessage

MESSAGE = b"From: bob@northwind.test\r\nSubject: Hello\r\n\r\nHi Carol.\r\n"


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    return MailStore(tmp_path / "mail")


def test_deliver_and_read_back(store: MailStore) -> None:
    key = store.deliver("Carol@Campus.test", MESSAGE)
    [stored] = store.messages("carol@campus.test")
    assert stored == StoredMessage(key=key, folder=INBOX, address="carol@campus.test",
                                   raw=MESSAGE.replace(b"\r\n", b"\n"))
    assert stored.message["Subject"] == "Hello" and stored.subject == "Hello"
    assert stored.message.get_content() == "Hi Carol.\n"
    assert "Hi Carol." in str(stored)
    assert (store.root / "campus.test" / "carol" / "new" / key).is_file()


def test_a_mailbox_is_an_ordinary_maildir(store: MailStore) -> None:
    store.deliver("carol@campus.test", MESSAGE)
    box = mailbox.Maildir(str(store.root / "campus.test" / "carol"), create=False)
    assert [m["Subject"] for m in box] == ["Hello"]


def test_messages_come_oldest_first(store: MailStore) -> None:
    for n in range(12):
        store.deliver("carol@campus.test", f"Subject: {n}\r\n\r\nbody\r\n".encode())
    assert [m.subject for m in store.messages("carol@campus.test")] == [str(n) for n in range(12)]


def test_junk_is_a_maildir_plus_plus_folder(store: MailStore) -> None:
    store.deliver("carol@campus.test", MESSAGE)
    store.deliver("carol@campus.test", b"Subject: spam\r\n\r\nbuy\r\n", folder=JUNK)
    assert store.folders("carol@campus.test") == [INBOX, JUNK]
    assert (store.root / "campus.test" / "carol" / ".Junk" / "maildirfolder").exists()
    [junk] = store.messages("carol@campus.test", JUNK)
    assert junk.folder == JUNK and junk.subject == "spam"
    assert store.count() == 2 and store.count("carol@campus.test") == 2
    with pytest.raises(LabError, match="not a folder name"):
        store.deliver("carol@campus.test", MESSAGE, folder="../x")


def test_empty_and_unknown_mailboxes(store: MailStore) -> None:
    assert store.messages("nobody@campus.test") == []
    assert store.messages("nobody@campus.test", JUNK) == []
    assert store.folders("nobody@campus.test") == []
    assert store.addresses() == [] and store.count() == 0
    store.deliver("carol@campus.test", MESSAGE)
    assert store.messages("carol@campus.test", JUNK) == []


@pytest.mark.parametrize("address", ["no-at-sign", "@campus.test", "carol@", "../x@campus.test",
                                     "carol@../../etc", "a/b@campus.test", ".hidden@campus.test"])
def test_addresses_that_are_not_mailboxes_are_refused(store: MailStore, address: str) -> None:
    with pytest.raises(LabError):
        store.deliver(address, MESSAGE)
    assert store.count() == 0


def test_addresses_count_clear_and_renderings(store: MailStore) -> None:
    store.deliver("carol@campus.test", MESSAGE)
    store.deliver("bob@northwind.test", MESSAGE)
    store.deliver("bob@northwind.test", MESSAGE)
    assert store.addresses() == ["carol@campus.test", "bob@northwind.test"]
    assert store.count() == 3
    assert "bob@northwind.test" in str(store) and "carol@campus.test" in store._repr_html_()
    assert "3 message(s)" in repr(store)
    store.clear()
    assert store.count() == 0 and store.addresses() == []
    store.deliver("carol@campus.test", MESSAGE)  # usable after clear()
    assert store.count() == 1


def test_a_restarted_store_sees_every_message(tmp_path: Path) -> None:
    MailStore(tmp_path).deliver("carol@campus.test", MESSAGE)
    assert [m.subject for m in MailStore(tmp_path).messages("carol@campus.test")] == ["Hello"]


def test_delivery_flushes_the_file_and_the_directory(store: MailStore,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if Path("/proc/self/fd").exists()
                      else str(fd))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    key = store.deliver("carol@campus.test", MESSAGE)
    new = store.root / "campus.test" / "carol" / "new"
    if Path("/proc/self/fd").exists():
        assert any(s.endswith(f"/tmp/{key}") for s in synced), synced  # the message
        assert str(new) in synced, synced  # then its directory entry
    else:
        assert len(synced) >= 2


def test_a_crash_while_writing_leaves_nothing_listed(store: MailStore,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store.deliver("carol@campus.test", MESSAGE)

    def crash(self: mailbox.Maildir, message: bytes, target: object,
              mangle_from_: bool = False) -> None:
        target.write(message[:10])  # type: ignore[attr-defined]
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(mailbox.Maildir, "_dump_message", crash)
    with pytest.raises(KeyboardInterrupt):
        store.deliver("carol@campus.test", b"Subject: half\r\n\r\n" + b"x" * 10000)
    monkeypatch.undo()
    assert [m.subject for m in store.messages("carol@campus.test")] == ["Hello"]
    assert list((store.root / "campus.test" / "carol" / "tmp").iterdir()) == []


def test_a_half_written_file_from_a_dead_process_is_never_listed(tmp_path: Path) -> None:
    store = MailStore(tmp_path)
    store.deliver("carol@campus.test", MESSAGE)
    tmp = tmp_path / "campus.test" / "carol" / "tmp"
    leftover = tmp / "1700000000.M1P99Q1.deadhost"
    leftover.write_bytes(b"Subject: half")
    assert store.count() == 1
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    MailStore(tmp_path)  # opening the store again removes stale leftovers
    assert not leftover.exists()
    assert store.count() == 1


def test_concurrent_deliveries_each_get_their_own_message(store: MailStore) -> None:
    def deliver(n: int) -> None:
        for m in range(20):
            store.deliver("carol@campus.test", f"Subject: {n}-{m}\r\n\r\nx\r\n".encode())

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    subjects = [m.subject for m in store.messages("carol@campus.test")]
    assert sorted(subjects) == sorted(f"{n}-{m}" for n in range(8) for m in range(20))
