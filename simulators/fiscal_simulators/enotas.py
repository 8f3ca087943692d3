"""A local eNotas Gateway (NFS-e API v1) simulator.

Follows the public contract summarised in shared/provider-apis.md section 1: the same
paths under ``/v1/empresas/{empresaId}``, ``Authorization: Basic <raw API key>``, JSON
bodies, errors as a JSON array of ``{"codigo", "mensagem"}``, and the behaviours a
client must survive:

* emission is asynchronous: POST answers ``{"nfeId"}`` and the note goes
  AguardandoAutorizacao -> EmProcessoDeAutorizacao -> Autorizada (or Negada) after
  ``authorization_delay`` seconds (``0``: at the first read; ``None``: only when a test
  calls :meth:`EnotasSimulator.complete`);
* ``idExterno`` is unique per company *across environments*; a second emission with a
  known idExterno is refused, unless that note is Negada: then the same note is
  re-submitted with the new data and goes through authorization again;
* cancellation (DELETE) is asynchronous too: SolicitandoCancelamento ->
  EmProcessoDeCancelamento -> Cancelada, or CancelamentoNegado (``deny_cancellation``);
* numbering per company and environment, a verification code, a PDF and an
  ABRASF-like XML for numbered notes;
* webhooks: when ``webhook_url`` is set, the documented payload is POSTed there (in a
  background thread, with retries) each time a note reaches a final status.

Usage in tests::

    with EnotasSimulator(api_key="k", company_id=COMPANY, authorization_delay=None) as sim:
        config = ProviderConfig(base_url=sim.base_url, credentials={"api_key": "k"},
                                options={"company_id": COMPANY})
        note = EnotasProvider(config).create(doc)
        sim.complete(note.remote_id)          # the municipality answers now
        assert sim.find(idExterno=doc.reference)[0]["status"] == "Autorizada"

``base_url`` already ends with ``/v1``, like the real service's.

CLI (demo)::

    cd fiscal_invoice_connector && python -m simulators.enotas --port 8766 --api-key demo-key \\
        --company-id 3f1c9a52-6d0e-4b8a-9c51-2a7e0d4b8f16 [--webhook-url URL] [--authorization-delay 2]

Guesses (not in the public contract) are marked [?] below.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import json
import logging
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import unquote

from ._brazil import cnpj_is_valid, cpf_is_valid
from ._server import Reply, SimResponse, SimulatorServer, build_pdf, serve_until_signal
from ._server import json_decimal as _decimal

_logger = logging.getLogger(__name__)

API_PREFIX = "/v1"
_SEG = r"[^/]+"
_COMPANY = rf"{API_PREFIX}/empresas/(?P<company_id>{_SEG})"

DEMO_COMPANY_ID = "3f1c9a52-6d0e-4b8a-9c51-2a7e0d4b8f16"
DEMO_COMPANY_CNPJ = "11222333000181"
ENVIRONMENTS = ("Homologacao", "Producao")
UFS = frozenset(
    "AC AL AP AM BA CE DF ES GO MA MT MS MG PA PB PR PE PI RJ RN RS RO RR SC SP SE TO".split()
)  # fmt: skip

AUTHORIZING = ("AguardandoAutorizacao", "EmProcessoDeAutorizacao")
CANCELING = ("SolicitandoCancelamento", "EmProcessoDeCancelamento")
FINAL_STATUSES = ("Autorizada", "Negada", "Cancelada", "CancelamentoNegado")
# Statuses of a note that exists fiscally (has a number): PDF and XML are available.
NUMBERED = ("Autorizada", *CANCELING, "CancelamentoNegado", "Cancelada")

REJECT_MARKER = "REJEITAR"
DEFAULT_REJECTION_REASON = "Código de serviço inválido para o município"
DEFAULT_CANCELLATION_DENIED_REASON = "Cancelamento negado pela prefeitura: prazo para cancelamento expirado"  # [?]
MAX_ISS_RATE = Decimal(5)  # LC 116/2003, art. 8: ISS is at most 5 %
MIN_ISS_RATE = Decimal(2)  # LC 116/2003, art. 8-A (LC 157/2016): and at least 2 %
# Company regimes (regimeTributario [?]) whose notes need the 2026 reform fields.
REFORM_REGIMES = ("LucroPresumido", "LucroReal")
REFORM_FIELDS = (  # (path in servico, digits)
    ("codigoTributacaoNacional", 6),
    ("codigoNBS", 9),
    ("ibsCbs.classificacaoTributaria", 6),
    ("ibsCbs.codigoIndicadorOperacao", 6),
)
WITHHOLDING_FIELDS = ("valorPis", "valorCofins", "valorCsll", "valorInss", "valorIr")
# The cancellation's body (field names [?], as the client's EnotasProvider.cancel_*_field).
CANCEL_MOTIVE_FIELD = "codigoMotivoCancelamento"
CANCEL_JUSTIFICATION_FIELD = "justificativaCancelamento"
CANCEL_MOTIVES = ("1", "2", "9")  # national standard: erro na emissão, serviço não prestado, outros
MIN_JUSTIFICATION = 15
MAX_EXTERNAL_ID_LENGTH = 200  # [?]

# Error codes: the real ``codigo`` values are not documented [?]; descriptive guesses.
CODE_INVALID_KEY = "ApiKeyInvalida"
CODE_FORBIDDEN = "AcessoNegado"
CODE_NOT_FOUND = "RegistroNaoEncontrado"
CODE_REQUIRED = "CampoObrigatorio"
CODE_INVALID = "CampoInvalido"
CODE_DUPLICATE = "IdExternoDuplicado"
CODE_STATE = "StatusNaoPermiteOperacao"
CODE_RATE = "LimiteDeRequisicoes"
CODE_ERROR = "ErroInterno"
STATUS_CODES = {400: CODE_INVALID, 401: CODE_INVALID_KEY, 403: CODE_FORBIDDEN, 404: CODE_NOT_FOUND, 429: CODE_RATE}

MSG_INVALID_KEY = "Api Key inválida"  # [?]
MSG_COMPANY_NOT_FOUND = "Empresa não encontrada"
MSG_NOTE_NOT_FOUND = "Nota fiscal não encontrada"

CENT = Decimal("0.01")
NFSE_NAMESPACE = "http://www.abrasf.org.br/nfse.xsd"


def _now_iso():
    return datetime.now().replace(microsecond=0).isoformat()


def _text(value):
    return str(value).strip() if value is not None else ""


def _parse_date(value):
    """``YYYY-MM-DD``, optionally followed by a time (``2025-01-10T00:00:00``)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


class EnotasSimulator(SimulatorServer):
    label = "eNotas simulator"
    secret_params = ()  # the key travels in the Authorization header, never in the URL
    fault_messages = {
        400: "Requisição inválida",
        401: MSG_INVALID_KEY,
        403: "Acesso negado",
        404: "Registro não encontrado",
        422: "Requisição inválida",
    }
    # How often the background clock moves notes along (and fires webhooks).
    tick_interval = 0.02

    routes = (
        ("GET", _COMPANY, "_get_company"),
        ("POST", rf"{_COMPANY}/nfes", "_create_note"),
        ("GET", rf"{_COMPANY}/nfes", "_list_notes"),
        ("GET", rf"{_COMPANY}/nfes/porIdExterno/(?P<external_id>{_SEG})", "_get_note_by_external_id"),
        ("DELETE", rf"{_COMPANY}/nfes/porIdExterno/(?P<external_id>{_SEG})", "_cancel_note_by_external_id"),
        ("GET", rf"{_COMPANY}/nfes/porIdExterno/(?P<external_id>{_SEG})/(?P<fmt>pdf|xml)", "_file_by_external_id"),
        ("GET", rf"{_COMPANY}/nfes/(?P<nfe_id>{_SEG})", "_get_note"),
        ("DELETE", rf"{_COMPANY}/nfes/(?P<nfe_id>{_SEG})", "_cancel_note"),
        ("GET", rf"{_COMPANY}/nfes/(?P<nfe_id>{_SEG})/(?P<fmt>pdf|xml)", "_file"),
        # linkDownloadPDF / linkDownloadXML: files on a storage host, no key, outside the API budget [?].
        ("GET", r"/simulator-files/nfse/(?P<token>[0-9a-f]{32})\.(?P<fmt>pdf|xml)", "_stored_file"),
    )

    def __init__(
        self,
        *,
        api_key="demo-key",
        company_id=DEMO_COMPANY_ID,
        company_name="Empresa Demonstração Ltda",
        companies=None,
        authorization_delay=0.3,
        cancellation_delay=None,
        reject_when=None,
        deny_cancellation=False,
        cancellation_denied_reason=DEFAULT_CANCELLATION_DENIED_REASON,
        omit_number_in_json=False,
        webhook_url=None,
        webhook_attempts=3,
        webhook_retry_delay=0.5,
        webhook_timeout=5.0,
        rate_limit_per_minute=None,
        latency=0.0,
        port=0,
        host="127.0.0.1",
        timeout_seconds=15.0,
    ):
        self.api_key = api_key
        # empresaId -> company record; "_authorized": False makes the key get 403 for it.
        self.companies = {}
        if company_id:
            self.add_company(company_id, company_name)
        for extra_id, record in (companies or {}).items():
            self.add_company(extra_id, **record)
        self.authorization_delay = authorization_delay
        # None: same as the authorization delay.
        self.cancellation_delay = cancellation_delay
        self.reject_when = reject_when
        self.deny_cancellation = deny_cancellation
        self.cancellation_denied_reason = cancellation_denied_reason
        # The note JSON leaves numero/codigoVerificacao empty (clients must read the XML).
        self.omit_number_in_json = omit_number_in_json
        self.webhook_url = webhook_url
        self.webhook_attempts = webhook_attempts
        self.webhook_retry_delay = webhook_retry_delay
        self.webhook_timeout = webhook_timeout
        # Time source of the note transitions; tests may replace it to step time by hand.
        self.clock = time.monotonic
        self._clock_thread = None
        super().__init__(
            host=host,
            port=port,
            latency=latency,
            rate_limit_per_minute=rate_limit_per_minute,
            timeout_seconds=timeout_seconds,
        )

    def add_company(self, company_id, name="Empresa", *, authorized=True, cnpj_number=DEMO_COMPANY_CNPJ, **fields):
        """Register an empresaId the key may use (``authorized=False``: it exists, the key gets 403)."""
        record = {
            "id": company_id,
            "razaoSocial": name,
            "nomeFantasia": name,
            "cnpj": cnpj_number,
            "inscricaoMunicipal": "1234567",
            "uf": "MG",
            "cidade": "Belo Horizonte",
            "codigoIbgeCidade": "3106200",
            "regimeTributario": "SimplesNacional",
            **fields,
            "_authorized": authorized,
        }
        self.companies[company_id] = record
        return record

    # ------------------------------------------------------------------ urls
    @property
    def root_url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self):
        """What a client configures: the API root, ``/v1`` included (like api.enotasgw.com.br/v1)."""
        return self.root_url + API_PREFIX

    # ------------------------------------------------------------- lifecycle
    def start(self):
        fresh = not self.running
        super().start()
        if fresh:
            self._clock_thread = threading.Thread(target=self._run_clock, name=f"{self.label} clock", daemon=True)
            self._clock_thread.start()
        return self

    def stop(self):
        super().stop()
        thread, self._clock_thread = self._clock_thread, None
        if thread is not None:
            thread.join(timeout=5)

    def _run_clock(self):
        while not self._stopping.wait(self.tick_interval):
            try:
                self.advance()
            except Exception:  # noqa: BLE001 - e.g. a failing reject_when: keep the clock alive
                _logger.exception("%s: error while advancing notes", self.label)

    # ------------------------------------------------------------------ state
    def reset_state(self):
        self.notes = {}  # nfeId -> note (public fields + "_"-prefixed internals)
        self.webhooks_sent = []  # one record per delivery attempt
        self._numbers = {}  # (empresaId, ambiente) -> last NFS-e number
        self._rps_numbers = {}  # (empresaId, ambiente) -> last RPS number
        self._scheduled = set()  # nfeIds with a transition under way

    # ------------------------------------------------------- inspection helpers
    def find(self, **criteria):
        """Notes whose public fields equal ``criteria`` (e.g. ``idExterno="X"``), in creation order."""
        with self.lock:
            self.advance()
            return [note for note in self.notes.values() if all(note.get(k) == v for k, v in criteria.items())]

    def final_notes(self, include_canceled=False):
        """Notes that exist fiscally (numbered), optionally with the canceled ones."""
        with self.lock:
            self.advance()
            return [
                note
                for note in self.notes.values()
                if note["status"] in NUMBERED and (include_canceled or note["status"] != "Cancelada")
            ]

    def advance(self):
        """Apply every transition that is due now (the background clock calls this too)."""
        with self.lock:
            now = self.clock()
            for nfe_id in list(self._scheduled):
                note = self.notes.get(nfe_id)
                if note is not None:
                    self._advance_note(note, now)

    def complete(self, nfe_id):
        """The municipality answers now: finish the authorization or cancellation under way."""
        with self.lock:
            note = self.notes[nfe_id]
            if note["_phase"] is None:
                raise ValueError(f"note {nfe_id} has nothing under way (status {note['status']})")
            self._complete(note)
            return note

    def set_status(self, nfe_id, status, reason=None):
        """Force a status (e.g. one the client does not know); stops any transition under way."""
        with self.lock:
            note = self.notes[nfe_id]
            self._unschedule(note)
            note["status"] = status
            note["motivoStatus"] = reason
            return note

    def wait_for_webhooks(self, count, timeout=5.0):
        """Wait until ``count`` delivery attempts were recorded; return the records."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.webhooks_sent) >= count:
                    return list(self.webhooks_sent)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(self.webhooks_sent)} webhook deliveries, expected {count}")
            time.sleep(0.01)

    def redeliver(self, nfe_id, url=None):
        """POST the note's current webhook payload again, now, in this thread; return the last attempt."""
        url = url or self.webhook_url
        if not url:
            raise ValueError("no webhook_url to deliver to")
        with self.lock:
            payload = self._webhook_payload(self.notes[nfe_id])
        return self._deliver(url, payload)

    # ------------------------------------------------------------- transport hooks
    def is_public(self, request):
        # The download links mimic pre-signed storage URLs: no key, not counted by the rate limit.
        return request.path.startswith("/simulator-files/")

    def authenticate(self, request):
        header = request.headers.get("Authorization") or ""
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "basic" or not hmac.compare_digest(key.strip().encode(), str(self.api_key).encode()):
            return self.error_response(401, MSG_INVALID_KEY)
        return None

    def error_response(self, status, *messages):
        code = STATUS_CODES.get(status, CODE_ERROR if status >= 500 else CODE_INVALID)
        return SimResponse.json(status, [{"codigo": code, "mensagem": m} for m in messages])

    def rate_limited_response(self, retry_after):
        # Limits are not published [?]: the usual 429 + Retry-After, with the error array.
        return SimResponse.json(
            429,
            [{"codigo": CODE_RATE, "mensagem": "Limite de requisições excedido"}],
            headers={"Retry-After": str(retry_after)},
        )

    def dispatch(self, request):
        self.advance()  # time-based statuses are current before any route reads them
        return super().dispatch(request)

    # ---------------------------------------------------------------- helpers
    def _fail(self, status, *errors):
        """``errors``: (codigo, mensagem) pairs."""
        return Reply(SimResponse.json(status, [{"codigo": c, "mensagem": m} for c, m in errors]))

    def _company(self, company_id):
        company = self.companies.get(unquote(company_id))
        if company is None:
            raise self._fail(404, (CODE_NOT_FOUND, MSG_COMPANY_NOT_FOUND))
        if not company.get("_authorized", True):
            raise self._fail(403, (CODE_FORBIDDEN, "Acesso negado: a api key não tem permissão para esta empresa"))
        return company

    def _note(self, company, nfe_id):
        note = self.notes.get(unquote(nfe_id))
        if note is None or note["_company"] != company["id"]:
            raise self._fail(404, (CODE_NOT_FOUND, MSG_NOTE_NOT_FOUND))
        return note

    def _note_by_external_id(self, company, external_id):
        external_id = unquote(external_id)
        note = next(
            (n for n in self.notes.values() if n["_company"] == company["id"] and n["idExterno"] == external_id), None
        )
        if note is None:
            raise self._fail(404, (CODE_NOT_FOUND, MSG_NOTE_NOT_FOUND))
        return note

    def _render(self, note):
        public = {key: copy.deepcopy(value) for key, value in note.items() if not key.startswith("_")}
        if self.omit_number_in_json:
            public["numero"] = public["codigoVerificacao"] = None
        return public

    def _public_base(self, request):
        host = request.headers.get("Host")
        return (f"http://{host}" if host else self.root_url) + API_PREFIX

    # ----------------------------------------------------------- validation
    def _body(self, request):
        try:
            data = request.json()
        except (ValueError, UnicodeDecodeError):
            raise self._fail(400, (CODE_INVALID, "O corpo da requisição não é um JSON válido")) from None
        if not isinstance(data, dict):
            raise self._fail(400, (CODE_INVALID, "O corpo da requisição deve ser um objeto JSON"))
        return data

    def _prepare(self, data, company=None):
        """Validate an emission body; return the normalised note data or raise a 400 listing every problem."""
        errors = []
        tipo = data.get("tipo", "NFS-e")
        if tipo != "NFS-e":
            errors.append((CODE_INVALID, f"tipo inválido ({tipo}): esta API emite NFS-e"))
        environment = data.get("ambienteEmissao")
        if environment in (None, ""):
            errors.append((CODE_REQUIRED, "ambienteEmissao é obrigatório (Producao ou Homologacao)"))
        elif environment not in ENVIRONMENTS:
            errors.append((CODE_INVALID, f"ambienteEmissao inválido: {environment}"))
        external_id = data.get("idExterno")
        if external_id is not None and (not isinstance(external_id, str) or len(external_id) > MAX_EXTERNAL_ID_LENGTH):
            errors.append((CODE_INVALID, "idExterno inválido"))
        total = _decimal(data.get("valorTotal"))
        if data.get("valorTotal") in (None, ""):
            errors.append((CODE_REQUIRED, "valorTotal é obrigatório"))
        elif total is None or total <= 0:
            errors.append((CODE_INVALID, "valorTotal deve ser um número maior que zero"))
        competence = date.today()
        if data.get("dataCompetencia") not in (None, ""):
            competence = _parse_date(data.get("dataCompetencia"))
            if competence is None:
                errors.append((CODE_INVALID, "dataCompetencia inválida (formato AAAA-MM-DD)"))
        send_email = data.get("enviarPorEmail", False)
        if not isinstance(send_email, bool):
            errors.append((CODE_INVALID, "enviarPorEmail deve ser true ou false"))
        client = self._check_client(data.get("cliente"), errors)
        service = self._check_service(data.get("servico"), errors)
        regime = (company or {}).get("regimeTributario")
        if isinstance(service, dict) and regime in REFORM_REGIMES:
            self._check_reform(service, regime, errors)
        amounts = self._amounts(data, total, service, errors)
        if errors:
            raise self._fail(400, *dict.fromkeys(errors))
        return {
            "idExterno": external_id or None,
            "ambienteEmissao": environment,
            "enviarPorEmail": send_email,
            "dataCompetencia": competence.isoformat(),
            "valorTotal": float(total.quantize(CENT, rounding=ROUND_HALF_UP)),
            "observacoes": data.get("observacoes"),
            "cliente": client,
            "servico": service,
            **amounts,
        }

    def _check_reform(self, service, regime, errors):
        """From 2026 the national repository refuses a Lucro Presumido / Real note without them."""
        for path, length in REFORM_FIELDS:
            value = service
            for key in path.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            text = _text(value)
            if not text:
                errors.append((CODE_REQUIRED, f"servico.{path} é obrigatório para o regime {regime}"))
            elif not (text.isdigit() and len(text) == length):
                errors.append((CODE_INVALID, f"servico.{path} deve conter {length} dígitos"))

    def _amounts(self, data, total, service, errors):
        """Discounts, deductions and withholdings, and the net value they leave."""
        values = {}
        for key in ("descontos", "deducoes"):
            value = _decimal(data.get(key)) if data.get(key) not in (None, "") else Decimal(0)
            if value is None or value < 0:
                errors.append((CODE_INVALID, f"{key} deve ser um número não negativo"))
                value = Decimal(0)
            values[key] = value
        withheld = Decimal(0)
        service = service if isinstance(service, dict) else {}
        for key in WITHHOLDING_FIELDS:
            value = _decimal(service.get(key)) if service.get(key) not in (None, "") else Decimal(0)
            if value is None or value < 0:
                errors.append((CODE_INVALID, f"servico.{key} deve ser um número não negativo"))
                value = Decimal(0)
            withheld += value
        if total is None or total <= 0:
            return {}
        base = total - values["descontos"] - values["deducoes"]
        if base <= 0:
            errors.append((CODE_INVALID, "descontos e deducoes não podem ser maiores que valorTotal"))
            return {}
        rate = _decimal(service.get("aliquotaIss")) or Decimal(0)
        iss = (base * rate / 100).quantize(CENT, rounding=ROUND_HALF_UP)
        iss_withheld = iss if service.get("issRetidoFonte") is True else Decimal(0)
        net = base - withheld - iss_withheld
        if net <= 0:
            errors.append((CODE_INVALID, "as retenções não podem ser maiores que o valor da nota"))
        return {
            "descontos": float(values["descontos"]),
            "deducoes": float(values["deducoes"]),
            "valorIss": float(iss),
            "valorIssRetido": float(iss_withheld),
            "valorLiquido": float(net),
        }

    def _check_client(self, client, errors):  # noqa: C901 - one check per field, in the service's order
        if not isinstance(client, dict):
            errors.append((CODE_REQUIRED, "cliente é obrigatório"))
            return None
        if not _text(client.get("nome")):
            errors.append((CODE_REQUIRED, "cliente.nome é obrigatório"))
        tax_id = _text(client.get("cpfCnpj"))
        person = client.get("tipoPessoa")
        if not tax_id:
            errors.append((CODE_REQUIRED, "cliente.cpfCnpj é obrigatório"))
        elif not tax_id.isalnum() or len(tax_id) not in (11, 14) or (len(tax_id) == 11 and not tax_id.isdigit()):
            errors.append(
                (CODE_INVALID, "cliente.cpfCnpj deve conter apenas os 11 (CPF) ou 14 (CNPJ, alfanumérico) caracteres")
            )
        elif not (cpf_is_valid(tax_id) if len(tax_id) == 11 else cnpj_is_valid(tax_id)):
            errors.append((CODE_INVALID, f"cliente.cpfCnpj inválido: {tax_id}"))
        elif person not in ("F", "J"):
            errors.append((CODE_INVALID, "cliente.tipoPessoa deve ser F ou J"))
        elif (person == "F") != (len(tax_id) == 11):
            errors.append((CODE_INVALID, "cliente.tipoPessoa não corresponde ao cpfCnpj"))
        email = _text(client.get("email"))
        if email and "@" not in email:
            errors.append((CODE_INVALID, "cliente.email inválido"))
        address = client.get("endereco")
        if not isinstance(address, dict):
            errors.append((CODE_REQUIRED, "cliente.endereco é obrigatório"))
            return client
        for field in ("logradouro", "numero", "bairro", "cidade", "uf", "cep"):
            if not _text(address.get(field)):
                errors.append((CODE_REQUIRED, f"cliente.endereco.{field} é obrigatório"))
        uf = _text(address.get("uf"))
        if uf and uf not in UFS:
            errors.append((CODE_INVALID, f"cliente.endereco.uf inválida: {uf}"))
        cep = _text(address.get("cep"))
        if cep and not (cep.isdigit() and len(cep) == 8):
            errors.append((CODE_INVALID, "cliente.endereco.cep deve conter 8 dígitos"))
        city_code = _text(address.get("codigoIbgeCidade"))
        if city_code and not (city_code.isdigit() and len(city_code) == 7):
            errors.append((CODE_INVALID, "cliente.endereco.codigoIbgeCidade deve conter 7 dígitos"))
        return client

    def _check_service(self, service, errors):
        if not isinstance(service, dict):
            errors.append((CODE_REQUIRED, "servico é obrigatório"))
            return None
        if not _text(service.get("descricao")):
            errors.append((CODE_REQUIRED, "servico.descricao é obrigatório"))
        if not _text(service.get("codigoServicoMunicipio")) and not _text(service.get("itemListaServicoLC116")):
            errors.append((CODE_REQUIRED, "servico.codigoServicoMunicipio é obrigatório para o município"))
        if service.get("aliquotaIss") is not None:
            rate = _decimal(service.get("aliquotaIss"))
            if rate is None or not MIN_ISS_RATE <= rate <= MAX_ISS_RATE:
                errors.append((CODE_INVALID, "servico.aliquotaIss deve estar entre 2 e 5 (LC 116/2003, art. 8 e 8-A)"))
        if "issRetidoFonte" in service and not isinstance(service["issRetidoFonte"], bool):
            errors.append((CODE_INVALID, "servico.issRetidoFonte deve ser true ou false"))
        place = _text(service.get("municipioPrestacaoServico"))
        if place and not (place.isdigit() and len(place) == 7):
            errors.append((CODE_INVALID, "servico.municipioPrestacaoServico deve ser o código IBGE (7 dígitos)"))
        return service

    # --------------------------------------------------------------- notes
    def _create_note(self, request, company_id):
        company = self._company(company_id)
        data = self._body(request)
        prepared = self._prepare(data, company)
        existing = None
        if data.get("id"):
            # Re-sending a Negada note by its nfeId [C: "with the same idExterno or nfeId"].
            existing = self._note(company, str(data["id"]))
            if existing["status"] != "Negada":
                raise self._fail(
                    400, (CODE_STATE, f"A nota fiscal não pode ser alterada no status {existing['status']}")
                )
        elif prepared["idExterno"]:
            # Unique across environments [C].
            existing = next(
                (
                    n
                    for n in self.notes.values()
                    if n["_company"] == company["id"] and n["idExterno"] == prepared["idExterno"]
                ),
                None,
            )
            if existing is not None and existing["status"] != "Negada":
                raise self._fail(
                    400,
                    (
                        CODE_DUPLICATE,
                        f"Já existe uma nota com o idExterno {prepared['idExterno']} "
                        f"(ambiente {existing['ambienteEmissao']}).",
                    ),
                )
        if existing is not None:
            self._fill(existing, prepared)
            self._schedule(existing, "authorization")
            return SimResponse.json(200, {"nfeId": existing["id"]})
        note = self._new_note(request, company, prepared)
        self._schedule(note, "authorization")
        return SimResponse.json(200, {"nfeId": note["id"]})

    def _new_note(self, request, company, prepared):
        nfe_id = str(uuid.uuid4())
        key = (company["id"], prepared["ambienteEmissao"])
        rps = self._rps_numbers.get(key, 0) + 1
        self._rps_numbers[key] = rps
        token = uuid.uuid4().hex
        host = request.headers.get("Host")
        files = f"{f'http://{host}' if host else self.root_url}/simulator-files/nfse/{token}"
        note = {
            "id": nfe_id,
            "tipo": "NFS-e",
            "status": "AguardandoAutorizacao",
            "motivoStatus": None,
            "enviadaPorEmail": False,
            "numero": None,
            "codigoVerificacao": None,
            "chaveAcesso": None,
            "numeroRps": rps,
            "serieRps": "1",
            "dataCriacao": _now_iso(),
            "dataUltimaAlteracao": _now_iso(),
            "dataAutorizacao": None,
            "dataCancelamento": None,
            "linkDownloadPDF": files + ".pdf",
            "linkDownloadXML": files + ".xml",
            "_token": token,
            "_company": company["id"],
            "_phase": None,
            "_started": None,
            "_due": None,
        }
        self._fill(note, prepared)
        self.notes[nfe_id] = note
        return note

    def _fill(self, note, prepared):
        note.update(copy.deepcopy(prepared))
        note["dataUltimaAlteracao"] = _now_iso()

    def _get_note(self, request, company_id, nfe_id):
        return SimResponse.json(200, self._render(self._note(self._company(company_id), nfe_id)))

    def _get_note_by_external_id(self, request, company_id, external_id):
        return SimResponse.json(200, self._render(self._note_by_external_id(self._company(company_id), external_id)))

    def _list_notes(self, request, company_id):
        """Paged list; only the ``status eq 'X'`` filter of the contract is understood."""
        company = self._company(company_id)
        notes = [n for n in self.notes.values() if n["_company"] == company["id"]]
        wanted = _text(request.param("filter"))
        if wanted.startswith("status eq "):
            status = wanted[len("status eq ") :].strip("'\" ")
            notes = [n for n in notes if n["status"].lower() == status.lower()]
        try:
            page = max(0, int(request.param("pageNumber", 0)))
            size = min(100, max(1, int(request.param("pageSize", 100))))
        except ValueError:
            raise self._fail(400, (CODE_INVALID, "pageNumber e pageSize devem ser números")) from None
        chunk = notes[page * size : (page + 1) * size]
        return SimResponse.json(200, {"totalRecords": len(notes), "data": [self._render(n) for n in chunk]})

    # ---------------------------------------------------------- cancellation
    def _cancel_note(self, request, company_id, nfe_id):
        return self._request_cancellation(request, self._note(self._company(company_id), nfe_id))

    def _cancel_note_by_external_id(self, request, company_id, external_id):
        return self._request_cancellation(request, self._note_by_external_id(self._company(company_id), external_id))

    def _cancellation_reason(self, request):
        """The motive and the justification the national standard requires (body fields [?])."""
        body = self._body(request) if request.body else {}
        motive = _text(body.get(CANCEL_MOTIVE_FIELD))
        justification = " ".join(_text(body.get(CANCEL_JUSTIFICATION_FIELD)).split())
        errors = []
        if motive not in CANCEL_MOTIVES:
            errors.append((CODE_INVALID, f"{CANCEL_MOTIVE_FIELD} deve ser 1, 2 ou 9"))
        if len(justification) < MIN_JUSTIFICATION:
            errors.append((CODE_REQUIRED, f"{CANCEL_JUSTIFICATION_FIELD} deve ter ao menos 15 caracteres"))
        if errors:
            raise self._fail(400, *errors)
        return motive, justification

    def _request_cancellation(self, request, note):
        status = note["status"]
        if status in ("Autorizada", "CancelamentoNegado"):
            motive, justification = self._cancellation_reason(request)
            note.update(motivoCancelamento=motive, justificativaCancelamento=justification)
            self._schedule(note, "cancellation")
            return SimResponse.json(200, {"nfeId": note["id"]})
        messages = {  # [?] wording and status code of these refusals
            "Cancelada": "A nota fiscal já está cancelada",
            "Negada": "Uma nota fiscal negada não pode ser cancelada",
        }
        if status in CANCELING:
            message = "A nota fiscal já está em processo de cancelamento"
        else:
            message = messages.get(status, f"A nota fiscal não pode ser cancelada no status {status}")
        raise self._fail(400, (CODE_STATE, message))

    # ------------------------------------------------------------ transitions
    def _schedule(self, note, phase):
        delay = self.authorization_delay
        if phase == "cancellation" and self.cancellation_delay is not None:
            delay = self.cancellation_delay
        now = self.clock()
        note.update(
            _phase=phase,
            _started=now,
            _due=None if delay is None else now + max(0.0, float(delay)),
            status="AguardandoAutorizacao" if phase == "authorization" else "SolicitandoCancelamento",
            motivoStatus=None,
            dataUltimaAlteracao=_now_iso(),
        )
        self._scheduled.add(note["id"])

    def _unschedule(self, note):
        note.update(_phase=None, _started=None, _due=None)
        self._scheduled.discard(note["id"])

    def _advance_note(self, note, now):
        if note["_phase"] is None or note["_due"] is None:
            return
        if now >= note["_due"]:
            self._complete(note)
        elif now >= note["_started"] + (note["_due"] - note["_started"]) / 2:
            note["status"] = "EmProcessoDeAutorizacao" if note["_phase"] == "authorization" else CANCELING[1]

    def _complete(self, note):
        phase = note["_phase"]
        self._unschedule(note)
        note["dataUltimaAlteracao"] = _now_iso()
        if phase == "authorization":
            reason = self._rejection_reason(note)
            if reason:
                note.update(status="Negada", motivoStatus=reason)
            else:
                self._authorize(note)
        elif self.deny_cancellation:
            note.update(status="CancelamentoNegado", motivoStatus=self.cancellation_denied_reason)
        else:
            note.update(status="Cancelada", motivoStatus=None, dataCancelamento=_now_iso())
        if self.webhook_url:
            self._send_webhook(self.webhook_url, self._webhook_payload(note))

    def _rejection_reason(self, note):
        if self.reject_when is not None:
            verdict = self.reject_when(self._render(note))
            if isinstance(verdict, str) and verdict:
                return verdict
            return DEFAULT_REJECTION_REASON if verdict else None
        description = _text((note.get("servico") or {}).get("descricao"))
        return DEFAULT_REJECTION_REASON if REJECT_MARKER in description.upper() else None

    def _authorize(self, note):
        if not note["numero"]:  # a re-sent Negada note never had one
            key = (note["_company"], note["ambienteEmissao"])
            number = self._numbers.get(key, 0) + 1
            self._numbers[key] = number
            digest = hashlib.sha1(f"{note['id']}:{number}".encode()).hexdigest()
            note.update(numero=str(number), codigoVerificacao=digest[:8].upper())
        note.update(
            status="Autorizada",
            motivoStatus=None,
            dataAutorizacao=_now_iso(),
            enviadaPorEmail=bool(note.get("enviarPorEmail") and (note.get("cliente") or {}).get("email")),
        )

    # ---------------------------------------------------------------- webhooks
    def _webhook_payload(self, note):
        return {
            "tipo": "NFS-e",
            "empresaId": note["_company"],
            "nfeId": note["id"],
            "nfeIdExterno": note["idExterno"],
            "nfeStatus": note["status"],
            "nfeMotivoStatus": note["motivoStatus"],
            "nfeNumero": note["numero"],
            "nfeSerie": note["serieRps"],
            "nfeChaveAcesso": note["chaveAcesso"],
            "nfeDataEmissao": note["dataCriacao"],
            "nfeDataAutorizacao": note["dataAutorizacao"],
            "nfeNumeroProtocolo": None,
            "nfeDigestValue": None,
            "nfeLinkDanfe": note["linkDownloadPDF"],
            "nfeLinkXml": note["linkDownloadXML"],
            "nfeLinkConsultaPorChaveAcesso": None,
            "conteudoQRCode": None,
            "nfeWebHookMetadados": None,
        }

    def _send_webhook(self, url, payload):
        # Never POST under the lock: the receiver typically GETs the note back from us.
        threading.Thread(target=self._deliver, args=(url, payload), name=f"{self.label} webhook", daemon=True).start()

    def _deliver(self, url, payload):
        """POST ``payload`` to ``url``, retrying non-2xx answers [?: the real retry policy is unknown]."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        record = None
        for attempt in range(1, max(1, self.webhook_attempts) + 1):
            record = {
                "url": url,
                "nfe_id": payload["nfeId"],
                "status": payload["nfeStatus"],
                "payload": payload,
                "attempt": attempt,
                "http_status": None,
                "error": None,
            }
            request = urllib.request.Request(
                url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
            )
            try:
                with opener.open(request, timeout=self.webhook_timeout) as response:
                    record["http_status"] = response.status
            except urllib.error.HTTPError as e:
                record["http_status"] = e.code
            except (urllib.error.URLError, OSError, ValueError) as e:
                record["error"] = type(e).__name__
            with self.lock:
                self.webhooks_sent.append(record)
            if record["http_status"] is not None and 200 <= record["http_status"] < 300:
                break
            if attempt < self.webhook_attempts and self.sleep(self.webhook_retry_delay):
                break
        return record

    # ------------------------------------------------------------ PDF and XML
    def _file(self, request, company_id, nfe_id, fmt):
        company = self._company(company_id)
        return self._file_response(company, self._note(company, nfe_id), fmt)

    def _file_by_external_id(self, request, company_id, external_id, fmt):
        company = self._company(company_id)
        return self._file_response(company, self._note_by_external_id(company, external_id), fmt)

    def _stored_file(self, request, token, fmt):
        note = next((n for n in self.notes.values() if n.get("_token") == token), None)
        if note is None or note["status"] not in NUMBERED:
            return SimResponse.text(404, "NoSuchKey")  # what a storage bucket says
        company = self.companies[note["_company"]]
        if fmt == "pdf":
            return SimResponse(200, self._pdf(company, note), {"Content-Type": "application/pdf"})
        return SimResponse(200, self.nfse_xml(note), {"Content-Type": "application/xml; charset=utf-8"})

    def _file_response(self, company, note, fmt):
        if note["status"] not in NUMBERED:
            # [?] the real status code / wording for "no file yet"
            raise self._fail(400, (CODE_STATE, f"A nota fiscal não está autorizada (status {note['status']})"))
        if fmt == "pdf":
            return SimResponse(200, self._pdf(company, note), {"Content-Type": "application/pdf"})
        return SimResponse(200, self.nfse_xml(note), {"Content-Type": "application/xml; charset=utf-8"})

    def _pdf(self, company, note):
        client = note.get("cliente") or {}
        service = note.get("servico") or {}
        return build_pdf([
            "eNotas simulator - NOT A FISCAL DOCUMENT",
            f"NFS-e {note['numero']}    Codigo de verificacao: {note['codigoVerificacao']}",
            f"Ambiente: {note['ambienteEmissao']}    Status: {note['status']}",
            f"Prestador: {company['razaoSocial']} ({company['cnpj']})",
            f"Tomador: {client.get('nome')} ({client.get('cpfCnpj')})",
            f"Servico: {_text(service.get('descricao'))[:80]}",
            f"Valor total: R$ {note['valorTotal']:.2f}",
            f"Referencia: {note['idExterno'] or ''}",
        ])  # fmt: skip

    def nfse_xml(self, note):
        """The note as an ABRASF 2.04-like ``CompNfse`` (see providers.enotas.parse_nfse_xml)."""
        company = self.companies.get(note["_company"]) or {}
        client = note.get("cliente") or {}
        address = client.get("endereco") or {}
        service = note.get("servico") or {}
        total = Decimal(str(note["valorTotal"])).quantize(CENT)
        rate = _decimal(service.get("aliquotaIss")) or Decimal(0)
        discounts = Decimal(str(note.get("descontos") or 0)) + Decimal(str(note.get("deducoes") or 0))
        iss = Decimal(str(note.get("valorIss") or 0)).quantize(CENT)
        net = Decimal(str(note.get("valorLiquido", total))).quantize(CENT)
        money = "{:.2f}".format

        root = ET.Element("CompNfse", {"xmlns": NFSE_NAMESPACE})
        info = _sub(_sub(root, "Nfse", {"versao": "2.04"}), "InfNfse", {"Id": f"NFSe{note['numero']}"})
        _leaf(info, "Numero", note["numero"])
        _leaf(info, "CodigoVerificacao", note["codigoVerificacao"])
        _leaf(info, "DataEmissao", note["dataAutorizacao"])
        values = _sub(info, "ValoresNfse")
        _leaf(values, "BaseCalculo", money(total - discounts))
        _leaf(values, "Aliquota", money(rate))
        _leaf(values, "ValorIss", money(iss))
        _leaf(values, "ValorLiquidoNfse", money(net))
        provider = _sub(info, "PrestadorServico")
        _leaf(_sub(_sub(provider, "IdentificacaoPrestador"), "CpfCnpj"), "Cnpj", company.get("cnpj"))
        _leaf(provider, "RazaoSocial", company.get("razaoSocial"))
        origin = _sub(info, "OrgaoGerador")
        _leaf(origin, "CodigoMunicipio", company.get("codigoIbgeCidade"))
        _leaf(origin, "Uf", company.get("uf"))

        declaration = _sub(_sub(info, "DeclaracaoPrestacaoServico"), "InfDeclaracaoPrestacaoServico")
        rps = _sub(declaration, "Rps")
        rps_id = _sub(rps, "IdentificacaoRps")
        _leaf(rps_id, "Numero", note["numeroRps"])
        _leaf(rps_id, "Serie", note["serieRps"])
        _leaf(rps_id, "Tipo", "1")
        _leaf(rps, "DataEmissao", note["dataCriacao"][:10])
        _leaf(rps, "Status", "1")
        _leaf(declaration, "Competencia", note["dataCompetencia"])
        srv = _sub(declaration, "Servico")
        srv_values = _sub(srv, "Valores")
        _leaf(srv_values, "ValorServicos", money(total))
        _leaf(srv_values, "ValorDeducoes", money(Decimal(str(note.get("deducoes") or 0))))
        for tag, key in (
            ("ValorPis", "valorPis"),
            ("ValorCofins", "valorCofins"),
            ("ValorInss", "valorInss"),
            ("ValorIr", "valorIr"),
            ("ValorCsll", "valorCsll"),
        ):
            _leaf(srv_values, tag, money(Decimal(str(service.get(key) or 0))))
        _leaf(srv_values, "ValorIss", money(iss))
        _leaf(srv_values, "DescontoIncondicionado", money(Decimal(str(note.get("descontos") or 0))))
        _leaf(srv_values, "Aliquota", money(rate))
        _leaf(srv, "IssRetido", "1" if service.get("issRetidoFonte") else "2")
        _leaf(srv, "ItemListaServico", service.get("itemListaServicoLC116"))
        _leaf(srv, "CodigoCnae", service.get("cnae"))
        _leaf(srv, "CodigoTributacaoMunicipio", service.get("codigoServicoMunicipio"))
        _leaf(srv, "Discriminacao", service.get("descricao"))
        _leaf(srv, "CodigoMunicipio", service.get("municipioPrestacaoServico") or company.get("codigoIbgeCidade"))
        customer = _sub(declaration, "Tomador")
        tax_id = _text(client.get("cpfCnpj"))
        _leaf(_sub(_sub(customer, "IdentificacaoTomador"), "CpfCnpj"), "Cpf" if len(tax_id) == 11 else "Cnpj", tax_id)
        _leaf(customer, "RazaoSocial", client.get("nome"))
        where = _sub(customer, "Endereco")
        for tag, key in (
            ("Endereco", "logradouro"),
            ("Numero", "numero"),
            ("Complemento", "complemento"),
            ("Bairro", "bairro"),
            ("CodigoMunicipio", "codigoIbgeCidade"),
            ("Uf", "uf"),
            ("Cep", "cep"),
        ):
            _leaf(where, tag, address.get(key))  # fmt: skip
        if client.get("email") or client.get("telefone"):
            contact = _sub(customer, "Contato")
            _leaf(contact, "Telefone", client.get("telefone"))
            _leaf(contact, "Email", client.get("email"))

        if note["status"] == "Cancelada":
            confirmation = _sub(_sub(root, "NfseCancelamento"), "Confirmacao")
            request = _sub(_sub(confirmation, "Pedido"), "InfPedidoCancelamento")
            _leaf(_sub(request, "IdentificacaoNfse"), "Numero", note["numero"])
            _leaf(request, "CodigoCancelamento", note.get("motivoCancelamento") or "1")
            _leaf(confirmation, "DataHora", note["dataCancelamento"])
        return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode("utf-8")

    # ----------------------------------------------------------------- company
    def _get_company(self, request, company_id):
        company = self._company(company_id)
        return SimResponse.json(200, {k: v for k, v in company.items() if not k.startswith("_")})


def _sub(parent, tag, attrs=None):
    return ET.SubElement(parent, tag, attrs or {})


def _leaf(parent, tag, text):
    """A text element, left out when there is no value (as ABRASF does for optional fields)."""
    if text not in (None, ""):
        ET.SubElement(parent, tag).text = str(text)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m simulators.enotas", description="Local eNotas Gateway NFS-e API v1 simulator (demo, tests)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766, help="0 = a free port")
    parser.add_argument("--api-key", default="demo-key")
    parser.add_argument("--company-id", action="append", help="an empresaId the key may use (repeatable)")
    parser.add_argument("--company-name", default="Empresa Demonstração Ltda")
    parser.add_argument("--webhook-url", default=None, help="POST the webhook payload there on final statuses")
    parser.add_argument(
        "--authorization-delay", type=float, default=0.3, help="seconds until a note is authorized (0 = at once)"
    )
    parser.add_argument("--cancellation-delay", type=float, default=None, help="default: the authorization delay")
    parser.add_argument("--deny-cancellation", action="store_true", help="cancellations end CancelamentoNegado")
    parser.add_argument("--rate-limit", type=int, default=0, help="requests per minute, 0 = unlimited")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    args = parser.parse_args(argv)
    company_ids = args.company_id or [DEMO_COMPANY_ID]
    simulator = EnotasSimulator(
        api_key=args.api_key,
        company_id=company_ids[0],
        company_name=args.company_name,
        companies={extra: {"name": args.company_name} for extra in company_ids[1:]},
        authorization_delay=args.authorization_delay,
        cancellation_delay=args.cancellation_delay,
        deny_cancellation=args.deny_cancellation,
        webhook_url=args.webhook_url,
        rate_limit_per_minute=args.rate_limit or None,
        latency=args.latency,
        port=args.port,
        host=args.host,
    )
    return serve_until_signal(simulator)


if __name__ == "__main__":
    sys.exit(main())
