"""The eNotas client (providers.enotas), against the local simulator over real HTTP.

Each test states one behaviour a user would notice: a note gets its number once the
municipality authorizes it, a refusal comes with its reason, a lost answer never makes
a second note, the API key never leaks.
"""

import json
import logging
import threading
import time
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from fiscal_simulators.enotas import EnotasSimulator

from odoo.addons.fiscal_invoice_connector.providers.base import (
    AuthenticationError,
    FiscalDocumentData,
    FiscalLine,
    FiscalParty,
    FiscalService,
    InvalidStateError,
    NotFoundError,
    ProviderConfig,
    ProviderError,
    RateLimitedError,
    TransientError,
    ValidationError,
)
from odoo.addons.fiscal_invoice_connector.providers.enotas import (
    DuplicateReferenceError,
    EnotasProvider,
    parse_nfse_xml,
)

KEY = "enotas-Secret-Key-4b7d1e"  # distinctive, so that any leak is found by a plain substring search
COMPANY = "0b6f5c8e-2a41-4d7e-9a3b-5c2e8f1d7a90"
OTHER_COMPANY = "9d2e7b14-8c3a-4f56-b1e0-7a9c3d5e2f81"
CPF = "386.186.997-72"  # valid check digits
CNPJ = "11.222.333/0001-81"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class RecordingSession(requests.Session):
    """A real session that also keeps what left the client (JSON bodies and headers)."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def request(self, method, url, **kwargs):
        data = kwargs.get("data")
        self.sent.append((method, url, json.loads(data) if data else None, dict(kwargs.get("headers") or {})))
        return super().request(method, url, **kwargs)

    def bodies(self, method="POST"):
        return [body for m, _, body, _ in self.sent if m == method]


@pytest.fixture
def sim():
    """Authorization and cancellation only happen when a test calls ``sim.complete``."""
    with EnotasSimulator(api_key=KEY, company_id=COMPANY, authorization_delay=None) as simulator:
        yield simulator


def make_client(sim, api_key=KEY, environment="test", session=None, timeout=2, company_id=COMPANY):
    options = {"company_id": company_id} if company_id else {}
    config = ProviderConfig(
        base_url=sim.base_url,
        credentials={"api_key": api_key},
        environment=environment,
        timeout=timeout,
        options=options,
    )
    return EnotasProvider(config, session=session)


def party(**overrides):
    values = {
        "code": "ODOO-7",
        "name": "Maria Cliente",
        "vat": CPF,
        "country_code": "BR",
        "email": "maria@example.com.br",
        "street": "Rua Sergipe",
        "street_number": "1014",
        "street2": "Sala 3",
        "district": "Savassi",
        "city": "Belo Horizonte",
        "city_code": "3106200",
        "state_code": "mg",
        "zip": "30130-174",
        "phone": "(31) 3333-4444",
    }
    values.update(overrides)
    return FiscalParty(**values)


def service(**overrides):
    values = {
        "description": "Consultoria em sistemas",
        "municipal_code": "1.07",
        "lc116_item": "1.07",
        "cnae": "6204-0/00",
        "iss_rate": Decimal("3"),
        "city_code": "3106200",
    }
    values.update(overrides)
    return FiscalService(**values)


def line(quantity="2", unit_price="50.50", discount="0"):
    return FiscalLine(
        code="SRV",
        description="Consultoria",
        quantity=Decimal(quantity),
        unit_price=Decimal(unit_price),
        discount=Decimal(discount),
    )


def document(reference="ODOO-ab12-42", partner="default", lines=None, svc="default", **kw):
    return FiscalDocumentData(
        reference=reference,
        kind=kw.pop("kind", "invoice"),
        date=kw.pop("doc_date", date(2025, 1, 10)),
        due_date=None,
        currency="BRL",
        lines=lines if lines is not None else [line()],
        partner=party() if partner == "default" else partner,
        service=service() if svc == "default" else svc,
        **kw,
    )


def raised(exc_class, call, *args):
    """Run ``call``, expect ``exc_class`` and check its text never carries the API key."""
    with pytest.raises(exc_class) as info:
        call(*args)
    error = info.value
    assert KEY not in str(error) and KEY not in repr(error) and KEY not in str(error.details)
    return error


def authorized(client, doc, sim):
    note = client.create(doc)
    sim.complete(note.remote_id)
    return client.fetch_status(doc.kind, note.remote_id)


# ---------------------------------------------------------------------------
# Emission body
# ---------------------------------------------------------------------------


def test_create_sends_the_documented_body_with_the_raw_key(sim):
    session = RecordingSession()
    client = make_client(sim, session=session)
    doc = document(lines=[line(), line(quantity="1", unit_price="100", discount="10")], send_email=True)

    note = client.create(doc)

    assert note.state == "pending" and note.remote_id and note.reference == doc.reference
    ((_, url, body, headers),) = [s for s in session.sent if s[0] == "POST"]
    assert url == f"{sim.base_url}/empresas/{COMPANY}/nfes"
    assert headers["Authorization"] == f"Basic {KEY}"  # the raw key, not base64
    assert body == {
        "tipo": "NFS-e",
        "idExterno": "ODOO-ab12-42",
        "ambienteEmissao": "Homologacao",
        "enviarPorEmail": True,
        "dataCompetencia": "2025-01-10",
        "valorTotal": 201.0,  # the services' gross value: 2 x 50.50 + 100 ...
        "descontos": 10.0,  # ... less the unconditional discount (10 % of 100): base 191, as InvoiCy declares
        "cliente": {
            "tipoPessoa": "F",
            "nome": "Maria Cliente",
            "email": "maria@example.com.br",
            "cpfCnpj": "38618699772",
            "telefone": "3133334444",
            "endereco": {
                "pais": "Brasil",
                "uf": "MG",
                "cidade": "Belo Horizonte",
                "logradouro": "Rua Sergipe",
                "numero": "1014",
                "complemento": "Sala 3",
                "bairro": "Savassi",
                "cep": "30130174",
                "codigoIbgeCidade": "3106200",
            },
        },
        "servico": {
            "descricao": "Consultoria em sistemas",
            "aliquotaIss": 3.0,
            "issRetidoFonte": False,
            "codigoServicoMunicipio": "1.07",
            "itemListaServicoLC116": "1.07",
            "cnae": "6204000",
            "municipioPrestacaoServico": "3106200",
        },
    }
    (stored,) = sim.notes.values()
    assert stored["id"] == note.remote_id and stored["status"] == "AguardandoAutorizacao"


def test_production_company_customer_and_service_value(sim):
    session = RecordingSession()
    client = make_client(sim, session=session, environment="production")
    doc = document(
        partner=party(vat=CNPJ, name="ACME Ltda", municipal_registration="998877"),
        svc=service(iss_rate=Decimal("0"), iss_withheld=True),
        expected_total=Decimal("99.995"),
        notes="Pedido S00042",
    )
    client.create(doc)
    (body,) = session.bodies()
    assert body["ambienteEmissao"] == "Producao"
    assert body["valorTotal"] == 101.0  # the service value (2 x 50.50), not the net total Odoo checks against
    assert body["cliente"]["tipoPessoa"] == "J" and body["cliente"]["cpfCnpj"] == "11222333000181"
    assert body["cliente"]["inscricaoMunicipal"] == "998877"
    assert body["servico"]["issRetidoFonte"] is True
    assert "aliquotaIss" not in body["servico"]  # 0 = not set: the company's configured rate applies
    assert body["observacoes"] == "Pedido S00042"


def test_id_externo_is_identical_on_every_retry(sim):
    session = RecordingSession()
    client = make_client(sim, session=session)
    doc = document()
    sim.inject(503, method="POST")
    raised(TransientError, client.create, doc)
    client.create(doc)
    first, second = session.bodies()
    assert first == second and first["idExterno"] == doc.reference


# ---------------------------------------------------------------------------
# Status paths
# ---------------------------------------------------------------------------


def test_pending_then_final_with_number_verification_code_pdf_and_xml(sim):
    client = make_client(sim)
    doc = document()
    note = client.create(doc)
    pending = client.fetch_status("invoice", note.remote_id)
    assert pending.state == "pending" and not pending.is_final and pending.number is None

    sim.complete(note.remote_id)
    final = client.fetch_status("invoice", note.remote_id)
    stored = sim.notes[note.remote_id]
    assert final.state == "final" and final.is_final
    assert final.number == "1" and final.atcud == stored["codigoVerificacao"] and len(final.atcud) == 8
    assert final.total == Decimal("101.00") and final.reference == doc.reference
    assert client.finalize("invoice", note.remote_id) == final  # nothing to finalize at eNotas

    pdf = client.fetch_pdf("invoice", note.remote_id)
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    xml = client.fetch_xml("invoice", note.remote_id)
    parsed = parse_nfse_xml(xml)
    assert (parsed["number"], parsed["verification_code"], parsed["total"]) == ("1", final.atcud, Decimal("101.00"))


def test_files_of_an_authorized_note_come_through_its_download_links(sim):
    """The note's JSON gives linkDownloadPDF / linkDownloadXML: the files come from there (storage,
    no key, outside the API budget), not from two more API calls."""
    client = make_client(sim)
    note = client.create(document())
    sim.complete(note.remote_id)
    client.fetch_status("invoice", note.remote_id)
    before = len(sim.requests)
    assert client.fetch_pdf("invoice", note.remote_id).startswith(b"%PDF")
    assert parse_nfse_xml(client.fetch_xml("invoice", note.remote_id))["number"] == "1"
    token = sim.notes[note.remote_id]["_token"]
    files = [f"/simulator-files/nfse/{token}.pdf", f"/simulator-files/nfse/{token}.xml"]
    assert [r["path"] for r in sim.requests[before:]] == files
    # A client that has not read the note (a later run) asks the API.
    make_client(sim).fetch_pdf("invoice", note.remote_id)
    assert sim.requests[-1]["path"].endswith(f"/nfes/{note.remote_id}/pdf")


def test_authorization_happens_after_the_delay():
    with EnotasSimulator(api_key=KEY, company_id=COMPANY, authorization_delay=0.2) as sim:
        client = make_client(sim)
        note = client.create(document())
        assert client.fetch_status("invoice", note.remote_id).state == "pending"
        deadline = time.monotonic() + 3
        while (status := client.fetch_status("invoice", note.remote_id)).state == "pending":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status.state == "final" and status.number == "1"


@pytest.mark.parametrize(
    "status, state",
    [
        ("Autorizada", "final"),
        ("autorizada", "final"),
        ("Negada", "rejected"),
        ("Cancelada", "canceled"),
        ("CancelamentoNegado", "cancel_denied"),
        ("SolicitandoCancelamento", "cancel_pending"),
        ("CancelamentoSolicitado", "cancel_pending"),
        ("EmProcessoDeCancelamento", "cancel_pending"),
        ("AguardandoAutorizacao", "pending"),
        ("SolicitandoAutorizacao", "pending"),
        ("AutorizacaoSolicitada", "pending"),
        ("EmProcessoDeAutorizacao", "pending"),
        ("AutorizadaAguardandoGeracaoPDF", "pending"),
        ("StatusQueAindaNaoExiste", "pending"),
    ],
)
def test_status_mapping(sim, status, state):
    client = make_client(sim)
    note = client.create(document())
    sim.complete(note.remote_id)  # numbered, so "Autorizada" reads complete
    sim.set_status(note.remote_id, status, reason="Motivo X" if state in ("rejected", "cancel_denied") else None)
    remote = client.fetch_status("invoice", note.remote_id)
    assert remote.state == state
    assert remote.message == ("Motivo X" if state in ("rejected", "cancel_denied") else None)


def test_rejected_note_carries_the_reason_and_can_be_resent_once_fixed(sim):
    client = make_client(sim)
    bad = document(svc=service(description="Consultoria REJEITAR"))
    note = client.create(bad)
    sim.complete(note.remote_id)
    rejected = client.fetch_status("invoice", note.remote_id)
    assert rejected.state == "rejected" and not rejected.is_final
    assert rejected.message == "Código de serviço inválido para o município"
    assert rejected.number is None

    fixed = document(svc=service(description="Consultoria em sistemas"))
    again = client.create(fixed)  # same idExterno: the Negada note is re-submitted
    assert again.remote_id == note.remote_id and again.state == "pending"
    assert client.fetch_status("invoice", note.remote_id).state == "pending"
    sim.complete(note.remote_id)
    final = client.fetch_status("invoice", note.remote_id)
    assert final.state == "final" and final.number == "1" and final.message is None
    assert len(sim.notes) == 1


def test_number_missing_from_the_json_is_read_from_the_xml():
    with EnotasSimulator(api_key=KEY, company_id=COMPANY, authorization_delay=0, omit_number_in_json=True) as sim:
        client = make_client(sim)
        note = client.create(document())
        final = client.fetch_status("invoice", note.remote_id)
        assert final.state == "final"
        assert final.number == "1" and final.atcud == sim.notes[note.remote_id]["codigoVerificacao"]
        # Through the note's download link (storage), not the API.
        assert sim.requests[-1]["path"] == "/simulator-files/nfse/" + sim.notes[note.remote_id]["_token"] + ".xml"


# ---------------------------------------------------------------------------
# Cancellation
# ---------------------------------------------------------------------------


def test_cancel_is_pending_then_canceled(sim):
    client = make_client(sim)
    final = authorized(client, document(), sim)
    canceling = client.cancel("invoice", final.remote_id, "Serviço não prestado")
    assert canceling.state == "cancel_pending" and canceling.number == "1"
    assert [r["method"] for r in sim.requests if r["path"].endswith(final.remote_id)][-1] == "DELETE"
    assert client.fetch_status("invoice", final.remote_id).state == "cancel_pending"

    sim.complete(final.remote_id)
    canceled = client.fetch_status("invoice", final.remote_id)
    assert canceled.state == "canceled" and canceled.number == "1"
    assert parse_nfse_xml(client.fetch_xml("invoice", final.remote_id))["canceled"] is True
    # Canceling again is a no-op answered from the state, not a second DELETE.
    sim.requests.clear()
    assert client.cancel("invoice", final.remote_id, "Serviço não prestado").state == "canceled"
    assert [r["method"] for r in sim.requests] == ["GET"]


def test_cancellation_denied_carries_the_reason(sim):
    sim.deny_cancellation = True
    client = make_client(sim)
    final = authorized(client, document(), sim)
    client.cancel("invoice", final.remote_id, "Erro na emissão da nota")
    sim.complete(final.remote_id)
    denied = client.fetch_status("invoice", final.remote_id)
    assert denied.state == "cancel_denied" and "prazo" in denied.message
    # The note is still authorized: a new request may be made.
    sim.deny_cancellation = False
    assert client.cancel("invoice", final.remote_id, "Erro na emissão da nota").state == "cancel_pending"
    sim.complete(final.remote_id)
    assert client.fetch_status("invoice", final.remote_id).state == "canceled"


@pytest.mark.parametrize("complete_first", [False, True])
def test_cancel_of_a_pending_or_rejected_note_is_an_invalid_state(sim, complete_first):
    client = make_client(sim)
    note = client.create(document(svc=service(description="REJEITAR")))
    if complete_first:
        sim.complete(note.remote_id)  # Negada
    sim.requests.clear()
    raised(InvalidStateError, client.cancel, "invoice", note.remote_id, "Erro na emissão da nota")
    assert [r["method"] for r in sim.requests] == ["GET"]


def test_lost_cancel_answer_is_reconciled(sim):
    client = make_client(sim)
    final = authorized(client, document(), sim)
    sim.inject("reset", method="DELETE", when="after")
    raised(TransientError, client.cancel, "invoice", final.remote_id, "Erro na emissão da nota")
    assert sim.notes[final.remote_id]["status"] == "SolicitandoCancelamento"  # the service did it
    assert client.cancel("invoice", final.remote_id, "Erro na emissão da nota").state == "cancel_pending"
    assert len([r for r in sim.requests if r["method"] == "DELETE"]) == 1


# ---------------------------------------------------------------------------
# Crash recovery: find_by_reference, DuplicateReferenceError
# ---------------------------------------------------------------------------


def test_lost_create_answer_is_found_by_reference_and_never_duplicated(sim):
    client = make_client(sim)
    doc = document()
    sim.inject("reset", method="POST", when="after")
    raised(TransientError, client.create, doc)
    (stored,) = sim.notes.values()  # the service created it; the client never saw the nfeId

    found = client.find_by_reference(doc)
    assert found is not None and found.remote_id == stored["id"] and found.state == "pending"
    assert found.reference == doc.reference

    error = raised(DuplicateReferenceError, client.create, doc)
    assert isinstance(error, ValidationError) and error.kind == "duplicate" and error.status == 400
    assert doc.reference in str(error) and "Já existe uma nota com o idExterno" in str(error)
    assert len(sim.notes) == 1

    sim.complete(stored["id"])
    assert client.find_by_reference(doc).state == "final"


def test_find_by_reference_of_an_unknown_reference_is_none(sim):
    assert make_client(sim).find_by_reference(document("ODOO-never-sent")) is None


def test_find_by_reference_escapes_the_reference(sim):
    client = make_client(sim)
    doc = document("INV/2025/0001 #1?x=y")
    note = client.create(doc)
    assert client.find_by_reference(doc).remote_id == note.remote_id
    assert client.find_by_reference(document("INV/2025/0001")) is None
    assert "/porIdExterno/INV%2F2025%2F0001%20%231%3Fx%3Dy" in sim.requests[-2]["path"]


def test_reference_used_in_the_other_environment_is_a_duplicate_not_ours(sim):
    test_client = make_client(sim, environment="test")
    production_client = make_client(sim, environment="production")
    doc = document()
    test_client.create(doc)

    raised(DuplicateReferenceError, production_client.create, doc)
    error = raised(ValidationError, production_client.find_by_reference, doc)
    assert error.code == "reference_in_other_environment" and "Homologacao" in str(error)
    assert not isinstance(error, DuplicateReferenceError)
    assert test_client.find_by_reference(doc) is not None
    assert len(sim.notes) == 1


def test_other_validation_errors_are_not_duplicates(sim):
    client = make_client(sim)
    error = raised(ValidationError, client.create, document(svc=service(city_code="310620")))
    assert not isinstance(error, DuplicateReferenceError)
    assert error.status == 400 and "municipioPrestacaoServico" in str(error)
    message = "servico.municipioPrestacaoServico deve ser o código IBGE (7 dígitos)"
    assert error.details == [{"codigo": "CampoInvalido", "mensagem": message}]


def test_an_iss_rate_outside_the_legal_range_is_refused_before_sending(sim):
    client = make_client(sim)
    for rate in ("1.5", "7"):
        error = raised(ValidationError, client.create, document(svc=service(iss_rate=Decimal(rate))))
        assert "2 % to 5 %" in str(error) and error.status is None
    assert sim.notes == {}


# ---------------------------------------------------------------------------
# Checks before any request
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc_kwargs, expected",
    [
        ({"partner": None}, ["customer"]),
        ({"partner": party(zip=None, district=None, vat=None)}, ["CPF/CNPJ", "district (bairro)", "ZIP code (CEP)"]),
        ({"svc": None}, ["service description"]),
        ({"svc": service(municipal_code=None, lc116_item=None)}, ["municipal service code"]),
        ({"kind": "credit_note"}, ["no credit note"]),
        ({"lines": [line(unit_price="0")]}, ["total must be positive"]),
    ],
)
def test_missing_data_is_refused_before_any_request(sim, doc_kwargs, expected):
    client = make_client(sim)
    error = raised(ValidationError, client.create, document(**doc_kwargs))
    for text in expected:
        assert text in str(error)
    assert sim.requests == [] and client.calls == 0


def test_invalid_cpf_is_listed_before_any_request(sim):
    client = make_client(sim)
    error = raised(ValidationError, client.create, document(partner=party(vat="123.456.789-00")))
    assert "CPF/CNPJ 123.456.789-00 is invalid" in str(error)
    assert sim.requests == []


def test_missing_company_id_is_a_clear_validation_error(sim):
    client = make_client(sim, company_id=None)
    for call, args in ((client.create, (document(),)), (client.fetch_status, ("invoice", "x"))):
        error = raised(ValidationError, call, *args)
        assert "company id (empresaId)" in str(error)
    assert sim.requests == []


# ---------------------------------------------------------------------------
# Error taxonomy
# ---------------------------------------------------------------------------


def test_bad_api_key_is_an_authentication_error(sim):
    error = raised(AuthenticationError, make_client(sim, api_key="wrong-key").create, document())
    assert error.status == 401 and "Api Key inválida" in str(error) and not error.retryable
    assert sim.notes == {}


def test_company_not_allowed_for_the_key_is_an_authentication_error(sim):
    sim.add_company(OTHER_COMPANY, "Outra Empresa", authorized=False)
    error = raised(AuthenticationError, make_client(sim, company_id=OTHER_COMPANY).create, document())
    assert error.status == 403 and "not authorized for this company" in str(error)


def test_unknown_company_and_unknown_note_are_not_found(sim):
    error = raised(NotFoundError, make_client(sim, company_id=OTHER_COMPANY).test_connection)
    assert OTHER_COMPANY in str(error) and "company_id" in str(error)
    raised(NotFoundError, make_client(sim).fetch_status, "invoice", "9c13bfb9-0000-0000-0000-000000000000")


def test_injected_429_is_rate_limited_with_retry_after(sim):
    sim.inject(429, retry_after=7)
    error = raised(RateLimitedError, make_client(sim).create, document())
    assert error.retry_after == 7.0 and error.retryable
    assert sim.notes == {}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(sim, status):
    sim.inject(status)
    error = raised(TransientError, make_client(sim).create, document())
    assert error.status == status and error.retryable and "<html" not in str(error)


@pytest.mark.parametrize("fault", ["reset", "malformed", "truncated"])
def test_broken_answers_are_transient(sim, fault):
    client = make_client(sim)
    note = client.create(document())
    sim.inject(fault)
    raised(TransientError, client.fetch_status, "invoice", note.remote_id)


def test_timeout_is_transient_and_quick(sim):
    sim.timeout_seconds = 2
    sim.inject("timeout")
    started = time.monotonic()
    raised(TransientError, make_client(sim, timeout=0.3).test_connection)
    assert time.monotonic() - started < 1.5


def test_pdf_of_a_pending_note_is_an_invalid_state_and_a_non_pdf_is_transient(sim):
    client = make_client(sim)
    note = client.create(document())
    raised(InvalidStateError, client.fetch_pdf, "invoice", note.remote_id)
    raised(InvalidStateError, client.fetch_xml, "invoice", note.remote_id)
    sim.complete(note.remote_id)
    sim.inject("malformed", path_contains="/pdf")  # 200 with an HTML page
    raised(TransientError, client.fetch_pdf, "invoice", note.remote_id)
    sim.inject("malformed", path_contains="/xml")
    raised(TransientError, client.fetch_xml, "invoice", note.remote_id)


def test_connection_names_the_company(sim):
    assert make_client(sim).test_connection() == (
        "Connected to eNotas: company Empresa Demonstração Ltda (Homologacao)."
    )


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------


def test_api_key_is_absent_from_errors_trace_and_logs(sim, caplog):
    caplog.set_level(logging.DEBUG)
    # Some services quote the request (key included) in their error messages.
    sim.fault_messages = {status: f"Chave recusada: Basic {KEY}" for status in (400, 401, 403, 404, 422)}
    client = make_client(sim)
    final = authorized(client, document(), sim)
    client.fetch_pdf("invoice", final.remote_id)
    errors = []
    for fault in (400, 401, 403, 404, 422, 429, 500, "reset", "malformed", "truncated"):
        sim.inject(fault)
        with pytest.raises(ProviderError) as info:
            client.fetch_status("invoice", final.remote_id)
        errors.append(info.value)
    sim.stop()
    with pytest.raises(ProviderError) as info:
        client.test_connection()
    errors.append(info.value)

    assert len({type(e) for e in errors}) >= 5
    assert "Chave recusada: Basic ***" in str(errors[0])  # the message survives, masked
    for error in errors:
        assert KEY not in str(error) and KEY not in repr(error) and KEY not in str(error.details)
    trace = client.take_trace()
    assert any("Chave recusada: Basic ***" in exchange.response for exchange in trace)
    for exchange in trace:
        assert KEY not in exchange.path + exchange.request + exchange.response
    assert KEY not in caplog.text
    assert KEY not in repr(sim.requests)


# ---------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------


GOOD_PAYLOAD = {
    "tipo": "NFS-e",
    "empresaId": COMPANY,
    "nfeId": "9c13bfb9-9415-443f-9abd-6cc758a90000",
    "nfeIdExterno": "ODOO-ab12-42",
    "nfeStatus": "Autorizada",
    "nfeMotivoStatus": None,
    "nfeNumero": "17",
}


@pytest.mark.parametrize(
    "payload, expected",
    [
        (GOOD_PAYLOAD, ("9c13bfb9-9415-443f-9abd-6cc758a90000", "ODOO-ab12-42")),
        ({"nfeId": " abc "}, ("abc", None)),
        ({"nfeIdExterno": "INV/1", "nfeId": ""}, (None, "INV/1")),
        ({"nfeId": "a", "nfeIdExterno": None, "extra": {"nested": [1, 2]}}, ("a", None)),
    ],
)
def test_parse_webhook_good_payloads(payload, expected):
    assert EnotasProvider.parse_webhook(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "nfeId=abc",
        ["nfeId", "abc"],
        {},
        {"nfeStatus": "Autorizada"},
        {"nfeId": "", "nfeIdExterno": "  "},
        {"nfeId": 42},
        {"nfeId": {"$ne": None}},
        {"nfeId": ["a"]},
        {"nfeId": True},
        {"nfeId": "a", "nfeIdExterno": 7},
        {"nfeId": "x" * 201},
        {"nfeIdExterno": "y" * 5000},
        {"nfeId": "abc\r\nX-Injected: 1"},
        {"nfeId": "abc\x00"},
    ],
)
def test_parse_webhook_refuses_hostile_payloads(payload):
    with pytest.raises(ValueError):
        EnotasProvider.parse_webhook(payload)


class WebhookReceiver:
    """What the Odoo controller does: parse the payload, then re-read the note (a trigger only)."""

    def __init__(self, client):
        self.client = client
        self.seen = []
        self.states = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                nfe_id, reference = EnotasProvider.parse_webhook(json.loads(body))
                receiver.seen.append((nfe_id, reference))
                receiver.states.append(receiver.client.fetch_status("invoice", nfe_id).state)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fiscal/enotas/webhook/tok3n"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_webhook_triggers_a_re_read_that_sees_the_final_state(sim):
    receiver = WebhookReceiver(make_client(sim))
    try:
        sim.webhook_url = receiver.url
        client = make_client(sim)
        doc = document()
        note = client.create(doc)
        sim.complete(note.remote_id)
        (delivery,) = sim.wait_for_webhooks(1)
        assert delivery["http_status"] == 200
        assert receiver.seen == [(note.remote_id, doc.reference)]
        assert receiver.states == ["final"]
    finally:
        receiver.close()


# ---------------------------------------------------------------------------
# parse_nfse_xml
# ---------------------------------------------------------------------------


ABRASF_1_PREFIXED = b"""<?xml version="1.0" encoding="utf-8"?>
<ns2:ConsultarNfseRpsResposta xmlns:ns2="http://www.abrasf.org.br/ABRASF/arquivos/nfse.xsd">
  <ns2:CompNfse>
    <ns2:Nfse>
      <ns2:InfNfse Id="nfse-201">
        <ns2:IdentificacaoRps><ns2:Numero>999</ns2:Numero></ns2:IdentificacaoRps>
        <ns2:Numero>201</ns2:Numero>
        <ns2:CodigoVerificacao>X9Y8-Z7</ns2:CodigoVerificacao>
        <ns2:DataEmissao>2025-01-10T10:11:12</ns2:DataEmissao>
        <ns2:Servico><ns2:Valores><ns2:ValorServicos>1234.56</ns2:ValorServicos></ns2:Valores></ns2:Servico>
      </ns2:InfNfse>
    </ns2:Nfse>
  </ns2:CompNfse>
</ns2:ConsultarNfseRpsResposta>"""


def test_parse_nfse_xml_reads_abrasf_1_with_prefixes():
    parsed = parse_nfse_xml(ABRASF_1_PREFIXED)
    assert parsed == {
        "number": "201",  # not the RPS number
        "verification_code": "X9Y8-Z7",
        "total": Decimal("1234.56"),
        "issue_date": "2025-01-10T10:11:12",
        "canceled": False,
    }
    assert parse_nfse_xml(ABRASF_1_PREFIXED.decode())["number"] == "201"  # str accepted too


def test_parse_nfse_xml_falls_back_to_the_net_value():
    xml = b"<CompNfse><Nfse><InfNfse><Numero>5</Numero><ValoresNfse><ValorLiquidoNfse>10.50</ValorLiquidoNfse>"
    xml += b"</ValoresNfse></InfNfse></Nfse></CompNfse>"
    parsed = parse_nfse_xml(xml)
    assert parsed["total"] == Decimal("10.50") and parsed["verification_code"] is None


@pytest.mark.parametrize(
    "xml",
    [
        b"",
        b"   ",
        b"not xml at all",
        b"<CompNfse><Nfse><InfNfse><Numero>1</Numero>",  # cut short
        b"<html><body>Service unavailable</body></html>",
        b"<CompNfse><Nfse><InfNfse><CodigoVerificacao>A</CodigoVerificacao></InfNfse></Nfse></CompNfse>",
    ],
)
def test_parse_nfse_xml_refuses_what_is_no_nfse(xml):
    with pytest.raises(ValueError):
        parse_nfse_xml(xml)


def test_parse_nfse_xml_does_not_expand_entities():
    xml = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "AAAAAAAAAA"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<CompNfse><Nfse><InfNfse><Numero>1</Numero><CodigoVerificacao>&b;</CodigoVerificacao>"
        b"</InfNfse></Nfse></CompNfse>"
    )
    try:
        parsed = parse_nfse_xml(xml)
    except ValueError:
        return
    assert "AAAA" not in str(parsed["verification_code"])
