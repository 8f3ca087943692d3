"""The Vendus simulator, exercised through raw HTTP like any client would."""

import base64
import os
import re
import selectors
import signal
import subprocess
import sys
import time

import pytest
import requests
from fiscal_simulators.vendus import VendusSimulator, valid_nif

KEY = "demo-key"
NIF = "509442013"
RATE_HEADERS = ("Rate-Limit-Limit", "Rate-Limit-Remaining", "Rate-Limit-Used", "Rate-Limit-Reset")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@pytest.fixture
def vd_sim():
    with VendusSimulator(api_key=KEY) as sim:
        yield sim


def call(sim, method, path, body=None, *, api_key=KEY, timeout=5, **params):
    auth = (api_key, "") if api_key is not None else None
    return requests.request(method, sim.base_url + path, params=params, json=body, auth=auth, timeout=timeout)


def item(**overrides):
    data = {"reference": "SRV1", "title": "Serviço", "qty": "5", "gross_price": "12.3", "tax_id": "NOR"}
    data.update(overrides)
    return data


def doc_data(doc_type="FT", **overrides):
    data = {
        "type": doc_type,
        "register_id": 1,
        "mode": "tests",
        "date": "2026-01-10",
        "external_reference": "INV/2026/0001",
        "client": {"fiscal_id": NIF, "name": "ACME Lda", "country": "PT"},
        "items": [item()],
    }
    if doc_type in ("FR", "FS"):
        data["payments"] = [{"id": 1, "amount": "61.50"}]
    data.update(overrides)
    return data


def create(sim, doc_type="FT", **overrides):
    response = call(sim, "POST", "/documents/", doc_data(doc_type, **overrides))
    assert response.status_code == 201, response.text
    return response.json()


def refused(sim, doc_type="FT", status=422, **overrides):
    response = call(sim, "POST", "/documents/", doc_data(doc_type, **overrides))
    assert response.status_code == status, response.text
    return messages(response)


def messages(response):
    return [e["message"] for e in response.json()["errors"]]


def credit(sim, number, row, qty, **overrides):
    body = {
        "type": "NC",
        "register_id": 1,
        "mode": "tests",
        "date": "2026-01-11",
        "notes": "Devolução",
        "items": [{"reference": "SRV1", "qty": qty, "reference_document": {"document_number": number,
                                                                           "document_row": row}}],
    }  # fmt: skip
    body.update(overrides)
    return call(sim, "POST", "/documents/", body)


def receipt(sim, numbers, amount, **overrides):
    body = {
        "type": "RG",
        "register_id": 1,
        "mode": "tests",
        "date": "2026-01-12",
        "invoices": [{"document_number": n} for n in numbers],
        "payments": [{"id": 1, "amount": amount}],
    }
    body.update(overrides)
    return call(sim, "POST", "/documents/", body)


# ---------------------------------------------------------------------------
# Authentication, JSON, request budget
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("api_key", [None, "wrong-key"])
def test_basic_auth_with_the_key_is_required(vd_sim, api_key):
    response = call(vd_sim, "GET", "/account/", api_key=api_key)
    assert response.status_code == 401
    assert response.json() == {"errors": [{"code": "A001", "message": "AUTH"}]}


def test_key_in_the_query_string_is_not_accepted(vd_sim):
    response = requests.get(vd_sim.base_url + "/account/", params={"api_key": KEY}, timeout=5)
    assert response.status_code == 401
    assert all("api_key" not in r["path"] for r in vd_sim.requests)  # and never logged


def test_bodies_must_be_json(vd_sim):
    response = requests.post(vd_sim.base_url + "/documents/", data={"type": "FT"}, auth=(KEY, ""), timeout=5)
    assert response.status_code == 415 and "JSON" in messages(response)[0]
    bad = requests.post(
        vd_sim.base_url + "/documents/",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        auth=(KEY, ""),
        timeout=5,
    )
    assert bad.status_code == 400
    assert vd_sim.documents == {}


def test_rate_limit_headers_are_on_every_answer(vd_sim):
    answers = [
        call(vd_sim, "GET", "/account/"),
        call(vd_sim, "GET", "/account/", api_key="wrong"),
        call(vd_sim, "GET", "/documents/999/"),
        call(vd_sim, "POST", "/documents/", doc_data(items=[])),
    ]
    vd_sim.inject(503)
    answers.append(call(vd_sim, "GET", "/account/"))
    assert [a.status_code for a in answers] == [200, 401, 404, 422, 503]
    for answer in answers:
        assert all(name in answer.headers for name in RATE_HEADERS), answer.headers
    assert answers[0].headers["Rate-Limit-Limit"] == "100"
    assert (answers[0].headers["Rate-Limit-Used"], answers[0].headers["Rate-Limit-Remaining"]) == ("1", "99")
    assert answers[1].headers["Rate-Limit-Used"] == "1"  # a refused key costs nothing
    assert answers[3].headers["Rate-Limit-Used"] == "3"
    assert 0 < int(answers[0].headers["Rate-Limit-Reset"]) <= 60


def test_exhausted_budget_answers_429_until_the_window_resets():
    with VendusSimulator(api_key=KEY, rate_limit=2, rate_window=0.5) as sim:
        assert [call(sim, "GET", "/account/").status_code for _ in range(3)] == [200, 200, 429]
        limited = call(sim, "GET", "/account/")
        assert limited.status_code == 429 and "Retry-After" not in limited.headers
        assert limited.headers["Rate-Limit-Remaining"] == "0" and limited.headers["Rate-Limit-Reset"] == "1"
        assert limited.json()["errors"][0]["code"] == "A001"
        time.sleep(0.55)
        fresh = call(sim, "GET", "/account/")
        assert fresh.status_code == 200 and fresh.headers["Rate-Limit-Used"] == "1"


def test_unlimited_budget_sends_no_rate_headers():
    with VendusSimulator(api_key=KEY, rate_limit=None) as sim:
        response = call(sim, "GET", "/account/")
        assert response.status_code == 200 and "Rate-Limit-Limit" not in response.headers


# ---------------------------------------------------------------------------
# Documents: numbering, modes, totals
# ---------------------------------------------------------------------------


def test_create_answers_a_final_numbered_document(vd_sim):
    doc = create(vd_sim)
    assert set(doc) >= {"id", "type", "number", "date", "system_time", "amount_gross", "amount_net", "hash",
                        "atcud", "qrcode", "qrcode_data", "tax_authority_id"}  # fmt: skip
    assert (doc["type"], doc["number"], doc["date"]) == ("FT", "FT T01P2026/1", "2026-01-10")
    assert re.fullmatch(r"[A-Z0-9]{8}-1", doc["atcud"]) and len(doc["hash"]) == 4
    assert (doc["amount_gross"], doc["amount_net"]) == ("61.50", "50.00")
    assert "G:FT T01P2026/1" in doc["qrcode_data"] and f"B:{NIF}" in doc["qrcode_data"]
    stored = vd_sim.documents[doc["id"]]
    assert stored["status"]["id"] == "N" and stored["external_reference"] == "INV/2026/0001"


def test_numbering_per_type_and_mode(vd_sim):
    numbers = [
        create(vd_sim)["number"],
        create(vd_sim)["number"],
        create(vd_sim, "FR")["number"],
        create(vd_sim, "FS", client=None)["number"],
        create(vd_sim, mode="normal")["number"],
        create(vd_sim, mode="normal")["number"],
    ]
    assert numbers == ["FT T01P2026/1", "FT T01P2026/2", "FR T01P2026/1", "FS T01P2026/1", "FT 01P2026/1",
                       "FT 01P2026/2"]  # fmt: skip
    atcuds = [d["atcud"] for d in vd_sim.find(type="FT")]
    assert atcuds[0].split("-")[0] != atcuds[2].split("-")[0]  # test and normal series have their own codes


def test_without_mode_the_register_mode_applies(vd_sim):
    data = doc_data()
    del data["mode"], data["register_id"]
    response = call(vd_sim, "POST", "/documents/", data)
    assert response.status_code == 201 and response.json()["number"] == "FT T01P2026/1"  # a new account tests
    with VendusSimulator(api_key=KEY, registers=[{"id": 4, "mode": "normal"}]) as live:
        response = call(live, "POST", "/documents/", {**data, "register_id": 4})
        assert response.json()["number"] == "FT 01P2026/1"


def test_unknown_register_is_refused(vd_sim):
    assert refused(vd_sim, register_id=9) == ["Caixa inexistente ou inativa (register_id 9)"]


def test_registers_series_come_from_their_position():
    with VendusSimulator(api_key=KEY, registers=[1, 2]) as sim:
        assert create(sim, register_id=2)["number"] == "FT T02P2026/1"


def test_documents_of_one_mode_are_invisible_in_the_other(vd_sim):
    doc = create(vd_sim)
    assert call(vd_sim, "GET", f"/documents/{doc['id']}/").status_code == 404
    assert call(vd_sim, "GET", f"/documents/{doc['id']}/", mode="tests").status_code == 200
    assert call(vd_sim, "GET", "/documents/").json() == []


def test_totals_from_vat_inclusive_prices_half_up_per_line(vd_sim):
    doc = create(vd_sim, items=[
        item(),  # 12.30 x 5 = 61.50, net 50.00
        item(reference="FOOD", gross_price="7.791", qty="2", tax_id="RED"),  # 15.582 -> 15.58, net 14.70
        item(reference="BOOK", gross_price="0.125", qty="1", tax_id="ISE", tax_exemption="M07",
             tax_exemption_law="Artigo 9.º do CIVA"),  # 0.125 -> 0.13 (half-up, not to even)
        item(reference="DISC", gross_price="19.99", qty="3", discount_percentage="10"),  # 53.973 -> 53.97, net 43.88
    ])  # fmt: skip
    assert (doc["amount_gross"], doc["amount_net"]) == ("131.18", "108.71")
    detail = call(vd_sim, "GET", f"/documents/{doc['id']}/", mode="tests").json()
    assert [i["amounts"]["gross_total"] for i in detail["items"]] == ["61.50", "15.58", "0.13", "53.97"]
    assert [i["amounts"]["net_total"] for i in detail["items"]] == ["50.00", "14.70", "0.13", "43.88"]
    assert detail["items"][2]["tax"] == {"id": "ISE", "country": "PT", "rate": 0, "exemption": "M07",
                                         "exemption_law": "Artigo 9.º do CIVA"}  # fmt: skip
    assert {t["rate"]: t["amount"] for t in detail["taxes"]} == {23: "21.59", 6: "0.88", 0: "0.00"}


def test_detail_has_status_debt_client_and_reference(vd_sim):
    doc = create(vd_sim, due_date="2026-02-10")
    detail = call(vd_sim, "GET", f"/documents/{doc['id']}/", mode="tests").json()
    assert detail["status"]["id"] == "N" and detail["date_due"] == "2026-02-10"
    assert detail["debt"] == {"total": "61.50", "paid": "0.00", "unpaid": "61.50"}
    assert detail["client"]["fiscal_id"] == NIF and detail["external_reference"] == "INV/2026/0001"
    assert not any(key.startswith("_") for key in detail)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"items": [item(title="")]}, "Item 1: o título (title) é obrigatório"),
        ({"items": [item(qty="0")]}, "Item 1: a quantidade (qty) tem de ser superior a 0"),
        ({"items": [item(qty="-1")]}, "Item 1: a quantidade (qty) tem de ser superior a 0"),
        ({"items": [item(gross_price=None)]}, "Item 1: o preço (gross_price) é obrigatório e não pode ser negativo"),
        ({"items": [item(tax_id="ISE")]}, "Item 1: o motivo de isenção (tax_exemption) é obrigatório na taxa ISE"),
        ({"items": [item(tax_id="XYZ")]}, "Item 1: taxa de IVA (tax_id) inválida: XYZ"),
        ({"items": []}, "O documento tem de ter pelo menos um item"),
        ({"client": {"fiscal_id": "123456780", "name": "X"}}, "NIF inválido: 123456780"),
        ({"client": {"fiscal_id": "999999990"}}, "Não indique o NIF 999999990: para consumidor final omita o cliente"),
        ({"client": {"fiscal_id": "503504564"}}, "O nome do cliente é obrigatório para criar um cliente novo"),
        ({"date": "10/01/2026"}, "Data do documento inválida (AAAA-MM-DD)"),
        ({"due_date": "2026-01-01"}, "A data de vencimento não pode ser anterior à data do documento"),
    ],
)
def test_invoice_validation_errors(vd_sim, overrides, message):
    assert message in refused(vd_sim, **overrides)
    assert vd_sim.documents == {}


def test_foreign_fiscal_ids_are_not_checked(vd_sim):
    doc = create(vd_sim, client={"fiscal_id": "B12345678", "name": "Empresa SL", "country": "ES"})
    assert vd_sim.documents[doc["id"]]["client"]["country"] == "ES"


def test_clients_are_referenced_by_fiscal_id(vd_sim):
    create(vd_sim)
    doc = create(vd_sim, client={"fiscal_id": NIF})  # no name needed once it exists
    assert vd_sim.documents[doc["id"]]["client"]["name"] == "ACME Lda"
    assert len(vd_sim.clients) == 1


@pytest.mark.parametrize("doc_type", ["FR", "FS"])
def test_paid_on_issue_types_need_payments_covering_the_total(vd_sim, doc_type):
    assert f"Os pagamentos (payments) são obrigatórios num documento {doc_type}" in refused(
        vd_sim, doc_type, payments=[]
    )
    assert refused(vd_sim, doc_type, payments=[{"id": 2, "amount": "61.49"}]) == [
        "O valor pago (61.49) é inferior ao total do documento (61.50)"
    ]
    assert "Método de pagamento inexistente: 42" in refused(vd_sim, doc_type, payments=[{"id": 42, "amount": 70}])
    paid = create(vd_sim, doc_type, payments=[{"id": 2, "amount": "70"}])  # cash: change is given
    assert vd_sim._render(vd_sim.documents[paid["id"]])["debt"]["unpaid"] == "0.00"


def test_dates_may_not_go_backwards_in_a_series(vd_sim):
    create(vd_sim, date="2026-03-01")
    response = call(vd_sim, "POST", "/documents/", doc_data(date="2026-02-01"))
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["code"] == "A001"
    assert error["message"] == (
        "A data do documento (2026-02-01) não pode ser anterior à do último documento da série FT T01P2026 (2026-03-01)"
    )
    assert create(vd_sim, "FR", date="2026-02-01")["number"] == "FR T01P2026/1"  # another series
    assert create(vd_sim, date="2026-03-01")["number"] == "FT T01P2026/2"  # the same day is fine


def test_create_can_return_the_pdf(vd_sim):
    doc = create(vd_sim, output="pdf")
    assert base64.b64decode(doc["output"]).startswith(b"%PDF")


# ---------------------------------------------------------------------------
# Credit notes
# ---------------------------------------------------------------------------


def test_credit_note_takes_price_and_tax_from_the_original_row(vd_sim):
    invoice = create(vd_sim, items=[item(), item(reference="FOOD", gross_price="7.791", qty="2", tax_id="RED")])
    response = credit(vd_sim, invoice["number"], 2, 1)
    assert response.status_code == 201, response.text
    note = response.json()
    assert (note["number"], note["amount_gross"], note["amount_net"]) == ("NC T01P2026/1", "7.79", "7.35")
    stored = vd_sim.documents[note["id"]]
    assert stored["items"][0]["title"] == "Serviço" and stored["items"][0]["tax"]["id"] == "RED"
    assert stored["client"]["fiscal_id"] == NIF  # the original's customer
    original = call(vd_sim, "GET", f"/documents/{invoice['id']}/", mode="tests").json()
    assert original["related_docs"] == [{"id": note["id"], "type": "NC", "number": "NC T01P2026/1",
                                         "amount": "7.79"}]  # fmt: skip
    assert original["debt"]["total"] == "69.29"  # 77.08 - 7.79


def test_credit_note_quantity_may_not_exceed_what_remains(vd_sim):
    invoice = create(vd_sim)
    assert credit(vd_sim, invoice["number"], 1, 3).status_code == 201
    too_much = credit(vd_sim, invoice["number"], 1, 3)
    assert too_much.status_code == 422
    assert messages(too_much) == [
        "Item 1: a quantidade a creditar (3) excede a quantidade disponível (2) na linha 1 do documento FT T01P2026/1"
    ]
    assert credit(vd_sim, invoice["number"], 1, 2).status_code == 201
    assert credit(vd_sim, invoice["number"], 1, "0.5").status_code == 422
    assert vd_sim.documents[invoice["id"]]["_credited"] == {1: 5}


def test_one_credit_note_may_not_credit_a_row_twice_beyond_its_quantity(vd_sim):
    invoice = create(vd_sim)
    ref = {"document_number": invoice["number"], "document_row": 1}
    items = [{"qty": 3, "reference_document": ref}, {"qty": 3, "reference_document": ref}]
    response = credit(vd_sim, invoice["number"], 1, 1, items=items)
    assert response.status_code == 422 and "disponível (2)" in messages(response)[0]


@pytest.mark.parametrize(
    "number, row, overrides, message",
    [
        ("FT T01P2026/9", 1, {}, "Item 1: documento de origem inexistente: FT T01P2026/9"),
        ("FT 01P2026/1", 1, {}, "Item 1: documento de origem inexistente: FT 01P2026/1"),  # other mode
        ("FT T01P2026/1", 2, {}, "Item 1: a linha 2 não existe no documento FT T01P2026/1"),
        ("FT T01P2026/1", 1, {"notes": ""}, "O motivo (notes) é obrigatório numa nota de crédito"),
        ("FT T01P2026/1", None, {}, "Item 1: indique o documento de origem (document_number e document_row)"),
        ("FT T01P2026/1", 1, {"client": {"fiscal_id": "503504564"}},
         "O cliente da nota de crédito tem de ser o do documento de origem"),
    ],
)  # fmt: skip
def test_credit_note_validation_errors(vd_sim, number, row, overrides, message):
    create(vd_sim)
    response = credit(vd_sim, number, row, 1, **overrides)
    assert response.status_code == 422 and message in messages(response)
    assert vd_sim.find(type="NC") == []


# ---------------------------------------------------------------------------
# Receipts and cancellation
# ---------------------------------------------------------------------------


def test_receipt_pays_invoices_and_cancelling_it_restores_the_debt(vd_sim):
    first, second = create(vd_sim), create(vd_sim, external_reference="INV/2")
    response = receipt(vd_sim, [first["number"], second["number"]], "100", external_reference="PAY/1")
    assert response.status_code == 201, response.text
    rg = response.json()
    assert (rg["number"], rg["amount_gross"], rg["amount_net"]) == ("RG T01P2026/1", "100.00", "81.30")
    debts = [vd_sim._render(vd_sim.documents[d["id"]])["debt"]["unpaid"] for d in (first, second)]
    assert debts == ["0.00", "23.00"]
    assert vd_sim.documents[rg["id"]]["invoices"] == [
        {"document_number": "FT T01P2026/1", "amount": "61.50"},
        {"document_number": "FT T01P2026/2", "amount": "38.50"},
    ]
    assert "A fatura FT T01P2026/1 já está liquidada" in messages(receipt(vd_sim, [first["number"]], "1"))

    canceled = call(vd_sim, "PATCH", f"/documents/{rg['id']}/", {"status": "A", "mode": "tests"})
    assert canceled.status_code == 200 and canceled.json()["status"]["id"] == "A"
    debts = [vd_sim._render(vd_sim.documents[d["id"]])["debt"]["unpaid"] for d in (first, second)]
    assert debts == ["61.50", "61.50"]
    again = call(vd_sim, "PATCH", f"/documents/{rg['id']}/", {"status": "A", "mode": "tests"})
    assert again.status_code == 422 and "já se encontra anulado" in messages(again)[0]


def test_receipt_validation_errors(vd_sim):
    invoice = create(vd_sim)
    paid = create(vd_sim, "FR")
    assert messages(receipt(vd_sim, [invoice["number"]], "61.51")) == [
        "O valor recebido (61.51) excede o valor em dívida (61.50)"
    ]
    assert "O documento FR T01P2026/1 não é uma fatura (FT) por liquidar" in messages(
        receipt(vd_sim, [paid["number"]], "1")
    )
    assert "Fatura inexistente: FT T01P2026/9" in messages(receipt(vd_sim, ["FT T01P2026/9"], "1"))
    assert "Indique as faturas (invoices) a liquidar" in messages(receipt(vd_sim, [], "1"))
    assert "Os pagamentos (payments) são obrigatórios num documento RG" in messages(
        receipt(vd_sim, [invoice["number"]], "1", payments=[])
    )


def test_invoices_cannot_be_cancelled_only_credited(vd_sim):
    invoice = create(vd_sim)
    response = call(vd_sim, "PATCH", f"/documents/{invoice['id']}/", {"status": "A"}, mode="tests")
    assert response.status_code == 422
    assert messages(response) == ["O documento FT T01P2026/1 não pode ser anulado: emita uma nota de crédito (NC)"]
    assert vd_sim.documents[invoice["id"]]["status"]["id"] == "N"
    assert call(vd_sim, "PATCH", f"/documents/{invoice['id']}/", {"status": "A"}).status_code == 404  # mode
    assert call(vd_sim, "PATCH", f"/documents/{invoice['id']}/", {"status": "X", "mode": "tests"}).status_code == 422


# ---------------------------------------------------------------------------
# Listing, PDF, account
# ---------------------------------------------------------------------------


def test_listing_filters_and_paginates(vd_sim):
    for n, day in enumerate(("2026-01-05", "2026-01-10", "2026-01-15"), start=1):
        create(vd_sim, date=day, external_reference=f"INV/2026/{n}")
    create(vd_sim, "FR", external_reference="INV/2026/10")
    create(vd_sim, mode="normal", external_reference="INV/2026/1")

    def numbers(**params):
        response = call(vd_sim, "GET", "/documents/", mode="tests", **params)
        assert response.status_code == 200
        return [d["number"] for d in response.json()], response.headers

    listed, headers = numbers(per_page=2)
    assert listed == ["FR T01P2026/1", "FT T01P2026/3"]
    assert (headers["X-Paginator-Items"], headers["X-Paginator-Pages"]) == ("4", "2")
    assert numbers(per_page=2, page=2)[0] == ["FT T01P2026/2", "FT T01P2026/1"]
    assert numbers(external_reference="INV/2026/1")[0] == ["FR T01P2026/1", "FT T01P2026/1"]  # substrings
    assert numbers(type="FT", since="2026-01-06", until="2026-01-15")[0] == ["FT T01P2026/3", "FT T01P2026/2"]
    assert numbers(q="FR")[0] == ["FR T01P2026/1"]
    assert numbers(client_fiscal_id="503504564")[0] == []
    assert call(vd_sim, "GET", "/documents/", mode="tests", since="5/1/2026").status_code == 422
    live = call(vd_sim, "GET", "/documents/", mode="normal").json()
    assert [(d["number"], d["external_reference"]) for d in live] == [("FT 01P2026/1", "INV/2026/1")]


def test_empty_listing_can_answer_404(vd_sim):
    assert call(vd_sim, "GET", "/documents/").json() == []
    vd_sim.empty_list_status = 404
    response = call(vd_sim, "GET", "/documents/")
    assert response.status_code == 404 and response.headers["X-Paginator-Items"] == "0"


@pytest.mark.parametrize("output, magic", [("pdf", b"%PDF"), ("html", b"<html>")])
def test_document_output_is_base64(vd_sim, output, magic):
    doc = create(vd_sim)
    response = call(vd_sim, "GET", f"/documents/{doc['id']}/", mode="tests", output=output)
    assert base64.b64decode(response.json()["output"]).startswith(magic)


def test_unknown_output_is_refused(vd_sim):
    doc = create(vd_sim)
    assert call(vd_sim, "GET", f"/documents/{doc['id']}/", mode="tests", output="escpos").status_code == 422


def test_account_registers_taxes_and_payment_methods(vd_sim):
    assert call(vd_sim, "GET", "/account/").json()["fiscal_id"] == "500000000"
    (register,) = call(vd_sim, "GET", "/registers/").json()
    assert register == {"id": 1, "store_id": 1, "title": "Caixa API", "type": "api", "status": "on", "mode": "tests"}
    assert call(vd_sim, "GET", "/registers/", store_id=2).json() == []
    assert call(vd_sim, "GET", "/registers/1/").json()["title"] == "Caixa API"
    assert call(vd_sim, "GET", "/registers/5/").status_code == 404
    assert {t["id"]: t["rate"] for t in call(vd_sim, "GET", "/taxes/").json()} == {
        "NOR": 23, "INT": 13, "RED": 6, "ISE": 0,
    }  # fmt: skip
    methods = call(vd_sim, "GET", "/documents/paymentmethods/").json()
    assert {m["type"]: m["id"] for m in methods} == {"TB": 1, "NU": 2, "CC": 3, "MB": 4, "CH": 5}


def test_paths_work_under_the_public_prefix(vd_sim):
    assert call(vd_sim, "GET", "/ws/v1.1/account/").status_code == 200
    assert call(vd_sim, "GET", "/ws/v1.1/documents").status_code == 200  # trailing slash optional
    response = call(vd_sim, "GET", "/nothing/")
    assert response.status_code == 404 and response.json()["errors"][0]["code"] == "A001"


def test_find_and_final_documents_helpers(vd_sim):
    invoice = create(vd_sim)
    rg = receipt(vd_sim, [invoice["number"]], "10").json()
    call(vd_sim, "PATCH", f"/documents/{rg['id']}/", {"status": "A", "mode": "tests"})
    assert [d["number"] for d in vd_sim.find(status="A")] == ["RG T01P2026/1"]
    assert [d["number"] for d in vd_sim.final_documents()] == ["FT T01P2026/1"]
    assert len(vd_sim.final_documents(include_canceled=True)) == 2
    assert vd_sim.by_number("FT T01P2026/1", "tests")["id"] == invoice["id"]
    assert vd_sim.by_number("FT T01P2026/1", "normal") is None


def test_valid_nif():
    assert valid_nif(NIF) and valid_nif("500000000") and valid_nif("503504564")
    assert not valid_nif("123456780") and not valid_nif("50944201") and not valid_nif("abcdefghi")


# ---------------------------------------------------------------------------
# Faults (inherited), reset, CLI
# ---------------------------------------------------------------------------


def test_lost_answer_after_processing_still_issues_the_document(vd_sim):
    vd_sim.inject("reset", when="after", method="POST")
    with pytest.raises(requests.ConnectionError):
        call(vd_sim, "POST", "/documents/", doc_data())
    (doc,) = vd_sim.find(external_reference="INV/2026/0001")
    assert doc["number"] == "FT T01P2026/1"
    assert vd_sim.requests[0]["processed_status"] == 201
    # A blind retry would issue a second fiscal document: look it up instead.
    listed = call(vd_sim, "GET", "/documents/", mode="tests", external_reference="INV/2026/0001").json()
    assert [d["id"] for d in listed] == [doc["id"]]


def test_injected_server_error_is_an_html_page_with_rate_headers(vd_sim):
    vd_sim.inject(502)
    response = call(vd_sim, "GET", "/account/")
    assert response.status_code == 502 and "<html>" in response.text
    assert "Rate-Limit-Remaining" in response.headers


def test_reset_clears_everything(vd_sim):
    create(vd_sim)
    vd_sim.inject(500, count=None)
    vd_sim.reset()
    assert vd_sim.documents == {} and vd_sim.clients == {} and vd_sim.requests == []
    response = call(vd_sim, "POST", "/documents/", doc_data())
    assert response.json()["number"] == "FT T01P2026/1" and response.headers["Rate-Limit-Used"] == "1"


def test_cli_serves_until_sigterm_without_printing_the_key():
    secret = "cli-secret-key"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fiscal_simulators.vendus", "--port", "0", "--api-key", secret, "--register-id", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=10), "the simulator printed nothing"
        line = proc.stdout.readline().decode()
        assert line.startswith("Vendus simulator listening on http://127.0.0.1:")
        base_url = line.rsplit(" ", 1)[1].strip()
        registers = requests.get(base_url + "/registers/", auth=(secret, ""), timeout=5)
        assert registers.status_code == 200 and registers.json()[0]["id"] == 3
        assert registers.headers["Rate-Limit-Limit"] == "100"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        out, err = proc.communicate()
        assert secret.encode() not in line.encode() + out + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
