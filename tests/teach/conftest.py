"""The throwaway SMTP servers of tests/smtp_servers.py, as fixtures for the tests here."""

from smtp_servers import (  # noqa: F401 - fixtures are found by name
    authserver,
    certs,
    greylisting,
    implicit,
    legacy,
    plain,
    silent_port,
    start_server,
    starttls,
)
