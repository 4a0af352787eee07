"""Public mail providers' client settings, and why each port goes with one TLS mode.

A mail program needs four facts to reach a provider: a host, a port, a TLS mode and a
way to log in. :func:`load` reads them for a few well-known providers from
``data/providers/client-settings.csv`` (as each provider documented them on the day in
its ``checked`` column) into a :class:`ProviderTable`, and :func:`explain` says what each
field of a row means.

The port and the TLS mode are not independent choices. The RFCs give each port one way
of starting TLS, and :func:`pairing` says whether a port and a mode belong together, and
what a client sees when they do not:

* 587 is the submission port (RFC 6409 section 3.1): the connection starts in clear and
  the client upgrades it with STARTTLS (RFC 3207).
* 465 is submission over implicit TLS (RFC 8314 section 3.3): TLS begins with the very
  first byte, and RFC 8314 section 3 recommends implicit TLS where both exist.
* 143 is IMAP with STARTTLS (RFC 9051 section 6.2.1), 993 is IMAP over implicit TLS
  (RFC 8314 section 3.2); 110 and 995 are the same pair for POP3 (RFC 2595 section 4,
  RFC 8314 section 3.1).
* 25 is where mail servers relay to each other (the MX side, RFC 5321), not the port
  for mail programs.

A STARTTLS client on an implicit-TLS port waits for a greeting that never comes (the
server is waiting for the client's TLS ClientHello), so it times out. An implicit-TLS
client on a STARTTLS port sends a ClientHello and gets back the plaintext greeting
``220 ...``, which its TLS library cannot read as a TLS record ("wrong version number" in
OpenSSL's words). :func:`try_pairing` makes both mistakes, and the two right choices, for
real against the running lab's own listeners.

:func:`explorer` puts the table and the pairing rules in one widget, and
:func:`judge_client_settings` and :func:`judge_lab_pairing` are the exercise checks.

Introduced in ``notebooks/08-troubleshooting.ipynb``.

The code lives in four modules, all re-exported here, so notebooks keep calling
``providers.<name>``:

* :mod:`labsupport.teach.providers_rules`: the vocabulary (TLS modes, services, the RFC
  sections), the well-known ports (:data:`WELL_KNOWN`), :func:`tls_mode`,
  :func:`service_name` and :func:`pairing`;
* :mod:`labsupport.teach.providers_table`: :class:`ClientSetting`, :class:`ProviderTable`,
  :func:`load`, :func:`explain` and the explorer's HTML (:func:`settings_html`,
  :func:`pairing_html`);
* :mod:`labsupport.teach.providers_lab`: :func:`try_pairing` against the running lab;
* :mod:`labsupport.teach.providers_checks`: the exercise checks.
"""

from __future__ import annotations

from .providers_checks import check_client_settings as check_client_settings
from .providers_checks import check_lab_pairing as check_lab_pairing
from .providers_checks import judge_client_settings as judge_client_settings
from .providers_checks import judge_lab_pairing as judge_lab_pairing
from .providers_lab import LAB_ROLES as LAB_ROLES
from .providers_lab import LabPairing as LabPairing
from .providers_lab import try_pairing as try_pairing
from .providers_rules import IMPLICIT_TLS as IMPLICIT_TLS
from .providers_rules import RFC_IMAP_STARTTLS as RFC_IMAP_STARTTLS
from .providers_rules import RFC_IMPLICIT as RFC_IMPLICIT
from .providers_rules import RFC_IMPLICIT_IMAP as RFC_IMPLICIT_IMAP
from .providers_rules import RFC_IMPLICIT_POP as RFC_IMPLICIT_POP
from .providers_rules import RFC_IMPLICIT_SUBMISSION as RFC_IMPLICIT_SUBMISSION
from .providers_rules import RFC_OAUTHBEARER as RFC_OAUTHBEARER
from .providers_rules import RFC_POP_STLS as RFC_POP_STLS
from .providers_rules import RFC_PORT25_BLOCKING as RFC_PORT25_BLOCKING
from .providers_rules import RFC_RELAY as RFC_RELAY
from .providers_rules import RFC_SERVER_IDENTITY as RFC_SERVER_IDENTITY
from .providers_rules import RFC_SMTP_AUTH as RFC_SMTP_AUTH
from .providers_rules import RFC_SMTP_STARTTLS as RFC_SMTP_STARTTLS
from .providers_rules import RFC_STARTTLS_STRIPPING as RFC_STARTTLS_STRIPPING
from .providers_rules import RFC_SUBMISSION_PORT as RFC_SUBMISSION_PORT
from .providers_rules import SERVICES as SERVICES
from .providers_rules import STARTTLS as STARTTLS
from .providers_rules import TLS_MODES as TLS_MODES
from .providers_rules import WELL_KNOWN as WELL_KNOWN
from .providers_rules import Pairing as Pairing
from .providers_rules import PortRule as PortRule
from .providers_rules import pairing as pairing
from .providers_rules import service_name as service_name
from .providers_rules import tls_mode as tls_mode
from .providers_table import COLUMNS as COLUMNS
from .providers_table import DEFAULT_PATH as DEFAULT_PATH
from .providers_table import ClientSetting as ClientSetting
from .providers_table import ProviderTable as ProviderTable
from .providers_table import explain as explain
from .providers_table import load as load
from .providers_table import pairing_html as pairing_html
from .providers_table import settings_html as settings_html
