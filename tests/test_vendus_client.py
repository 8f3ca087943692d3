"""The Vendus client (providers.vendus), against the local simulator over real HTTP.

Each test states one behaviour a user would notice: a document is numbered in the right mode,
a final consumer stays anonymous, a credit note never credits more than was invoiced, a lost
answer is found again by reference, the request budget is respected, the API key never leaks.
"""

import base64
import json
import logging
from datetime import date
from decimal import Decimal

import pytest
import requests
from fiscal_simulators.vendus import VendusSimulator

from odoo.addons.fiscal_invoice_connector.providers.base import (
    AuthenticationError,
    FiscalDocumentData,
    FiscalLine,
    FiscalParty,
    FiscalPayment,
    InvalidStateError,
    NotFoundError,
    ProviderConfig,
    ProviderError,
    RateLimitedError,
    TransientError,
    ValidationError,
)
from odoo.addons.fiscal_invoice_connector.providers.vendus import VendusProvider

KEY = "vd-Secret-Key-4b7e1d"  # distinctive, so that any leak is found by a plain substring search
BASIC = base64.b64encode(f"{KEY}:".encode()).decode()  # what travels in the Authorization header
NIF = "509442013"  # a valid Portuguese NIF (check digit)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class RecordingSession(requests.Session):
    """A real session that also keeps what left the client: method, path, query and JSON body."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def request(self, method, url, **kwargs):
        data = kwargs.get("data")
        params = dict(kwargs.get("params") or {})
        self.sent.append((method, url.split("?")[0], params, json.loads(data) if data else None))
        return super().request(method, url, **kwargs)

    def bodies(self, method="POST"):
        return [body for m, _, _, body in self.sent if m == method]

    def queries(self, method="GET"):
        return [params for m, _, params, _ in self.sent if m == method]


@pytest.fixture
def sim():
    with VendusSimulator(api_key=KEY) as sim:
        yield sim


def make_client(sim, environment="test", api_key=KEY, session=None, timeout=2, **options):
    settings = {"register_id": 1, "payment_methods": {"TB": 1, "NU": 2, "CC": 3}}
    settings.update(options)
    config = ProviderConfig(
        base_url=sim.base_url,
        credentials={"api_key": api_key},
        environment=environment,
        timeout=timeout,
        options=settings,
    )
    return VendusProvider(config, session=session)


def party(**overrides):
    values = {
        "code": "ODOO-1-17",
        "name": "ACME Lda",
        "vat": NIF,
        "country_code": "PT",
        "country_name": "Portugal",
        "email": "a@acme.pt",
        "street": "Av. Saldanha 1",
        "city": "Lisboa",
        "zip": "1050-555",
        "is_company": True,
    }
    values.update(overrides)
    return FiscalParty(**values)


def line(code="SRV1", quantity="5", unit_price="10", rate="23", exemption=None, **kw):
    return FiscalLine(
        code=code,
        description=kw.pop("description", f"Service {code}"),
        quantity=Decimal(quantity),
        unit_price=Decimal(unit_price),
        tax_rate=Decimal(rate),
        tax_exemption_code=exemption,
        **kw,
    )


def exempt_line(exemption="M07", code="BOOK"):
    return line(code=code, quantity="1", unit_price="20", rate="0", exemption=exemption)


def payment(amount, method="TB", reference=None):
    return FiscalPayment(amount=Decimal(amount), date=date(2026, 1, 10), method=method, reference=reference)


def document(reference="INV/2026/0001", kind="invoice", lines=None, partner="default", **kw):
    return FiscalDocumentData(
        reference=reference,
        kind=kind,
        date=kw.pop("doc_date", date(2026, 1, 10)),
        due_date=kw.pop("due_date", date(2026, 2, 10)),
        currency=kw.pop("currency", "EUR"),
        lines=lines if lines is not None else [line()],
        partner=party() if partner == "default" else partner,
        **kw,
    )


def credit_note(original, reference="RINV/2026/0001", lines=None, reason="Devolução de mercadoria", **kw):
    return document(
        reference,
        "credit_note",
        lines=lines,
        related_remote_id=original.remote_id,
        related_number=kw.pop("related_number", original.number),
        reason=reason,
        due_date=None,
        **kw,
    )


def raised(exc_class, call, *args):
    """Run ``call``, expect ``exc_class`` and check its text never carries the API key."""
    with pytest.raises(exc_class) as info:
        call(*args)
    error = info.value
    for text in (str(error), repr(error), error.message or "", str(error.details)):
        assert KEY not in text and BASIC not in text
    return error


def requests_to(sim, fragment, method=None):
    return [r for r in sim.requests if fragment in r["path"] and (method is None or r["method"] == method)]


# ---------------------------------------------------------------------------
# Documents: types, modes, numbers
# ---------------------------------------------------------------------------


def test_provider_declares_its_identity_and_capabilities():
    assert (VendusProvider.code, VendusProvider.label) == ("vendus", "Vendus")
    assert VendusProvider.default_base_url == "https://www.vendus.pt/ws/v1.1"
    assert VendusProvider.credential_fields == ("api_key",)
    assert VendusProvider.capabilities == {
        "pdf", "credit_note", "receipt", "find_receipt", "cancel", "find_by_reference", "product_sync"
    }  # fmt: skip
    assert "draft" not in VendusProvider.capabilities


@pytest.mark.parametrize(
    "kind, doc_type, payments",
    [
        ("invoice", "FT", []),
        ("invoice_receipt", "FR", [payment("61.50")]),
        ("simplified_invoice", "FS", [payment("61.50", "NU")]),
    ],
)
def test_test_account_issues_final_test_mode_documents(sim, kind, doc_type, payments):
    session = RecordingSession()
    client = make_client(sim, session=session)
    doc = document(kind=kind, payments=payments)
    client.prepare(doc)
    assert session.sent == []  # nothing to create beforehand

    remote = client.create(doc)
    assert remote.state == "final" and remote.is_final  # final on creation: no draft step
    assert remote.kind == kind and remote.reference == doc.reference
    assert remote.number == f"{doc_type} T01P2026/1"
    assert remote.atcud.endswith("-1") and len(remote.atcud.split("-")[0]) == 8
    assert isinstance(remote.total, Decimal) and remote.total == Decimal("61.50")
    (body,) = session.bodies()
    assert body["type"] == doc_type and body["mode"] == "tests" and body["register_id"] == 1
    assert body["external_reference"] == "INV/2026/0001"
    stored = sim.documents[int(remote.remote_id)]
    assert stored["mode"] == "tests" and stored["external_reference"] == "INV/2026/0001"
    assert client.finalize(kind, remote.remote_id).number == remote.number  # a read-back, nothing else


def test_production_account_always_sends_normal_mode(sim):
    """The register defaults to test mode: without an explicit mode, production would issue test documents."""
    session = RecordingSession()
    client = make_client(sim, environment="production", session=session)
    first = client.create(document("INV/2026/0001"))
    second = client.create(document("INV/2026/0002", kind="invoice_receipt", payments=[payment("61.50")]))
    assert (first.number, second.number) == ("FT 01P2026/1", "FR 01P2026/1")
    assert [body["mode"] for body in session.bodies()] == ["normal", "normal"]
    assert client.fetch_status("invoice", first.remote_id).number == "FT 01P2026/1"
    assert "mode" not in session.queries()[-1]  # normal documents are read without mode=tests


def test_test_and_normal_documents_are_numbered_apart(sim):
    test_client, live_client = make_client(sim), make_client(sim, environment="production")
    assert test_client.create(document("T/1")).number == "FT T01P2026/1"
    assert live_client.create(document("N/1")).number == "FT 01P2026/1"
    assert test_client.create(document("T/2")).number == "FT T01P2026/2"
    # A test document is only visible in test mode: the client reads it with mode=tests.
    session = RecordingSession()
    remote = make_client(sim, session=session).find_by_reference(document("T/2"))
    assert remote.number == "FT T01P2026/2"
    assert session.queries()[0]["mode"] == "tests"
    assert session.queries()[0]["external_reference"] == "T/2"


def test_document_body_sends_vat_inclusive_prices_and_tax_classes(sim):
    session = RecordingSession()
    client = make_client(sim, session=session)
    doc = document(
        lines=[line(), line(code="FOOD", quantity="2", unit_price="7.35", rate="6", description="Food")],
        notes="Entrega em mão",
    )
    remote = client.create(doc)
    (body,) = session.bodies()
    assert body["items"] == [
        {"reference": "SRV1", "title": "Service SRV1", "qty": "5", "gross_price": "12.3", "tax_id": "NOR"},
        {"reference": "FOOD", "title": "Food", "qty": "2", "gross_price": "7.791", "tax_id": "RED"},
    ]
    assert body["date"] == "2026-01-10" and body["due_date"] == "2026-02-10" and body["notes"] == "Entrega em mão"
    # 61.50 + 15.58 (7.791 x 2 = 15.582, half-up to cents): what Odoo computes tax-excluded, per line.
    assert remote.total == Decimal("77.08")
    assert sim.documents[int(remote.remote_id)]["amount_net"] == "64.70"


def test_gross_price_rounds_half_up_to_four_decimals(sim):
    client = make_client(sim)
    assert client.gross_price(line(unit_price="0.12345", rate="0", exemption="M07")) == Decimal("0.1235")
    assert client.gross_price(line(unit_price="8.130081", rate="23")) == Decimal("10.0000")
    assert client.gross_price(line(unit_price="0.333333", rate="13")) == Decimal("0.3767")


def test_due_date_is_only_sent_on_an_invoice(sim):
    session = RecordingSession()
    make_client(sim, session=session).create(document(kind="invoice_receipt", payments=[payment("61.50")]))
    assert "due_date" not in session.bodies()[0]


def test_discount_is_sent_as_a_percentage(sim):
    session = RecordingSession()
    remote = make_client(sim, session=session).create(document(lines=[line(discount=Decimal("10"))]))
    (body,) = session.bodies()
    assert body["items"][0]["discount_percentage"] == "10"
    assert remote.total == Decimal("55.35")  # 61.50 less 10 %


def test_discount_field_name_is_a_class_attribute(sim):
    class OtherName(VendusProvider):
        discount_field = "discount_percent"

    session = RecordingSession()
    config = make_client(sim).config
    OtherName(config, session=session).create(document(lines=[line(discount=Decimal("10"))]))
    assert session.bodies()[0]["items"][0]["discount_percent"] == "10"


def test_missing_register_is_refused_before_any_request(sim):
    client = make_client(sim, register_id=None)
    for step in (client.prepare, client.create):
        error = raised(ValidationError, step, document())
        assert "register_id" in str(error)
    assert sim.requests == [] and client.calls == 0


def test_unknown_register_is_a_validation_error(sim):
    error = raised(ValidationError, make_client(sim, register_id=7).create, document())
    assert error.status == 422 and "Caixa inexistente" in str(error)


def test_foreign_currency_is_refused_before_sending(sim):
    client = make_client(sim)
    error = raised(ValidationError, client.create, document(currency="USD"))
    assert "USD" in str(error) and sim.requests == []


def test_negative_quantities_are_refused_before_sending(sim):
    client = make_client(sim)
    raised(ValidationError, client.create, document(lines=[line(), line(code="DISC", quantity="-1")]))
    assert sim.requests == []


# ---------------------------------------------------------------------------
# Customers
# ---------------------------------------------------------------------------


def test_customer_is_sent_by_fiscal_id_with_its_details(sim):
    session = RecordingSession()
    remote = make_client(sim, session=session).create(document())
    assert session.bodies()[0]["client"] == {
        "fiscal_id": NIF,
        "name": "ACME Lda",
        "address": "Av. Saldanha 1",
        "postalcode": "1050-555",
        "city": "Lisboa",
        "country": "PT",
        "email": "a@acme.pt",
    }
    assert sim.documents[int(remote.remote_id)]["client"]["fiscal_id"] == NIF
    assert list(sim.clients) == [NIF]


@pytest.mark.parametrize("partner", [None, party(vat=None)], ids=["no partner", "no fiscal id"])
def test_final_consumer_is_sent_without_any_client(sim, partner):
    session = RecordingSession()
    doc = document(kind="simplified_invoice", partner=partner, payments=[payment("61.50", "NU")])
    remote = make_client(sim, session=session).create(doc)
    (body,) = session.bodies()
    assert "client" not in body
    assert "999999990" not in json.dumps(body)
    assert sim.documents[int(remote.remote_id)]["client"] is None


def test_invalid_nif_is_a_validation_error_with_the_service_message(sim):
    error = raised(ValidationError, make_client(sim).create, document(partner=party(vat="123456780")))
    assert error.status == 422 and "NIF inválido: 123456780" in str(error)


# ---------------------------------------------------------------------------
# VAT: tax classes and exemptions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, law",
    [("M07", "Artigo 9.º do CIVA"), ("M10", "Artigo 53.º do CIVA"), ("M16", "Artigo 14.º do RITI"),
     ("M99", "Não sujeito ou não tributado")],
)  # fmt: skip
def test_exempt_line_carries_its_code_and_legal_text(sim, code, law):
    session = RecordingSession()
    remote = make_client(sim, session=session).create(document(lines=[line(), exempt_line(code)]))
    item = session.bodies()[0]["items"][1]
    assert item["tax_id"] == "ISE" and item["gross_price"] == "20"
    assert (item["tax_exemption"], item["tax_exemption_law"]) == (code, law)
    stored = sim.documents[int(remote.remote_id)]["items"][1]["tax"]
    assert (stored["exemption"], stored["exemption_law"]) == (code, law)
    assert remote.total == Decimal("81.50")


@pytest.mark.parametrize("step", ["prepare", "create"])
def test_exempt_line_without_code_is_refused_before_any_request(sim, step):
    client = make_client(sim)
    error = raised(ValidationError, getattr(client, step), document(lines=[line(), exempt_line(None)]))
    assert "exemption" in str(error) and "Service BOOK" in str(error)
    assert sim.requests == [] and client.calls == 0


def test_exemption_code_without_known_legal_text_is_refused_unless_configured(sim):
    doc = document(lines=[exempt_line("M26")])
    error = raised(ValidationError, make_client(sim).create, doc)
    assert "M26" in str(error) and sim.requests == []
    session = RecordingSession()
    client = make_client(sim, session=session, exemption_laws={"M26": "Lei n.º 17/2023, de 14 de abril"})
    client.create(doc)
    assert session.bodies()[0]["items"][0]["tax_exemption_law"] == "Lei n.º 17/2023, de 14 de abril"


def test_rate_without_a_tax_class_is_refused_unless_mapped(sim):
    doc = document(lines=[line(rate="22")])  # Madeira's normal rate
    error = raised(ValidationError, make_client(sim).create, doc)
    assert "22 %" in str(error) and sim.requests == []
    session = RecordingSession()
    make_client(sim, session=session, tax_ids={"22": "NOR"}).create(doc)
    assert session.bodies()[0]["items"][0]["tax_id"] == "NOR"


# ---------------------------------------------------------------------------
# Payments: FR / FS
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["invoice_receipt", "simplified_invoice"])
def test_paid_on_issue_documents_without_payments_are_refused_before_sending(sim, kind):
    client = make_client(sim)
    for step in (client.prepare, client.create):
        error = raised(ValidationError, step, document(kind=kind, payments=[]))
        assert "payment" in str(error)
    assert sim.requests == []


def test_payments_are_sent_with_the_mapped_method_ids(sim):
    session = RecordingSession()
    doc = document(kind="invoice_receipt", payments=[payment("50", "CC"), payment("11.50", "NU")])
    remote = make_client(sim, session=session).create(doc)
    assert session.bodies()[0]["payments"] == [{"id": 3, "amount": "50"}, {"id": 2, "amount": "11.5"}]
    stored = sim.documents[int(remote.remote_id)]
    assert [p["title"] for p in stored["payments"]] == ["Cartão de Crédito", "Numerário"]


def test_unmapped_payment_method_is_refused_naming_the_code(sim):
    client = make_client(sim)
    error = raised(ValidationError, client.create, document(kind="invoice_receipt", payments=[payment("61.5", "MB")]))
    assert "'MB'" in str(error) and "payment_methods" in str(error)
    assert sim.requests == []


def test_payments_not_covering_the_total_are_a_validation_error(sim):
    error = raised(ValidationError, make_client(sim).create, document(kind="invoice_receipt", payments=[payment("60")]))
    assert error.status == 422
    assert "O valor pago (60.00) é inferior ao total do documento (61.50)" in str(error)


def test_list_payment_methods(sim):
    methods = make_client(sim).list_payment_methods()
    assert {m["type"]: m["id"] for m in methods}["NU"] == 2


# ---------------------------------------------------------------------------
# Credit notes
# ---------------------------------------------------------------------------


def test_credit_notes_credit_rows_partially_then_fully(sim):
    session = RecordingSession()
    client = make_client(sim, session=session)
    original = client.create(document(lines=[line(), line(code="FOOD", quantity="2", unit_price="7.35", rate="6")]))

    partial = client.create(credit_note(original, "RINV/1", lines=[line(quantity="2", related_row=1)]))
    body = session.bodies()[-1]
    assert body["type"] == "NC" and body["mode"] == "tests" and body["notes"] == "Devolução de mercadoria"
    assert body["items"] == [
        {"reference": "SRV1", "qty": "2",
         "reference_document": {"document_number": "FT T01P2026/1", "document_row": 1}},
    ]  # fmt: skip
    assert "gross_price" not in body["items"][0]  # the price comes from the original row
    assert (partial.number, partial.total, partial.state) == ("NC T01P2026/1", Decimal("24.60"), "final")

    food = line(code="FOOD", quantity="2", unit_price="7.35", rate="6", related_row=2)
    rest = [line(quantity="3", related_row=1), food]
    full = client.create(credit_note(original, "RINV/2", lines=rest))
    assert (full.number, full.total) == ("NC T01P2026/2", Decimal("52.48"))  # 36.90 + 15.58
    assert sim.documents[int(original.remote_id)]["_credited"] == {1: Decimal(5), 2: Decimal(2)}


def test_credit_note_exceeding_what_remains_is_a_validation_error(sim):
    client = make_client(sim)
    original = client.create(document())
    client.create(credit_note(original, "RINV/1", lines=[line(quantity="4", related_row=1)]))
    too_much = credit_note(original, "RINV/2", lines=[line(quantity="2", related_row=1)])
    error = raised(ValidationError, client.create, too_much)
    assert error.status == 422
    assert "excede a quantidade disponível (1) na linha 1 do documento FT T01P2026/1" in str(error)
    assert len(sim.find(type="NC")) == 1


def test_credit_note_without_reason_is_refused_before_sending(sim):
    client = make_client(sim)
    original = client.create(document())
    sim.requests.clear()
    for step in (client.prepare, client.create):
        error = raised(ValidationError, step, credit_note(original, reason=None, lines=[line(related_row=1)]))
        assert "reason" in str(error)
    assert sim.requests == []


def test_credit_note_finds_number_and_rows_from_the_original_when_missing(sim):
    session = RecordingSession()
    client = make_client(sim, session=session)
    original = client.create(document(lines=[line(), line(code="FOOD", quantity="2", unit_price="7.35", rate="6")]))
    credited = line(code="FOOD", quantity="1", unit_price="7.35", rate="6")
    note = client.create(credit_note(original, related_number=None, lines=[credited]))
    assert note.number == "NC T01P2026/1"
    assert session.sent[-2][0] == "GET" and session.queries()[-1]["mode"] == "tests"
    ref = session.bodies()[-1]["items"][0]["reference_document"]
    assert ref == {"document_number": "FT T01P2026/1", "document_row": 2}


def test_credit_note_at_another_price_than_the_row_is_refused_before_sending(sim):
    """Vendus credits a row at the original's price: a price adjustment (same row, 1 unit at 2 EUR
    instead of 10) would be issued at 12.30 EUR, not 2.46. Refused, nothing sent."""
    client = make_client(sim)
    original = client.create(document(lines=[line(quantity="1")]))
    adjustment = credit_note(original, lines=[line(quantity="1", unit_price="2", related_row=1)])
    error = raised(ValidationError, client.create, adjustment)
    assert "price adjustment" in str(error) and "Vendus would credit 12.30 €" in str(error)
    assert sim.find(type="NC") == []


def test_credit_note_with_an_ambiguous_row_is_refused(sim):
    client = make_client(sim)
    original = client.create(document(lines=[line(), line(quantity="1")]))  # two rows with reference SRV1
    error = raised(ValidationError, client.create, credit_note(original, lines=[line(quantity="1")]))
    assert "2 rows with reference SRV1" in str(error)
    assert sim.find(type="NC") == []


# ---------------------------------------------------------------------------
# Receipts and cancellation
# ---------------------------------------------------------------------------


def test_register_payment_issues_a_receipt_for_the_invoice(sim):
    session = RecordingSession()
    client = make_client(sim, session=session)
    invoice = client.create(document())
    receipt = client.register_payment("invoice", invoice.remote_id, payment("20", "TB", reference="PAY/7"))
    assert (receipt.kind, receipt.state, receipt.number) == ("receipt", "final", "RG T01P2026/1")
    assert receipt.total == Decimal("20.00") and receipt.reference == "PAY/7"
    body = session.bodies()[-1]
    assert body == {
        "type": "RG", "register_id": 1, "mode": "tests", "external_reference": "PAY/7", "date": "2026-01-10",
        "invoices": [{"document_number": "FT T01P2026/1"}], "payments": [{"id": 1, "amount": "20"}],
    }  # fmt: skip
    debt = sim._render(sim.documents[int(invoice.remote_id)])["debt"]
    assert debt == {"total": "61.50", "paid": "20.00", "unpaid": "41.50"}
    assert client.find_receipt("PAY/7").remote_id == receipt.remote_id


def test_receipt_larger_than_the_debt_is_a_validation_error(sim):
    client = make_client(sim)
    invoice = client.create(document())
    error = raised(ValidationError, client.register_payment, "invoice", invoice.remote_id, payment("70"))
    assert "excede o valor em dívida (61.50)" in str(error)


def test_cancel_a_receipt_but_not_an_invoice(sim):
    client = make_client(sim)
    invoice = client.create(document())
    receipt = client.register_payment("invoice", invoice.remote_id, payment("61.50", reference="PAY/1"))
    assert client.cancel_requires_credit_note("invoice") and client.cancel_requires_credit_note("invoice_receipt")
    assert not client.cancel_requires_credit_note("receipt")

    canceled = client.cancel("receipt", receipt.remote_id, "Pagamento devolvido")
    assert (canceled.state, canceled.number) == ("canceled", "RG T01P2026/1")
    assert sim.documents[int(receipt.remote_id)]["status"]["id"] == "A"
    assert sim._render(sim.documents[int(invoice.remote_id)])["debt"]["unpaid"] == "61.50"
    # Cancelling again: the 422 "já se encontra anulado" is read as the success it is.
    assert client.cancel("receipt", receipt.remote_id, "again").state == "canceled"

    sim.requests.clear()
    error = raised(InvalidStateError, client.cancel, "invoice", invoice.remote_id, "Wrong customer")
    assert str(error) == "Vendus cannot cancel an invoice: issue a credit note (NC) instead"
    assert sim.requests == []  # known before asking
    assert sim.documents[int(invoice.remote_id)]["status"]["id"] == "N"


# ---------------------------------------------------------------------------
# Reconciliation after a lost answer
# ---------------------------------------------------------------------------


def test_lost_create_answer_is_found_by_reference(sim):
    client = make_client(sim)
    doc = document("INV/2026/0001")
    sim.inject("reset", when="after", method="POST")
    raised(TransientError, client.create, doc)
    (stored,) = sim.find(external_reference="INV/2026/0001")  # the service issued it
    found = client.find_by_reference(doc)
    assert found is not None and found.remote_id == str(stored["id"])
    assert (found.number, found.state, found.total) == ("FT T01P2026/1", "final", Decimal("61.50"))
    assert len(sim.final_documents()) == 1


def test_find_by_reference_matches_the_exact_reference_and_type(sim):
    client = make_client(sim)
    client.create(document("INV/2026/100001"))
    client.create(document("INV/2026/1", kind="invoice_receipt", payments=[payment("61.50")]))
    # The filter matches substrings: INV/2026/1 also finds INV/2026/100001.
    assert client.find_by_reference(document("INV/2026/1")) is None  # the FR is not an invoice
    assert client.find_by_reference(document("INV/2026/1", kind="invoice_receipt")).number == "FR T01P2026/1"
    assert client.find_by_reference(document("INV/2026/10000")) is None
    assert client.find_by_reference(document("INV/2026/100001")).number == "FT T01P2026/1"


def test_find_by_reference_ignores_the_other_mode(sim):
    make_client(sim, environment="production").create(document("INV/2026/0001"))
    assert make_client(sim).find_by_reference(document("INV/2026/0001")) is None


def test_find_by_reference_when_the_list_answers_404_for_nothing(sim):
    sim.empty_list_status = 404
    assert make_client(sim).find_by_reference(document()) is None


def test_find_by_reference_reads_documents_when_the_list_omits_the_reference(sim):
    sim.list_includes_external_reference = False
    client = make_client(sim)
    created = client.create(document("INV/2026/0001"))
    assert client.find_by_reference(document("INV/2026/0001")).remote_id == created.remote_id
    assert requests_to(sim, f"/documents/{created.remote_id}/", "GET")


# ---------------------------------------------------------------------------
# Status and PDF
# ---------------------------------------------------------------------------


def test_fetch_status_reads_the_remote_document(sim):
    client = make_client(sim)
    remote = client.create(document())
    status = client.fetch_status("invoice", remote.remote_id)
    assert (status.state, status.number, status.total, status.reference) == (
        "final", "FT T01P2026/1", Decimal("61.50"), "INV/2026/0001",
    )  # fmt: skip
    assert requests_to(sim, "mode=tests", "GET")


def test_fetch_pdf_returns_the_decoded_pdf(sim):
    client = make_client(sim)
    remote = client.create(document())
    pdf = client.fetch_pdf("invoice", remote.remote_id)
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    (request,) = requests_to(sim, "output=pdf")
    assert "mode=tests" in request["path"]


def test_fetch_pdf_that_is_not_a_pdf_is_transient(sim, monkeypatch):
    client = make_client(sim)
    remote = client.create(document())
    monkeypatch.setattr(sim, "_output", lambda doc, output: base64.b64encode(b"<html>oops</html>").decode())
    raised(TransientError, client.fetch_pdf, "invoice", remote.remote_id)


def test_status_of_an_unknown_document_is_not_found(sim):
    error = raised(NotFoundError, make_client(sim).fetch_status, "invoice", "999")
    assert error.status == 404


# ---------------------------------------------------------------------------
# Request budget (Rate-Limit-*)
# ---------------------------------------------------------------------------


def test_rate_limit_headers_are_kept_after_every_answer(sim):
    client = make_client(sim)
    assert client.rate_limit is None
    client.create(document())
    assert client.rate_limit == {"limit": 100, "remaining": 99, "used": 1, "reset": 60}
    raised(NotFoundError, client.fetch_status, "invoice", "999")  # error answers count too
    assert client.rate_limit["used"] == 2 and client.rate_limit["remaining"] == 98


def test_exhausted_budget_is_rate_limited_with_the_reset_delay(sim):
    sim.rate_limit = 2
    client = make_client(sim)
    client.list_payment_methods()
    client.list_payment_methods()
    assert client.rate_limit["remaining"] == 0
    # The client does not spend a request the service already said it would refuse.
    error = raised(RateLimitedError, client.list_payment_methods)
    assert 0 < error.retry_after <= 60 and error.retryable
    assert len(sim.requests) == 2

    fresh = make_client(sim)  # another client object knows nothing: the service answers 429
    error = raised(RateLimitedError, fresh.list_payment_methods)
    assert error.status == 429 and 50 <= error.retry_after <= 60  # from Rate-Limit-Reset (no Retry-After)
    assert fresh.rate_limit["remaining"] == 0


def test_injected_429_is_rate_limited_with_retry_after(sim):
    sim.inject(429, retry_after=7)
    error = raised(RateLimitedError, make_client(sim).create, document())
    assert error.retry_after == 7.0 and isinstance(error, TransientError)
    assert sim.documents == {}


# ---------------------------------------------------------------------------
# Error taxonomy
# ---------------------------------------------------------------------------


def test_bad_api_key_is_an_authentication_error(sim):
    error = raised(AuthenticationError, make_client(sim, api_key="wrong-key").create, document())
    assert error.status == 401 and "AUTH" in str(error) and not error.retryable


def test_auth_code_in_another_status_is_still_an_authentication_error(sim):
    sim.fault_messages = {400: "AUTH"}
    sim.inject(400)
    raised(AuthenticationError, make_client(sim).test_connection)


@pytest.mark.parametrize("status", [400, 415, 422])
def test_refusals_are_validation_errors(sim, status):
    sim.inject(status)
    error = raised(ValidationError, make_client(sim).create, document())
    assert error.status == status and not error.retryable


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(sim, status):
    sim.inject(status)
    error = raised(TransientError, make_client(sim).create, document())
    assert error.status == status and error.retryable
    assert "<html" not in str(error)


@pytest.mark.parametrize("fault", ["reset", "malformed", "truncated"])
def test_broken_answers_are_transient(sim, fault):
    sim.inject(fault)
    raised(TransientError, make_client(sim).create, document())


def test_series_chronology_is_a_validation_error_in_portuguese(sim):
    client = make_client(sim)
    client.create(document("INV/2", doc_date=date(2026, 3, 1), due_date=None))
    error = raised(ValidationError, client.create, document("INV/1", doc_date=date(2026, 2, 1), due_date=None))
    assert "A001" in str(error) and "não pode ser anterior" in str(error)


# ---------------------------------------------------------------------------
# test_connection
# ---------------------------------------------------------------------------


def test_connection_names_the_account_and_the_register(sim):
    message = make_client(sim).test_connection()
    assert "Empresa Demonstração" in message and "register 1 “Caixa API”" in message and "tests mode" in message


def test_connection_with_an_unknown_register_lists_the_known_ones(sim):
    error = raised(ValidationError, make_client(sim, register_id=9).test_connection)
    assert "register 9 does not exist" in str(error) and "1 “Caixa API”" in str(error)


def test_connection_with_a_bad_key_is_an_authentication_error(sim):
    raised(AuthenticationError, make_client(sim, api_key="not-the-key").test_connection)


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------


def echo_the_key_in_errors(sim):
    """Some services quote the request (key included) in their error messages."""
    sim.fault_messages = {s: f"Refused key {KEY} / Basic {BASIC}" for s in (400, 401, 404, 415, 422)}


def test_api_key_is_absent_from_errors_of_every_kind(sim):
    echo_the_key_in_errors(sim)
    errors = []
    for fault in (401, 404, 415, 422, 429, 500, "reset", "malformed", "truncated"):
        sim.inject(fault)
        with pytest.raises(ProviderError) as info:
            make_client(sim).test_connection()  # a new client: after the 429 one would wait first
        errors.append(info.value)
    client = make_client(sim)
    sim.stop()
    with pytest.raises(ProviderError) as info:
        client.test_connection()
    errors.append(info.value)
    assert len({type(e) for e in errors}) >= 5
    assert "Refused key *** / Basic ***" in str(errors[0])  # the message survives, masked
    for error in errors:
        for text in (str(error), repr(error), str(error.details)):
            assert KEY not in text and BASIC not in text


def test_api_key_is_absent_from_the_trace_and_the_logs(sim, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(sim)
    invoice = client.create(document())
    client.fetch_pdf("invoice", invoice.remote_id)
    client.register_payment("invoice", invoice.remote_id, payment("10", reference="PAY/1"))
    echo_the_key_in_errors(sim)
    sim.inject(422)
    with pytest.raises(ValidationError):
        client.test_connection()
    trace = client.take_trace()
    assert "Refused key ***" in trace[-1].response
    assert len(trace) >= 5 and any(exchange.request for exchange in trace)
    for exchange in trace:
        text = exchange.path + exchange.request + exchange.response
        assert KEY not in text and BASIC not in text
    assert caplog.records  # urllib3 and the simulator did log
    assert KEY not in caplog.text and BASIC not in caplog.text
    assert all(KEY not in r.getMessage() for r in caplog.records)


def test_the_key_travels_only_in_the_authorization_header(sim):
    make_client(sim).create(document())
    assert all(KEY not in r["path"] for r in sim.requests)
