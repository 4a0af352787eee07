"""DMARC aggregate reports: what receivers tell a domain about the mail sent in its name.

A receiver that evaluates DMARC keeps, for each policy domain, a tally of what it saw:
which address sent mail with that domain in From, how many messages, whether DKIM and
SPF passed and aligned, and what it did with them. Once per reporting period it sends
the domain owner an *aggregate report* (RFC 9990, which obsoletes the reporting part of
RFC 7489): an XML document in the namespace ``urn:ietf:params:xml:ns:dmarc-2.0``::

    feedback
      version                      1.0
      report_metadata              org_name, email, report_id, date_range, generator
      policy_published             domain, discovery_method, p, sp, np, adkim, aspf, testing
      record (one or more)
        row                        source_ip, count,
                                   policy_evaluated: disposition, dkim, spf (aligned?)
        identifiers                header_from, envelope_from, envelope_to
        auth_results               dkim (domain, selector, result) ..., spf (domain, result)

The lab's MX role keeps every evaluation (``lab.smtp.evaluations``), and
``lab.dmarc_reports(begin, end)`` turns them into one report per policy domain with
:func:`aggregate_report` (:func:`reports_by_period`: one per day, or any period).
:func:`parse_report` reads any report back into plain
:class:`ReportRecord` rows, in the RFC 9990 format or the older RFC 7489 one (no
namespace, ``pct`` instead of ``testing``, no ``np``), so the same charts
(:mod:`labsupport.teach.plots`: ``dmarc_over_time``, ``dmarc_by_source``,
``dmarc_by_alignment``) draw the lab's own reports and real ones.
:func:`validate_report` checks a report against the structure RFC 9990 section 3
describes (element order, required elements, the allowed values).

A real receiver mails the report to the ``rua=`` address of the domain's DMARC record,
gzipped, with a file name like ``mx.lab.test!northwind.test!1767225600!1767311999.xml``
(:func:`report_filename`); the lab hands the bytes to the notebook instead.

The parts live in modules of their own, and every name above stays importable from
here: the format's constants and the plain records (:class:`ReportRecord`,
:class:`PolicyPublished`, :class:`AggregateReport`...) in
:mod:`labsupport.auth.dmarc_reports_model`, the MX role's view of each message
(:class:`Observation`, :func:`observation`) in :mod:`labsupport.auth.dmarc_reports_observe`,
writing reports (:func:`aggregate_report`, :func:`reports_by_domain`,
:func:`reports_by_period`, :func:`report_filename`) in
:mod:`labsupport.auth.dmarc_reports_write`, reading them (:func:`parse_report`,
:func:`report_records`) in :mod:`labsupport.auth.dmarc_reports_read`, and checking their
structure (:func:`validate_report`) in :mod:`labsupport.auth.dmarc_reports_validate`.

Introduced in ``notebooks/06-dmarc.ipynb``.
"""

from __future__ import annotations

from .dmarc_reports_model import ALIGNED_RESULTS as ALIGNED_RESULTS
from .dmarc_reports_model import DISPOSITIONS as DISPOSITIONS
from .dmarc_reports_model import DKIM_RESULTS as DKIM_RESULTS
from .dmarc_reports_model import FIRST_LEVEL as FIRST_LEVEL
from .dmarc_reports_model import GENERATOR as GENERATOR
from .dmarc_reports_model import LAB_ORG_NAME as LAB_ORG_NAME
from .dmarc_reports_model import LAB_REPORT_EMAIL as LAB_REPORT_EMAIL
from .dmarc_reports_model import LAB_REPORTER as LAB_REPORTER
from .dmarc_reports_model import METADATA_ALLOWED as METADATA_ALLOWED
from .dmarc_reports_model import METADATA_REQUIRED as METADATA_REQUIRED
from .dmarc_reports_model import NAMESPACE as NAMESPACE
from .dmarc_reports_model import OVERRIDE_TYPES as OVERRIDE_TYPES
from .dmarc_reports_model import POLICIES as POLICIES
from .dmarc_reports_model import POLICY_ALLOWED as POLICY_ALLOWED
from .dmarc_reports_model import POLICY_REQUIRED as POLICY_REQUIRED
from .dmarc_reports_model import RFC_FORMAT as RFC_FORMAT
from .dmarc_reports_model import RFC_OLD_FORMAT as RFC_OLD_FORMAT
from .dmarc_reports_model import RFC_REPORTS as RFC_REPORTS
from .dmarc_reports_model import ROW_HEADERS as ROW_HEADERS
from .dmarc_reports_model import SPF_RESULTS as SPF_RESULTS
from .dmarc_reports_model import AggregateReport as AggregateReport
from .dmarc_reports_model import DKIMAuth as DKIMAuth
from .dmarc_reports_model import DMARCReportError as DMARCReportError
from .dmarc_reports_model import PolicyPublished as PolicyPublished
from .dmarc_reports_model import ReportRecord as ReportRecord
from .dmarc_reports_model import SPFAuth as SPFAuth
from .dmarc_reports_observe import Observation as Observation
from .dmarc_reports_observe import observation as observation
from .dmarc_reports_observe import observations as observations
from .dmarc_reports_read import parse_report as parse_report
from .dmarc_reports_read import report_records as report_records
from .dmarc_reports_validate import validate_report as validate_report
from .dmarc_reports_write import aggregate_report as aggregate_report
from .dmarc_reports_write import report_filename as report_filename
from .dmarc_reports_write import reports_by_domain as reports_by_domain
from .dmarc_reports_write import reports_by_period as reports_by_period

__all__ = ["GENERATOR", "LAB_ORG_NAME", "NAMESPACE", "AggregateReport", "DKIMAuth",
           "DMARCReportError", "Observation", "PolicyPublished", "ReportRecord", "SPFAuth",
           "aggregate_report", "observation", "observations", "parse_report",
           "report_filename", "report_records", "reports_by_domain", "reports_by_period",
           "validate_report"]
