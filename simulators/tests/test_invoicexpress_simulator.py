"""The InvoiceXpress simulator, exercised through raw HTTP like any client would."""

import datetime
import os
import selectors
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest
import requests
from fiscal_simulators._server import build_pdf
from fiscal_simulators.invoicexpress import InvoiceXpressSimulator

KEY = "demo-key"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def call(sim, method, path, body=None, *, api_key=KEY, timeout=5, **params):
    if api_key is not None:
        params["api_key"] = api_key
    return requests.request(method, sim.base_url + path, params=params, json=body, timeout=timeout)


def invoice_data(**overrides):
    data = {
        "date": "10/01/2025",
        "due_date": "10/02/2025",
        "reference": "INV/2025/0001",
        "client": {
            "name": "ACME Lda",
            "code": "ODOO-17",
            "email": "a@acme.pt",
            "fiscal_id": "508000000",
            "postal_code": "1050-555",
            "country": "Portugal",
        },
        "items": [{"name": "SRV1", "description": "Service", "unit_price": "10.0", "quantity": "5",
                   "tax": {"name": "IVA23"}}],
    }  # fmt: skip
    data.update(overrides)
    return data


def create(sim, doc_type="invoices", **overrides):
    response = call(sim, "POST", f"/{doc_type}.json", {"invoice": invoice_data(**overrides)})
    assert response.status_code == 201, response.text
    (root,) = response.json()
    assert root == doc_type[:-1]
    return response.json()[root]


def change_state(sim, doc_type, doc_id, state, message=None):
    body = {"invoice": {"state": state, **({"message": message} if message else {})}}
    return call(sim, "PUT", f"/{doc_type}/{doc_id}/change-state.json", body)


def finalized(sim, doc_type="invoices", **overrides):
    doc = create(sim, doc_type, **overrides)
    response = change_state(sim, doc_type, doc["id"], "finalized")
    assert response.status_code == 200, response.text
    return response.json()[doc_type[:-1]]


def errors(response):
    return [e["error"] for e in response.json()["errors"]]


# ---------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------


def test_create_answers_a_draft_with_totals(ix_sim):
    doc = create(ix_sim)
    assert doc["status"] == "draft"
    assert doc["type"] == "Invoice"
    assert doc["sequence_number"] == "rascunho"
    assert doc["atcud"] is None
    assert (doc["sum"], doc["before_taxes"], doc["taxes"], doc["total"]) == (50.0, 50.0, 11.5, 61.5)
    assert doc["client"]["code"] == "ODOO-17" and isinstance(doc["client"]["id"], int)
    assert doc["items"][0] == {
        "name": "SRV1", "description": "Service", "unit_price": 10.0, "unit": None, "quantity": 5.0,
        "discount": 0.0, "tax": {"name": "IVA23", "value": 23}, "subtotal": 50.0, "tax_amount": 11.5, "total": 61.5,
    }  # fmt: skip
    assert ix_sim.documents[doc["id"]]["reference"] == "INV/2025/0001"
    assert "SRV1" in ix_sim.items


def test_totals_round_half_up_per_line(ix_sim):
    doc = create(ix_sim, items=[
        {"name": "A", "unit_price": "0.125", "quantity": 1, "tax": {"name": "IVA0"}},  # 0.125 -> 0.13, not 0.12
        {"name": "B", "unit_price": 19.99, "quantity": 3, "discount": 10, "tax": {"name": "IVA23"}},
    ], tax_exemption="M07")  # fmt: skip
    # B: 59.97 gross, 53.973 -> 53.97 after 10 %, tax 12.4131 -> 12.41
    assert [i["subtotal"] for i in doc["items"]] == [0.13, 53.97]
    assert [i["tax_amount"] for i in doc["items"]] == [0.0, 12.41]
    assert (doc["sum"], doc["discount"], doc["before_taxes"], doc["taxes"], doc["total"]) == (
        60.1, 6.0, 54.1, 12.41, 66.51,
    )  # fmt: skip


def test_global_discount_percentage(ix_sim):
    doc = create(ix_sim, global_discount={"value_type": "percentage", "value": 10})
    assert (doc["before_taxes"], doc["taxes"], doc["total"]) == (45.0, 10.35, 55.35)


def test_each_document_type_has_its_root_key_and_type(ix_sim):
    expected = {
        "invoices": "Invoice",
        "invoice_receipts": "InvoiceReceipt",
        "simplified_invoices": "SimplifiedInvoice",
        "debit_notes": "DebitNote",
    }
    for doc_type, type_name in expected.items():
        doc = create(ix_sim, doc_type)
        assert doc["type"] == type_name
        response = call(ix_sim, "GET", f"/{doc_type}/{doc['id']}.json")
        assert response.status_code == 200 and response.json()[doc_type[:-1]]["id"] == doc["id"]


def test_get_unknown_or_wrong_type_is_404(ix_sim):
    doc = create(ix_sim)
    for path in ("/invoices/999.json", f"/invoice_receipts/{doc['id']}.json"):
        response = call(ix_sim, "GET", path)
        assert response.status_code == 404
        assert errors(response) == ["Not found"]


def test_finalize_numbers_per_series_with_atcud(ix_sim):
    first = finalized(ix_sim)
    second = finalized(ix_sim, reference="INV/2025/0002")
    receipt = finalized(ix_sim, "invoice_receipts", reference="RC/1")
    assert (first["status"], first["sequence_number"], first["inverted_sequence_number"]) == ("final", "1/A", "A/1")
    assert first["atcud"] == "JFJ3KDSN-1" and second["atcud"] == "JFJ3KDSN-2"
    assert second["sequence_number"] == "2/A"
    assert len(first["saft_hash"]) == 4 and first["saft_hash"] != second["saft_hash"]
    # Invoice-receipts have their own series, validation code, and are paid at once.
    assert receipt["status"] == "settled" and receipt["sequence_number"] == "1/A"
    assert receipt["atcud"].endswith("-1") and receipt["atcud"].split("-")[0] != "JFJ3KDSN"
    assert [d["reference"] for d in ix_sim.final_documents()] == ["INV/2025/0001", "INV/2025/0002", "RC/1"]


def test_finalize_refuses_a_date_earlier_than_the_series(ix_sim):
    finalized(ix_sim, date="10/01/2025", due_date="10/01/2025")
    late = create(ix_sim, date="05/01/2025", due_date="05/01/2025", reference="BACKDATED")
    response = change_state(ix_sim, "invoices", late["id"], "finalized")
    assert response.status_code == 422
    assert errors(response) == ["Date cannot be earlier than the last document of this sequence"]
    assert ix_sim.documents[late["id"]]["status"] == "draft"
    # Same day is fine, and another series is not affected.
    finalized(ix_sim, date="10/01/2025", due_date="10/01/2025")
    finalized(ix_sim, "invoice_receipts", date="05/01/2025", due_date="05/01/2025")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"date": "2025-01-10"}, "Date must have the following format dd/mm/yyyy"),
        ({"date": "31/02/2025"}, "Date must have the following format dd/mm/yyyy"),
        ({"due_date": "09/01/2025"}, "Due date must be later than date"),
        ({"client": {"code": "X"}}, "Client is invalid"),
        ({"items": []}, "Items can't be blank"),
        ({"items": [{"name": "A", "unit_price": 1, "quantity": 0}]}, "Quantity must be a number greater than 0"),
        ({"items": [{"name": "A", "unit_price": 1, "quantity": "two"}]}, "Quantity must be a number greater than 0"),
        ({"items": [{"name": "", "unit_price": 1, "quantity": 1}]}, "Item name can't be blank"),
        ({"items": [{"name": "A", "unit_price": "ten", "quantity": 1}]}, "Unit price is not a number"),
        (
            {"client": {"name": "X", "postal_code": "1050555", "country": "Portugal"}},
            "Postal Code must have the following format DDDD-DDD",
        ),
    ],
)
def test_validation_errors_are_422_with_the_documented_shape(ix_sim, overrides, message):
    response = call(ix_sim, "POST", "/invoices.json", {"invoice": invoice_data(**overrides)})
    assert response.status_code == 422
    assert message in errors(response)
    assert ix_sim.documents == {}


def test_foreign_postal_codes_are_not_checked(ix_sim):
    create(ix_sim, client={"name": "Zeta GmbH", "postal_code": "10115", "country": "Germany"})


def test_wrapper_key_is_always_invoice(ix_sim):
    body = {"invoice_receipt": invoice_data()}
    assert call(ix_sim, "POST", "/invoice_receipts.json", body).status_code == 422


def test_zero_vat_needs_an_exemption_code(ix_sim):
    zero = [{"name": "BOOK", "unit_price": 12, "quantity": 1, "tax": {"name": "IVA0"}}]
    response = call(ix_sim, "POST", "/invoices.json", {"invoice": invoice_data(items=zero)})
    assert response.status_code == 422
    assert errors(response) == ["Tax exemption reason is required"]
    doc = create(ix_sim, items=zero, tax_exemption="M07")
    assert doc["tax_exemption"] == "M07" and doc["taxes"] == 0.0


def test_zero_vat_check_can_be_switched_off():
    with InvoiceXpressSimulator(require_exemption_for_zero_vat=False) as sim:
        create(sim, items=[{"name": "BOOK", "unit_price": 12, "quantity": 1, "tax": {"name": "ISENTO"}}])


def test_unknown_tax_falls_back_to_the_default_tax(ix_sim):
    doc = create(ix_sim, items=[{"name": "A", "unit_price": 100, "quantity": 1, "tax": 23},
                                {"name": "B", "unit_price": 100, "quantity": 1, "tax": {"name": "VAT21"}}])  # fmt: skip
    assert [i["tax"]["name"] for i in doc["items"]] == ["IVA23", "IVA23"]
    assert doc["taxes"] == 46.0


def test_clients_are_matched_by_code(ix_sim):
    first = create(ix_sim)
    second = create(ix_sim, reference="INV/2", client={"name": "ACME Renamed", "code": "ODOO-17"})
    other = create(ix_sim, reference="INV/3", client={"name": "ACME Renamed", "code": "ODOO-18"})
    assert first["client"]["id"] == second["client"]["id"] != other["client"]["id"]
    assert len(ix_sim.clients) == 2

    found = call(ix_sim, "GET", "/clients/find-by-code.json", client_code="ODOO-17")
    assert found.status_code == 200 and found.json()["client"]["name"] == "ACME Renamed"
    assert call(ix_sim, "GET", "/clients/find-by-code.json", client_code="NOPE").status_code == 404

    created = call(ix_sim, "POST", "/clients.json", {"client": {"name": "New", "code": "ODOO-99"}})
    assert created.status_code == 201
    client_id = created.json()["client"]["id"]
    assert call(ix_sim, "GET", f"/clients/{client_id}.json").json()["client"]["code"] == "ODOO-99"
    duplicate = call(ix_sim, "POST", "/clients.json", {"client": {"name": "Other", "code": "ODOO-99"}})
    assert duplicate.status_code == 422 and errors(duplicate) == ["Code has already been taken"]
    assert call(ix_sim, "POST", "/clients.json", {"client": {"code": "X"}}).status_code == 422


def test_update_replaces_a_draft_only(ix_sim):
    doc = create(ix_sim)
    body = {"invoice": invoice_data(reference="CHANGED", items=[{"name": "X", "unit_price": 1, "quantity": 1}])}
    response = call(ix_sim, "PUT", f"/invoices/{doc['id']}.json", body)
    assert response.status_code == 200
    assert ix_sim.documents[doc["id"]]["reference"] == "CHANGED"
    assert ix_sim.documents[doc["id"]]["total"] == 1.23
    change_state(ix_sim, "invoices", doc["id"], "finalized")
    response = call(ix_sim, "PUT", f"/invoices/{doc['id']}.json", body)
    assert response.status_code == 422 and errors(response) == ["Invalid state"]


def test_credit_note_owner_must_be_a_final_document(ix_sim):
    draft = create(ix_sim)
    response = call(
        ix_sim, "POST", "/credit_notes.json", {"invoice": invoice_data(owner_invoice_id=draft["id"], observations="x")}
    )
    assert response.status_code == 422
    original = finalized(ix_sim, reference="INV/FINAL")
    note = create(ix_sim, "credit_notes", owner_invoice_id=original["id"], reference="NC/1", observations="Devolução")
    assert note["owner_invoice_id"] == original["id"] and note["type"] == "CreditNote"


# ---------------------------------------------------------------------------
# State transitions
# ---------------------------------------------------------------------------


def test_transitions(ix_sim):
    # draft -> deleted; a deleted document cannot be finalized.
    doc = create(ix_sim)
    assert change_state(ix_sim, "invoices", doc["id"], "deleted").json()["invoice"]["status"] == "deleted"
    assert change_state(ix_sim, "invoices", doc["id"], "finalized").status_code == 422

    # final: finalizing again is refused; cancel needs a message; canceled is terminal.
    doc = finalized(ix_sim)
    assert errors(change_state(ix_sim, "invoices", doc["id"], "finalized")) == ["Invalid state"]
    assert change_state(ix_sim, "invoices", doc["id"], "deleted").status_code == 422
    assert errors(change_state(ix_sim, "invoices", doc["id"], "canceled")) == ["Cancel message can't be blank"]
    assert change_state(ix_sim, "invoices", doc["id"], "canceled", "wrong customer").status_code == 200
    assert ix_sim.documents[doc["id"]]["status"] == "canceled"
    assert change_state(ix_sim, "invoices", doc["id"], "settled").status_code == 422

    # final -> settled; unsettling an invoice is refused, a credit note may.
    doc = finalized(ix_sim, reference="INV/S")
    assert change_state(ix_sim, "invoices", doc["id"], "settled").json()["invoice"]["status"] == "settled"
    assert change_state(ix_sim, "invoices", doc["id"], "unsettled").status_code == 422
    assert change_state(ix_sim, "invoices", doc["id"], "canceled", "x").status_code == 422  # settled invoice
    note = finalized(ix_sim, "credit_notes", owner_invoice_id=doc["id"], observations="Devolução")
    assert change_state(ix_sim, "credit_notes", note["id"], "settled").status_code == 200
    assert change_state(ix_sim, "credit_notes", note["id"], "unsettled").json()["credit_note"]["status"] == "final"

    # settled invoice-receipts can be canceled.
    receipt = finalized(ix_sim, "invoice_receipts")
    assert change_state(ix_sim, "invoice_receipts", receipt["id"], "canceled", "x").status_code == 200
    assert change_state(ix_sim, "invoices", doc["id"], "bogus").status_code == 422


def test_partial_payments_settle_the_document(ix_sim):
    draft = create(ix_sim)
    payment = {"partial_payment": {"payment_mechanism": "TB", "amount": "20", "payment_date": "15/01/2025"}}
    assert call(ix_sim, "POST", f"/documents/{draft['id']}/partial_payments.json", payment).status_code == 422
    doc = finalized(ix_sim, reference="INV/PAY")
    response = call(ix_sim, "POST", f"/documents/{doc['id']}/partial_payments.json", payment)
    assert response.status_code == 201
    receipt = response.json()["receipt"]
    assert receipt["status"] == "final" and receipt["sequence_number"] == "1/A" and receipt["total"] == 20.0
    assert ix_sim.documents[doc["id"]]["status"] == "final"
    too_much = {"partial_payment": {**payment["partial_payment"], "amount": "50"}}
    assert call(ix_sim, "POST", f"/documents/{doc['id']}/partial_payments.json", too_much).status_code == 422
    rest = {"partial_payment": {**payment["partial_payment"], "amount": "41.50"}}
    assert call(ix_sim, "POST", f"/documents/{doc['id']}/partial_payments.json", rest).status_code == 201
    assert ix_sim.documents[doc["id"]]["status"] == "settled"


def test_related_documents_lists_receipts_and_notes(ix_sim):
    doc = finalized(ix_sim, reference="INV/REL")
    assert call(ix_sim, "GET", f"/document/{doc['id']}/related_documents.json").json() == {"documents": []}
    payment = {"partial_payment": {"payment_mechanism": "TB", "amount": "20", "payment_date": "15/01/2025",
                                   "note": "PAY-7"}}  # fmt: skip
    receipt = call(ix_sim, "POST", f"/documents/{doc['id']}/partial_payments.json", payment).json()["receipt"]
    note = finalized(ix_sim, "credit_notes", owner_invoice_id=doc["id"], observations="Devolução do artigo")
    create(ix_sim, "credit_notes", owner_invoice_id=doc["id"], observations="Rascunho")  # a draft: not related yet
    related = call(ix_sim, "GET", f"/document/{doc['id']}/related_documents.json").json()["documents"]
    assert [(d["id"], d["type"]) for d in related] == [(receipt["id"], "Receipt"), (note["id"], "CreditNote")]
    assert related[0]["note"] == "PAY-7"
    back = call(ix_sim, "GET", f"/document/{note['id']}/related_documents.json").json()["documents"]
    assert [d["id"] for d in back] == [doc["id"]]
    assert call(ix_sim, "GET", "/document/42/related_documents.json").status_code == 404
    assert call(ix_sim, "GET", f"/documents/{doc['id']}/related_documents.json").status_code == 404
    assert call(ix_sim, "GET", f"/document/{doc['id']}/related_documents.json", api_key="bad").status_code == 401


# ---------------------------------------------------------------------------
# PDF, e-mail, search, taxes
# ---------------------------------------------------------------------------


def test_pdf_is_406_for_drafts_then_202_then_200(ix_sim):
    draft = create(ix_sim)
    assert call(ix_sim, "GET", "/api/pdf/424242.json").status_code == 404
    response = call(ix_sim, "GET", f"/api/pdf/{draft['id']}.json")
    assert response.status_code == 406 and errors(response) == ["Invalid state"]

    change_state(ix_sim, "invoices", draft["id"], "finalized")
    not_ready = call(ix_sim, "GET", f"/api/pdf/{draft['id']}.json", second_copy="false")
    assert not_ready.status_code == 202 and not_ready.content == b""
    ready = call(ix_sim, "GET", f"/api/pdf/{draft['id']}.json")
    assert ready.status_code == 200
    url = ready.json()["output"]["pdfUrl"]
    assert url == f"{ix_sim.base_url}/simulator-files/{draft['id']}.pdf"

    # Like a pre-signed storage URL: no api_key, and no rate-limit slot.
    ix_sim.rate_limit_per_minute = 1
    assert call(ix_sim, "GET", "/taxes.json").status_code == 200  # takes the only slot
    pdf = requests.get(url, timeout=5)
    assert call(ix_sim, "GET", "/taxes.json").status_code == 429
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and b"1/A" in pdf.content
    assert pdf.content.rstrip().endswith(b"%%EOF")


def test_pdf_ready_at_once_when_no_polls_are_configured():
    with InvoiceXpressSimulator(pdf_polls_before_ready=0) as sim:
        doc = finalized(sim)
        assert call(sim, "GET", f"/api/pdf/{doc['id']}.json").status_code == 200


def test_pdf_is_202_while_it_renders_after_finalizing():
    with InvoiceXpressSimulator(pdf_polls_before_ready=0, pdf_render_seconds=0.3) as sim:
        doc = finalized(sim)
        assert call(sim, "GET", f"/api/pdf/{doc['id']}.json").status_code == 202
        time.sleep(0.35)
        assert call(sim, "GET", f"/api/pdf/{doc['id']}.json").status_code == 200


def test_built_pdf_is_readable():
    PyPDF2 = pytest.importorskip("PyPDF2")
    import io

    reader = PyPDF2.PdfReader(io.BytesIO(build_pdf(["Invoice 7/A (copy)", "Total: 10.00"])))
    assert len(reader.pages) == 1
    assert "Invoice 7/A (copy)" in reader.pages[0].extract_text()


def test_email_document(ix_sim):
    doc = create(ix_sim)
    message = {"message": {"client": {"email": "a@acme.pt", "save": "0"}, "subject": "Invoice", "body": "Hi"}}
    path = f"/invoices/{doc['id']}/email-document.json"
    assert call(ix_sim, "PUT", path, message).status_code == 406
    change_state(ix_sim, "invoices", doc["id"], "finalized")
    no_email = {"message": {"client": {"email": "", "save": "0"}, "subject": "Invoice", "body": "Hi"}}
    assert call(ix_sim, "PUT", path, no_email).status_code == 422
    assert call(ix_sim, "PUT", path, message).status_code == 200
    assert ix_sim.emails == [{"document_id": doc["id"], "type": "Invoice", "email": "a@acme.pt",
                              "subject": "Invoice", "body": "Hi", "cc": None, "bcc": None}]  # fmt: skip


def test_text_search_hides_drafts(ix_sim):
    draft = create(ix_sim, reference="SO042")
    listing = call(ix_sim, "GET", "/invoices.json", text="so042").json()
    assert listing["invoices"] == [] and listing["pagination"]["total_entries"] == 0

    change_state(ix_sim, "invoices", draft["id"], "finalized")
    create(ix_sim, "invoice_receipts", reference="SO042-B")
    hits = call(ix_sim, "GET", "/invoices.json", text="so042").json()["invoices"]
    assert [d["id"] for d in hits] == [draft["id"]]
    assert call(ix_sim, "GET", "/invoices.json", text="acme").json()["invoices"][0]["id"] == draft["id"]
    assert call(ix_sim, "GET", "/invoices.json", text="1/A").json()["pagination"]["total_entries"] == 1

    # Without text every document is listed, all types, filtered by type[].
    everything = call(ix_sim, "GET", "/invoices.json").json()
    assert everything["pagination"]["total_entries"] == 2
    only_receipts = call(ix_sim, "GET", "/invoices.json", **{"type[]": ["InvoiceReceipt"]}).json()
    assert [d["type"] for d in only_receipts["invoices"]] == ["InvoiceReceipt"]


def test_listing_paginates(ix_sim):
    for n in range(5):
        create(ix_sim, reference=f"R{n}")
    page = call(ix_sim, "GET", "/invoices.json", page=2, per_page=2).json()
    assert page["pagination"] == {"total_entries": 5, "current_page": 2, "total_pages": 3, "per_page": 2}
    assert [d["reference"] for d in page["invoices"]] == ["R2", "R1"]  # newest first


def test_taxes(ix_sim):
    taxes = call(ix_sim, "GET", "/taxes.json").json()["taxes"]
    assert {t["name"]: t["value"] for t in taxes} == {"IVA23": 23, "IVA13": 13, "IVA6": 6, "IVA0": 0, "ISENTO": 0}
    assert [t["name"] for t in taxes if t["default_tax"]] == ["IVA23"]


# ---------------------------------------------------------------------------
# Authentication, rate limit, request log
# ---------------------------------------------------------------------------


def test_wrong_or_missing_api_key_is_401(ix_sim):
    for key in ("wrong", None):
        response = call(ix_sim, "GET", "/taxes.json", api_key=key)
        assert response.status_code == 401
        assert response.json() == {"errors": [{"error": "Invalid API key"}]}
    assert call(ix_sim, "POST", "/invoices.json", {"invoice": invoice_data()}, api_key="wrong").status_code == 401
    assert ix_sim.documents == {}


def test_rate_limit_answers_429_with_retry_after(ix_sim):
    ix_sim.rate_limit_per_minute = 3
    assert call(ix_sim, "GET", "/taxes.json", api_key="wrong").status_code == 401  # not counted
    assert [call(ix_sim, "GET", "/taxes.json").status_code for _ in range(3)] == [200, 200, 200]
    refused = call(ix_sim, "GET", "/taxes.json")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60

    # The window slides: once the oldest requests leave it, slots free up.
    ix_sim.rate_window = 0.5
    time.sleep(0.6)
    assert call(ix_sim, "GET", "/taxes.json").status_code == 200


def test_default_rate_limit_is_100_per_minute():
    with InvoiceXpressSimulator() as sim:
        session = requests.Session()
        statuses = [session.get(sim.base_url + "/taxes.json", params={"api_key": KEY}).status_code for _ in range(101)]
    assert statuses.count(200) == 100 and statuses[-1] == 429


def test_request_log_never_contains_the_api_key(ix_sim):
    secret = "s3cr3t-key-value"
    ix_sim.api_key = secret
    doc = create_with_key(ix_sim, secret)
    call(ix_sim, "GET", f"/invoices/{doc['id']}.json", api_key=secret, foo="bar")
    call(ix_sim, "GET", "/taxes.json", api_key="another-wrong-key")
    ix_sim.inject(500, path_contains="/taxes")
    call(ix_sim, "GET", "/taxes.json", api_key=secret)
    log = repr(ix_sim.requests)
    assert secret not in log and "another-wrong-key" not in log and "api_key" not in log
    assert ix_sim.requests[0] == {"method": "POST", "path": "/invoices.json", "status": 201, "fault": None}
    assert ix_sim.requests[1]["path"] == f"/invoices/{doc['id']}.json?foo=bar"
    assert [r["status"] for r in ix_sim.requests] == [201, 200, 401, 500]


def create_with_key(sim, key):
    response = call(sim, "POST", "/invoices.json", {"invoice": invoice_data()}, api_key=key)
    assert response.status_code == 201
    return response.json()["invoice"]


def test_latency_is_added_to_every_request(ix_sim):
    ix_sim.latency = 0.2
    started = time.monotonic()
    assert call(ix_sim, "GET", "/taxes.json").status_code == 200
    assert time.monotonic() - started >= 0.2


# ---------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 401, 429, 422])
def test_injected_status(ix_sim, status):
    ix_sim.inject(status)
    response = call(ix_sim, "GET", "/taxes.json")
    assert response.status_code == status
    if status >= 500:
        assert response.headers["Content-Type"].startswith("text/html")
    elif status == 429:
        assert response.headers["Retry-After"] == "1"
    else:
        assert response.json()["errors"]
    assert call(ix_sim, "GET", "/taxes.json").status_code == 200  # count=1 by default


def test_fault_filters_and_count(ix_sim):
    ix_sim.inject(503, count=2, path_contains="/api/pdf/", method="GET")
    assert call(ix_sim, "GET", "/taxes.json").status_code == 200
    assert call(ix_sim, "POST", "/api/pdf/1.json").status_code == 404  # method does not match: routed normally
    assert [call(ix_sim, "GET", "/api/pdf/1.json").status_code for _ in range(3)] == [503, 503, 404]

    ix_sim.inject(500, count=None)
    assert [call(ix_sim, "GET", "/taxes.json").status_code for _ in range(3)] == [500, 500, 500]
    ix_sim.clear_faults()
    assert call(ix_sim, "GET", "/taxes.json").status_code == 200


def test_timeout_fault(ix_sim):
    ix_sim.timeout_seconds = 2
    ix_sim.inject("timeout")
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        call(ix_sim, "POST", "/invoices.json", {"invoice": invoice_data()}, timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert ix_sim.documents == {}  # "before": never processed


def test_reset_fault(ix_sim):
    ix_sim.inject("reset")
    with pytest.raises(requests.ConnectionError):
        call(ix_sim, "GET", "/taxes.json")
    assert ix_sim.requests[-1]["fault"] == "reset" and ix_sim.requests[-1]["status"] is None


def test_malformed_fault(ix_sim):
    ix_sim.inject("malformed")
    response = call(ix_sim, "GET", "/taxes.json")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def assert_truncated(send):
    """urllib3 2 raises on a short body; urllib3 1.26 (pinned here) hands over the short body."""
    try:
        response = send()
    except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
        return
    assert len(response.content) < int(response.headers["Content-Length"])
    with pytest.raises(ValueError):
        response.json()


def test_truncated_fault(ix_sim):
    ix_sim.inject("truncated")
    assert_truncated(lambda: call(ix_sim, "GET", "/taxes.json"))
    assert call(ix_sim, "GET", "/taxes.json").status_code == 200


@pytest.mark.parametrize("fault", ["reset", "truncated", "timeout", 502])
def test_fault_after_processing_changes_state_but_the_client_sees_an_error(ix_sim, fault):
    ix_sim.timeout_seconds = 1
    ix_sim.inject(fault, path_contains="/invoices.json", method="POST", when="after")

    def send():
        return call(ix_sim, "POST", "/invoices.json", {"invoice": invoice_data(reference="SO-AFTER")}, timeout=0.3)

    if fault == "truncated":
        assert_truncated(send)
    elif fault == 502:
        assert send().status_code == 502
    else:
        with pytest.raises((requests.ConnectionError, requests.Timeout)):
            send()
    created = ix_sim.find(reference="SO-AFTER")
    assert len(created) == 1 and created[0]["status"] == "draft"
    entry = ix_sim.requests[0]
    assert entry["fault"] == fault and entry["processed_status"] == 201


def test_finalize_succeeds_even_when_the_answer_is_lost(ix_sim):
    doc = create(ix_sim)
    ix_sim.inject(502, path_contains="change-state", when="after")
    assert change_state(ix_sim, "invoices", doc["id"], "finalized").status_code == 502
    assert ix_sim.documents[doc["id"]]["status"] == "final"
    # A blind retry is refused: the client must look the document up instead.
    assert change_state(ix_sim, "invoices", doc["id"], "finalized").status_code == 422


def test_inject_rejects_unknown_faults(ix_sim):
    for bad in ("explode", 42, True):
        with pytest.raises(ValueError):
            ix_sim.inject(bad)
    with pytest.raises(ValueError):
        ix_sim.inject(500, when="during")


# ---------------------------------------------------------------------------
# Lifecycle, reset, CLI
# ---------------------------------------------------------------------------


def test_reset_clears_everything(ix_sim):
    finalized(ix_sim)
    ix_sim.inject(500, count=None)
    ix_sim.reset()
    assert ix_sim.documents == {} and ix_sim.clients == {} and ix_sim.requests == []
    assert finalized(ix_sim)["sequence_number"] == "1/A"


def test_stop_closes_keep_alive_connections_and_restart_keeps_the_url():
    sim = InvoiceXpressSimulator(rate_limit_per_minute=None)
    session = requests.Session()
    with sim:
        url = sim.base_url
        assert session.get(url + "/taxes.json", params={"api_key": KEY}, timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        session.get(url + "/taxes.json", params={"api_key": KEY}, timeout=5)
    with sim:
        assert sim.base_url == url
        assert requests.get(url + "/taxes.json", params={"api_key": KEY}, timeout=5).status_code == 200


def test_cli_serves_until_sigterm_without_printing_the_key():
    secret = "cli-secret-key"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fiscal_simulators.invoicexpress", "--port", "0", "--api-key", secret]
        + ["--rate-limit", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=10), "the simulator printed nothing"
        line = proc.stdout.readline().decode()
        assert line.startswith("InvoiceXpress simulator listening on http://127.0.0.1:")
        base_url = line.rsplit(" ", 1)[1].strip()
        assert requests.get(base_url + "/taxes.json", params={"api_key": secret}, timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        out, err = proc.communicate()
        assert secret.encode() not in line.encode() + out + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------
# As strict as the service and the law (issue 13): what the real InvoiceXpress refuses.


def test_credit_note_needs_its_owner_and_its_reason(ix_sim):
    response = call(ix_sim, "POST", "/credit_notes.json", {"invoice": invoice_data()})
    assert response.status_code == 422
    assert errors(response) == ["Owner invoice can't be blank", "Observations can't be blank"]


def test_future_date_is_refused(ix_sim):
    tomorrow = (datetime.date.today() + datetime.timedelta(days=1)).strftime("%d/%m/%Y")
    response = call(ix_sim, "POST", "/invoices.json", {"invoice": invoice_data(date=tomorrow, due_date=tomorrow)})
    assert response.status_code == 422 and "Date can't be in the future" in errors(response)


def test_foreign_currency_needs_its_rate(ix_sim):
    response = call(ix_sim, "POST", "/invoices.json", {"invoice": invoice_data(currency_code="USD")})
    assert response.status_code == 422 and errors(response) == ["Rate can't be blank"]
    doc = create(ix_sim, currency_code="USD", rate="0.91")
    assert doc["currency"] == "USD" and doc["rate"] == 0.91


def test_simplified_invoice_limits(ix_sim):
    """Art. 40 CIVA: 1000 EUR to a final consumer, 100 EUR to a customer with a fiscal id."""
    items = [{"name": "X", "unit_price": "90", "quantity": "1", "tax": {"name": "IVA23"}}]
    with_nif = create(ix_sim, "simplified_invoices", items=items)  # 110.70 EUR
    assert with_nif["client"]["fiscal_id"]
    assert change_state(ix_sim, "simplified_invoices", with_nif["id"], "finalized").status_code == 422
    consumer = create(ix_sim, "simplified_invoices", items=items, client={"name": "Consumidor final", "code": "CF"})
    assert change_state(ix_sim, "simplified_invoices", consumer["id"], "finalized").status_code == 200


def test_series_not_communicated_has_no_atcud(ix_sim):
    ix_sim.series_communicated = False
    doc = finalized(ix_sim)
    assert doc["atcud"] == "N/D"


def test_sequences_show_the_validation_codes_and_register_communicates_the_series(ix_sim):
    ix_sim.series_communicated = False
    before = finalized(ix_sim)
    (sequence,) = call(ix_sim, "GET", "/sequences.json").json()["sequences"]
    assert (sequence["serie"], sequence["current_invoice_validation_code"]) == ("A", "N/D")
    assert sequence["current_invoice_sequence_id"] == before["sequence_id"]
    answer = call(ix_sim, "PUT", f"/sequences/{sequence['id']}/register.json").json()["sequence"]
    assert answer["current_invoice_validation_code"] == "JFJ3KDSN"
    assert call(ix_sim, "PUT", "/sequences/1/register.json").status_code == 404
    invoice = create(ix_sim, reference="INV/2025/0002")
    after = change_state(ix_sim, "invoices", invoice["id"], "finalized").json()["invoice"]
    assert after["atcud"] == "JFJ3KDSN-2"
    assert ix_sim.documents[before["id"]]["atcud"] == "N/D", "a final document keeps what it was finalized with"


def test_line_amounts_on_a_half_cent_are_recorded(ix_sim):
    """quantity x price is rounded, then the discount: 3 x 15.90 = 47.70, 5 % of it is 2.385, a tie."""
    items = [{"name": "X", "unit_price": "15.9", "quantity": "3", "discount": "5", "tax": {"name": "IVA23"}}]
    create(ix_sim, items=items)
    assert ix_sim.ties == [Decimal("2.385")]
