"""The provider interface, the provider-neutral document, and the error taxonomy.

Plain Python on purpose (no Odoo import): the same code runs inside Odoo, in the
plain pytest suite, against the local simulators and against production. Which
service a client talks to is only a matter of ``ProviderConfig.base_url``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import requests

_logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Error taxonomy. The Odoo layer decides what to do from the class alone:
#   AuthenticationError -> pause the account, one clear message, no retry
#   ValidationError     -> the data needs a user fix, not retried automatically
#   TransientError      -> retried with backoff
#   RateLimitedError    -> retried after ``retry_after`` seconds
#   InvalidStateError   -> the remote document is not in a state allowing that
#   NotFoundError       -> the remote object does not exist
# ---------------------------------------------------------------------------


class ProviderError(Exception):
    kind = "error"
    retryable = False

    def __init__(self, message, *, status=None, code=None, retry_after=None, details=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.details = details or []

    def __str__(self):
        return self.message


class AuthenticationError(ProviderError):
    kind = "authentication"


class ValidationError(ProviderError):
    kind = "validation"


class TotalsMismatchError(ValidationError):
    """The provider would compute (or computed, on a draft) other totals than Odoo's."""

    kind = "totals"


class FinalDocumentError(ProviderError):
    """The document is final at the provider (numbered, legally issued) but is not what it must be:
    Portugal, no ATCUD in production (series not communicated to the AT); Vendus, a total other than
    Odoo's. Never re-sent: the number and remote id are kept, and Retry reads it again."""

    kind = "final_problem"


class TransientError(ProviderError):
    kind = "transient"
    retryable = True


class RateLimitedError(TransientError):
    kind = "rate_limited"


class InvalidStateError(ProviderError):
    kind = "invalid_state"


class NotFoundError(ProviderError):
    kind = "not_found"


class NotReadyError(TransientError):
    """The remote side is still producing something (a PDF, an authorization)."""

    kind = "not_ready"


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------

_QUERY_SECRET_RE = re.compile(r"(?i)((?:api_key|apikey|token|secret|password)=)[^&\s'\"]+")


class Redactor:
    """Removes secrets from any text before it is logged, stored or raised."""

    MASK = "***"

    def __init__(self, secrets=()):
        # Longest first so that a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text):
        if text is None:
            return text
        text = str(text)
        for secret in self.secrets:
            text = text.replace(secret, self.MASK)
        return _QUERY_SECRET_RE.sub(r"\1" + self.MASK, text)


# ---------------------------------------------------------------------------
# Configuration and provider-neutral documents
# ---------------------------------------------------------------------------


@dataclass
class ProviderConfig:
    """What a client needs to talk to one account of one service."""

    base_url: str
    credentials: dict = field(default_factory=dict)
    environment: str = "test"  # "test" | "production"
    # One number (seconds), not a (connect, read) pair: Odoo's test HTTP guard only takes a number.
    timeout: float = 20.0
    # Extra, provider-specific settings that are not secrets (series id, register...).
    options: dict = field(default_factory=dict)

    def __repr__(self):  # never print credentials
        return (
            f"ProviderConfig(base_url={self.base_url!r}, environment={self.environment!r}, "
            f"credentials=<{len(self.credentials)} hidden>)"
        )

    @property
    def secrets(self):
        return [str(v) for v in self.credentials.values() if v]


@dataclass
class FiscalParty:
    """The customer as the fiscal document must name it."""

    code: str  # our stable per-company reference for this customer
    name: str
    vat: str | None = None  # fiscal id without country prefix; None = unknown
    country_code: str | None = None  # ISO 3166-1 alpha-2
    country_name: str | None = None
    email: str | None = None
    street: str | None = None
    city: str | None = None
    zip: str | None = None
    phone: str | None = None
    is_company: bool = False
    # Brazil (NFS-e): address details the municipalities require.
    state_code: str | None = None  # UF, e.g. "MG"
    street_number: str | None = None
    district: str | None = None  # bairro
    city_code: str | None = None  # IBGE municipality code
    street2: str | None = None  # complemento
    municipal_registration: str | None = None  # inscrição municipal


@dataclass
class FiscalService:
    """What a service invoice (NFS-e) declares: one service per note."""

    description: str
    municipal_code: str | None = None  # código de serviço do município
    lc116_item: str | None = None  # item da lista de serviço LC 116/2003
    cnae: str | None = None
    iss_rate: Decimal = Decimal("0")  # percent
    iss_withheld: bool = False
    city_code: str | None = None  # IBGE code of the place of service
    # The 2026 national standard and tax reform (providers/brazil.py checks them per regime).
    national_code: str | None = None  # código de tributação nacional (cTribNac), 6 digits
    nbs_code: str | None = None  # Nomenclatura Brasileira de Serviços, 9 digits
    reform_class: str | None = None  # IBS/CBS classificação tributária (cClassTrib), 6 digits
    operation_indicator: str | None = None  # IBS/CBS indicador da operação (cIndOp), 6 digits
    tax_regime: str | None = None  # brazil.REGIMES: simples, mei, presumido, real
    # The note's amounts as Odoo computed them (brazil.NfseAmounts); None: computed from the lines.
    amounts: object = None


@dataclass
class FiscalLine:
    code: str  # item reference (SKU or a stable name)
    description: str
    quantity: Decimal
    unit_price: Decimal  # tax excluded, in the document currency
    tax_name: str | None = None  # the provider's tax name (e.g. IVA23)
    tax_rate: Decimal = Decimal("0")
    tax_exemption_code: str | None = None  # SAF-T PT M-code for 0 % lines
    discount: Decimal = Decimal("0")  # percent
    unit: str | None = None
    is_shipping: bool = False
    # Credit notes: the row (1-based) of the original document this line credits (Vendus).
    related_row: int | None = None
    # Odoo's VAT-inclusive line total (after discount): lets a provider that takes VAT-inclusive
    # prices choose one that reproduces it exactly (docs/mapping-rules.md).
    total_included: Decimal | None = None


@dataclass
class FiscalProduct:
    """A product as the provider's catalogue keeps it, matched by its SKU (``code``)."""

    code: str  # internal reference (SKU): the key, never duplicated
    description: str
    unit_price: Decimal  # tax excluded
    tax_name: str | None = None
    tax_rate: Decimal = Decimal("0")
    tax_exemption_code: str | None = None
    unit: str | None = None
    remote_id: str | None = None  # known from an earlier sync


@dataclass
class FiscalPayment:
    """A payment carried by an invoice-receipt / simplified invoice, or a receipt."""

    amount: Decimal
    date: date
    method: str = "TB"  # provider-neutral code: TB transfer, NU cash, CC card, MB, CH cheque, OU other
    reference: str | None = None  # our reference of the payment (idempotency)


DOCUMENT_KINDS = ("invoice", "invoice_receipt", "simplified_invoice", "credit_note")


@dataclass
class FiscalDocumentData:
    """A fiscal document as Odoo wants it to exist at the provider."""

    reference: str  # our external reference: identical on every retry, forever
    kind: str  # one of DOCUMENT_KINDS
    date: date
    due_date: date | None
    currency: str
    lines: list
    partner: FiscalParty | None = None  # None = final consumer
    origin: str | None = None  # e.g. the sale order name, shown on the document
    notes: str | None = None
    related_remote_id: str | None = None  # original document of a credit note
    related_number: str | None = None  # its fiscal number (Vendus references it by number)
    reason: str | None = None  # credit note / cancellation reason
    expected_total: Decimal | None = None  # Odoo's total, for the totals guard
    email_to: str | None = None
    send_email: bool = False  # ask the provider to email the customer (eNotas: enviarPorEmail)
    service: FiscalService | None = None  # service invoices (NFS-e)
    payments: list = field(default_factory=list)  # FiscalPayment, for FR/FS-type documents
    issued_at: datetime | None = None  # the emission moment, naive, in the company's timezone (NFS-e dEmis)

    def __post_init__(self):
        if self.kind not in DOCUMENT_KINDS:
            raise ValueError(f"Unknown document kind {self.kind!r}")


class CancelReason(str):
    """A cancellation reason that may carry a motive code (NFS-e: 1 error in the emission,
    2 service not rendered, 4 duplicate, 9 other). A plain ``str`` for every provider that only
    takes a text; the NFS-e providers read ``motive`` too."""

    motive = None

    def __new__(cls, text, motive=None):
        reason = super().__new__(cls, text or "")
        reason.motive = motive or None
        return reason


@dataclass
class RemoteDocument:
    """What the provider says about one of its documents."""

    remote_id: str
    kind: str
    # draft | pending (async authorization running) | final | settled | rejected |
    # cancel_pending | canceled | cancel_denied | deleted
    state: str
    number: str | None = None
    atcud: str | None = None  # PT: ATCUD; BR: verification code
    total: Decimal | None = None
    reference: str | None = None
    message: str | None = None  # e.g. the reason of a rejection
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def is_final(self):
        return self.state in ("final", "settled")


@dataclass
class Exchange:
    """One HTTP exchange, already redacted, for the attempt log."""

    method: str
    path: str
    status: int | None
    duration_ms: int
    request: str = ""
    response: str = ""


# ---------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------


@dataclass
class ClientServices:
    """What the engine hands a client at construction: a pooled session, the account's
    throttle and rate observer, a cache shared by the account's clients, and how many PDF
    polls one call may make (the engine polls a batch in rounds). All optional."""

    session: requests.Session | None = None
    throttle: Callable[[], None] | None = None
    observe_rate: Callable[..., None] | None = None
    shared: dict | None = None
    pdf_polls: int | None = None


class FiscalProvider:
    """One external invoicing service.

    Every public method maps to one remote operation and returns data or raises
    one of the errors above. Subclasses set ``code``/``label``/``default_base_url``
    and declare ``capabilities`` so the Odoo layer can drive buttons and flows.
    """

    code = None
    label = None
    default_base_url = None
    # Base URL per environment ("test", "production") when the service has one per environment.
    default_urls = {}
    # Published request budget per account and minute (0: none published).
    default_rate_limit = 0
    credential_fields = ("api_key",)
    # Subset of {"draft", "email", "pdf", "xml", "cancel", "credit_note", "receipt", "find_by_reference",
    # "find_receipt", "settle", "async"}; "async" = create answers before the document is final (poll
    # fetch_status / webhooks); "find_receipt" = a receipt can be found by our payment reference.
    capabilities = frozenset()
    # Largest body kept (after redaction) in the attempt log, per exchange.
    trace_body_limit = 600
    # A PDF still being rendered: asked at most this many times per attempt, this far apart
    # (the engine asks in rounds for a whole batch, see ClientServices.pdf_polls).
    # "Send data only": False when the service keeps no customer records (nothing is sent then).
    keeps_customer_records = True
    # Cancellation motive codes the service takes (NFS-e national standard), and what cancelling
    # allows, in words shown before a user cancels or refunds.
    cancel_motives = ()
    cancellation_rules = ()
    pdf_max_polls = 1
    pdf_poll_interval = 0.0
    # Portugal: in production every final document carries its ATCUD (DL 28/2019 art. 7(3), Portaria
    # 195/2020), which exists only once its series is communicated to the AT. True for PT services.
    atcud_required = False
    # Documents final on creation: nothing could be compared before, so the total is compared after.
    compare_final_total = False
    # Seconds a final document's PDF takes to be ready at the service: the engine asks for it no
    # sooner (0: at once).
    pdf_ready_after = 0.0

    def __init__(self, config: ProviderConfig, session: requests.Session | None = None, services=None):
        services = services or ClientServices()
        self.config = config
        self.services = services
        self.session = session or services.session or requests.Session()
        # Called before every request (a token bucket's acquire), and with the provider's own count
        # of what is left (rate-limit headers); None outside the engine.
        self.throttle = services.throttle
        self.observe_rate = services.observe_rate
        # What the clients of one account share during a run. "clients": remote customers by our
        # code, (remote id, digest of what was sent), seeded by the Odoo layer from earlier runs and
        # stored back after the run (fiscal.partner.binding).
        self.shared = services.shared if services.shared is not None else {}
        self.redact = Redactor(config.secrets)
        self.trace: list[Exchange] = []
        self.calls = 0

    def pdf_polls_per_call(self):
        """How many times one fetch_pdf call may ask for a PDF still being rendered."""
        return self.services.pdf_polls or self.pdf_max_polls

    def _download(self, url, what):
        """A file behind a link the service gave (a pre-signed storage URL): no credentials, not
        counted in the API budget (no throttle), counted in ``calls`` as a request all the same."""
        self.calls += 1
        try:
            response = self.session.get(url, timeout=self.config.timeout)
            content = response.content
        except Exception as e:  # noqa: BLE001 - any transport error is transient here
            raise TransientError(f"{self.label}: {what} download failed ({type(e).__name__})") from None
        if body_is_truncated(response, content):
            raise TransientError(f"{self.label}: {what} download cut short")
        if response.status_code != 200 or not content:
            raise TransientError(
                f"{self.label}: {what} download answered HTTP {response.status_code}", status=response.status_code
            )
        return content

    # -- operations (override) ---------------------------------------------
    def prepare(self, doc: FiscalDocumentData) -> None:
        """Make sure what the document refers to exists remotely (customer, items).
        Idempotent; never creates a fiscal document. Default: nothing to do."""

    def create(self, doc: FiscalDocumentData) -> RemoteDocument:
        raise NotImplementedError

    def finalize(self, kind: str, remote_id: str) -> RemoteDocument:
        raise NotImplementedError

    def cancel(self, kind: str, remote_id: str, reason: str) -> RemoteDocument:
        raise NotImplementedError

    def create_credit_note(self, doc: FiscalDocumentData) -> RemoteDocument:
        return self.create(doc)

    def fetch_status(self, kind: str, remote_id: str) -> RemoteDocument:
        raise NotImplementedError

    def fetch_pdf(self, kind: str, remote_id: str) -> bytes:
        raise NotImplementedError

    def fetch_xml(self, kind: str, remote_id: str) -> bytes:
        """The legal XML (Brazil: the NFS-e as authorized)."""
        raise NotImplementedError

    def register_payment(self, kind: str, remote_id: str, payment: FiscalPayment) -> RemoteDocument:
        """A receipt for (part of) an issued invoice (InvoiceXpress partial payment, Vendus RG)."""
        raise NotImplementedError

    def send_email(self, kind: str, remote_id: str, email: str, subject: str, body: str) -> None:
        raise NotImplementedError

    def find_by_reference(self, doc: FiscalDocumentData) -> RemoteDocument | None:
        """The document created with ``doc.reference``, or None (capability "find_by_reference")."""
        raise NotImplementedError

    def find_receipt(self, reference: str, invoice_remote_id: str | None = None) -> RemoteDocument | None:
        """The receipt created with this payment reference (on the invoice ``invoice_remote_id``),
        or None (capability "find_receipt")."""
        raise NotImplementedError

    def test_connection(self) -> str:
        raise NotImplementedError

    def sync_product(self, product: FiscalProduct) -> str:
        """Create the product in the provider's catalogue, or update the one with this SKU;
        returns its remote id. Never creates a second product for a SKU."""
        raise NotImplementedError

    def list_documents(self, date_from: date, date_to: date) -> list:
        """Every fiscal document of the period at the provider (reconciliation), as RemoteDocuments
        with reference and total. Providers that cannot list raise NotImplementedError."""
        raise NotImplementedError

    def settle(self, kind: str, remote_id: str) -> RemoteDocument:
        """Mark a final document as paid at the provider (InvoiceXpress "settled")."""
        raise NotImplementedError

    def final_document_problems(self, remote: RemoteDocument, expected_total=None, tolerance=0) -> list:
        """What makes a document final at the service unfit to be called issued (empty: nothing).
        It exists and stays: the caller records it with the problems, never sends it again."""
        problems = []
        if (
            self.compare_final_total
            and expected_total is not None
            and remote.total is not None
            and abs(Decimal(remote.total) - Decimal(expected_total)) > Decimal(str(tolerance or 0))
        ):
            problems.append(
                f"{self.label} issued {remote.number or remote.remote_id} at {remote.total} but Odoo's total is "
                f"{expected_total} (difference {abs(Decimal(remote.total) - Decimal(expected_total))}). The "
                "document is final there and is not sent again: credit it (reverse the invoice) and invoice again."
            )
        if self.atcud_required and self.config.environment == "production" and remote.kind in DOCUMENT_KINDS:
            if remote.is_final and not remote.atcud:
                problems.append(self.missing_atcud_advice(remote))
        return problems

    def missing_atcud_advice(self, remote: RemoteDocument) -> str:
        return (
            f"{self.label} finalized {remote.number or remote.remote_id} without ATCUD: its series is not "
            f"communicated to the Tax Authority. Communicate it in {self.label}, then click Retry to read the "
            "document again (it is final there and is never issued twice)."
        )

    @classmethod
    def cancel_requires_credit_note(cls, kind: str) -> bool:
        """True when a final document of this kind can only be undone by a credit note
        (a capability the Odoo layer reads to drive buttons and automatic behaviour)."""
        return "cancel" not in cls.capabilities

    @staticmethod
    def parse_webhook(payload):
        """``(remote_id, our_reference)`` named by a status notification; ValueError when
        the payload is not one. Providers without webhooks refuse everything."""
        raise ValueError("this provider sends no webhooks")

    # -- helpers --------------------------------------------------------------
    def take_trace(self):
        trace, self.trace = self.trace, []
        return trace

    def _short(self, text):
        text = self.redact(text or "")
        if len(text) > self.trace_body_limit:
            text = text[: self.trace_body_limit] + "…"
        return text

    def _url(self, path):
        return self.config.base_url.rstrip("/") + "/" + path.lstrip("/")

    def _auth(self, kwargs):
        """Add authentication to a request's keyword arguments (override)."""
        return kwargs

    def _request(self, method, path, *, params=None, json_body=None, expected=(200, 201), raw=False):
        """Send one request; return the ``requests.Response``.

        Network failures become TransientError with a message free of secrets
        (requests puts the full URL, query string included, into its errors).
        Non-expected status codes go through :meth:`_raise_for_status`.
        """
        kwargs = {"params": dict(params or {}), "timeout": self.config.timeout}
        headers = {"Accept": "application/json"}
        if json_body is not None:
            kwargs["data"] = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
        kwargs["headers"] = headers
        kwargs = self._auth(kwargs)
        url = self._url(path)
        if self.throttle is not None:
            self.throttle()
        self.calls += 1
        started = time.monotonic()
        request_summary = self._short(json.dumps(json_body, default=str)) if json_body is not None else ""
        try:
            response = self.session.request(method, url, **kwargs)
            # Reading the body may itself fail (reset mid-response, truncated chunk).
            content = response.content
        except requests.Timeout as e:
            self._record(method, path, None, started, request_summary, "timeout")
            raise TransientError(f"{self.label}: no answer within the timeout ({type(e).__name__})") from None
        except requests.RequestException as e:
            self._record(method, path, None, started, request_summary, type(e).__name__)
            raise TransientError(
                f"{self.label}: connection failed ({type(e).__name__}): {self.redact(_root_cause(e))}"
            ) from None
        if body_is_truncated(response, content):
            self._record(method, path, response.status_code, started, request_summary, "truncated")
            raise TransientError(
                f"{self.label}: incomplete answer (HTTP {response.status_code}, body cut short)",
                status=response.status_code,
            )
        self._record(
            method,
            path,
            response.status_code,
            started,
            request_summary,
            "" if raw else content.decode("utf-8", "replace"),
        )
        if self.observe_rate is not None:
            remaining = response.headers.get("Rate-Limit-Remaining") or response.headers.get("X-RateLimit-Remaining")
            if remaining is not None and remaining.strip().lstrip("-").isdigit():
                self.observe_rate(int(remaining), retry_after_seconds(response, default=None))
        if response.status_code not in expected:
            self._raise_for_status(response)
        return response

    def _record(self, method, path, status, started, request_summary, response_text):
        duration = int((time.monotonic() - started) * 1000)
        path = self.redact(path)
        exchange = Exchange(method, path, status, duration, request_summary, self._short(response_text))
        self.trace.append(exchange)
        _logger.debug("%s %s %s -> %s in %d ms", self.code, method, path, status, duration)

    def _raise_for_status(self, response):
        status = response.status_code
        message = self.redact(_error_text(response)) or f"HTTP {status}"
        if status == 401 or status == 403:
            raise AuthenticationError(f"{self.label} refused the credentials: {message}", status=status)
        if status == 404:
            raise NotFoundError(f"{self.label}: not found: {message}", status=status)
        if status == 429:
            raise RateLimitedError(
                f"{self.label}: too many requests", status=status, retry_after=retry_after_seconds(response)
            )
        if 400 <= status < 500:
            raise ValidationError(message, status=status)
        raise TransientError(f"{self.label}: server error HTTP {status}", status=status)

    def _json(self, response):
        try:
            return response.json()
        except ValueError:
            raise TransientError(
                f"{self.label}: unreadable answer (HTTP {response.status_code}, not JSON)", status=response.status_code
            ) from None


def retry_after_seconds(response, default=60.0):
    """Seconds to wait from a Retry-After or Rate-Limit-Reset header."""
    for header in ("Retry-After", "Rate-Limit-Reset", "X-RateLimit-Reset"):
        value = response.headers.get(header)
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                from email.utils import parsedate_to_datetime

                try:
                    when = parsedate_to_datetime(value)
                    return max(0.0, when.timestamp() - time.time())
                except (TypeError, ValueError):
                    continue
    return default


def body_is_truncated(response, content):
    """True when fewer bytes arrived than the Content-Length announced.

    urllib3 1.26 (what requests uses here) hands over a short body without an error
    when the connection closes early: a half JSON, or half a PDF that still starts with %PDF.
    """
    declared = (response.headers.get("Content-Length") or "").strip()
    if not declared.isdigit():
        return False
    encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding == "identity":
        received = len(content)
    else:  # requests decoded the body: compare the bytes read from the wire
        try:
            received = response.raw.tell()
        except Exception:  # noqa: BLE001 - no way to tell: trust the body
            return False
    return received < int(declared)


def _root_cause(exc):
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__
    return str(exc)[:300]


def _error_text(response):
    """Human text from the error bodies the services use (JSON in many shapes, or text)."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip()[:500]
    return "; ".join(flatten_errors(body))[:1000]


def flatten_errors(body):
    """``{"errors":[{"error":"x"}]}``, ``{"errors":["x"]}``, ``{"errors":{"f":["x"]}}``,
    ``{"error":"x"}``, ``[{"codigo":..,"mensagem":..}]``, ``{"errors":[{"code":..,"message":..}]}`` -> ["x", ...]"""
    out = []
    if isinstance(body, str):
        out.append(body)
    elif isinstance(body, list):
        for item in body:
            out.extend(flatten_errors(item))
    elif isinstance(body, dict):
        if "errors" in body:
            errors = body["errors"]
            if isinstance(errors, dict):
                for fname, msgs in errors.items():
                    for msg in msgs if isinstance(msgs, list) else [msgs]:
                        out.append(f"{fname} {msg}")
            else:
                out.extend(flatten_errors(errors))
        else:
            for key in ("error", "message", "mensagem", "msg"):
                if key in body and body[key]:
                    code = body.get("code") or body.get("codigo")
                    out.append(f"{code}: {body[key]}" if code else str(body[key]))
                    break
    return [o for o in out if o]
