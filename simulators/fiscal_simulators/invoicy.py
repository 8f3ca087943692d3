"""A local InvoiCy (Migrate, Brazil) simulator: the SOAP reception service ``arecepcao``.

Follows the contract summarised in shared/provider-apis-invoicy.md: one SOAP 1.1
endpoint (``POST /arecepcao.aspx``, operation ``Execute``, namespace ``InvoiCy``), the
same WSDL at ``GET /arecepcao.aspx?wsdl``, the partner key and the communication key
(MD5 of the company access key + the first ``Documento``, lower-case hex) checked on
every call, documents carried as escaped XML text, and answers in ``Invoicyretorno``
(call-level ``Codigo``, one ``Documento`` per note).

NFS-e behaviour: ``<Envio>`` queues an RPS (``SitCodigo`` 105) that the "municipality"
authorizes ``authorization_delay`` seconds later (NFS-e number, verification code, PDF
and XML), or rejects when the service description contains ``REJEITAR``; ``<Consulta>``
reads notes by ``IDUnico`` or RPS range (117 when none); ``<EnvioEvento>`` 110111
cancels an authorized note. A second send of a known ``IDUnico`` is answered "RPS já
enviado" (``SitCodigo`` 111, or call-level 313 with ``duplicate_answer="codigo313"``);
a rejected note may be sent again with the same ``IDUnico`` [?]. Identical requests
beyond ``abuse_threshold`` are blocked with 179. Malformed envelopes get a SOAP Fault.

Codes are the documented ones where the contract has them; the others are guesses,
listed next to their constants.

Usage in tests::

    with InvoicySimulator(partner_key="pk", access_key="ak", company_code="99999999000191") as sim:
        config = ProviderConfig(base_url=sim.endpoint_url, credentials={"partner_key": "pk", "access_key": "ak"},
                                options={"company_code": "99999999000191"})
        ...
        assert sim.find("INV/2025/0001")["status"] == "authorized"

CLI (demo)::

    cd fiscal_invoice_connector && python -m simulators.invoicy --port 8768 --partner-key pk --access-key ak \\
        --company-code 99999999000191
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import hashlib
import hmac
import json
import logging
import re
import sys
import threading
import time
import urllib.request
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from lxml import etree

from ._brazil import cnpj_is_valid, cpf_is_valid
from ._server import SimResponse, SimulatorServer, build_pdf, serve_until_signal
from ._server import json_decimal as _decimal

_logger = logging.getLogger(__name__)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "InvoiCy"
SOAP_ACTION = "InvoiCyaction/ARECEPCAO.Execute"
ENDPOINT_PATH = "/arecepcao.aspx"
# The service publishes its WSDL; the simulator serves the same contract (a copy of the one the client ships).
WSDL_FILE = Path(__file__).resolve().parent / "wsdl" / "invoicy_recepcao.wsdl"
_ADDRESS_RE = re.compile(r'(<soap:address\s+location=")[^"]*(")')

# Call-level codes (MensagemItem/Codigo) [C] "Códigos de retorno do InvoiCy", except where marked.
CODE_OK = 100
CODE_NOT_FOUND = 117
CODE_LAYOUT = 145
CODE_PARTNER_KEY = 172  # guess: no code is documented for an unknown partner key
CODE_KEY = 173
CODE_ENVIRONMENT = 174
CODE_DOCUMENT_TYPE = 176
CODE_ABUSE = 179
CODE_ALREADY_DONE = 313  # [1] (MultiSoftware client)
CODE_COMPANY = 606
MESSAGES = {
    CODE_OK: "Documentos processados",
    CODE_NOT_FOUND: "Nenhum documento localizado na base de dados",
    CODE_LAYOUT: "Falha na estrutura XML do documento enviado, verifique o layout de integração",
    CODE_PARTNER_KEY: "Chave de parceiro inválida",
    CODE_KEY: "Chave de comunicação inválida",
    CODE_ENVIRONMENT: "Documento e ambiente não identificados",
    CODE_DOCUMENT_TYPE: "Tipo documento não identificado",
    CODE_ABUSE: "Consumo indevido do Web Service! Esta requisição foi rejeitada pelo InvoiCy e será bloqueada pelos "
    "próximos {minutes} minutos, pois foram recebidos {count} requisições iguais.",
    CODE_ALREADY_DONE: "Documento já efetivado no sistema",
    CODE_COMPANY: "Empresa não está habilitada para utilizar o sistema",
}

# Per-document situations (Situacao/SitCodigo, DocSitCodigo) [C], 111 [1], 999 for rejections [1].
SIT_AUTHORIZED = 100
SIT_CANCELED = 101
SIT_PENDING = 105
SIT_NOT_FOUND = 106
SIT_EVENT_LINKED = 135
SIT_ALREADY_SENT = 111
SIT_REJECTED = 999
# DocStatus of consultations [C].
DOC_STATUS = {"pending": 1, "authorized": 2, "rejected": 3, "cancel_pending": 2, "canceled": 5}

CANCEL_EVENT = "110111"
CANCEL_CODES = ("1", "2", "4")
MIN_JUSTIFICATION = 15  # the national standard's minimum for EveMotivo
# LC 116/2003 art. 8 and 8-A: the ISS rate is 2 % to 5 % (ValAliqISS is a fraction).
MIN_ISS_FRACTION = Decimal("0.02")
MAX_ISS_FRACTION = Decimal("0.05")
# Not in the Simples Nacional (OptSN 2: Lucro Presumido / Real): the 2026 reform fields are required
# (element names from the reform layout examples [1]; cNBS [?]).
REFORM_ELEMENTS = (
    ("Servico/codTributNacional", 6),
    ("Servico/cNBS", 9),
    ("Servico/IBSCBS/cClassTrib", 6),
    ("cIndOp", 6),
)
WITHHOLDING_ELEMENTS = ("ValPIS", "ValCOFINS", "ValINSS", "ValIR", "ValCSLL")
REJECT_MARKER = "REJEITAR"
# The municipality's refusal when REJEITAR is found (wording made up).
REJECTION_MESSAGE = "E160 - Serviço não permitido para o prestador na prefeitura (simulação: REJEITAR)"
MESSAGE_NOT_IN_INVOICY = (
    "Documento não consta na base de dados do InvoiCy, caso queira enviá-lo, preencha todas as informações do evento"
)
STATUS_WORDS = {"pending": "pendente de autorização", "rejected": "rejeitado"}

# Named faults added to the base ones; the base class carries them as these (otherwise unused) statuses.
NAMED_SOAP_FAULTS = {"soap_fault": 599, "bad_envelope": 598}

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_blank_text=False)
LC116_RE = re.compile(r"\d{2}\.\d{2}")
DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def q(tag):
    return f"{{{NS}}}{tag}"


def _text(element, path):
    return (element.findtext(path) or "").strip() if element is not None else ""


def _xml(tag, children):
    """A plain (namespace-less) XML string from nested ``(tag, text-or-children)`` pairs."""
    root = etree.Element(tag)
    _fill(root, children)
    return etree.tostring(root, encoding="unicode")


def _fill(parent, children):
    for tag, value in children:
        child = etree.SubElement(parent, tag)
        if isinstance(value, list):
            _fill(child, value)
        elif value not in (None, ""):
            child.text = str(value)


class _Answer(Exception):
    """A call-level answer that ends the processing (an error code, an auth failure)."""

    def __init__(self, code, message=None, documents=()):
        super().__init__(code)
        self.code = code
        self.message = message or MESSAGES.get(code, "")
        self.documents = list(documents)


class InvoicySimulator(SimulatorServer):
    label = "InvoiCy simulator"
    secret_params = ()  # the keys travel in the SOAP body, never in the URL
    routes = (
        ("POST", r"/arecepcao\.aspx", "_post"),
        ("GET", r"/arecepcao\.aspx", "_get"),
    )

    def __init__(
        self,
        *,
        partner_key="demo-partner-key",
        access_key="demo-access-key",
        company_code="99999999000191",
        environment="test",
        authorization_delay=0.3,
        processing="async",
        cancel_delay=0.0,
        duplicate_answer="situacao",
        abuse_threshold=None,
        abuse_window=60.0,
        abuse_block_seconds=300,
        reject_non_ascii=True,
        default_series="1",
        webhook_url=None,
        webhook_token=None,
        webhook_auth="bearer",
        latency=0.0,
        rate_limit_per_minute=None,
        port=0,
        host="127.0.0.1",
        timeout_seconds=15.0,
    ):
        """``processing``: "async" (105 first, decided ``authorization_delay`` s later) or
        "sync" (decided in the send answer). ``cancel_delay`` > 0 makes cancellations pending
        first. ``duplicate_answer``: "situacao" (SitCodigo 111) or "codigo313" (call-level 313).
        ``abuse_threshold``: the n-th identical request within ``abuse_window`` s is refused
        with 179 and blocked for ``abuse_block_seconds`` (None = never). ``reject_non_ascii``:
        accented characters break the key (173), as documented. ``webhook_url``: POST the JSON
        notification there on every status change, with ``Authorization: Bearer|Basic token``."""
        if processing not in ("async", "sync"):
            raise ValueError("processing must be 'async' or 'sync'")
        if duplicate_answer not in ("situacao", "codigo313"):
            raise ValueError("duplicate_answer must be 'situacao' or 'codigo313'")
        if environment not in ("test", "production"):
            raise ValueError("environment must be 'test' or 'production'")
        self.partner_key = partner_key
        self.access_key = access_key
        self.company_code = "".join(ch for ch in str(company_code) if ch.isdigit())
        self.environment = environment
        self.authorization_delay = authorization_delay
        self.processing = processing
        self.cancel_delay = cancel_delay
        self.duplicate_answer = duplicate_answer
        self.abuse_threshold = abuse_threshold
        self.abuse_window = abuse_window
        self.abuse_block_seconds = abuse_block_seconds
        self.reject_non_ascii = reject_non_ascii
        self.default_series = default_series
        self.webhook_url = webhook_url
        self.webhook_token = webhook_token
        self.webhook_auth = webhook_auth
        self._timers = []
        super().__init__(
            host=host,
            port=port,
            latency=latency,
            rate_limit_per_minute=rate_limit_per_minute,
            timeout_seconds=timeout_seconds,
        )

    # ------------------------------------------------------------------ state
    def reset_state(self):
        self.documents = {}  # IDUnico -> stored note
        self.wsdl_requests = 0  # GET ?wsdl served
        self.webhook_deliveries = []  # (IDUnico, HTTP status or error name)
        self._series = collections.defaultdict(int)  # series -> last RPS number
        self._next_nfse = 1
        self._next_protocol = 29001
        self._identical = {}  # sha1 of the body -> deque of arrival times
        self._blocked = {}  # sha1 of the body -> blocked until (monotonic)
        for timer in getattr(self, "_timers", []):
            timer.cancel()
        self._timers = []

    def stop(self):
        with self.lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        super().stop()

    @property
    def endpoint_url(self):
        return self.base_url + ENDPOINT_PATH

    @property
    def tp_amb(self):
        return "1" if self.environment == "production" else "2"

    # ------------------------------------------------------- inspection helpers
    def find(self, id_unico):
        """The stored note (a copy, status brought up to date), or None."""
        with self.lock:
            record = self.documents.get(id_unico)
            if record is None:
                return None
            self._advance(record)
            return copy.deepcopy(record)

    def authorize_pending(self):
        """Let the municipality decide every pending note and cancellation now."""
        with self.lock:
            for record in self.documents.values():
                if record["status"] == "pending":
                    record["ready_at"] = 0.0
                if record["status"] == "cancel_pending":
                    record["cancel_ready_at"] = 0.0
                self._advance(record)

    def communication_key(self, document_text):
        """What the service expects in EmpCK for this Documento text."""
        return hashlib.md5((self.access_key + document_text).encode("utf-8")).hexdigest()

    def webhook_payload(self, id_unico, notification=2):
        """The JSON notification for a note (layout of webhook/Exemplos JSON [1])."""
        with self.lock:
            record = self.documents[id_unico]
            self._advance(record)
            return self._notification(record, notification)

    def _notification(self, record, notification=2):
        situation, description = self._situation(record)
        nfse = {"NFSeNumero": record["nfse_numero"] or "", "NFSeCodVerificacao": record["cod_verificacao"] or ""}
        return {
            "documento": {
                "DocModelo": "NFSe",
                "DocNumero": str(record["numero"]),
                "DocSerie": record["serie"],
                "DocIDUnico": record["id_unico"],
                "DocProtocolo": record["protocolo"],
                "DocSitCodigo": str(situation),
                "DocSitDescricao": description,
                "DocStatus": str(DOC_STATUS[record["status"]]),
                "TipoNotificacaoWebHook": str(notification),  # 2: atualização de status
                "NFSe": nfse,
            }
        }

    # ----------------------------------------------------------- fault injection
    def inject(self, fault, count=1, path_contains=None, method=None, when="before", *, retry_after=1):
        """The base faults, plus ``"soap_fault"`` (HTTP 500 with a SOAP Fault body, as the
        service itself fails) and ``"bad_envelope"`` (HTTP 200, text/xml, an envelope cut in
        the middle with a correct Content-Length). A plain 500/502/503 is a gateway's HTML page."""
        fault = NAMED_SOAP_FAULTS.get(fault, fault) if isinstance(fault, str) else fault
        return super().inject(fault, count, path_contains, method, when, retry_after=retry_after)

    @property
    def pending_faults(self):
        names = {status: name for name, status in NAMED_SOAP_FAULTS.items()}
        return [(names.get(fault, fault), remaining, when) for fault, remaining, when in super().pending_faults]

    def fault_response(self, status, retry_after=1):
        if status == NAMED_SOAP_FAULTS["soap_fault"]:
            return self.soap_fault("soap-env:Server", "Erro interno no processamento da requisição (simulado)")
        if status == NAMED_SOAP_FAULTS["bad_envelope"]:
            cut = (
                f'<?xml version="1.0" encoding="utf-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}">'
                f'<SOAP-ENV:Body><recepcao.ExecuteResponse xmlns="{NS}"><Invoicyretorno><Mensagem><MensagemItem>'
                "<Codigo>100</Codigo><Descricao>Documentos proc"
            )
            return SimResponse.text(200, cut, "text/xml; charset=utf-8")
        return super().fault_response(status, retry_after)

    # ------------------------------------------------------------- transport hooks
    def is_public(self, request):
        return request.method == "GET"  # the WSDL: no key, no rate-limit slot

    def error_response(self, status, *messages):
        """The service's own failures are SOAP Faults (Server for 5xx, Client otherwise)."""
        code = "soap-env:Server" if status >= 500 else "soap-env:Client"
        return self.soap_fault(code, "; ".join(messages) or "Erro", status=status)

    def not_found(self, request):
        page = "<html><head><title>404 - Not Found</title></head><body><h1>404 - Not Found</h1></body></html>"
        return SimResponse.text(404, page, "text/html")

    def rate_limited_response(self, retry_after):
        # InvoiCy does not use HTTP 429: an over-eager client gets code 179 in a normal answer.
        return self._answer([(CODE_ABUSE, self._abuse_message(), [])])

    # ------------------------------------------------------------------ envelopes
    def soap_fault(self, code, message, status=500):
        envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap-env": SOAP_ENV})
        fault = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body"), f"{{{SOAP_ENV}}}Fault")
        etree.SubElement(fault, "faultcode").text = code
        etree.SubElement(fault, "faultstring").text = message
        body = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        return SimResponse(status, body, {"Content-Type": "text/xml; charset=utf-8"})

    def _answer(self, items):
        """``items``: [(Codigo, Descricao, [Documento XML strings])] -> the SOAP answer (HTTP 200)."""
        envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV})
        body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
        response = etree.SubElement(body, q("recepcao.ExecuteResponse"), nsmap={None: NS})
        message = etree.SubElement(etree.SubElement(response, q("Invoicyretorno")), q("Mensagem"))
        for code, description, documents in items:
            item = etree.SubElement(message, q("MensagemItem"))
            etree.SubElement(item, q("Codigo")).text = str(code)
            etree.SubElement(item, q("Descricao")).text = description
            container = etree.SubElement(item, q("Documentos"))
            for document in documents:
                holder = etree.SubElement(etree.SubElement(container, q("DocumentosItem")), q("Documento"))
                holder.text = etree.CDATA(document)  # as in the official examples
        payload = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        return SimResponse(200, payload, {"Content-Type": "text/xml; charset=utf-8"})

    # ---------------------------------------------------------------------- GET
    def _get(self, request):
        if not any(name.lower() == "wsdl" for name in request.query):
            page = "<html><body><h1>recepcao</h1><p>Use ?wsdl for the service description.</p></body></html>"
            return SimResponse.text(200, page, "text/html; charset=utf-8")
        self.wsdl_requests += 1
        host = request.headers.get("Host")
        address = (f"http://{host}" if host else self.base_url) + ENDPOINT_PATH
        wsdl = _ADDRESS_RE.sub(lambda m: m[1] + address + m[2], WSDL_FILE.read_text(encoding="utf-8"))
        return SimResponse.text(200, wsdl, "text/xml; charset=utf-8")

    # --------------------------------------------------------------------- POST
    def _post(self, request):
        content_type = (request.headers.get("Content-Type") or "").lower()
        if "xml" not in content_type:
            return self.soap_fault("soap-env:Client", "Content-Type must be text/xml (SOAP 1.1)")
        action = (request.headers.get("SOAPAction") or "").strip().strip('"')
        if action and action != SOAP_ACTION:
            return self.soap_fault("soap-env:Client", f"Unknown SOAPAction: {action}")
        try:
            envelope = etree.fromstring(request.body, _PARSER)
        except (etree.XMLSyntaxError, ValueError):
            return self.soap_fault("soap-env:Client", "Malformed SOAP envelope: not XML")
        if envelope.tag != f"{{{SOAP_ENV}}}Envelope":
            return self.soap_fault("soap-env:VersionMismatch", "Expected a SOAP 1.1 Envelope")
        call = envelope.find(f"{{{SOAP_ENV}}}Body/{q('recepcao.Execute')}/{q('Invoicyrecepcao')}")
        header = call.find(q("Cabecalho")) if call is not None else None
        if call is None or header is None:
            return self.soap_fault("soap-env:Client", "Malformed request: recepcao.Execute/Invoicyrecepcao/Cabecalho")
        try:
            return self._answer(self._process(request.body, header, call.findall(f"{q('Dados')}/{q('DadosItem')}")))
        except _Answer as answer:
            return self._answer([(answer.code, answer.message, answer.documents)])

    def _process(self, raw_body, header, items):
        if self._abused(raw_body):
            raise _Answer(CODE_ABUSE, self._abuse_message())
        if not hmac.compare_digest(_text(header, q("EmpPK")).encode(), str(self.partner_key).encode()):
            raise _Answer(CODE_PARTNER_KEY)
        documents = [(item.findtext(q("Documento")) or "", item.findtext(q("Parametros")) or "") for item in items]
        if not documents or not documents[0][0].strip():
            raise _Answer(CODE_LAYOUT)
        # The key covers the first Documento only, exactly as received [C].
        first = documents[0][0]
        given = _text(header, q("EmpCK"))
        if (self.reject_non_ascii and not first.isascii()) or not hmac.compare_digest(
            given.encode(), self.communication_key(first).encode()
        ):
            raise _Answer(CODE_KEY)
        answers = []
        for text, parameters in documents:
            try:
                document = etree.fromstring(text.encode("utf-8"), _PARSER)
            except etree.XMLSyntaxError:
                raise _Answer(CODE_LAYOUT) from None
            handler = {"Envio": self._envio, "Consulta": self._consulta, "EnvioEvento": self._evento}.get(document.tag)
            if handler is None:
                raise _Answer(CODE_DOCUMENT_TYPE)
            answers.append(handler(document, parameters))
        return answers

    def _abuse_message(self):
        return MESSAGES[CODE_ABUSE].format(
            minutes=max(1, round(self.abuse_block_seconds / 60)), count=self.abuse_threshold or 0
        )

    def _abused(self, raw_body):
        if not self.abuse_threshold:
            return False
        digest = hashlib.sha1(raw_body).hexdigest()
        now = time.monotonic()
        if self._blocked.get(digest, 0) > now:
            return True
        hits = self._identical.setdefault(digest, collections.deque())
        while hits and hits[0] <= now - self.abuse_window:
            hits.popleft()
        hits.append(now)
        if len(hits) >= self.abuse_threshold:
            self._blocked[digest] = now + self.abuse_block_seconds
            hits.clear()
            return True
        return False

    def _check_company(self, cnpj, tp_amb):
        if "".join(ch for ch in cnpj if ch.isdigit()) != self.company_code:
            raise _Answer(CODE_COMPANY)
        if tp_amb != self.tp_amb:
            raise _Answer(CODE_ENVIRONMENT)

    # ---------------------------------------------------------------- notes
    def _situation(self, record):
        status = record["status"]
        if status == "pending":
            return SIT_PENDING, "Documento pendente"
        if status == "rejected":
            return SIT_REJECTED, record["reject_reason"]
        if status == "canceled":
            return SIT_CANCELED, "Cancelado"
        return SIT_AUTHORIZED, "Autorizado o uso da NFS-e"

    def _advance(self, record):
        """Bring a note up to date (the municipality decides when its time has come)."""
        now = time.monotonic()
        changed = False
        if record["status"] == "pending" and now >= record["ready_at"]:
            if record["reject_reason"]:
                record["status"] = "rejected"
            else:
                record["status"] = "authorized"
                record["nfse_numero"] = str(self._next_nfse)
                self._next_nfse += 1
                digest = hashlib.sha1(f"{record['id_unico']}:{record['nfse_numero']}".encode()).hexdigest()
                record["cod_verificacao"] = digest[:9].upper()
                record["dh_aut"] = datetime.now().replace(microsecond=0).isoformat()
            changed = True
        if record["status"] == "cancel_pending" and now >= record["cancel_ready_at"]:
            record["status"] = "canceled"
            for event in record["events"]:
                if event["cStat"] == SIT_PENDING:
                    event["cStat"], event["description"] = SIT_EVENT_LINKED, "Cancelamento homologado"
            changed = True
        if changed:
            self._notify(record)

    def _schedule(self, record, delay):
        """With a webhook, the decision must happen on time even if nobody consults."""
        if not self.webhook_url or delay <= 0:
            return

        def tick():
            with self.lock:
                if self.running and self.documents.get(record["id_unico"]) is record:
                    self._advance(record)

        timer = threading.Timer(delay + 0.01, tick)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _notify(self, record):
        if not self.webhook_url:
            return
        payload = self._notification(record)
        threading.Thread(target=self._deliver, args=(record["id_unico"], payload), daemon=True).start()

    def _deliver(self, id_unico, payload):
        headers = {"Content-Type": "application/json"}
        if self.webhook_token:
            headers["Authorization"] = f"{'Basic' if self.webhook_auth == 'basic' else 'Bearer'} {self.webhook_token}"
        request = urllib.request.Request(
            self.webhook_url, data=json.dumps(payload).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - a local test URL
                outcome = response.status
        except Exception as e:  # noqa: BLE001 - a failed delivery is recorded, not raised
            outcome = getattr(e, "code", None) or type(e).__name__
        with self.lock:
            self.webhook_deliveries.append((id_unico, outcome))

    def _pdf(self, record):
        lines = [
            "InvoiCy simulator - NFS-e SEM VALOR FISCAL",
            f"NFS-e {record['nfse_numero']}   Codigo de verificacao {record['cod_verificacao']}",
            f"RPS {record['numero']} serie {record['serie']}   IDUnico {record['id_unico']}",
            f"Tomador: {record['tomador']}",
            f"Servico: {record['discriminacao'][:80]}",
            f"Valor dos servicos: {record['total']}",
        ]
        if record["status"] == "canceled":
            lines.append("*** NFS-e CANCELADA ***")
        return build_pdf(lines)

    def _municipal_xml(self, record):
        return _xml(
            "CompNfse",
            [("Nfse", [("InfNfse", [
                ("Numero", record["nfse_numero"]),
                ("CodigoVerificacao", record["cod_verificacao"]),
                ("DataEmissao", record["dh_aut"]),
                ("IdentificacaoRps", [("Numero", record["numero"]), ("Serie", record["serie"]), ("Tipo", "1")]),
                ("Servico", [("Valores", [("ValorServicos", record["total"])]),
                             ("Discriminacao", record["discriminacao"])]),
                ("PrestadorServico", [("IdentificacaoPrestador", [("Cnpj", self.company_code)])]),
                ("TomadorServico", [("RazaoSocial", record["tomador"])]),
            ])])] + ([("NfseCancelamento", [("Confirmacao", [("DataHora", record["canceled_at"])])])]
                     if record["status"] == "canceled" else []),
        )  # fmt: skip

    def _has_files(self, record):
        return record["status"] in ("authorized", "cancel_pending", "canceled")

    def _send_answer(self, record, situation=None, description=None):
        """A note as the answer to an Envio or an EnvioEvento (layout "Retorno_Recepção de RPS" [C])."""
        code, text = self._situation(record)
        files = self._has_files(record)
        return _xml(
            "Documento",
            [
                ("DocModelo", "NFSe"),
                ("DocNumero", record["numero"]),
                ("DocSerie", record["serie"]),
                ("DocIDUnico", record["id_unico"]),
                ("DocProtocolo", record["protocolo"]),
                ("DocPDFBase64", base64.b64encode(self._pdf(record)).decode() if files else ""),
                ("DocPDFDownload", ""),
                ("DocXMLBase64", base64.b64encode(self._municipal_xml(record).encode()).decode() if files else ""),
                ("DocXMLDownload", ""),
                ("NFSe", [("NFSeNumero", record["nfse_numero"]), ("NFSeCodVerificacao", record["cod_verificacao"])]),
                ("Situacao", [("SitCodigo", situation or code), ("SitDescricao", description or text)]),
            ],
        )

    def _consult_answer(self, record, flags):
        """A note as a consultation answers it (flat DocSitCodigo/DocStatus, base64 on demand) [C]."""
        code, text = self._situation(record)
        files = self._has_files(record)
        events = [
            ("EventosItem", [
                ("DocEveTp", event["type"]), ("cStat", event["cStat"]), ("DocEveDescricao", event["description"]),
                ("DocEveDhReg", event["at"]),
            ])
            for event in record["events"]
        ] if flags.get("Eventos") else []  # fmt: skip
        return _xml(
            "Documento",
            [
                ("DocModelo", "NFSe"),
                ("DocNumero", record["numero"]),
                ("DocSerie", record["serie"]),
                ("DocIDUnico", record["id_unico"]),
                ("DocChaAcesso", ""),
                ("DocProtocolo", record["protocolo"]),
                ("DocSitCodigo", code),
                ("DocSitDescricao", text),
                ("DocStatus", DOC_STATUS[record["status"]]),
                (
                    "DocXML",
                    base64.b64encode(self._municipal_xml(record).encode()).decode()
                    if files and flags.get("XMLCompleto")
                    else "",
                ),
                ("DocXMLLink", ""),
                ("DocPDF", base64.b64encode(self._pdf(record)).decode() if files and flags.get("PDFBase64") else ""),
                ("DocPDFLink", ""),
                ("Resumo", [
                    ("DocDataEmissao", record["dEmis"]), ("DocDhAut", record["dh_aut"]),
                    ("DocCNPJEmitente", self.company_code), ("DocNomeDestinatario", record["tomador"]),
                    ("DocVlrTotal", record["total"]),
                ]),
                ("Eventos", events),
                ("NFSe", [("NFSeNumero", record["nfse_numero"]), ("NFSeCodVerificacao", record["cod_verificacao"])]),
            ],
        )  # fmt: skip

    # ---------------------------------------------------------------- Envio
    def _envio(self, document, parameters):
        if _text(document, "ModeloDocumento").upper() != "NFSE":
            raise _Answer(CODE_DOCUMENT_TYPE)
        rps = document.find("RPS")
        if rps is None:
            raise _Answer(CODE_LAYOUT, MESSAGES[CODE_LAYOUT] + ": grupo RPS não informado")
        self._check_company(_text(rps, "Prestador/CNPJ_prest"), _text(rps, "tpAmb"))
        id_unico = _text(rps, "IDUnico")
        series = _text(rps, "RPSSerie") or self.default_series
        number = _text(rps, "RPSNumero")
        existing = self.documents.get(id_unico) if id_unico else None
        if existing is None and number:
            existing = next(
                (r for r in self.documents.values() if r["serie"] == series and str(r["numero"]) == number), None
            )
        if existing is not None and existing["status"] != "rejected":
            self._advance(existing)
            if self.duplicate_answer == "codigo313":
                raise _Answer(CODE_ALREADY_DONE, documents=[self._send_answer(existing)])
            existing["duplicate_sends"] += 1
            return CODE_OK, MESSAGES[CODE_OK], [self._send_answer(existing, SIT_ALREADY_SENT, "RPS já enviado")]
        problems = self._validate(rps)
        if existing is not None:  # a rejected note sent again: processed anew, same RPS number [?]
            record = existing
        else:
            if not number:
                self._series[series] += 1
                number = self._series[series]
            record = {
                "id_unico": id_unico or f"SIM-{series}-{number}",
                "serie": series,
                "numero": int(number),
                "events": [],
                "sends": 0,
                "duplicate_sends": 0,
                "nfse_numero": None,
                "cod_verificacao": None,
                "dh_aut": None,
                "canceled_at": None,
                "cancel_ready_at": None,
                "cancel_reason": None,
            }
            self.documents[record["id_unico"]] = record
        discrimination = _text(rps, "Servico/Discriminacao")
        item_texts = " ".join(item.findtext("ItemDesc") or "" for item in rps.iterfind("ListaItens/Item"))
        delay = 0.0 if self.processing == "sync" else self.authorization_delay
        record.update(
            {
                "status": "rejected" if problems else "pending",
                "reject_reason": "; ".join(problems)
                if problems
                else (REJECTION_MESSAGE if REJECT_MARKER in f"{discrimination} {item_texts}".upper() else None),
                "ready_at": time.monotonic() + delay,
                "protocolo": str(self._next_protocol),
                "tomador": _text(rps, "Tomador/TomaRazaoSocial"),
                "tomador_doc": _text(rps, "Tomador/TomaCNPJ") or _text(rps, "Tomador/TomaCPF"),
                "discriminacao": discrimination,
                "total": _text(rps, "Servico/Valores/ValServicos"),
                "values": {child.tag: (child.text or "") for child in rps.findall("Servico/Valores/*")},
                "regime": {"OptSN": _text(rps, "OptSN"), "codTributNacional": _text(rps, "Servico/codTributNacional")},
                "dEmis": _text(rps, "dEmis"),
                "envio": etree.tostring(document, encoding="unicode"),
            }
        )
        record["sends"] += 1
        self._next_protocol += 1
        if not problems:
            if self.processing == "sync":
                self._advance(record)
            else:
                self._schedule(record, delay)
        return CODE_OK, MESSAGES[CODE_OK], [self._send_answer(record)]

    def _validate(self, rps):  # noqa: C901 - one check per refusal, in layout order
        """What InvoiCy / the municipality refuse at once (wording made up, the rules from the layout)."""
        problems = []
        if not DATETIME_RE.fullmatch(_text(rps, "dEmis")):
            problems.append("dEmis deve estar no formato AAAA-MM-DDTHH:MM:SS")
        if _text(rps, "RPSTipo") not in ("", "1", "2", "3"):
            problems.append("RPSTipo inválido")
        if not rps.findall("ListaItens/Item"):
            problems.append("ListaItens: informe ao menos um item")
        values = rps.find("Servico/Valores")
        services = _decimal(_text(values, "ValServicos")) if values is not None else None
        if services is None or services <= 0:
            problems.append("ValServicos deve ser maior que zero")
        rate = _decimal(_text(values, "ValAliqISS")) if values is not None else None
        if rate is not None and rate >= 1:
            problems.append("ValAliqISS deve ser informada em fração (0.05 = 5%)")  # guess: the layout prefers it
        elif rate is not None and not MIN_ISS_FRACTION <= rate <= MAX_ISS_FRACTION:
            problems.append("ValAliqISS fora dos limites legais (2% a 5%, LC 116/2003 art. 8 e 8-A)")
        if values is not None and services is not None and services > 0:
            problems.extend(self._value_problems(values, services, rate or Decimal(0)))
        if _text(rps, "OptSN") == "2":
            for path, length in REFORM_ELEMENTS:
                value = _text(rps, path)
                if not value:
                    problems.append(f"{path} obrigatório para contribuintes fora do Simples Nacional (reforma 2026)")
                elif not (value.isdigit() and len(value) == length):
                    problems.append(f"{path} deve conter {length} dígitos")
        item_code = _text(rps, "Servico/IteListServico")
        if item_code and not LC116_RE.fullmatch(item_code):
            problems.append("IteListServico deve ter o formato 99.99 (item da LC 116 com ponto)")
        if not item_code and not _text(rps, "Servico/TributMunicipio"):
            problems.append("Informe IteListServico ou TributMunicipio")
        if not _text(rps, "Servico/Discriminacao"):
            problems.append("Discriminacao não informada")
        taker = rps.find("Tomador")
        if taker is None:
            problems.append("Tomador não informado")
        else:
            cnpj, cpf = _text(taker, "TomaCNPJ"), _text(taker, "TomaCPF")
            if not ((cnpj and cnpj_is_valid(cnpj)) or (cpf and cpf_is_valid(cpf))):
                problems.append("CPF/CNPJ do tomador inválido")
            if not _text(taker, "TomaRazaoSocial"):
                problems.append("TomaRazaoSocial não informada")
        return [f"Rejeição: {problem}" for problem in problems]

    @staticmethod
    def _value_problems(values, services, rate):
        """The aggregated values that are sent must add up: base, ISS, ISS withheld and the net value
        (ValLiquido = services - withholdings - unconditional discount - deductions [C]). An element
        left out is computed by the service [?]."""

        def value(tag):
            return _decimal(_text(values, tag)) or Decimal(0)

        def sent(tag):
            return values.find(tag) is not None

        problems = []
        base = services - value("ValDeducoes") - value("ValDescIncond")
        if sent("ValBaseCalculo") and value("ValBaseCalculo") != base:
            problems.append(f"ValBaseCalculo deve ser {base} (serviços - deduções - descontos incondicionados)")
        iss = (base * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        if sent("ValISS") and value("ValISS") != iss:
            problems.append(f"ValISS deve ser {iss} (base x alíquota)")
        withheld_iss = iss if _text(values, "ISSRetido") == "1" else Decimal(0)
        if sent("ValISSRetido") and value("ValISSRetido") != withheld_iss:
            problems.append(f"ValISSRetido deve ser {withheld_iss}")
        if any(value(tag) < 0 for tag in WITHHOLDING_ELEMENTS):
            problems.append("as retenções não podem ser negativas")
        withheld = sum((value(tag) for tag in WITHHOLDING_ELEMENTS), Decimal(0))
        net = base - withheld - withheld_iss
        if sent("ValLiquido") and value("ValLiquido") != net:
            problems.append(f"ValLiquido deve ser {net} (serviços - retenções - descontos incondicionados)")
        return problems

    # -------------------------------------------------------------- Consulta
    def _consulta(self, document, parameters):
        if _text(document, "ModeloDocumento").upper() != "NFSE":
            raise _Answer(CODE_DOCUMENT_TYPE)
        self._check_company(_text(document, "CnpjEmissor"), _text(document, "tpAmb"))
        empty_company = document.find("CnpjEmpresa")
        if empty_company is not None and not (empty_company.text or "").strip():
            # "If empty it must be omitted, never sent as <CnpjEmpresa/>" [C].
            raise _Answer(CODE_LAYOUT, MESSAGES[CODE_LAYOUT] + ": CnpjEmpresa vazio")
        id_unico = _text(document, "IDUnico")
        if id_unico:
            records = [self.documents[id_unico]] if id_unico in self.documents else []
        elif _text(document, "NumeroInicial"):
            try:
                first, last = int(_text(document, "NumeroInicial")), int(_text(document, "NumeroFinal") or 0)
            except ValueError:
                raise _Answer(CODE_LAYOUT) from None
            series = _text(document, "Serie") or self.default_series
            last = last or first
            records = [r for r in self.documents.values() if r["serie"] == series and first <= r["numero"] <= last]
        else:
            raise _Answer(CODE_LAYOUT, MESSAGES[CODE_LAYOUT] + ": informe IDUnico ou a faixa de RPS")
        if not records:
            raise _Answer(CODE_NOT_FOUND)
        flags = self._flags(parameters)
        for record in records:
            self._advance(record)
        return CODE_OK, MESSAGES[CODE_OK], [self._consult_answer(r, flags) for r in records]

    def _flags(self, parameters):
        flags = {"Situacao": True}
        if parameters.strip():
            try:
                root = etree.fromstring(parameters.encode("utf-8"), _PARSER)
            except etree.XMLSyntaxError:
                raise _Answer(CODE_LAYOUT, MESSAGES[CODE_LAYOUT] + ": Parametros") from None
            for child in root:
                flags[child.tag] = (child.text or "").strip().upper() == "S"
        return flags

    # ------------------------------------------------------------ EnvioEvento
    def _event_note(self, event):
        """The note an event names: by IDUnico, else RPS number and series, else NFS-e number."""
        id_unico, rps, nfse = _text(event, "IDUnico"), _text(event, "RPSNumero"), _text(event, "NFSeNumero")
        if id_unico and id_unico in self.documents:
            return self.documents[id_unico]
        series = _text(event, "RPSSerie") or self.default_series
        for record in self.documents.values():
            if (rps and record["serie"] == series and str(record["numero"]) == rps) or (
                nfse and record["nfse_numero"] == nfse
            ):
                return record
        return None

    def _event_problems(self, event, record):
        problems = []
        nfse = _text(event, "NFSeNumero")
        if not nfse:
            problems.append("NFSeNumero não informado")  # required even with IDUnico [C]
        elif record["nfse_numero"] and nfse != record["nfse_numero"]:
            problems.append("NFSeNumero não confere com o documento")
        if _text(event, "EveCodigo") not in CANCEL_CODES:
            problems.append("EveCodigo deve ser 1, 2 ou 4")
        reason = " ".join(_text(event, "EveMotivo").split())
        if len(reason) < MIN_JUSTIFICATION or len(reason) > 100:
            problems.append(f"EveMotivo deve ter de {MIN_JUSTIFICATION} a 100 caracteres")
        return problems

    def _evento(self, document, parameters):
        if _text(document, "ModeloDocumento").upper() != "NFSE":
            raise _Answer(CODE_DOCUMENT_TYPE)
        event = document.find("Evento")
        if event is None:
            raise _Answer(CODE_LAYOUT, MESSAGES[CODE_LAYOUT] + ": grupo Evento não informado")
        self._check_company(_text(event, "CNPJ"), _text(event, "tpAmb"))
        record = self._event_note(event)
        if record is None:
            unknown = _xml("Documento", [
                ("DocModelo", "NFSe"), ("DocNumero", _text(event, "RPSNumero")), ("DocSerie", _text(event, "RPSSerie")),
                ("DocIDUnico", _text(event, "IDUnico")),
                ("Situacao", [("SitCodigo", SIT_NOT_FOUND), ("SitDescricao", MESSAGE_NOT_IN_INVOICY)]),
            ])  # fmt: skip
            return CODE_OK, MESSAGES[CODE_OK], [unknown]
        self._advance(record)

        def outcome(situation, text):
            return CODE_OK, MESSAGES[CODE_OK], [self._send_answer(record, situation, text)]

        if _text(event, "EveTp") != CANCEL_EVENT:
            return outcome(SIT_REJECTED, "Rejeição: EveTp não suportado")
        problems = self._event_problems(event, record)
        if problems:
            return outcome(SIT_REJECTED, "Rejeição: " + "; ".join(problems))
        status = record["status"]
        if status == "canceled":
            return outcome(SIT_CANCELED, "Cancelado")
        if status == "cancel_pending":
            return outcome(SIT_PENDING, "Cancelamento pendente")
        if status != "authorized":
            return outcome(SIT_REJECTED, f"Rejeição: documento {STATUS_WORDS[status]} não pode ser cancelado")
        now = datetime.now().replace(microsecond=0).isoformat()
        record["cancel_reason"] = _text(event, "EveMotivo")
        record["cancel_code"] = _text(event, "EveCodigo")
        record["canceled_at"] = now
        if self.cancel_delay > 0:
            record["status"] = "cancel_pending"
            record["cancel_ready_at"] = time.monotonic() + self.cancel_delay
            record["events"].append(
                {"type": CANCEL_EVENT, "cStat": SIT_PENDING, "description": "Cancelamento pendente", "at": now}
            )
            self._schedule(record, self.cancel_delay)
            return outcome(SIT_PENDING, "Cancelamento pendente")
        record["status"] = "canceled"
        record["events"].append(
            {"type": CANCEL_EVENT, "cStat": SIT_EVENT_LINKED, "description": "Cancelamento homologado", "at": now}
        )
        self._notify(record)
        return outcome(SIT_CANCELED, "Cancelado")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m simulators.invoicy", description="Local InvoiCy (arecepcao SOAP) simulator (demo, tests)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8768, help="0 = a free port")
    parser.add_argument("--partner-key", default="demo-partner-key")
    parser.add_argument("--access-key", default="demo-access-key")
    parser.add_argument("--company-code", default="99999999000191", help="the issuing company's CNPJ")
    parser.add_argument("--environment", choices=("test", "production"), default="test")
    parser.add_argument("--authorization-delay", type=float, default=0.3, help="seconds before a note is decided")
    parser.add_argument("--processing", choices=("async", "sync"), default="async")
    parser.add_argument("--cancel-delay", type=float, default=0.0)
    parser.add_argument("--duplicate-answer", choices=("situacao", "codigo313"), default="situacao")
    parser.add_argument("--abuse-threshold", type=int, default=0, help="identical requests before 179, 0 = never")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    args = parser.parse_args(argv)
    simulator = InvoicySimulator(
        partner_key=args.partner_key,
        access_key=args.access_key,
        company_code=args.company_code,
        environment=args.environment,
        authorization_delay=args.authorization_delay,
        processing=args.processing,
        cancel_delay=args.cancel_delay,
        duplicate_answer=args.duplicate_answer,
        abuse_threshold=args.abuse_threshold or None,
        latency=args.latency,
        port=args.port,
        host=args.host,
    )
    return serve_until_signal(simulator)


if __name__ == "__main__":
    sys.exit(main())
