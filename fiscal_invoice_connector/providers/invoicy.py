"""InvoiCy (Migrate, Brazil): NFS-e through the InvoiCy gateway, over SOAP.

Contract: ../shared/provider-apis-invoicy.md. Facts marked [?] there (and the guesses
made here) are kept in the module constants and class attributes below, so they are
easy to change once checked on a homologação account.

One SOAP 1.1 operation does everything: ``Execute`` of the reception service
``arecepcao`` (document/literal). Its WSDL ships with the addon (``wsdl/``) and is read
from disk; the service is bound to the configured endpoint, so nothing is downloaded at
run time. The request carries the partner key (``EmpPK``), a communication key
(``EmpCK`` = MD5 of the company access key + the document, see
:func:`communication_key`) and the document itself as escaped XML text: ``<Envio>`` (an
RPS to turn into an NFS-e), ``<Consulta>`` or ``<EnvioEvento>`` (cancellation).

Our ``doc.reference`` travels as ``IDUnico``, the integrator's own key of the note: it
is identical on every retry and is the ``remote_id`` of every document, so a document
whose creation answer was lost is found again by consulting it
(:meth:`InvoicyProvider.find_by_reference`), and sending it again is refused with
:class:`DuplicateReferenceError`.

Authorization is asynchronous: ``create`` answers "pending" (``SitCodigo`` 105) and the
municipality decides later, which :meth:`InvoicyProvider.fetch_status` reads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
import unicodedata
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse, urlunparse
from xml.parsers.expat import ExpatError

import requests
import xmltodict
import zeep
import zeep.exceptions
from lxml import etree
from zeep.helpers import serialize_object

from . import brazil
from .base import (
    AuthenticationError,
    Exchange,
    FiscalDocumentData,
    FiscalProvider,
    InvalidStateError,
    NotFoundError,
    NotReadyError,
    ProviderError,
    RateLimitedError,
    Redactor,
    RemoteDocument,
    TransientError,
    ValidationError,
    _root_cause,
    body_is_truncated,
    retry_after_seconds,
)
from .numbers import digits_only as _digits
from .numbers import half_up as _money
from .numbers import half_up_text as _fmt
from .numbers import to_decimal as _decimal
from .numbers import to_int as _int

_logger = logging.getLogger(__name__)

WSDL_PATH = Path(__file__).resolve().parent / "wsdl" / "invoicy_recepcao.wsdl"
NAMESPACE = "InvoiCy"  # a bare string, not a URI [C]
BINDING_QNAME = f"{{{NAMESPACE}}}recepcaoSoapBinding"
ENDPOINT_PATH = "/arecepcao.aspx"

# Code 179 blocks identical requests for 1 to 60 minutes [C for the code, 1 for the numbers]:
# wait this long before the next try.
RATE_LIMIT_RETRY_AFTER = 300.0
# While the municipality has not decided: how long to wait before reading again.
PENDING_RETRY_AFTER = 30.0


class DuplicateReferenceError(ValidationError):
    """InvoiCy already has a note with this ``IDUnico`` (our reference): the answer of an
    earlier send was lost, or another worker sent it. Not a data problem: the Odoo layer
    looks the note up with ``find_by_reference`` instead of creating another one."""

    kind = "duplicate"


# ---------------------------------------------------------------------------
# Return codes. ONE table for the call-level code (Invoicyretorno/Mensagem/MensagemItem/
# Codigo) -> the error class to raise, or None when the documents were processed and
# each carries its own outcome (SITUATIONS below). Sources: "Códigos de retorno do
# InvoiCy" (CODES) [C]; MS = the MultiSoftware client [1]; "guess" = undocumented, chosen here.
# ---------------------------------------------------------------------------
RETURN_CODES = {
    0: (None, "processed (the official NF-e answer example shows 0)"),  # [1]
    100: (None, "Documentos processados"),
    103: (AuthenticationError, "digital certificate validation failed"),  # the company's setup
    104: (AuthenticationError, "no digital certificate imported for the company"),
    108: (TransientError, "tax authority entering contingency"),
    109: (TransientError, "tax authority in contingency"),
    117: (NotFoundError, "no document found"),
    145: (ValidationError, "XML structure of the document refused (layout)"),
    172: (AuthenticationError, "partner key not recognised"),  # guess: no code is documented
    173: (AuthenticationError, "invalid communication key"),
    174: (ValidationError, "document and environment not identified"),
    176: (ValidationError, "document type not identified"),
    179: (RateLimitedError, "abusive use: identical requests are blocked for a while"),
    199: (TransientError, "failure fetching the data for the emission"),
    201: (AuthenticationError, "digital signature failed (company certificate)"),  # guess: account setup
    313: (DuplicateReferenceError, "already effected in the system"),  # [1] MS
    602: (ValidationError, "no web service found for the municipality"),
    606: (AuthenticationError, "company not enabled in InvoiCy"),
    607: (AuthenticationError, "company not licensed for this module / environment"),
    999: (TransientError, "generic error"),
}
# A call-level code missing from the table: refused, a person has to look at it.
UNKNOWN_CODE_ERROR = ValidationError

# Per-document situation (Situacao/SitCodigo of send and event answers, DocSitCodigo of
# consultations) -> RemoteDocument.state. [C] CODES; 104/111 only in MS [1]. Any other
# code is a rejection, the municipality's text in SitDescricao.
SITUATIONS = {
    100: "final",  # autorizado o uso
    101: "canceled",  # cancelamento homologado
    102: "deleted",  # inutilizado
    104: "pending",  # em processamento [1]
    105: "pending",  # documento pendente (asynchronous queue)
    108: "pending",  # pendente em contingência
    111: "pending",  # RPS já enviado: keep polling [1]
    135: "canceled",  # evento (the cancellation) autorizado e vinculado
}
NOT_FOUND_SITUATIONS = frozenset({106})  # não consta na base de dados do InvoiCy
DUPLICATE_SITUATIONS = frozenset({111})  # answer to a send: this RPS / IDUnico was sent before [1]
PENDING_SITUATIONS = frozenset(code for code, state in SITUATIONS.items() if state == "pending")

# DocStatus of consultations [C] -> state; preferred to DocSitCodigo when present.
DOC_STATUS = {
    1: "pending",  # pendente
    2: "final",  # autorizado
    3: "rejected",
    4: "pending",  # necessita interação / pendente de consulta
    5: "canceled",
    6: "deleted",  # inutilizado
    7: "pending",  # aguardando consulta
    8: "final",  # encerrado
    9: "pending",  # em conflito: resolved by a person in the InvoiCy portal, keep reading
    10: "pending",  # EPEC
    11: "pending",  # contingência off-line
    12: "rejected",  # denegado
    13: "pending",  # contingência FS-DA
    15: "pending",  # contingência SVC
}
CONFLICT_STATUS = 9

# Base64 fields of the answers: the PDF and the municipal XML (send answers use the
# *Base64 names, consultations the short ones) [C].
PDF_FIELDS = ("DocPDF", "DocPDFBase64")
XML_FIELDS = ("DocXML", "DocXMLBase64")

_XML_DECLARATION_RE = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_ANY_XML_DECLARATION_RE = re.compile(r"<\?xml[^>]*\?>", re.IGNORECASE)
_BETWEEN_TAGS_RE = re.compile(r">\s+<")
_CONTROL_RE = re.compile(r"[\r\n\t]+")
# The partner key and the communication key inside a SOAP envelope (any prefix).
_ENVELOPE_SECRET_RE = re.compile(r"(<(?:[\w.-]+:)?Emp(?:PK|CK)(?:\s[^>]*)?>)[^<]*")
_BASE64_FIELD_RE = re.compile(r"(<(Doc(?:PDF|XML)(?:Base64)?|DocEveXML|DocCompleto)>)([^<]{80,})(</\2>)")

CENT = Decimal("0.01")
RATE_PLACES = Decimal("0.0001")
QUANTITY_PLACES = Decimal("0.0001")


# ---------------------------------------------------------------------------
# The communication key
# ---------------------------------------------------------------------------


def linearize(xml_text):
    """The document as InvoiCy wants it hashed and sent: no XML declaration, no line
    breaks or tabs, no whitespace between tags [C] (PHP ``preg_replace('/>\\s+</', '><')``)."""
    text = _XML_DECLARATION_RE.sub("", xml_text or "").strip()
    text = _BETWEEN_TAGS_RE.sub("><", text)
    return _CONTROL_RE.sub("", text)


def communication_key(access_key, xml_text):
    """``EmpCK``: lower-case hex MD5 of the company access key followed by the linearized
    document XML (the unescaped text of the first ``Documento``), over UTF-8 bytes [C].

    The same ``linearize(xml_text)`` must be what is sent: the service hashes what it receives.
    """
    return hashlib.md5((str(access_key) + linearize(xml_text)).encode("utf-8")).hexdigest()


def _non_ascii_message(document):
    """Where the document carries text InvoiCy cannot take (plain ASCII only)."""
    try:
        element = next(e for e in etree.fromstring(document.encode("utf-8")).iter() if not (e.text or "").isascii())
        where, text = etree.QName(element).localname, element.text
    except (etree.XMLSyntaxError, StopIteration, ValueError):
        where, text = "the document", document
    return (
        "InvoiCy accepts plain ASCII text only (accented or non-Latin characters break its communication key, "
        f"code 173): {where} “{text[:80]}”. Fix it (e.g. the customer's e-mail address), then retry."
    )


def mask_envelope(text):
    """``<EmpPK>``/``<EmpCK>`` contents masked, whatever the namespace prefix."""
    return _ENVELOPE_SECRET_RE.sub(r"\1" + Redactor.MASK, text) if text else text


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _yes_no(value):
    """InvoiCy's flags: 1 sim, 2 não."""
    if isinstance(value, str):
        value = value.strip().lower() in ("1", "true", "yes", "sim", "s")
    return "1" if value else "2"


def lc116(value):
    """LC 116 item *with a dot* [C]: ``1401`` -> ``14.01``, ``801`` -> ``08.01``."""
    text = str(value or "").strip()
    if not text:
        return None
    if "." in text:
        head, _, tail = text.partition(".")
        return f"{int(head):02d}.{tail}" if head.isdigit() else text
    digits = _digits(text)
    if len(digits) in (3, 4):
        return f"{int(digits[:-2]):02d}.{digits[-2:]}"
    return text


def _as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _text_of(value):
    """xmltodict value -> text ('' for empty elements and attributes-only nodes)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return str(value.get("#text") or "")
    return str(value)


def parse_documents(text):
    """The return XML(s) of one ``Documento`` string -> list of dicts.

    A consultation may put several ``<Documento>`` roots in one string: wrap first [1] (MS).
    """
    text = _ANY_XML_DECLARATION_RE.sub("", text or "").strip()  # each root may carry its own
    if not text:
        return []
    try:
        tree = xmltodict.parse(f"<RetornoMigrate>{text}</RetornoMigrate>", force_list=("Documento", "EventosItem"))
    except ExpatError as e:
        raise TransientError(f"InvoiCy: unreadable document in the answer ({e})") from None
    root = tree.get("RetornoMigrate") or {}
    documents = []
    if isinstance(root, dict):
        for value in root.values():
            documents.extend(item for item in _as_list(value) if isinstance(item, dict))
    return documents


class _OfflineTransport(zeep.Transport):
    """zeep's transport, except that it never downloads anything (the WSDL ships with the
    addon) and that each POST goes through the provider, which times it, records it in the
    trace (redacted) and turns network failures into TransientError."""

    def __init__(self, provider, **kwargs):
        super().__init__(**kwargs)
        self._provider = provider

    def load(self, url):
        if urlparse(str(url)).scheme in ("http", "https"):
            raise RuntimeError(f"InvoiCy: refusing to download {url}: the WSDL ships with the addon")
        return super().load(url)

    def post(self, address, message, headers):
        return self._provider._post(address, message, headers)


# ---------------------------------------------------------------------------
# The provider
# ---------------------------------------------------------------------------


class InvoicyProvider(FiscalProvider):
    """InvoiCy NFS-e over SOAP.

    Credentials: ``partner_key`` (EmpPK, issued by Migrate to the integrator) and
    ``access_key`` (the company's "Chave de Acesso", only used to compute EmpCK, never sent).

    Options: ``company_code`` (required: the issuing company's CNPJ as registered in
    InvoiCy, which is how InvoiCy tells the partner's companies apart: ``CNPJ_prest`` /
    ``CnpjEmissor``), ``municipal_registration`` (IM of the company), ``city_code`` (its
    IBGE municipality, the default place of service), ``rps_series`` (a series registered
    in InvoiCy; empty = the company's default), ``nat_op`` (natureza da operação, default
    1), ``simples_nacional`` / ``cultural_incentive`` (booleans; the service's tax regime,
    when given, decides ``OptSN``), ``special_regime`` (RegEspTrib), ``pdv_code`` (EmpCO, empty
    for web services). The cancellation's motive (EveCodigo: 1 error in the emission, 2 service
    not rendered, 4 duplicate; default 1) comes with the reason (:class:`~.base.CancelReason`).

    ``remote_id`` is our reference (``IDUnico``). States: pending, final, rejected,
    cancel_pending, canceled, deleted.
    """

    code = "invoicy"
    label = "InvoiCy"
    # Homologação and produção are different hosts. The production host of arecepcao is
    # conflicting in the sources (app. / nfse. / www.) [?]: app. like awebhook's.
    default_urls = {
        "test": "https://homolog.invoicy.com.br/arecepcao.aspx",
        "production": "https://app.invoicy.com.br/arecepcao.aspx",
    }
    default_base_url = default_urls["production"]
    credential_fields = ("partner_key", "access_key")
    capabilities = frozenset({"pdf", "xml", "cancel", "find_by_reference", "async"})
    keeps_customer_records = False  # "Send data only" sends nothing: prepare() only checks

    wsdl_path = WSDL_PATH
    binding_qname = BINDING_QNAME
    endpoint_path = ENDPOINT_PATH
    # Envio/ModeloDocumento as the official example spells it; consultations and events use "NFSe" [C].
    send_model = "NFSE"
    consult_model = "NFSe"
    layout_version = "1.00"
    event_version = "1"
    cancel_event_type = "110111"
    cancel_motives = ("1", "2", "4")  # EveCodigo: the motives of brazil.CANCEL_MOTIVES InvoiCy takes [C]
    default_cancel_code = "1"
    reason_max_length = 100
    # What a user may do, shown before a refund (docs/mapping-rules.md, cancellation matrix).
    cancellation_rules = (
        "motive 1 error in the emission, 2 service not rendered or 4 duplicate, and a justification of 15 to "
        "100 characters",
        "some municipal standards cannot cancel over the web service (E-Nota, for one): InvoiCy then cancels "
        "on its side only, and the note must also be cancelled at the city hall's portal",
    )
    # RegEspTrib of a MEI (ABRASF table: 5 Microempresário Individual) [?].
    mei_special_regime = "5"
    reference_max_length = 200  # IDUnico [C]
    # Accented characters break the communication key (173) [C]: send plain ASCII.
    ascii_only = True
    # Line breaks inside Discriminacao [C].
    line_break = "!CHR13!"
    default_unit = "UN"
    rate_limit_retry_after = RATE_LIMIT_RETRY_AFTER
    pending_retry_after = PENDING_RETRY_AFTER
    # Communication keys remembered for redaction (a client lives for one cron batch).
    max_remembered_keys = 32

    def __init__(self, config, session=None, services=None):
        super().__init__(config, session, services)
        self.endpoint = self.endpoint_for(config.base_url, config.environment)
        self._service = None
        self._keys = []
        self._request_summary = ""

    # -- configuration ----------------------------------------------------------
    @classmethod
    def endpoint_for(cls, base_url, environment="test"):
        """The reception endpoint: ``base_url`` when it names another service (a sandbox, the
        simulator; a bare host gets ``/arecepcao.aspx``), else the default host of the environment.
        A base URL left at a default address follows the environment (homologação vs produção)."""
        base_url = (base_url or "").strip()
        if not base_url or base_url.rstrip("/") in cls.default_urls.values():
            base_url = cls.default_urls.get(environment) or cls.default_base_url
        parts = urlparse(base_url)
        path = parts.path if parts.path not in ("", "/") else cls.endpoint_path
        return urlunparse((parts.scheme, parts.netloc, path, "", "", ""))  # drops a pasted "?wsdl"

    @property
    def tp_amb(self):
        """tpAmb: 1 produção, 2 homologação [C]."""
        return "1" if self.config.environment == "production" else "2"

    def _option(self, name, default=None):
        value = self.config.options.get(name)
        return default if value in (None, "") else value

    @property
    def company_cnpj(self):
        return _digits(self._option("company_code"))

    def _check_account(self):
        """What the account must have before anything is sent (no request otherwise)."""
        missing = [name for name in self.credential_fields if not self.config.credentials.get(name)]
        if not self.company_cnpj:
            missing.append("company_code (the company's CNPJ)")
        if missing:
            raise AuthenticationError(f"InvoiCy: the account is missing {', '.join(missing)}.")
        if brazil.clean_tax_id(self.company_cnpj) is None or len(self.company_cnpj) != 14:
            raise AuthenticationError(
                f"InvoiCy: the company code {self._option('company_code')} is not a valid CNPJ "
                "(InvoiCy identifies the issuing company by its CNPJ)."
            )

    # -- transport ----------------------------------------------------------------
    def _proxy(self):
        """The ``Execute`` service bound to our endpoint (built once, from the local WSDL)."""
        if self._service is None:
            transport = _OfflineTransport(
                self,
                cache=None,
                session=self.session,
                timeout=self.config.timeout,
                operation_timeout=self.config.timeout,
            )
            # Not strict: tolerate an answer missing an optional-looking element; the
            # shape is checked by hand below. Huge trees: base64 PDFs are large text nodes.
            settings = zeep.Settings(strict=False, xml_huge_tree=True)
            client = zeep.Client(str(self.wsdl_path), transport=transport, settings=settings)
            self._service = client.create_service(self.binding_qname, self.endpoint)
        return self._service

    def _mask(self, text):
        return self.redact(mask_envelope(text or ""))

    def _short(self, text):
        text = self._mask(text)
        if len(text) > self.trace_body_limit:
            text = text[: self.trace_body_limit] + "…"
        return text

    def _remember_key(self, key):
        self._keys = [k for k in self._keys if k != key][-(self.max_remembered_keys - 1) :] + [key]
        self.redact = Redactor([*self.config.secrets, *self._keys])

    def _post(self, address, message, headers):
        """One HTTP POST of an envelope (called by zeep through _OfflineTransport)."""
        path = urlparse(address).path or "/"
        started = time.monotonic()
        try:
            response = self.session.post(address, data=message, headers=headers, timeout=self.config.timeout)
            content = response.content  # reading the body may itself fail (reset mid-answer)
        except requests.Timeout as e:
            self._record(path, None, started, "timeout")
            raise TransientError(f"InvoiCy: no answer within the timeout ({type(e).__name__})") from None
        except requests.RequestException as e:
            self._record(path, None, started, type(e).__name__)
            raise TransientError(
                f"InvoiCy: connection failed ({type(e).__name__}): {self._mask(_root_cause(e))}"
            ) from None
        if body_is_truncated(response, content):
            self._record(path, response.status_code, started, "truncated")
            raise TransientError(
                f"InvoiCy: incomplete answer (HTTP {response.status_code}, body cut short)",
                status=response.status_code,
            )
        self._record(path, response.status_code, started, content.decode("utf-8", "replace"))
        status = response.status_code
        if status != 200 and b"Fault" not in content:  # a SOAP Fault (500) is zeep's to read
            if status in (401, 403):
                raise AuthenticationError(f"InvoiCy refused the request (HTTP {status})", status=status)
            if status == 429:
                raise RateLimitedError(
                    "InvoiCy: too many requests",
                    status=status,
                    retry_after=retry_after_seconds(response, self.rate_limit_retry_after),
                )
            if status == 404:
                raise TransientError(f"InvoiCy: no service at {path} (HTTP 404): check the URL", status=status)
            raise TransientError(f"InvoiCy: server error HTTP {status}", status=status)
        # zeep parses leniently when not strict (lxml "recover"): an envelope cut in the middle
        # would read as an answer with no documents. Refuse what is not well-formed first.
        try:
            etree.fromstring(content, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
        except etree.XMLSyntaxError:
            raise TransientError(
                f"InvoiCy: unreadable answer (HTTP {status}, not well-formed XML)", status=status
            ) from None
        return response

    def _record(self, path, status, started, response_text):
        duration = int((time.monotonic() - started) * 1000)
        self.trace.append(Exchange("POST", path, status, duration, self._request_summary, self._short(response_text)))
        _logger.debug("%s POST %s -> %s in %d ms", self.code, path, status, duration)

    def _execute(self, document, parameters=""):
        """One ``Execute`` call. Returns the answered documents (dicts), after mapping the
        call-level code through RETURN_CODES."""
        self._check_account()
        document = linearize(document)
        parameters = linearize(parameters) if parameters else ""
        if self.ascii_only and not document.isascii():
            # The service answers 173 "invalid communication key" to any accented character [C]:
            # that reads as refused credentials and paused the whole account for one customer's
            # e-mail (fault suite). Refuse this document instead, saying what to fix.
            raise ValidationError(_non_ascii_message(document))
        key = communication_key(self.config.credentials["access_key"], document)
        self._remember_key(key)
        request = {
            "Cabecalho": {
                "EmpPK": self.config.credentials["partner_key"],
                "EmpCK": key,
                "EmpCO": str(self._option("pdv_code", "")),
            },
            "Informacoes": {"Texto": ""},
            "Dados": {"DadosItem": [{"Documento": document, "Parametros": parameters}]},
        }
        self._request_summary = self._short(f"Execute {document} {parameters}".strip())
        if self.throttle is not None:
            self.throttle()
        self.calls += 1
        try:
            result = self._proxy().Execute(Invoicyrecepcao=request)
        except ProviderError:
            raise
        except zeep.exceptions.Fault as e:
            raise TransientError(
                f"InvoiCy answered a SOAP Fault: {self._mask(e.message) or 'no message'}", code=e.code
            ) from None
        except zeep.exceptions.TransportError as e:
            raise TransientError(
                f"InvoiCy: unreadable answer (HTTP {e.status_code}, not a SOAP envelope)", status=e.status_code
            ) from None
        except (zeep.exceptions.Error, etree.LxmlError, ValueError, TypeError, AttributeError, KeyError) as e:
            raise TransientError(f"InvoiCy: unreadable answer ({type(e).__name__})") from None
        finally:
            self._request_summary = ""
        items = self._message_items(result)
        self._summarize_last_exchange(items)
        for code, description, _texts in items:
            self._raise_for_code(code, description)
        return [
            document for _code, _description, texts in items for text in texts for document in parse_documents(text)
        ]

    def _message_items(self, result):
        """``Invoicyretorno`` -> [(Codigo, Descricao, [Documento texts])]; TransientError when
        the answer is not one (an empty body, another service's envelope)."""
        data = serialize_object(result, dict) if result is not None else None
        # zeep unwraps single-child wrappers: the value may be Invoicyretorno or its Mensagem.
        for wrapper in ("Invoicyretorno", "Mensagem"):
            if isinstance(data, dict) and wrapper in data:
                data = data[wrapper]
        items = _as_list(data.get("MensagemItem")) if isinstance(data, dict) else []
        parsed = []
        for item in items:
            if not isinstance(item, dict):
                continue
            code = _int(item.get("Codigo"))
            if code is None:
                continue
            documents = item.get("Documentos") or {}
            texts = [
                d.get("Documento") or ""
                for d in _as_list(documents.get("DocumentosItem") if isinstance(documents, dict) else None)
                if isinstance(d, dict)
            ]
            parsed.append((code, str(item.get("Descricao") or "").strip(), texts))
        if not parsed:
            raise TransientError("InvoiCy: unexpected answer (no return code)")
        return parsed

    def _summarize_last_exchange(self, items):
        """Replace the raw envelope in the trace by what matters: codes and return XML
        (base64 blobs elided), so that the 600 characters kept are useful."""
        if not self.trace:
            return
        parts = []
        for code, description, texts in items:
            text = " ".join(_BASE64_FIELD_RE.sub(lambda m: f"{m[1]}[{len(m[3])} base64 chars]{m[4]}", t) for t in texts)
            parts.append(f"{code} {description} {text}".strip())
        self.trace[-1].response = self._short(" | ".join(parts))

    def _raise_for_code(self, code, description):
        error_class, meaning = RETURN_CODES.get(code, (UNKNOWN_CODE_ERROR, "unknown return code"))
        if error_class is None:
            return
        text = self._mask(description) or meaning
        message = f"InvoiCy: {text} (code {code})"
        if error_class is RateLimitedError:
            raise RateLimitedError(message, code=code, retry_after=self.rate_limit_retry_after)
        if error_class is DuplicateReferenceError:
            message = f"InvoiCy already has this document: {text} (code {code})"
        raise error_class(message, code=code)

    # -- documents sent -----------------------------------------------------------
    def _clean(self, value, limit=None):
        """Text for the document: trimmed, single spaces, ASCII when ``ascii_only``."""
        text = " ".join(str(value or "").split())
        if self.ascii_only:
            text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
        return text[:limit] if limit else text

    def _add(self, parent, tag, value):
        """Add ``<tag>value</tag>`` when there is a value (empty elements are not sent)."""
        if value is None:
            return None
        value = str(value)
        if value == "":
            return None
        element = etree.SubElement(parent, tag)
        element.text = value
        return element

    def _check_reference(self, reference):
        reference = str(reference or "")
        if not reference:
            raise ValidationError("InvoiCy: the document has no reference (IDUnico).")
        if len(reference) > self.reference_max_length or not all(32 < ord(ch) < 127 for ch in reference):
            raise ValidationError(
                f"InvoiCy: the reference {reference!r} cannot be an IDUnico "
                f"(at most {self.reference_max_length} plain ASCII characters, no spaces)."
            )
        return reference

    def _check(self, doc: FiscalDocumentData):
        """Everything that can be refused without asking the service."""
        if doc.kind == "credit_note":
            raise ValidationError(
                "An NFS-e has no credit note: cancel the note at InvoiCy instead (and issue a new one if needed)."
            )
        self._check_reference(doc.reference)
        brazil.check_nfse(doc)
        if doc.partner and doc.partner.name and not self._clean(doc.partner.name).strip():
            raise ValidationError(
                f"InvoiCy accepts plain ASCII text only: the customer's name “{doc.partner.name}” has no Latin "
                "letter left once accents are removed. Give the contact a name in the Latin alphabet, then retry."
            )
        if not doc.lines:
            raise ValidationError("Cannot issue the NFS-e: it has no lines.")
        self._check_account()

    def _item_values(self, doc: FiscalDocumentData, rate):
        """Per item: (line, base, ISS) with base = quantity x price less the line's discount."""
        items = []
        for line in doc.lines:
            gross = _money(Decimal(line.quantity) * Decimal(line.unit_price))
            base = gross - _money(gross * Decimal(line.discount or 0) / 100)
            items.append((line, base, _money(base * rate)))
        return items

    def _regime_flags(self, service):
        """``(OptSN, RegEspTrib)`` from the account's tax regime (else the options)."""
        regime = service.tax_regime
        if regime:
            special = self.mei_special_regime if regime == "mei" else self._option("special_regime")
            return _yes_no(regime in ("simples", "mei")), special
        return _yes_no(self._option("simples_nacional", False)), self._option("special_regime")

    def build_envio(self, doc: FiscalDocumentData):
        """``<Envio>``: one RPS to be turned into an NFS-e (layout "Envio_Recepção de RPS" [C]).

        The reform group (``codTributNacional``, ``cNBS`` [?], ``IBSCBS``/``cClassTrib``, ``cIndOp``)
        follows the 2026 layout examples [1]."""
        service, party = doc.service, doc.partner
        amounts = brazil.amounts(doc)
        if amounts.base <= 0:
            raise ValidationError(f"Cannot issue the NFS-e: the total must be positive (got {amounts.base}).")
        rate = amounts.iss_rate / 100
        iss_withheld = _yes_no(service.iss_withheld)
        item_code = lc116(service.lc116_item)
        city = _digits(service.city_code) or _digits(self._option("city_code")) or None
        # dEmis: the moment of the emission; dCompetencia: the competence date (company timezone).
        emission = doc.issued_at.replace(microsecond=0).isoformat() if doc.issued_at else None
        moment = f"{doc.date.isoformat()}T00:00:00"
        simples, special = self._regime_flags(service)

        root = etree.Element("Envio")
        self._add(root, "ModeloDocumento", self.send_model)
        self._add(root, "Versao", self.layout_version)
        rps = etree.SubElement(root, "RPS")
        # No RPSNumero: InvoiCy takes the next number of the series and answers it [C].
        self._add(rps, "RPSSerie", self._option("rps_series"))
        self._add(rps, "RPSTipo", "1")
        self._add(rps, "IDUnico", doc.reference)
        self._add(rps, "dEmis", emission or moment)
        self._add(rps, "dCompetencia", moment)
        self._add(rps, "natOp", self._option("nat_op", "1"))
        self._add(rps, "RegEspTrib", special)
        self._add(rps, "OptSN", simples)
        self._add(rps, "IncCult", _yes_no(self._option("cultural_incentive", False)))
        self._add(rps, "Status", "1")
        self._add(rps, "tpAmb", self.tp_amb)
        self._add(rps, "cIndOp", _digits(service.operation_indicator) or None)

        provider = etree.SubElement(rps, "Prestador")
        self._add(provider, "CNPJ_prest", self.company_cnpj)
        self._add(provider, "IM", _digits(self._option("municipal_registration")) or None)
        if self._option("city_code"):
            address = etree.SubElement(provider, "enderPrest")
            self._add(address, "cMun", _digits(self._option("city_code")))

        items = etree.SubElement(rps, "ListaItens")
        for sequence, (line, net, line_iss) in enumerate(self._item_values(doc, rate), start=1):
            item = etree.SubElement(items, "Item")
            self._add(item, "ItemSeq", sequence)
            self._add(item, "ItemCod", self._clean(line.code, 60))
            self._add(item, "ItemDesc", self._clean(line.description, 1000))
            self._add(item, "ItemQtde", _fmt(line.quantity, QUANTITY_PLACES))
            self._add(item, "ItemvUnit", _fmt(line.unit_price, QUANTITY_PLACES))
            self._add(item, "ItemuMed", self._clean(line.unit or self.default_unit, 6))
            self._add(item, "ItemvIss", _fmt(line_iss))
            self._add(item, "ItemAliquota", _fmt(rate, RATE_PLACES))
            self._add(item, "ItemBaseCalculo", _fmt(net))
            self._add(item, "ItemIssRetido", iss_withheld)
            self._add(item, "ItemIteListServico", item_code)

        servico = etree.SubElement(rps, "Servico")
        values = etree.SubElement(servico, "Valores")
        for tag, value in (
            ("ValServicos", amounts.services),
            ("ValDeducoes", amounts.deductions),
            ("ValPIS", amounts.withholding("pis")),
            ("ValCOFINS", amounts.withholding("cofins")),
            ("ValINSS", amounts.withholding("inss")),
            ("ValIR", amounts.withholding("ir")),
            ("ValCSLL", amounts.withholding("csll")),
            ("ISSRetido", iss_withheld),
            ("ValISS", amounts.iss),
            ("ValISSRetido", amounts.iss_withheld),
            ("ValBaseCalculo", amounts.base),
            ("ValAliqISS", _fmt(rate, RATE_PLACES)),  # a fraction: 0.05 = 5 % [C]
            ("ValLiquido", amounts.net),  # services - withholdings - unconditional discount [C]
            ("ValDescIncond", amounts.discounts),
            ("ValDescCond", 0),
        ):
            self._add(values, tag, value if isinstance(value, str) else _fmt(value))
        self._add(servico, "IteListServico", item_code)
        self._add(servico, "Cnae", _digits(service.cnae) or None)
        self._add(servico, "codTributNacional", _digits(service.national_code) or None)
        self._add(servico, "cNBS", _digits(service.nbs_code) or None)
        if service.reform_class:
            reform = etree.SubElement(servico, "IBSCBS")
            classification = _digits(service.reform_class)
            self._add(reform, "CSTIBSCBS", classification[:3])  # the CST is the classification's first 3 digits
            self._add(reform, "cClassTrib", classification)
        self._add(servico, "TributMunicipio", self._clean(service.municipal_code, 20) or None)
        description = self.line_break.join(
            self._clean(part) for part in str(service.description).splitlines() if part.strip()
        )
        self._add(servico, "Discriminacao", description[:2000])
        self._add(servico, "cMun", city)

        tax_id = brazil.clean_tax_id(party.vat)
        taker = etree.SubElement(rps, "Tomador")
        self._add(taker, "TomaCNPJ" if brazil.person_type(tax_id) == "J" else "TomaCPF", tax_id)
        self._add(taker, "TomaIM", _digits(party.municipal_registration) or None)
        self._add(taker, "TomaRazaoSocial", self._clean(party.name, 150))
        self._add(taker, "TomaEndereco", self._clean(party.street, 125))
        self._add(taker, "TomaNumero", self._clean(party.street_number, 10))
        self._add(taker, "TomaComplemento", self._clean(party.street2, 60) or None)
        self._add(taker, "TomaBairro", self._clean(party.district, 60))
        self._add(taker, "TomacMun", _digits(party.city_code) or None)
        self._add(taker, "TomaxMun", self._clean(party.city, 60))
        self._add(taker, "TomaUF", (party.state_code or "").strip().upper())
        self._add(taker, "TomaPais", (party.country_code or "BR").upper())
        self._add(taker, "TomaCEP", _digits(party.zip))
        self._add(taker, "TomaTelefone", _digits(party.phone) or None)
        self._add(taker, "TomaEmail", (doc.email_to or party.email or "").strip() or None)
        self._add(rps, "NFSOutrasinformacoes", self._clean(doc.notes, 1000) or None)
        return etree.tostring(root, encoding="unicode")

    def build_consulta(self, reference):
        """``<Consulta>`` of one note by our IDUnico [C]."""
        root = etree.Element("Consulta")
        self._add(root, "ModeloDocumento", self.consult_model)
        self._add(root, "Versao", self.layout_version)
        self._add(root, "tpAmb", self.tp_amb)
        self._add(root, "CnpjEmissor", self.company_cnpj)
        self._add(root, "IDUnico", reference)
        return etree.tostring(root, encoding="unicode")

    def build_parametros(self, pdf=False, xml=False):
        """``<ParametrosConsulta>``: what the consultation answers (S/N flags) [C]."""
        root = etree.Element("ParametrosConsulta")
        for tag, wanted in (
            ("Situacao", True),
            ("XMLCompleto", xml),
            ("XMLLink", False),
            ("PDFBase64", pdf),
            ("PDFLink", False),
            ("Eventos", True),
        ):
            self._add(root, tag, "S" if wanted else "N")
        return etree.tostring(root, encoding="unicode")

    def build_cancelamento(self, current: RemoteDocument, reason, code=None):
        """``<EnvioEvento>`` of type 110111 (cancellation) [C]; NFSeNumero is required even
        when IDUnico is given."""
        root = etree.Element("EnvioEvento")
        self._add(root, "ModeloDocumento", self.consult_model)
        self._add(root, "Versao", self.event_version)
        event = etree.SubElement(root, "Evento")
        self._add(event, "CNPJ", self.company_cnpj)
        self._add(event, "NFSeNumero", current.number)
        self._add(event, "RPSNumero", _text_of(current.raw.get("DocNumero")) or None)
        self._add(event, "RPSSerie", _text_of(current.raw.get("DocSerie")) or None)
        self._add(event, "IDUnico", current.remote_id)
        self._add(event, "EveTp", self.cancel_event_type)
        self._add(event, "tpAmb", self.tp_amb)
        self._add(event, "EveCodigo", code or self.default_cancel_code)
        self._add(event, "EveMotivo", reason)
        return etree.tostring(root, encoding="unicode")

    # -- documents received ---------------------------------------------------------
    @staticmethod
    def _situation(data):
        situation = data.get("Situacao") if isinstance(data.get("Situacao"), dict) else {}
        code = _int(_text_of(data.get("DocSitCodigo"))) if data.get("DocSitCodigo") not in (None, "") else None
        if code is None:
            code = _int(_text_of(situation.get("SitCodigo")))
        text = _text_of(data.get("DocSitDescricao")) or _text_of(situation.get("SitDescricao"))
        return code, text.strip()

    def _pick(self, documents, reference):
        """Our document among the answered ones (by DocIDUnico when the answer has it)."""
        for data in documents:
            if _text_of(data.get("DocIDUnico")).strip() == reference:
                return data
        unnamed = [d for d in documents if not _text_of(d.get("DocIDUnico")).strip()]
        return unnamed[0] if unnamed else None

    def _cancel_event_pending(self, data):
        events = data.get("Eventos") if isinstance(data.get("Eventos"), dict) else {}
        for event in _as_list(events.get("EventosItem")):
            if not isinstance(event, dict) or _text_of(event.get("DocEveTp")).strip() != self.cancel_event_type:
                continue
            if _int(_text_of(event.get("cStat"))) in PENDING_SITUATIONS:
                return True
        return False

    def _remote(self, data, kind, reference):
        code, text = self._situation(data)
        status = _int(_text_of(data.get("DocStatus")))
        if status in DOC_STATUS:
            state = DOC_STATUS[status]
        elif code is not None:
            state = SITUATIONS.get(code, "rejected")
        else:
            state = "pending"
        if state == "final" and self._cancel_event_pending(data):
            state = "cancel_pending"
        if status == CONFLICT_STATUS:
            text = f"{text} (Em conflito: resolve it in the InvoiCy portal)".strip()
        if state == "rejected" and not text:
            text = f"InvoiCy rejected the note (code {code})"
        nfse = data.get("NFSe") if isinstance(data.get("NFSe"), dict) else {}
        number = _text_of(nfse.get("NFSeNumero")).strip()
        verification = _text_of(nfse.get("NFSeCodVerificacao")).strip()
        summary = data.get("Resumo") if isinstance(data.get("Resumo"), dict) else {}
        raw = {key: value for key, value in data.items() if key not in (*PDF_FIELDS, *XML_FIELDS, "DocCompleto")}
        return RemoteDocument(
            remote_id=_text_of(data.get("DocIDUnico")).strip() or reference,
            kind=kind,
            state=state,
            number=number if number not in ("", "0") else None,
            atcud=verification or None,
            total=_decimal(_text_of(summary.get("DocVlrTotal"))),
            reference=reference,
            message=self._mask(text) or None,
            raw=raw,
        )

    # -- operations ---------------------------------------------------------------
    def create(self, doc: FiscalDocumentData) -> RemoteDocument:
        """Send the RPS; answers "pending" while the municipality decides (async companies)."""
        self._check(doc)
        envio = self.build_envio(doc)
        documents = self._execute(envio)
        data = self._pick(documents, doc.reference)
        if data is None:
            # The note may exist: a retry is refused as a duplicate, then found by reference.
            raise TransientError("InvoiCy: unexpected answer to the emission (no document)")
        code, text = self._situation(data)
        if code in DUPLICATE_SITUATIONS:
            raise DuplicateReferenceError(
                f"InvoiCy already has the note {doc.reference} (IDUnico): {self._mask(text) or 'RPS já enviado'} "
                f"(code {code})",
                code=code,
            )
        remote = self._remote(data, doc.kind, doc.reference)
        if remote.state == "rejected":
            raise ValidationError(f"InvoiCy rejected the NFS-e: {remote.message}", code=code)
        return remote

    def prepare(self, doc: FiscalDocumentData) -> None:
        """No customer or service records at InvoiCy: only the checks run (no request)."""
        self._check(doc)

    def create_credit_note(self, doc: FiscalDocumentData) -> RemoteDocument:
        return self.create(doc)  # refused by _check with a clear message

    def _consult(self, kind, remote_id, pdf=False, xml=False):
        reference = self._check_reference(remote_id)
        documents = self._execute(self.build_consulta(reference), self.build_parametros(pdf=pdf, xml=xml))
        data = self._pick(documents, reference)
        if data is None or self._situation(data)[0] in NOT_FOUND_SITUATIONS:
            raise NotFoundError(f"InvoiCy: no note {reference} (IDUnico)")
        return data, self._remote(data, kind, reference)

    def fetch_status(self, kind, remote_id) -> RemoteDocument:
        """Consult by IDUnico: state, NFS-e number, verification code. NotFoundError when unknown."""
        return self._consult(kind, remote_id)[1]

    def finalize(self, kind, remote_id) -> RemoteDocument:
        # No finalize step at InvoiCy: the municipality authorizes asynchronously.
        return self.fetch_status(kind, remote_id)

    def find_by_reference(self, doc: FiscalDocumentData):
        """The note sent with ``doc.reference`` as IDUnico, or None (e.g. after a lost answer)."""
        try:
            return self.fetch_status(doc.kind, doc.reference)
        except NotFoundError:
            return None

    def cancel(self, kind, remote_id, reason) -> RemoteDocument:
        """Send the cancellation event; "canceled" or "cancel_pending" per the answer.

        ``reason`` is the justification (15 to 100 characters); a :class:`~.base.CancelReason`
        also carries the motive code (EveCodigo; default 1, error in the emission)."""
        code, justification = brazil.check_cancel_reason(reason, self.cancel_motives, self.label)
        reason = self._clean(justification, self.reason_max_length)
        current = self.fetch_status(kind, remote_id)
        if current.state in ("canceled", "cancel_pending"):
            return current
        if current.state != "final" or not current.number:
            raise InvalidStateError(
                f"InvoiCy: the note {remote_id} is {current.state}; only an authorized NFS-e can be canceled."
            )
        try:
            documents = self._execute(self.build_cancelamento(current, reason, code))
        except DuplicateReferenceError:  # "already effected": the cancellation was registered before
            return self.fetch_status(kind, remote_id)
        data = self._pick(documents, current.remote_id)
        if data is None:
            return self.fetch_status(kind, remote_id)
        situation, text = self._situation(data)
        if situation in NOT_FOUND_SITUATIONS:
            raise NotFoundError(f"InvoiCy: no note {remote_id} to cancel: {self._mask(text)}", code=situation)
        if situation in (101, 135):
            state = "canceled"
        elif situation in PENDING_SITUATIONS:
            state = "cancel_pending"
        else:
            raise InvalidStateError(
                f"InvoiCy refused the cancellation: {self._mask(text) or 'no reason given'} (code {situation})",
                code=situation,
            )
        return RemoteDocument(
            remote_id=current.remote_id,
            kind=kind,
            state=state,
            number=current.number,
            atcud=current.atcud,
            total=current.total,
            reference=current.reference,
            message=self._mask(text) or None,
            raw={key: value for key, value in data.items() if key not in (*PDF_FIELDS, *XML_FIELDS)},
        )

    def _file(self, kind, remote_id, fields, what, pdf=False, xml=False):
        data, remote = self._consult(kind, remote_id, pdf=pdf, xml=xml)
        if remote.state in ("rejected", "deleted"):
            raise InvalidStateError(f"InvoiCy: the note {remote_id} is {remote.state}: it has no {what}.")
        blob = next((_text_of(data.get(name)).strip() for name in fields if _text_of(data.get(name)).strip()), "")
        if not blob:
            raise NotReadyError(
                f"InvoiCy: the {what} of {remote_id} is not available yet ({remote.state})",
                retry_after=self.pending_retry_after,
            )
        try:
            return base64.b64decode(blob, validate=False)
        except (binascii.Error, ValueError):
            raise TransientError(f"InvoiCy: the {what} in the answer is not base64") from None

    def fetch_pdf(self, kind, remote_id) -> bytes:
        """The DANFSE, from a consultation with PDFBase64=S [C]."""
        content = self._file(kind, remote_id, PDF_FIELDS, "PDF", pdf=True)
        if not content.startswith(b"%PDF"):
            raise TransientError("InvoiCy: the PDF in the answer is not a PDF")
        return content

    def fetch_xml(self, kind, remote_id) -> bytes:
        """The municipal XML, from a consultation with XMLCompleto=S [C]."""
        content = self._file(kind, remote_id, XML_FIELDS, "XML", xml=True).lstrip(b"\xef\xbb\xbf \t\r\n")
        if not content.startswith(b"<"):
            raise TransientError("InvoiCy: the XML in the answer is not XML")
        return content

    def test_connection(self):
        """The cheapest authenticated call: consult an id nobody uses. A right key answers
        "nothing found" (117); a wrong one 173. (Unique each time: identical requests get 179.)"""
        probe = f"connection-test-{uuid.uuid4().hex}"
        try:
            self.fetch_status("invoice", probe)
        except NotFoundError:
            pass
        environment = "produção" if self.config.environment == "production" else "homologação"
        return f"Connected to InvoiCy ({environment}): company {self.company_cnpj} accepted the keys."

    # -- webhooks -------------------------------------------------------------------
    @staticmethod
    def parse_webhook(payload):
        """Our reference (``DocIDUnico``) named by an InvoiCy notification, or None when the
        notification is about no note of ours (e.g. a certificate expiring).

        The payload is the JSON ``{"documento": {...}}`` of the layout [1] (a dict, or its
        text / bytes), or the same as XML (``<Documento>`` root, FormaRetornoWH 3) [?].
        Raises ValueError when malformed. A trigger only: the caller reads the note again.
        """
        if isinstance(payload, (bytes, bytearray)):
            try:
                payload = bytes(payload).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("InvoiCy webhook: the body is not UTF-8") from None
        if isinstance(payload, str):
            text = payload.strip()
            if not text:
                raise ValueError("InvoiCy webhook: empty body")
            if text.startswith("<"):
                try:
                    payload = xmltodict.parse(text)
                except ExpatError as e:
                    raise ValueError(f"InvoiCy webhook: malformed XML ({e})") from None
            else:
                try:
                    payload = json.loads(text)
                except ValueError as e:
                    raise ValueError(f"InvoiCy webhook: malformed JSON ({e})") from None
        if not isinstance(payload, dict):
            raise ValueError("InvoiCy webhook: the payload is not an object")
        document = next((value for key, value in payload.items() if str(key).lower() == "documento"), None)
        if not isinstance(document, dict):
            raise ValueError("InvoiCy webhook: no 'documento' object in the payload")
        value = document.get("DocIDUnico")
        if value is None or isinstance(value, dict) and not value.get("#text"):
            return None
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ValueError("InvoiCy webhook: DocIDUnico is not a string")
        value = str(value).strip()
        if len(value) > InvoicyProvider.reference_max_length or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("InvoiCy webhook: DocIDUnico is not a reference")
        return value or None

    @staticmethod
    def check_webhook_token(headers, token):
        """True when the ``Authorization`` header carries ``token`` the way InvoiCy sends it
        (TipoAutenticacao 1 ``Basic {token}``, 2 ``Bearer {token}``, the token verbatim) [C]."""
        if not token:
            return False
        value = next((str(v) for k, v in dict(headers or {}).items() if str(k).lower() == "authorization"), "")
        scheme, _, credential = value.strip().partition(" ")
        if scheme.lower() not in ("basic", "bearer"):
            return False
        return hmac.compare_digest(credential.strip().encode(), str(token).encode())
