"""The InvoiCy client (providers.invoicy), against the local SOAP simulator over real HTTP.

Each test states one behaviour a user would notice: a note is queued then authorized, a lost
answer does not issue a second note, an outage is a retryable error, the keys never leak.
"""

import hashlib
import json
import logging
import re
import time
from datetime import date
from decimal import Decimal

import fiscal_simulators.invoicy as sim_module
import pytest
import requests
from fiscal_simulators.invoicy import InvoicySimulator
from lxml import etree

from odoo.addons.fiscal_invoice_connector.providers import invoicy
from odoo.addons.fiscal_invoice_connector.providers.base import (
    AuthenticationError,
    CancelReason,
    FiscalDocumentData,
    FiscalLine,
    FiscalParty,
    FiscalService,
    InvalidStateError,
    NotFoundError,
    NotReadyError,
    ProviderConfig,
    ProviderError,
    RateLimitedError,
    TransientError,
    ValidationError,
)
from odoo.addons.fiscal_invoice_connector.providers.invoicy import (
    RETURN_CODES,
    DuplicateReferenceError,
    InvoicyProvider,
    communication_key,
    linearize,
)

# Distinctive values, so that any leak is found by a plain substring search.
PARTNER_KEY = "PK-Parceiro-q7Zx3Lm9Wv2Tn8Rb=="
ACCESS_KEY = "AK-Acesso-5f0c9e2d7b1a4c6e8f3d2b1a"
CNPJ = "99999999000191"
OTHER_CNPJ = "11222333000181"
SECRETS = (PARTNER_KEY, ACCESS_KEY)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class RecordingSession(requests.Session):
    """A real session that also keeps the envelopes sent, to read the keys that left the client."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def post(self, url, data=None, **kwargs):
        self.sent.append(data.decode() if isinstance(data, bytes) else str(data))
        return super().post(url, data=data, **kwargs)

    def communication_keys(self):
        return [m for body in self.sent for m in re.findall(r"EmpCK>([0-9a-f]{32})<", body)]


@pytest.fixture
def sim():
    with InvoicySimulator(partner_key=PARTNER_KEY, access_key=ACCESS_KEY, company_code=CNPJ) as simulator:
        yield simulator


def make_client(sim, *, partner_key=PARTNER_KEY, access_key=ACCESS_KEY, timeout=2, session=None, **options):
    config = ProviderConfig(
        base_url=options.pop("base_url", sim.endpoint_url),
        credentials={"partner_key": partner_key, "access_key": access_key},
        environment=options.pop("environment", "test"),
        timeout=timeout,
        options={"company_code": CNPJ, **options},
    )
    return InvoicyProvider(config, session=session)


def party(**overrides):
    values = {
        "code": "ODOO-7",
        "name": "Padaria São João Ltda",
        "vat": "11.222.333/0001-81",
        "country_code": "BR",
        "email": "contato@padaria.com.br",
        "street": "Rua das Flores",
        "street_number": "120",
        "district": "Centro",
        "city": "São Paulo",
        "state_code": "SP",
        "zip": "01001-000",
        "city_code": "3550308",
        "is_company": True,
    }
    values.update(overrides)
    return FiscalParty(**values)


def service(**overrides):
    values = {
        "description": "Consultoria em sistemas de gestão",
        "lc116_item": "1.07",
        "iss_rate": Decimal("5"),
        "city_code": "3550308",
        "tax_regime": "simples",
    }
    values.update(overrides)
    return FiscalService(**values)


def line(code="CONS", quantity="2", unit_price="150", **kw):
    return FiscalLine(
        code=code,
        description=kw.pop("description", "Consultoria (horas)"),
        quantity=Decimal(quantity),
        unit_price=Decimal(unit_price),
        **kw,
    )


def document(reference="INV/2025/0001", partner="default", svc="default", **kw):
    return FiscalDocumentData(
        reference=reference,
        kind=kw.pop("kind", "invoice"),
        date=kw.pop("doc_date", date(2025, 3, 10)),
        due_date=None,
        currency="BRL",
        lines=kw.pop("lines", None) or [line()],
        partner=party() if partner == "default" else partner,
        service=service() if svc == "default" else svc,
        **kw,
    )


def sent_envio(sim, reference):
    return etree.fromstring(sim.find(reference)["envio"])


def posts(sim):
    return [r for r in sim.requests if r["method"] == "POST"]


def leaks(text, extra=()):
    return [secret for secret in (*SECRETS, *extra) if secret in (text or "")]


def raised(exc_class, call, *args):
    """Run ``call``, expect ``exc_class``, check its text carries no key."""
    with pytest.raises(exc_class) as info:
        call(*args)
    error = info.value
    assert not leaks(str(error) + repr(error) + (error.message or "") + str(error.details))
    return error


def wait_until(predicate, timeout=3.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def issued(sim, client, doc=None):
    """Create, let the municipality decide at once, read the authorized note."""
    doc = doc or document()
    client.create(doc)
    sim.authorize_pending()
    return client.fetch_status(doc.kind, doc.reference)


# ---------------------------------------------------------------------------
# The communication key
# ---------------------------------------------------------------------------

VECTOR_KEY = "9099628c5a2e63d56a6c058c34e2b46f"
VECTOR_DOCUMENT = (
    "<Consulta><ModeloDocumento>NFSe</ModeloDocumento><Versao>1.00</Versao><tpAmb>2</tpAmb>"
    "<CnpjEmissor>99999999000191</CnpjEmissor><NumeroInicial>1</NumeroInicial><NumeroFinal>1</NumeroFinal>"
    "<Serie>1</Serie></Consulta>"
)


def test_communication_key_is_the_md5_of_access_key_plus_document():
    # The documented rule, computed independently: lower-case hex MD5 over UTF-8 of key + document.
    expected = hashlib.md5((VECTOR_KEY + VECTOR_DOCUMENT).encode("utf-8")).hexdigest()
    assert expected == "088ea7fd420df27cb163963c52da03e6"  # the contract's worked example
    assert communication_key(VECTOR_KEY, VECTOR_DOCUMENT) == expected


def test_communication_key_is_computed_over_the_linearized_document():
    indented = '<?xml version="1.0" encoding="utf-8"?>\n' + VECTOR_DOCUMENT.replace("><", ">\n\t  <")
    assert linearize(indented) == VECTOR_DOCUMENT
    assert communication_key(VECTOR_KEY, indented) == "088ea7fd420df27cb163963c52da03e6"
    # Text inside elements is kept: only whitespace *between* tags goes.
    assert linearize("<a> x y </a>") == "<a> x y </a>"
    assert communication_key(VECTOR_KEY.upper(), VECTOR_DOCUMENT) != "088ea7fd420df27cb163963c52da03e6"


def test_what_is_sent_is_what_was_hashed(sim):
    session = RecordingSession()
    client = make_client(sim, session=session)
    client.create(document())
    (body,) = session.sent
    envelope = etree.fromstring(body.encode())
    ns = {"i": "InvoiCy"}
    sent_document = envelope.findtext(".//i:Documento", namespaces=ns)
    assert sent_document.startswith("<Envio><ModeloDocumento>NFSE</ModeloDocumento>")
    assert (
        envelope.findtext(".//i:EmpCK", namespaces=ns) == hashlib.md5((ACCESS_KEY + sent_document).encode()).hexdigest()
    )
    assert envelope.findtext(".//i:EmpPK", namespaces=ns) == PARTNER_KEY
    assert "&lt;Envio&gt;" in body  # escaped once, by the SOAP layer
    assert ACCESS_KEY not in body  # the access key itself never travels


# ---------------------------------------------------------------------------
# Create, status, authorization
# ---------------------------------------------------------------------------


def test_create_is_pending_then_the_municipality_authorizes(sim):
    client = make_client(sim)
    doc = document()
    created = client.create(doc)
    assert created.state == "pending" and not created.is_final
    assert (created.remote_id, created.reference, created.number) == ("INV/2025/0001", "INV/2025/0001", None)
    assert client.fetch_status("invoice", doc.reference).state == "pending"

    final = wait_until(lambda: (s := client.fetch_status("invoice", doc.reference)).is_final and s, timeout=3)
    stored = sim.find(doc.reference)
    assert final.state == "final" and final.number == stored["nfse_numero"] == "1"
    assert final.atcud == stored["cod_verificacao"] and len(final.atcud) == 9
    assert final.total == Decimal("300.00")
    assert final.raw["DocNumero"] == "1" and final.raw["DocSerie"] == "1"  # the RPS InvoiCy numbered


def test_finalize_reads_the_status(sim):
    client = make_client(sim)
    client.create(document())
    assert client.finalize("invoice", "INV/2025/0001").state == "pending"
    sim.authorize_pending()
    assert client.finalize("invoice", "INV/2025/0001").state == "final"


def test_sync_company_is_final_at_once(sim):
    sim.processing = "sync"
    final = make_client(sim).create(document())
    assert final.state == "final" and final.number == "1" and final.atcud


def test_envio_carries_our_reference_customer_values_and_service(sim):
    client = make_client(sim, municipal_registration="12.345-6", rps_series="A", simples_nacional=True)
    doc = document(
        lines=[line(), line(code="VIS", quantity="1", unit_price="100", discount=Decimal("10"), unit="H")],
        notes="Pedido S00042",
        svc=service(description="Consultoria\nImplantação", iss_withheld=True, lc116_item="0107", cnae="62.04-0-00"),
    )
    client.create(doc)
    envio = sent_envio(sim, doc.reference)
    rps = envio.find("RPS")
    assert (rps.findtext("IDUnico"), rps.findtext("RPSSerie"), rps.findtext("tpAmb")) == ("INV/2025/0001", "A", "2")
    assert rps.find("RPSNumero") is None  # InvoiCy numbers the RPS
    assert (rps.findtext("dEmis"), rps.findtext("OptSN"), rps.findtext("Status")) == ("2025-03-10T00:00:00", "1", "1")
    assert (rps.findtext("Prestador/CNPJ_prest"), rps.findtext("Prestador/IM")) == (CNPJ, "123456")
    values = rps.find("Servico/Valores")
    # 2 x 150 + 1 x 100 - 10 % = 390; ISS 5 % = 19.50, withheld.
    assert values.findtext("ValServicos") == "400.00" and values.findtext("ValDescIncond") == "10.00"
    assert values.findtext("ValBaseCalculo") == "390.00" and values.findtext("ValISS") == "19.50"
    assert values.findtext("ISSRetido") == "1" and values.findtext("ValISSRetido") == "19.50"
    assert values.findtext("ValLiquido") == "370.50" and values.findtext("ValAliqISS") == "0.0500"
    assert rps.findtext("Servico/IteListServico") == "01.07" and rps.findtext("Servico/Cnae") == "6204000"
    assert rps.findtext("Servico/Discriminacao") == "Consultoria!CHR13!Implantacao"  # no accents, CHR13 breaks
    items = rps.findall("ListaItens/Item")
    assert [i.findtext("ItemBaseCalculo") for i in items] == ["300.00", "90.00"]
    assert [i.findtext("ItemuMed") for i in items] == ["UN", "H"]
    taker = rps.find("Tomador")
    assert taker.findtext("TomaCNPJ") == OTHER_CNPJ and taker.find("TomaCPF") is None
    assert taker.findtext("TomaRazaoSocial") == "Padaria Sao Joao Ltda" and taker.findtext("TomaxMun") == "Sao Paulo"
    assert (taker.findtext("TomaCEP"), taker.findtext("TomaUF"), taker.findtext("TomacMun")) == (
        "01001000",
        "SP",
        "3550308",
    )
    assert rps.findtext("NFSOutrasinformacoes") == "Pedido S00042"


def test_a_person_is_sent_with_a_cpf(sim):
    client = make_client(sim)
    client.create(document(partner=party(name="Maria Souza", vat="529.982.247-25", is_company=False)))
    taker = sent_envio(sim, "INV/2025/0001").find("RPS/Tomador")
    assert taker.findtext("TomaCPF") == "52998224725" and taker.find("TomaCNPJ") is None


def test_the_same_document_is_sent_identically_on_every_retry(sim):
    client = make_client(sim)
    first, second = client.build_envio(document()), make_client(sim).build_envio(document())
    assert first == second and "<IDUnico>INV/2025/0001</IDUnico>" in first
    assert communication_key(ACCESS_KEY, first) == communication_key(ACCESS_KEY, second)


# ---------------------------------------------------------------------------
# Rejections and missing data
# ---------------------------------------------------------------------------


def test_missing_data_is_refused_before_any_request(sim):
    client = make_client(sim)
    for doc in (
        document(partner=None),
        document(partner=party(vat="123", street=None)),
        document(svc=None),
        document(svc=service(lc116_item=None, municipal_code=None)),
    ):
        error = raised(ValidationError, client.create, doc)
        assert "Cannot issue the NFS-e" in str(error)
    assert sim.requests == [] and client.calls == 0 and client.trace == []


def test_credit_notes_and_unusable_references_are_refused_before_any_request(sim):
    client = make_client(sim)
    raised(ValidationError, client.create, document(kind="credit_note"))
    raised(ValidationError, client.create, document(reference="NOTA SÃO"))
    raised(ValidationError, client.create, document(reference="X" * 201))
    assert sim.requests == []


def test_async_rejection_is_read_as_rejected_with_the_municipality_message(sim):
    client = make_client(sim)
    doc = document(svc=service(description="Serviço a REJEITAR"))
    assert client.create(doc).state == "pending"
    sim.authorize_pending()
    status = client.fetch_status("invoice", doc.reference)
    assert status.state == "rejected" and "E160" in status.message
    raised(InvalidStateError, client.fetch_pdf, "invoice", doc.reference)


def test_sync_rejection_is_a_validation_error_and_the_fixed_note_can_be_sent_again(sim):
    sim.processing = "sync"
    client = make_client(sim)
    error = raised(ValidationError, client.create, document(svc=service(description="REJEITAR isto")))
    assert not isinstance(error, DuplicateReferenceError)
    assert "InvoiCy rejected the NFS-e" in str(error) and "E160" in str(error) and error.code == 999
    fixed = client.create(document())
    assert fixed.state == "final"
    assert sim.find("INV/2025/0001")["sends"] == 2 and len(sim.documents) == 1


# ---------------------------------------------------------------------------
# Return codes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error_class, code",
    [
        (lambda sim: make_client(sim, access_key="AK-wrong-key-000000000"), AuthenticationError, 173),
        (lambda sim: make_client(sim, partner_key="PK-wrong-partner-key=="), AuthenticationError, 172),
        (lambda sim: make_client(sim, company_code=OTHER_CNPJ), AuthenticationError, 606),
        (lambda sim: make_client(sim, environment="production"), ValidationError, 174),
    ],
    ids=["invalid-communication-key", "unknown-partner", "company-not-enabled", "environment"],
)
def test_refusals_of_the_call_map_to_the_taxonomy(sim, make, error_class, code):
    client = make(sim)
    error = raised(error_class, client.create, document())
    assert type(error) is error_class and error.code == code
    assert sim.documents == {}


def test_unknown_note_is_not_found(sim):
    client = make_client(sim)
    error = raised(NotFoundError, client.fetch_status, "invoice", "INV/NOPE")
    assert error.code == 117
    assert client.find_by_reference(document("INV/NOPE")) is None


def test_identical_requests_blocked_by_179_are_rate_limited_for_long(sim):
    sim.abuse_threshold = 3
    client = make_client(sim)
    issued(sim, client)  # one create, one consultation
    client.fetch_status("invoice", "INV/2025/0001")
    error = raised(RateLimitedError, client.fetch_status, "invoice", "INV/2025/0001")
    assert error.code == 179 and error.retry_after == invoicy.RATE_LIMIT_RETRY_AFTER == 300
    assert error.retryable and isinstance(error, TransientError)
    raised(RateLimitedError, client.fetch_status, "invoice", "INV/2025/0001")  # still blocked
    # Another request (the PDF consultation) is not blocked.
    assert client.fetch_pdf("invoice", "INV/2025/0001").startswith(b"%PDF")


def test_http_rate_limit_is_answered_with_179(sim):
    sim.inject(429)
    raised(RateLimitedError, make_client(sim).test_connection)


def test_layout_and_document_type_refusals_are_validation_errors(sim, monkeypatch):
    client = make_client(sim)
    # "CnpjEmpresa: omit it when empty, never send <CnpjEmpresa/>" [C]: the service refuses the layout.
    monkeypatch.setattr(
        client,
        "build_consulta",
        lambda ref: f"<Consulta><ModeloDocumento>NFSe</ModeloDocumento><tpAmb>2</tpAmb><CnpjEmissor>{CNPJ}"
        f"</CnpjEmissor><CnpjEmpresa/><IDUnico>{ref}</IDUnico></Consulta>",
    )
    assert raised(ValidationError, client.fetch_status, "invoice", "INV/1").code == 145
    monkeypatch.setattr(client, "build_consulta", lambda ref: "<Inutilizacao/>")
    assert raised(ValidationError, client.fetch_status, "invoice", "INV/1").code == 176


@pytest.mark.parametrize("code", sorted(RETURN_CODES))
def test_every_return_code_of_the_table_maps_to_its_class(sim, code):
    error_class, meaning = RETURN_CODES[code]
    client = make_client(sim)
    if error_class is None:
        client._raise_for_code(code, "Documentos processados")  # no error: the documents decide
        return
    with pytest.raises(error_class) as info:
        client._raise_for_code(code, f"texto do serviço {code}")
    assert type(info.value) is error_class and info.value.code == code
    assert f"texto do serviço {code}" in str(info.value)
    if error_class is RateLimitedError:
        assert info.value.retry_after == 300


def test_unknown_return_code_is_a_validation_error(sim):
    with pytest.raises(ValidationError) as info:
        make_client(sim)._raise_for_code(4242, "Código novo")
    assert info.value.code == 4242 and "Código novo" in str(info.value)


def test_duplicate_reference_error_is_a_validation_error_of_its_own_kind():
    error = DuplicateReferenceError("dup")
    assert isinstance(error, ValidationError) and error.kind == "duplicate" and not error.retryable


# ---------------------------------------------------------------------------
# Transport failures
# ---------------------------------------------------------------------------


def test_soap_fault_is_transient(sim):
    sim.inject("soap_fault")
    error = raised(TransientError, make_client(sim).create, document())
    assert "SOAP Fault" in str(error) and "Erro interno" in str(error) and error.retryable
    assert sim.documents == {}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_pages_are_transient(sim, status):
    sim.inject(status)
    error = raised(TransientError, make_client(sim).create, document())
    assert error.status == status and "<html" not in str(error)


@pytest.mark.parametrize("fault", ["malformed", "bad_envelope", "truncated", "reset"])
def test_broken_answers_are_transient(sim, fault):
    sim.inject(fault)
    raised(TransientError, make_client(sim).fetch_status, "invoice", "INV/1")


def test_timeout_is_transient_and_quick(sim):
    sim.timeout_seconds = 3
    sim.inject("timeout")
    started = time.monotonic()
    error = raised(TransientError, make_client(sim, timeout=0.5).create, document())
    assert time.monotonic() - started < 2 and "timeout" in str(error)


def test_service_down_is_transient(sim):
    client = make_client(sim)
    sim.stop()
    error = raised(TransientError, client.test_connection)
    assert "connection failed" in str(error)


def test_wrong_endpoint_is_transient_with_a_hint(sim):
    error = raised(TransientError, make_client(sim, base_url=sim.base_url + "/outro.aspx").test_connection)
    assert error.status == 404 and "check the URL" in str(error)


# ---------------------------------------------------------------------------
# Reconciliation after a lost answer
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("duplicate_answer, code", [("situacao", 111), ("codigo313", 313)])
def test_lost_create_answer_is_found_and_a_second_create_is_a_duplicate(sim, duplicate_answer, code):
    sim.duplicate_answer = duplicate_answer
    client = make_client(sim)
    doc = document()
    sim.inject("reset", when="after")
    raised(TransientError, client.create, doc)
    assert sim.find(doc.reference) is not None  # InvoiCy queued it; we never saw the answer

    found = client.find_by_reference(doc)
    assert found is not None and found.remote_id == doc.reference and found.state == "pending"

    error = raised(DuplicateReferenceError, client.create, doc)
    assert error.kind == "duplicate" and error.code == code and "already has" in str(error)
    assert len(sim.documents) == 1 and sim.find(doc.reference)["sends"] == 1

    sim.authorize_pending()
    assert client.find_by_reference(doc).state == "final"


# ---------------------------------------------------------------------------
# PDF, XML, cancel
# ---------------------------------------------------------------------------


def test_pdf_and_xml_come_from_the_consultation(sim):
    client = make_client(sim)
    final = issued(sim, client)
    pdf = client.fetch_pdf("invoice", final.remote_id)
    xml = client.fetch_xml("invoice", final.remote_id)
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    assert xml.startswith(b"<CompNfse>") and f"<Numero>{final.number}</Numero>".encode() in xml


def test_pdf_of_a_pending_note_is_not_ready(sim):
    client = make_client(sim)
    client.create(document())
    error = raised(NotReadyError, client.fetch_pdf, "invoice", "INV/2025/0001")
    assert error.retryable and error.retry_after


def test_cancel_an_authorized_note(sim):
    client = make_client(sim)
    final = issued(sim, client)
    canceled = client.cancel("invoice", final.remote_id, "Serviço não prestado ao cliente")
    assert canceled.state == "canceled" and canceled.number == final.number
    stored = sim.find(final.remote_id)
    assert stored["status"] == "canceled" and stored["cancel_reason"] == "Servico nao prestado ao cliente"
    assert client.fetch_status("invoice", final.remote_id).state == "canceled"
    count = len(posts(sim))
    assert client.cancel("invoice", final.remote_id, "Serviço não prestado").state == "canceled"
    assert len(posts(sim)) == count + 1  # one consultation, no second event
    assert client.fetch_pdf("invoice", final.remote_id).startswith(b"%PDF")  # the canceled note's PDF


def test_cancel_pending_at_the_municipality(sim):
    sim.cancel_delay = 5
    client = make_client(sim, cancel_code="2")
    final = issued(sim, client)
    assert client.cancel("invoice", final.remote_id, "Nota emitida em duplicidade").state == "cancel_pending"
    assert client.fetch_status("invoice", final.remote_id).state == "cancel_pending"
    assert client.cancel("invoice", final.remote_id, "Nota emitida em duplicidade").state == "cancel_pending"
    sim.authorize_pending()
    assert client.fetch_status("invoice", final.remote_id).state == "canceled"


def test_cancel_of_a_note_not_yet_authorized_is_an_invalid_state(sim):
    client = make_client(sim)
    client.create(document())
    raised(InvalidStateError, client.cancel, "invoice", "INV/2025/0001", "Erro na emissão da nota")
    assert sim.find("INV/2025/0001")["status"] == "pending"


def test_cancel_needs_a_reason_and_a_valid_code_before_any_request(sim):
    client = make_client(sim)
    raised(ValidationError, client.cancel, "invoice", "INV/1", "  ")
    raised(ValidationError, client.cancel, "invoice", "INV/1", "Erro")  # under 15 characters
    raised(ValidationError, client.cancel, "invoice", "INV/1", CancelReason("Erro na emissão da nota", "9"))
    assert sim.requests == []


def test_cancel_of_an_unknown_note_is_not_found(sim):
    raised(NotFoundError, make_client(sim).cancel, "invoice", "INV/NOPE", "Erro na emissão da nota")


def test_cancel_refused_by_the_municipality_is_an_invalid_state(sim, monkeypatch):
    client = make_client(sim)
    final = issued(sim, client)
    original = client.build_cancelamento
    monkeypatch.setattr(
        client, "build_cancelamento", lambda *a: original(*a).replace("<NFSeNumero>1<", "<NFSeNumero>9<")
    )
    error = raised(InvalidStateError, client.cancel, "invoice", final.remote_id, "Erro na emissão da nota")
    assert "NFSeNumero" in str(error) and error.code == 999
    assert sim.find(final.remote_id)["status"] == "authorized"


# ---------------------------------------------------------------------------
# No WSDL at run time, endpoint selection
# ---------------------------------------------------------------------------


def test_the_wsdl_is_never_fetched_at_run_time(sim):
    client = make_client(sim, base_url=sim.base_url)  # a bare host: the client adds /arecepcao.aspx
    assert client.endpoint == sim.endpoint_url
    issued(sim, client)
    client.fetch_pdf("invoice", "INV/2025/0001")
    client.cancel("invoice", "INV/2025/0001", "Erro na emissão da nota")
    assert sim.wsdl_requests == 0
    assert all(r["method"] == "POST" and r["path"] == "/arecepcao.aspx" for r in sim.requests)
    with pytest.raises(RuntimeError):
        client._proxy()._client.transport.load(sim.endpoint_url + "?wsdl")


def test_endpoint_follows_the_environment_unless_overridden():
    endpoint = InvoicyProvider.endpoint_for
    assert endpoint("", "test") == "https://homolog.invoicy.com.br/arecepcao.aspx"
    assert (
        endpoint(None, "production") == InvoicyProvider.default_base_url == InvoicyProvider.default_urls["production"]
    )
    # A base URL left at the default production address still follows the environment.
    assert endpoint(InvoicyProvider.default_base_url, "test") == InvoicyProvider.default_urls["test"]
    assert endpoint("https://sandbox.example.com", "production") == "https://sandbox.example.com/arecepcao.aspx"
    assert endpoint("http://127.0.0.1:8768/arecepcao.aspx?wsdl", "test") == "http://127.0.0.1:8768/arecepcao.aspx"


def test_credentials_and_company_are_required_before_any_request(sim):
    for client in (
        make_client(sim, access_key=""),
        make_client(sim, partner_key=None),
        make_client(sim, company_code=""),
        make_client(sim, company_code="12345678000100"),  # bad check digits
    ):
        raised(AuthenticationError, client.test_connection)
    assert sim.requests == []


# ---------------------------------------------------------------------------
# test_connection
# ---------------------------------------------------------------------------


def test_connection_consults_an_unused_id(sim):
    sim.abuse_threshold = 2  # every probe differs, so repeated tests are not "identical requests"
    client = make_client(sim)
    for _ in range(3):
        assert "Connected to InvoiCy (homologação)" in client.test_connection()
    assert len(sim.requests) == 3 and sim.documents == {}


def test_connection_with_a_wrong_key_is_an_authentication_error(sim):
    raised(AuthenticationError, make_client(sim, access_key="AK-not-the-right-one").test_connection)


# ---------------------------------------------------------------------------
# Secrets and trace
# ---------------------------------------------------------------------------


def echo_keys_in_answers(sim, monkeypatch):
    """Some services quote the request, keys included, in their messages."""
    monkeypatch.setitem(sim_module.MESSAGES, 117, f"Nenhum documento ({PARTNER_KEY})")
    process = sim._process

    def quoting_process(raw_body, header, items):
        try:
            return process(raw_body, header, items)
        except sim_module._Answer as answer:
            if answer.code == 173:  # quote the keys received
                ck = header.findtext("{InvoiCy}EmpCK")
                raise sim_module._Answer(
                    173, f"Chave de comunicação inválida: EmpCK {ck} EmpPK {PARTNER_KEY}"
                ) from None
            raise

    monkeypatch.setattr(sim, "_process", quoting_process)
    original = sim.fault_response

    def fault_response(status, retry_after=1):
        if status == sim_module.NAMED_SOAP_FAULTS["soap_fault"]:
            return sim.soap_fault("soap-env:Server", f"EmpPK {PARTNER_KEY} refused")
        return original(status, retry_after)

    monkeypatch.setattr(sim, "fault_response", fault_response)


def test_keys_are_absent_from_errors_of_every_kind(sim, monkeypatch):
    echo_keys_in_answers(sim, monkeypatch)
    session = RecordingSession()
    client = make_client(sim, session=session)
    errors = []
    for fault in ("soap_fault", 500, "malformed", "bad_envelope", "truncated", "reset", 429):
        sim.inject(fault)
        with pytest.raises(ProviderError) as info:
            client.fetch_status("invoice", "INV/1")
        errors.append(info.value)
    with pytest.raises(NotFoundError) as info:
        client.fetch_status("invoice", "INV/1")
    errors.append(info.value)
    with pytest.raises(AuthenticationError) as info:
        make_client(sim, access_key="AK-wrong", session=session).fetch_status("invoice", "INV/1")
    errors.append(info.value)
    sim.stop()
    with pytest.raises(TransientError) as info:
        client.fetch_status("invoice", "INV/1")
    errors.append(info.value)
    keys = session.communication_keys()
    assert len(keys) >= 9
    assert "EmpPK *** refused" in str(errors[0]) and "EmpCK *** EmpPK ***" in str(errors[-2])
    for error in errors:
        assert not leaks(str(error) + repr(error) + str(error.details), keys), error


def test_trace_records_each_exchange_without_keys(sim, monkeypatch):
    session = RecordingSession()
    client = make_client(sim, session=session)
    issued(sim, client)
    client.fetch_pdf("invoice", "INV/2025/0001")
    client.cancel("invoice", "INV/2025/0001", "Erro na emissão")
    echo_keys_in_answers(sim, monkeypatch)
    sim.inject("soap_fault")
    with pytest.raises(TransientError):
        client.test_connection()
    trace = client.take_trace()
    assert client.take_trace() == [] and len(trace) == 6
    create, *_ = trace
    assert (create.method, create.path, create.status) == ("POST", "/arecepcao.aspx", 200)
    assert "<IDUnico>INV/2025/0001</IDUnico>" in create.request and "105" in create.response
    assert any("base64 chars]</DocPDF>" in exchange.response for exchange in trace)
    assert trace[-1].status == 500 and "EmpPK *** refused" in trace[-1].response
    keys = session.communication_keys()
    for exchange in trace:
        assert exchange.duration_ms >= 0
        assert not leaks(exchange.path + exchange.request + exchange.response, keys)


def test_keys_are_absent_from_debug_logs(sim, caplog):
    caplog.set_level(logging.DEBUG)
    session = RecordingSession()
    client = make_client(sim, session=session)
    issued(sim, client)
    client.fetch_xml("invoice", "INV/2025/0001")
    with pytest.raises(AuthenticationError):
        make_client(sim, access_key="AK-wrong", session=session).test_connection()
    keys = session.communication_keys()
    assert keys and any(r.name.startswith("urllib3") for r in caplog.records)
    assert not leaks(caplog.text, keys)
    assert all(not leaks(r.getMessage(), keys) for r in caplog.records)


def test_zeep_envelope_logs_are_masked(caplog):
    caplog.set_level(logging.DEBUG, logger="zeep.transports")
    envelope = f"<ns0:Cabecalho><ns0:EmpPK>{PARTNER_KEY}</ns0:EmpPK><ns0:EmpCK>0123abcd</ns0:EmpCK></ns0:Cabecalho>"
    logging.getLogger("zeep.transports").debug("HTTP Post to %s:\n%s", "https://x/arecepcao.aspx", envelope)
    assert PARTNER_KEY not in caplog.text and "0123abcd" not in caplog.text
    assert "<ns0:EmpPK>***</ns0:EmpPK>" in caplog.text


def test_provider_config_repr_hides_the_keys(sim):
    assert not leaks(repr(make_client(sim).config))


# ---------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------


def test_parse_webhook_returns_our_reference(sim):
    make_client(sim).create(document())
    payload = sim.webhook_payload("INV/2025/0001")
    assert InvoicyProvider.parse_webhook(payload) == "INV/2025/0001"
    assert InvoicyProvider.parse_webhook(json.dumps(payload)) == "INV/2025/0001"
    assert InvoicyProvider.parse_webhook(json.dumps(payload).encode()) == "INV/2025/0001"
    xml = "<Documento><DocModelo>NFSe</DocModelo><DocIDUnico>INV/9</DocIDUnico><DocStatus>2</DocStatus></Documento>"
    assert InvoicyProvider.parse_webhook(xml) == "INV/9"
    # A notification about no note of ours (certificate expiry): nothing to wake up.
    assert InvoicyProvider.parse_webhook({"documento": {"CertDiasValido": "10", "TipoNotificacaoWebHook": "8"}}) is None


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not json",
        b"\xff\xfe",
        "<Documento><DocIDUnico>x",
        [],
        {"outro": {}},
        {"documento": "INV/1"},
        {"documento": {"DocIDUnico": ["a"]}},
        {"documento": {"DocIDUnico": "bad\nid"}},
    ],
)
def test_parse_webhook_refuses_malformed_payloads(payload):
    with pytest.raises(ValueError):
        InvoicyProvider.parse_webhook(payload)


def test_webhook_token_is_checked_as_invoicy_sends_it():
    check = InvoicyProvider.check_webhook_token
    assert check({"Authorization": "Bearer s3cr3t-token"}, "s3cr3t-token")
    assert check({"authorization": "Basic dXNlcjpwYXNz"}, "dXNlcjpwYXNz")
    assert not check({"Authorization": "Bearer wrong"}, "s3cr3t-token")
    assert not check({"Authorization": "s3cr3t-token"}, "s3cr3t-token")
    assert not check({}, "s3cr3t-token") and not check({"Authorization": "Bearer "}, "")


def test_answers_with_several_documents_are_all_read():
    one = '<?xml version="1.0"?><Documento><DocIDUnico>{}</DocIDUnico></Documento>'
    text = one.format("A") + one.format("B")  # several roots, each with its declaration [1]
    assert [d["DocIDUnico"] for d in invoicy.parse_documents(text)] == ["A", "B"]
    assert invoicy.parse_documents("  ") == []
    with pytest.raises(TransientError):
        invoicy.parse_documents("<Documento><DocIDUnico>A</Documento>")
