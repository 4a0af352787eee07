"""The troubleshooting lab: help-desk tickets, each a lab domain or server broken one way.

:class:`BugHunt` opens eight tickets on a running lab. Each ticket is a complaint in a
user's words about one organisation of the lab world, and behind it one realistic fault:

1. Fernhill School (``fernhill.test``): its MX names a host that does not exist.
2. Careless Ltd (``careless.test``): its SPF record needs more than 10 DNS lookups.
3. Brightside Bakery (``brightside.test``): its DKIM key record was cut at 255 characters.
4. Riverbank Credit Union (``riverbank.example``): its DMARC record has a typo.
5. Brightside's submission server (``smtp.brightside.test``): its certificate expired.
6. Riverbank's submission server (``smtp.riverbank.example``): the certificate is for
   another name.
7. Tiny shop's mail server greylists new senders (451 4.7.1, then accepts the retry):
   :mod:`labsupport.mail.greylist`, turned on for tinyshop.test.
8. Northwind Traders' new CRM service sends in Northwind's name from an address that
   neither SPF nor DKIM vouches for: DMARC ``p=reject`` refuses it (550 5.7.1).

The DNS faults are in the zone files (``data/zones/``) or published when the hunt opens;
the server faults are extra listeners on the lab's loop that present a broken certificate.
:meth:`BugHunt.reproduce` shows what the user saw; the lab's own tools (``lab.mx``,
``send_mail``, the SPF, DKIM and DMARC evaluators) find the cause; :meth:`BugHunt.triage`
runs those tools itself and names the cause it finds, which is what the notebook's
checks compare a student's diagnosis with. ``lab.reset()`` closes the hunt: the broken
listeners stop and the zones return to their files.

The code lives in parts, re-exported here: :mod:`~labsupport.teach.troubleshoot_tickets`
(the causes, the lab world's hosts and selector, the tickets and the journey stages),
:mod:`~labsupport.teach.troubleshoot_evidence` (what a reproduction and a triage show),
:mod:`~labsupport.teach.troubleshoot_tls` (the broken certificates and their listeners),
:mod:`~labsupport.teach.troubleshoot_hunt` (:class:`BugHunt` itself) and
:mod:`~labsupport.teach.troubleshoot_checks` (the exercise checks of the diagnoses and
fixes).

Introduced in ``notebooks/08-troubleshooting.ipynb``.
"""

from __future__ import annotations

from .troubleshoot_checks import check_diagnoses as check_diagnoses
from .troubleshoot_checks import check_fixed as check_fixed
from .troubleshoot_checks import judge_diagnoses as judge_diagnoses
from .troubleshoot_checks import judge_fixed as judge_fixed
from .troubleshoot_evidence import Evidence as Evidence
from .troubleshoot_evidence import Triage as Triage
from .troubleshoot_evidence import TriageTable as TriageTable
from .troubleshoot_hunt import BugHunt as BugHunt
from .troubleshoot_tickets import BRIGHTSIDE_OUT as BRIGHTSIDE_OUT
from .troubleshoot_tickets import BRIGHTSIDE_SELECTOR as BRIGHTSIDE_SELECTOR
from .troubleshoot_tickets import CAUSES as CAUSES
from .troubleshoot_tickets import CRM_CLIENT as CRM_CLIENT
from .troubleshoot_tickets import JOURNEY as JOURNEY
from .troubleshoot_tickets import NORTHWIND_OUT as NORTHWIND_OUT
from .troubleshoot_tickets import PHISHER as PHISHER
from .troubleshoot_tickets import TICKETS as TICKETS
from .troubleshoot_tickets import TINYSHOP_TRUSTED as TINYSHOP_TRUSTED
from .troubleshoot_tickets import TRUNCATED_AT as TRUNCATED_AT
from .troubleshoot_tickets import CauseTable as CauseTable
from .troubleshoot_tickets import Ticket as Ticket
from .troubleshoot_tickets import TicketView as TicketView
from .troubleshoot_tickets import TroubleshootError as TroubleshootError
from .troubleshoot_tickets import cause_table as cause_table
from .troubleshoot_tickets import ticket as ticket
from .troubleshoot_tls import CertificateView as CertificateView

__all__ = ["BRIGHTSIDE_SELECTOR", "CAUSES", "JOURNEY", "TICKETS", "BugHunt",
           "CertificateView", "Evidence", "Ticket", "Triage", "TroubleshootError", "cause_table",
           "check_diagnoses", "check_fixed", "judge_diagnoses", "judge_fixed", "ticket"]
