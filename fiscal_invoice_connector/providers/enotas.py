"""eNotas Gateway (Brazil), NFS-e API v1, JSON.

Contract: ../shared/provider-apis.md §1. Facts marked [?] there (and the guesses made
here) are kept in the module constants and class attributes below, so they are easy
to change once checked on a live account.

The service is asynchronous: ``create`` only queues the note (``nfeId``, state
"pending"); the municipality authorizes or refuses it later, which the client sees by
polling :meth:`EnotasProvider.fetch_status` or when the webhook (a trigger only, see
:meth:`EnotasProvider.parse_webhook`) says so.

Crash recovery relies on ``idExterno`` (our ``doc.reference``): it is unique at eNotas,
even across Homologação and Produção. A create whose answer was lost and is sent again
is refused with :class:`DuplicateReferenceError`; the caller then asks
:meth:`EnotasProvider.find_by_reference` which note carries the reference.
"""

from __future__ import annotations

import json
import unicodedata
from decimal import Decimal
from urllib.parse import quote

import xmltodict

from . import brazil
from .base import (
    AuthenticationError,
    FiscalDocumentData,
    FiscalProvider,
    InvalidStateError,
    NotFoundError,
    NotReadyError,
    RemoteDocument,
    TransientError,
    ValidationError,
    _error_text,
)
from .numbers import digits_only as _digits
from .numbers import half_up as _money
from .numbers import to_decimal as _decimal

CENT = Decimal("0.01")

# eNotas status (compared lower-cased) -> RemoteDocument.state. Anything else is "pending".
STATES = {
    "autorizada": "final",
    "negada": "rejected",
    "cancelada": "canceled",
    "cancelamentonegado": "cancel_denied",
    "solicitandocancelamento": "cancel_pending",
    "cancelamentosolicitado": "cancel_pending",
    "emprocessodecancelamento": "cancel_pending",
    # Listed for the record; unknown statuses fall back to "pending" anyway.
    "aguardandoautorizacao": "pending",
    "solicitandoautorizacao": "pending",
    "autorizacaosolicitada": "pending",
    "emprocessodeautorizacao": "pending",
    "autorizadaaguardandogeracaopdf": "pending",
}

# Webhook payload (contract §1.7): which keys carry the note id and our idExterno.
WEBHOOK_ID_KEYS = ("nfeId",)
WEBHOOK_REFERENCE_KEYS = ("nfeIdExterno",)
WEBHOOK_MAX_ID_LENGTH = 200


class DuplicateReferenceError(ValidationError):
    """The service refused an emission because a note with this ``idExterno`` exists
    (in either environment). Not a data problem: the Odoo layer must look the note up
    with ``find_by_reference`` instead of creating another one."""

    kind = "duplicate"


def _plain(text):
    """Lower-case ASCII (accents removed), for matching messages in Portuguese."""
    text = unicodedata.normalize("NFKD", str(text or ""))
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def _compact(values):
    return {key: value for key, value in values.items() if value not in (None, "", {})}


class EnotasProvider(FiscalProvider):
    code = "enotas"
    label = "eNotas"
    default_base_url = "https://api.enotasgw.com.br/v1"
    credential_fields = ("api_key",)
    capabilities = frozenset({"pdf", "xml", "cancel", "find_by_reference", "async"})
    keeps_customer_records = False  # "Send data only" sends nothing: prepare() only checks

    # ``ambienteEmissao`` values [C].
    environment_test = "Homologacao"
    environment_production = "Producao"
    document_type = "NFS-e"
    # The NFS-e customer address is Brazilian (check_nfse demands a CPF/CNPJ).
    country_name = "Brasil"
    # The zero ISS rate of a FiscalService means "not set": the field is then omitted and
    # eNotas applies the rate configured for the company [?].
    send_zero_iss_rate = False
    # How the service words "this idExterno already exists" is not documented [?]: any error
    # item whose codigo is listed here, or whose text names the idExterno together with one
    # of these hints (matched lower-case, accents removed), is a duplicate reference.
    duplicate_reference_codes = frozenset()
    duplicate_reference_subjects = ("idexterno", "id externo")
    duplicate_reference_hints = (
        "ja existe",
        "already exist",
        "duplicad",
        "duplicate",
        "em uso",
        "ja foi utilizad",
        "ja utilizad",
        "ja cadastrad",
        "ja foi emitid",
    )
    # Fields of GET /empresas/{id} naming the company, first found wins [?].
    company_name_fields = ("nomeFantasia", "razaoSocial", "nome")
    # Cancellation: the national standard's motive codes eNotas takes, and where the DELETE
    # carries the motive and the justification. The v1 contract documents no body for the DELETE:
    # both field names (a JSON body on the DELETE) are [?], to check on a live account.
    cancel_motives = ("1", "2", "9")
    cancel_motive_field = "codigoMotivoCancelamento"  # [?]
    cancel_justification_field = "justificativaCancelamento"  # [?]
    # What a user may do, shown before a refund (docs/mapping-rules.md, cancellation matrix).
    cancellation_rules = (
        "asynchronous: the municipality answers later (Cancelada or CancelamentoNegado)",
        "motive 1 error in the emission, 2 service not rendered or 9 other, and a justification of at least "
        "15 characters",
        "the municipality may deny it (for instance after its deadline): then the note stays valid and the "
        "customer gets a refund outside the NFS-e",
    )

    # Where an authorized note's files are: links in the note's JSON [1], served from storage without
    # the API key and outside the API budget [?]. A link refused (expired?) falls back to the API route.
    download_links = {"pdf": "linkDownloadPDF", "xml": "linkDownloadXML"}
    expired_link_statuses = (403, 404, 410)  # what a storage host answers to a stale link [?]

    def __init__(self, config, session=None, services=None):
        super().__init__(config, session, services)
        self.company_id = str(config.options.get("company_id") or "").strip()
        # The download links of the notes read during this run, by note id (shared by the account's
        # clients: the status is read in one thread, the files fetched in another).
        self.links = self.shared.setdefault("links", {})

    # -- transport ------------------------------------------------------------
    def _auth(self, kwargs):
        # The raw key, not base64 of user:password [C]. Redactor masks it everywhere.
        kwargs["headers"]["Authorization"] = "Basic " + str(self.config.credentials.get("api_key") or "")
        return kwargs

    def _company_path(self):
        if not self.company_id:
            raise ValidationError(
                "eNotas: the company id (empresaId) is not set on the provider account. Copy it from the "
                "eNotas panel (Empresas) into the account's company_id option, then retry."
            )
        return "/empresas/" + quote(self.company_id, safe="")

    def _note_path(self, remote_id, suffix=""):
        if not remote_id:
            raise ValidationError("eNotas: no note id (nfeId) to look up.")
        return f"{self._company_path()}/nfes/{quote(str(remote_id), safe='')}{suffix}"

    def _error_items(self, response):
        """The eNotas error array as ``[{"codigo", "mensagem"}]``, redacted."""
        try:
            body = response.json()
        except ValueError:
            return []
        items = body if isinstance(body, list) else [body]
        out = []
        for item in items:
            if isinstance(item, dict):
                message = item.get("mensagem") or item.get("message") or item.get("error")
                if message:
                    codigo = item.get("codigo") or item.get("code")
                    out.append({"codigo": self.redact(codigo) if codigo else None, "mensagem": self.redact(message)})
            elif isinstance(item, str) and item:
                out.append({"codigo": None, "mensagem": self.redact(item)})
        return out

    def _raise_for_status(self, response):
        status = response.status_code
        message = self.redact(_error_text(response)) or f"HTTP {status}"
        details = self._error_items(response)
        code = next((d["codigo"] for d in details if d["codigo"]), None)
        if status == 401:
            raise AuthenticationError(f"eNotas refused the API key: {message}", status=status, details=details)
        if status == 403:
            raise AuthenticationError(
                f"eNotas: the API key is not authorized for this company (empresaId {self.company_id}): {message}",
                status=status,
                details=details,
            )
        if status in (400, 409, 422):
            raise ValidationError(f"eNotas refused the request: {message}", status=status, code=code, details=details)
        super()._raise_for_status(response)

    def _is_duplicate_reference(self, error):
        for item in error.details or []:
            if item.get("codigo") and item["codigo"] in self.duplicate_reference_codes:
                return True
            text = _plain(item.get("mensagem"))
            if any(s in text for s in self.duplicate_reference_subjects) and any(
                h in text for h in self.duplicate_reference_hints
            ):
                return True
        return False

    @property
    def environment(self):
        return self.environment_production if self.config.environment == "production" else self.environment_test

    # -- payload --------------------------------------------------------------
    def _customer(self, doc: FiscalDocumentData):
        party = doc.partner
        tax_id = brazil.clean_tax_id(party.vat)
        address = _compact(
            {
                "pais": self.country_name,
                "uf": (party.state_code or "").strip().upper(),
                "cidade": party.city,
                "logradouro": party.street,
                "numero": party.street_number,
                "complemento": party.street2,
                "bairro": party.district,
                "cep": _digits(party.zip),
                "codigoIbgeCidade": _digits(party.city_code) or None,
            }
        )
        return _compact(
            {
                "tipoPessoa": brazil.person_type(tax_id),
                "nome": party.name,
                "email": doc.email_to or party.email,
                "cpfCnpj": tax_id,
                "inscricaoMunicipal": party.municipal_registration,
                "telefone": _digits(party.phone) or None,
                "endereco": address,
            }
        )

    def _service(self, doc: FiscalDocumentData, amounts):
        service = doc.service
        rate = Decimal(service.iss_rate or 0)
        values = {
            "descricao": service.description,
            "aliquotaIss": float(rate) if rate or self.send_zero_iss_rate else None,
            "issRetidoFonte": bool(service.iss_withheld),
            "codigoServicoMunicipio": service.municipal_code,
            "itemListaServicoLC116": service.lc116_item,
            "cnae": _digits(service.cnae) or None,
            "municipioPrestacaoServico": _digits(service.city_code) or None,
            "codigoTributacaoNacional": _digits(service.national_code) or None,
            "codigoNBS": _digits(service.nbs_code) or None,
        }
        # Federal withholdings, as Odoo computed them (omitted when nothing is withheld).
        for kind, name in (
            ("pis", "valorPis"),
            ("cofins", "valorCofins"),
            ("csll", "valorCsll"),
            ("inss", "valorInss"),
            ("ir", "valorIr"),
        ):
            value = amounts.withholding(kind)
            values[name] = float(_money(value)) if value else None
        values["ibsCbs"] = _compact(
            {
                "classificacaoTributaria": _digits(service.reform_class) or None,
                "codigoIndicadorOperacao": _digits(service.operation_indicator) or None,
            }
        )
        return _compact(values)

    def _payload(self, doc: FiscalDocumentData):
        amounts = brazil.amounts(doc)
        if amounts.base <= 0:
            raise ValidationError(f"Cannot issue the NFS-e: the total must be positive (got {amounts.base}).")
        # valorTotal is the gross value of the services; the unconditional discounts travel apart, so
        # that eNotas and InvoiCy declare the same service value, base and net value.
        payload = {
            "tipo": self.document_type,
            "idExterno": doc.reference,
            "ambienteEmissao": self.environment,
            "enviarPorEmail": bool(doc.send_email),
            "dataCompetencia": doc.date.isoformat(),
            "valorTotal": float(_money(amounts.services)),
            "cliente": self._customer(doc),
            "servico": self._service(doc, amounts),
        }
        if amounts.discounts:
            payload["descontos"] = float(_money(amounts.discounts))
        if amounts.deductions:
            payload["deducoes"] = float(_money(amounts.deductions))
        if doc.notes:
            payload["observacoes"] = doc.notes
        return payload

    def _check(self, doc: FiscalDocumentData):
        """Everything that can be refused without asking the service."""
        if doc.kind == "credit_note":
            raise ValidationError(
                "An NFS-e has no credit note: cancel the note at eNotas instead (and issue a new one if needed)."
            )
        if not doc.reference:
            raise ValidationError("eNotas: the document has no reference (idExterno).")
        brazil.check_nfse(doc)
        self._company_path()

    # -- documents ------------------------------------------------------------
    def _document(self, kind, body):
        if not isinstance(body, dict) or not body.get("id"):
            raise TransientError("eNotas: unexpected answer (no note in the body)")
        status = str(body.get("status") or "")
        state = STATES.get(status.lower(), "pending")
        message = None
        if state in ("rejected", "cancel_denied"):
            message = body.get("motivoStatus") or f"eNotas answered {status} without a reason"
        number = body.get("numero")
        verification = body.get("codigoVerificacao")
        total = _decimal(body.get("valorTotal"))
        links = {fmt: body.get(field) for fmt, field in self.download_links.items() if body.get(field)}
        if links:
            self.links[str(body["id"])] = links
        return RemoteDocument(
            remote_id=str(body["id"]),
            kind=kind,
            state=state,
            number=str(number) if number not in (None, "", 0) else None,
            atcud=str(verification) if verification else None,
            total=total,
            reference=body.get("idExterno"),
            message=message,
            raw=body,
        )

    def create(self, doc: FiscalDocumentData) -> RemoteDocument:
        self._check(doc)
        payload = self._payload(doc)
        try:
            response = self._request(
                "POST", f"{self._company_path()}/nfes", json_body=payload, expected=(200, 201, 202)
            )
        except ValidationError as error:
            if self._is_duplicate_reference(error):
                said = "; ".join(d["mensagem"] for d in error.details) or error.message
                raise DuplicateReferenceError(
                    f"eNotas already has a note with the reference {doc.reference} (idExterno): {said}",
                    status=error.status,
                    code=error.code,
                    details=error.details,
                ) from None
            raise
        data = self._json(response)
        nfe_id = data.get("nfeId") if isinstance(data, dict) else None
        if not nfe_id:
            # The note may exist: a retry is refused as a duplicate, then found by reference.
            raise TransientError("eNotas: unexpected answer to the emission (no nfeId)")
        return RemoteDocument(remote_id=str(nfe_id), kind=doc.kind, state="pending", reference=doc.reference, raw=data)

    def prepare(self, doc: FiscalDocumentData) -> None:
        """No customer or service records at eNotas: only the checks run (no request)."""
        self._check(doc)

    def create_credit_note(self, doc: FiscalDocumentData) -> RemoteDocument:
        return self.create(doc)  # refused by _check with a clear message

    def fetch_status(self, kind, remote_id) -> RemoteDocument:
        response = self._request("GET", self._note_path(remote_id))
        document = self._document(kind, self._json(response))
        if document.state == "final" and not (document.number and document.atcud and document.total is not None):
            self._complete_from_xml(document)
        return document

    def _complete_from_xml(self, document):
        """The JSON of an authorized note lacks its number / verification code: read the legal XML."""
        try:
            xml = self.fetch_xml(document.kind, document.remote_id)
        except (NotFoundError, InvalidStateError):
            raise NotReadyError("eNotas: the note is authorized but its number is not available yet") from None
        try:
            parsed = parse_nfse_xml(xml)
        except ValueError as e:
            raise NotReadyError(f"eNotas: the note is authorized but its XML is unreadable ({e})") from None
        document.number = document.number or parsed.get("number")
        document.atcud = document.atcud or parsed.get("verification_code")
        if document.total is None:
            document.total = parsed.get("total")

    def finalize(self, kind, remote_id) -> RemoteDocument:
        # eNotas has no finalize step: the municipality authorizes asynchronously.
        return self.fetch_status(kind, remote_id)

    def find_by_reference(self, doc: FiscalDocumentData):
        """The note carrying ``doc.reference`` as idExterno, or None.

        idExterno is unique across environments: a note of the *other* environment is
        not ours to adopt (a test note is no legal document, a production note must not
        be overwritten), so that case is a ValidationError asking for another reference.
        """
        path = f"{self._company_path()}/nfes/porIdExterno/{quote(doc.reference, safe='')}"
        try:
            response = self._request("GET", path)
        except NotFoundError:
            return None
        body = self._json(response)
        if not isinstance(body, dict) or not body.get("id"):
            return None
        remote_reference = body.get("idExterno")
        if remote_reference not in (None, "") and remote_reference != doc.reference:
            return None
        environment = body.get("ambienteEmissao")
        if environment and _plain(environment) != _plain(self.environment):
            raise ValidationError(
                f"eNotas: the reference {doc.reference} (idExterno) is already used by a note of the "
                f"{environment} environment, and eNotas forbids reusing it in {self.environment}. "
                "Use references unique per database and environment.",
                code="reference_in_other_environment",
            )
        document = self._document(doc.kind, body)
        if document.state == "final" and not (document.number and document.atcud and document.total is not None):
            self._complete_from_xml(document)
        return document

    def cancel(self, kind, remote_id, reason) -> RemoteDocument:
        """Ask for the cancellation; the municipality answers later (state "cancel_pending").

        ``reason`` is the justification (at least 15 characters); a :class:`~.base.CancelReason`
        also carries the motive code (default 1, error in the emission). Both travel in the
        DELETE's body (field names [?], see the class attributes).
        """
        motive, justification = brazil.check_cancel_reason(reason, self.cancel_motives, self.label)
        current = self.fetch_status(kind, remote_id)
        if current.state in ("canceled", "cancel_pending"):
            return current
        if current.state not in ("final", "cancel_denied"):
            raise InvalidStateError(
                f"eNotas: a note in status {current.raw.get('status')} cannot be canceled (only authorized notes can)."
            )
        try:
            self._request(
                "DELETE",
                self._note_path(remote_id),
                json_body={self.cancel_motive_field: motive, self.cancel_justification_field: justification},
                expected=(200, 201, 202, 204),
            )
        except ValidationError:
            again = self.fetch_status(kind, remote_id)
            if again.state in ("canceled", "cancel_pending"):
                return again
            raise
        return RemoteDocument(
            remote_id=str(remote_id),
            kind=kind,
            state="cancel_pending",
            number=current.number,
            atcud=current.atcud,
            total=current.total,
            reference=current.reference,
            message=reason or None,
        )

    def _file(self, remote_id, suffix, what):
        link = self.links.get(str(remote_id), {}).get(suffix.strip("/"))
        if link:
            try:
                return self._download(link, what)
            except TransientError as error:
                if error.status not in self.expired_link_statuses:
                    raise  # the storage is down: later, as any transient failure
                # The link is refused (expired?): through the API below.
        try:
            response = self._request("GET", self._note_path(remote_id, suffix), raw=True)
        except ValidationError as error:
            # A 400 here means "no such file for this note (yet)", not bad data of ours.
            raise InvalidStateError(
                f"eNotas: the {what} is not available for this note: {error.message}", status=error.status
            ) from None
        return response.content

    def fetch_pdf(self, kind, remote_id) -> bytes:
        content = self._file(remote_id, "/pdf", "PDF")
        if not content.startswith(b"%PDF"):
            raise TransientError("eNotas: the PDF answer is not a PDF")
        return content

    def fetch_xml(self, kind, remote_id) -> bytes:
        content = self._file(remote_id, "/xml", "XML")
        stripped = content.lstrip(b"\xef\xbb\xbf \t\r\n")
        if stripped.startswith(b'"'):
            # Some JSON stacks serve the XML as a JSON string [?].
            try:
                stripped = json.loads(stripped.decode("utf-8")).encode("utf-8").lstrip()
            except (ValueError, AttributeError):
                raise TransientError("eNotas: the XML answer is not XML") from None
        if not _is_xml_document(stripped):
            raise TransientError("eNotas: the XML answer is not XML")
        return stripped

    def test_connection(self):
        try:
            response = self._request("GET", self._company_path())
        except NotFoundError as error:
            raise NotFoundError(
                f"eNotas: no company {self.company_id} for this API key; check the company_id option.",
                status=error.status,
            ) from None
        company = self._json(response)
        company = company if isinstance(company, dict) else {}
        name = next((company[f] for f in self.company_name_fields if company.get(f)), None) or self.company_id
        return f"Connected to eNotas: company {name} ({self.environment})."

    # -- webhook --------------------------------------------------------------
    @staticmethod
    def parse_webhook(payload):
        """``(nfeId, idExterno)`` from a webhook POST body (already JSON-decoded).

        Raises ValueError on anything malformed. The webhook carries no signature [?]:
        it is only a trigger, the caller re-reads the note before changing anything.
        """
        if not isinstance(payload, dict):
            raise ValueError("eNotas webhook: the payload is not a JSON object")
        nfe_id = _webhook_value(payload, WEBHOOK_ID_KEYS)
        reference = _webhook_value(payload, WEBHOOK_REFERENCE_KEYS)
        if nfe_id is None and reference is None:
            raise ValueError("eNotas webhook: neither nfeId nor nfeIdExterno in the payload")
        return nfe_id, reference


def _webhook_value(payload, keys):
    for key in keys:
        value = payload.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"eNotas webhook: {key} is not a string")
        value = value.strip()
        if not value:
            continue
        if len(value) > WEBHOOK_MAX_ID_LENGTH:
            raise ValueError(f"eNotas webhook: {key} is too long")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError(f"eNotas webhook: {key} contains control characters")
        return value
    return None


# ---------------------------------------------------------------------------
# The authorized XML
# ---------------------------------------------------------------------------


def _local(tag):
    return tag.rsplit(":", 1)[-1]


def _text(node):
    if isinstance(node, dict):
        node = node.get("#text")
    if isinstance(node, list):
        node = node[0] if node else None
    return node.strip() if isinstance(node, str) and node.strip() else None


def _child(node, name):
    """Direct child element called ``name`` (namespace prefix ignored)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not key.startswith(("@", "#")) and _local(key) == name:
                return value[0] if isinstance(value, list) and value else value
    return None


def _find(node, name):
    """First element called ``name`` (namespace prefix ignored), depth first, document order."""
    if isinstance(node, list):
        for item in node:
            found = _find(item, name)
            if found is not None:
                return found
        return None
    if not isinstance(node, dict):
        return None
    found = _child(node, name)
    if found is not None:
        return found
    for key, value in node.items():
        if key.startswith(("@", "#")):
            continue
        found = _find(value, name)
        if found is not None:
            return found
    return None


def _is_xml_document(content):
    """Well-formed XML that is not an HTML page (a proxy's error page is no NFS-e). The layout is
    not checked: some municipalities have their own (São Paulo, for one)."""
    if not content.startswith(b"<"):
        return False
    try:
        tree = xmltodict.parse(content, disable_entities=True)
    except Exception:  # noqa: BLE001 - any parser error means "not XML"
        return False
    return bool(tree) and _local(next(iter(tree))).lower() != "html"


def parse_nfse_xml(xml_bytes):
    """Number, verification code and total of an authorized NFS-e XML.

    The structure is ABRASF's (what most municipalities, and the simulator, produce)::

        <CompNfse xmlns="http://www.abrasf.org.br/nfse.xsd">
          <Nfse versao="2.04"><InfNfse Id="...">
            <Numero>42</Numero>
            <CodigoVerificacao>A1B2C3D4</CodigoVerificacao>
            <DataEmissao>2025-01-10T10:00:00</DataEmissao>
            <ValoresNfse>... <ValorLiquidoNfse>100.00</ValorLiquidoNfse></ValoresNfse>
            <DeclaracaoPrestacaoServico><InfDeclaracaoPrestacaoServico>
              <Servico><Valores><ValorServicos>100.00</ValorServicos>...</Valores>...</Servico>
            </InfDeclaracaoPrestacaoServico></DeclaracaoPrestacaoServico>
          </InfNfse></Nfse>
          <NfseCancelamento>...</NfseCancelamento>   (only once canceled)
        </CompNfse>

    ABRASF 1.0 (``InfNfse/Servico/Valores``) and prefixed namespaces (``ns2:Numero``) are
    read too: elements are looked up by local name under the first ``InfNfse``. The total
    is ``ValorServicos`` (the note's gross value, eNotas' valorTotal), else
    ``ValorLiquidoNfse``. Returns ``{"number", "verification_code", "total" (Decimal or
    None), "issue_date", "canceled"}``; raises ValueError when this is no NFS-e XML.
    xmltodict refuses entity declarations (no entity expansion attack).
    """
    if isinstance(xml_bytes, str):
        xml_bytes = xml_bytes.encode("utf-8")
    if not xml_bytes or not xml_bytes.strip():
        raise ValueError("empty XML")
    try:
        tree = xmltodict.parse(xml_bytes, disable_entities=True)
    except Exception as e:  # noqa: BLE001 - expat errors, entity refusals: all "not readable"
        raise ValueError(f"not well-formed XML ({type(e).__name__})") from None
    info = _find(tree, "InfNfse")
    if not isinstance(info, dict):
        raise ValueError("no InfNfse element: not an NFS-e XML")
    # Direct children only: a deeper <Numero> is the RPS's, not the note's.
    number = _text(_child(info, "Numero"))
    if not number:
        raise ValueError("the NFS-e XML has no Numero")
    total = None
    for name in ("ValorServicos", "ValorLiquidoNfse"):
        total = _decimal(_text(_find(info, name)))
        if total is not None:
            break
    return {
        "number": number,
        "verification_code": _text(_child(info, "CodigoVerificacao")),
        "total": total,
        "issue_date": _text(_child(info, "DataEmissao")),
        "canceled": _find(tree, "NfseCancelamento") is not None,
    }
