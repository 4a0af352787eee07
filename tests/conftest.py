"""Shared fixtures for the unit tests.

* ``world``: the lab world (``data/zones``) as one in-memory ZoneSet, shared by the whole
  session; tests must only read it. ``zones`` is a fresh copy a test may edit.
* ``lab``: a lab started in this process on its own temporary state directory, shared by
  the session; ``clean_lab`` puts it back to its known state after a test that edits it;
  ``mail_lab`` puts it back both before and after (empty mailboxes, no faults).
* ``served``: ``python -m labsupport serve --json`` running in a subprocess, with its own
  ``MAIL_LABS_HOME`` whose ``lab`` state directory it holds; stopped with SIGTERM at the
  end, and it must exit 0.
* ``private_server``: a DNSServer with its own ZoneSet on a private asyncio loop thread.
* the throwaway SMTP servers of ``tests/smtp_servers.py`` (``plain``, ``starttls``,
  ``implicit``, ``authserver``, ``legacy``, ``greylisting``, ``silent_port``, ``certs``,
  ``start_server``), loaded from there as a plugin for every test here.

Nothing here touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lab_helpers import ZONES_DIR, Served, ServerThread, start_serve, stop_serve

import labsupport
from labsupport.dns.zone import ZoneSet

#: Fixtures defined in other modules of tests/ (found by name in every test).
pytest_plugins = ["smtp_servers"]

# -- the lab world in memory -------------------------------------------------------------


@pytest.fixture(scope="session")
def world() -> ZoneSet:
    """The lab's zones, shared and read-only (edit ``zones`` instead)."""
    return ZoneSet.from_directory(ZONES_DIR)


@pytest.fixture
def zones() -> ZoneSet:
    """A fresh copy of the lab's zones that a test may edit."""
    return ZoneSet.from_directory(ZONES_DIR)


# -- a lab in this process ---------------------------------------------------------------


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[labsupport.Lab]:
    started = labsupport.start(tmp_path_factory.mktemp("session-lab"))
    yield started
    started.stop()


@pytest.fixture
def clean_lab(lab: labsupport.Lab) -> Iterator[labsupport.Lab]:
    """The session lab, put back to its known state after the test."""
    yield lab
    lab.reset()


@pytest.fixture
def mail_lab(lab: labsupport.Lab) -> Iterator[labsupport.Lab]:
    """The session lab with empty mailboxes and no faults, put back afterwards."""
    lab.reset()
    yield lab
    lab.reset()


# -- a lab in a subprocess ---------------------------------------------------------------


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("serve-home")
    running = start_serve(home, home / "lab")
    yield running
    status = stop_serve(running)
    stderr = "\n".join(running.errors)
    assert status == 0, f"serve exited with {status}; stderr:\n{stderr}"
    # Nothing the tests did (bad values, malformed packets) may leave a traceback.
    assert "Traceback" not in stderr and "Task was destroyed" not in stderr, stderr


# -- a DNS server on a private loop ------------------------------------------------------


@pytest.fixture(scope="module")
def private_server() -> Iterator[ServerThread]:
    running = ServerThread(ZoneSet.from_directory(ZONES_DIR))
    yield running
    running.close()
