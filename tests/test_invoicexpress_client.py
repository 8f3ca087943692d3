"""The InvoiceXpress client (providers.invoicexpress), against the local simulator over real HTTP.

Each test states one behaviour a user would notice: a document gets its number, a customer is
not duplicated, an outage becomes a retryable error, the API key never leaks.
"""

import json
import logging
import time
from datetime import date
from decimal import Decimal

import pytest
import requests
from fiscal_simulators.invoicexpress import InvoiceXpressSimulator

from odoo.addons.fiscal_invoice_connector.providers.base import (
    AuthenticationError,
    ClientServices,
    FiscalDocumentData,
    FiscalLine,
    FiscalParty,
    FiscalPayment,
    InvalidStateError,
    NotFoundError,
    NotReadyError,
    ProviderConfig,
    ProviderError,
    RateLimitedError,
    Redactor,
    TransientError,
    ValidationError,
)
from odoo.addons.fiscal_invoice_connector.providers.invoicexpress import InvoiceXpressProvider

KEY = "ix-Secret-Key-7f3a9c"  # distinctive, so that any leak is found by a plain substring search


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class RecordingSession(requests.Session):
    """A real session that also keeps the JSON bodies sent, to check what left the client."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def request(self, method, url, **kwargs):
        data = kwargs.get("data")
        self.sent.append((method, url.split("?")[0], json.loads(data) if data else None))
        return super().request(method, url, **kwargs)

    def bodies(self, path_end):
        return [body for _, url, body in self.sent if url.endswith(path_end)]


@pytest.fixture
def sim(ix_sim):
    ix_sim.api_key = KEY
    return ix_sim


def make_client(sim, api_key=KEY, timeout=2, session=None, **options):
    config = ProviderConfig(
        base_url=sim.base_url,
        credentials={"api_key": api_key},
        timeout=timeout,
        options={"pdf_poll_interval": 0.01, **options},
    )
    return InvoiceXpressProvider(config, session=session)


def party(**overrides):
    values = {
        "code": "ODOO-17",
        "name": "ACME Lda",
        "vat": "508000000",
        "country_code": "PT",
        "country_name": "Portugal",
        "email": "a@acme.pt",
        "street": "Saldanha",
        "city": "Lisboa",
        "zip": "1050-555",
        "is_company": True,
    }
    values.update(overrides)
    return FiscalParty(**values)


def line(code="SRV1", quantity="5", unit_price="10", tax_name="IVA23", rate="23", exemption=None, **kw):
    return FiscalLine(
        code=code,
        description=kw.pop("description", f"Service {code}"),
        quantity=Decimal(quantity),
        unit_price=Decimal(unit_price),
        tax_name=tax_name,
        tax_rate=Decimal(rate),
        tax_exemption_code=exemption,
        **kw,
    )


def zero_line(exemption=None, code="BOOK"):
    return line(code=code, quantity="1", unit_price="20", tax_name="ISENTO", rate="0", exemption=exemption)


def document(reference="INV/2025/0001", kind="invoice", lines=None, partner="default", **kw):
    return FiscalDocumentData(
        reference=reference,
        kind=kind,
        date=kw.pop("doc_date", date(2025, 1, 10)),
        due_date=kw.pop("due_date", date(2025, 2, 10)),
        currency="EUR",
        lines=lines if lines is not None else [line()],
        partner=party() if partner == "default" else partner,
        **kw,
    )


def issue(client, doc):
    """What the Odoo layer does: prepare, create the draft, finalize it."""
    client.prepare(doc)
    draft = client.create(doc)
    return client.finalize(doc.kind, draft.remote_id)


def requests_to(sim, fragment, method=None):
    return [r for r in sim.requests if fragment in r["path"] and (method is None or r["method"] == method)]


def raised(exc_class, call, *args):
    """Run ``call``, expect ``exc_class`` and check its text never carries the API key."""
    with pytest.raises(exc_class) as info:
        call(*args)
    error = info.value
    assert KEY not in str(error) and KEY not in repr(error) and KEY not in (error.message or "")
    return error


# ---------------------------------------------------------------------------
# Documents: draft, finalize, number, ATCUD, total
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, final_state, atcud_code",
    [
        ("invoice", "final", "JFJ3KDSN"),
        ("invoice_receipt", "settled", "K7MB2QXP"),
        ("simplified_invoice", "final", "T4RW9ZCA"),
    ],
)
def test_create_then_finalize_gives_number_atcud_and_vat_inclusive_total(sim, kind, final_state, atcud_code):
    client = make_client(sim)
    # 5 x 10.00 at 23 % = 61.50; 2 x 7.35 at 6 % = 14.70 + 0.88 (half-up per line) = 15.58.
    doc = document(
        kind=kind, lines=[line(), line(code="FOOD", quantity="2", unit_price="7.35", tax_name="IVA6", rate="6")]
    )
    client.prepare(doc)

    draft = client.create(doc)
    assert draft.state == "draft" and not draft.is_final
    assert draft.number is None and draft.atcud is None  # "rascunho" is not a number
    assert draft.kind == kind and draft.reference == doc.reference

    final = client.finalize(kind, draft.remote_id)
    assert final.remote_id == draft.remote_id
    assert final.state == final_state and final.is_final
    # The SAF-T type code, then the inverted sequence number, as printed.
    prefix = {"invoice": "FT", "invoice_receipt": "FR", "simplified_invoice": "FS"}[kind]
    assert final.number == f"{prefix} A/1"
    assert final.atcud == f"{atcud_code}-1"
    assert isinstance(final.total, Decimal) and final.total == Decimal("77.08")
    assert sim.documents[int(final.remote_id)]["status"] == final_state


def test_numbers_follow_the_series(sim):
    client = make_client(sim)
    first = issue(client, document("INV/2025/0001"))
    second = issue(client, document("INV/2025/0002"))
    assert (first.number, second.number) == ("FT A/1", "FT A/2")
    assert second.atcud.endswith("-2")


def test_fetch_status_reads_the_remote_document(sim):
    client = make_client(sim)
    final = issue(client, document())
    status = client.fetch_status("invoice", final.remote_id)
    assert (status.state, status.number, status.total) == ("final", "FT A/1", Decimal("61.5"))


def test_finalize_refused_by_series_chronology_is_a_validation_error(sim):
    client = make_client(sim)
    issue(client, document("INV/2025/0002", doc_date=date(2025, 3, 1), due_date=None))
    earlier = client.create(document("INV/2025/0001", doc_date=date(2025, 2, 1), due_date=None))
    error = raised(ValidationError, client.finalize, "invoice", earlier.remote_id)
    assert "earlier than the last document" in str(error)
    assert sim.documents[int(earlier.remote_id)]["status"] == "draft"


# ---------------------------------------------------------------------------
# Customers
# ---------------------------------------------------------------------------


def test_customer_is_looked_up_by_code_then_created_when_missing(sim):
    client = make_client(sim)
    client.prepare(document())
    assert [r["method"] for r in requests_to(sim, "/clients")] == ["GET", "POST"]
    assert requests_to(sim, "client_code=ODOO-17", "GET")
    (stored,) = sim.clients.values()
    assert (stored["code"], stored["name"], stored["fiscal_id"]) == ("ODOO-17", "ACME Lda", "508000000")

    # Another client object (next cron batch): found by code, neither created nor updated.
    sim.requests.clear()
    make_client(sim).prepare(document("INV/2025/0002"))
    assert [r["method"] for r in requests_to(sim, "/clients")] == ["GET"]
    assert len(sim.clients) == 1


def test_second_document_for_the_same_customer_does_not_look_it_up_again(sim):
    client = make_client(sim)
    issue(client, document("INV/2025/0001"))
    issue(client, document("INV/2025/0002"))
    assert len(requests_to(sim, "find-by-code")) == 1
    assert len(requests_to(sim, "/clients.json", "POST")) == 1
    assert len(sim.clients) == 1


def test_renamed_customer_is_updated_not_duplicated():
    with InvoiceXpressSimulator(api_key=KEY, rate_limit_per_minute=None) as sim:
        issue(make_client(sim), document("INV/2025/0001"))
        renamed = party(name="ACME Portugal SA")
        final = issue(make_client(sim), document("INV/2025/0002", partner=renamed))

        assert len(requests_to(sim, "/clients/", "PUT")) == 1
        assert len(requests_to(sim, "/clients.json", "POST")) == 1
        (stored,) = sim.clients.values()
        assert stored["name"] == "ACME Portugal SA" and stored["code"] == "ODOO-17"
        assert sim.documents[int(final.remote_id)]["client"]["name"] == "ACME Portugal SA"


def seeded_client(sim, clients):
    """A client of a later run, seeded as the Odoo layer does with what earlier runs sent."""
    config = ProviderConfig(base_url=sim.base_url, credentials={"api_key": KEY}, timeout=2)
    return InvoiceXpressProvider(config, services=ClientServices(shared={"clients": dict(clients)}))


def test_customer_sent_in_an_earlier_run_costs_no_request_until_it_changes(sim):
    first = make_client(sim)
    first.prepare(document())
    remembered = dict(first.clients)  # {code: (client id, digest)}, stored by the Odoo layer
    sim.requests.clear()
    seeded_client(sim, remembered).prepare(document("INV/2025/0002"))
    assert requests_to(sim, "/clients") == [], "unchanged: neither looked up nor updated"

    moved = seeded_client(sim, remembered)
    moved.prepare(document("INV/2025/0003", partner=party(city="Porto", email="geral@acme.pt")))
    assert [r["method"] for r in requests_to(sim, "/clients")] == ["PUT"], "changed: one update"
    (stored,) = sim.clients.values()
    assert (stored["city"], stored["email"]) == ("Porto", "geral@acme.pt")
    assert moved.clients["ODOO-17"][1] != remembered["ODOO-17"][1]

    # Deleted at InvoiceXpress since: the update is refused, the customer is found or created again.
    sim.clients.clear()
    sim.requests.clear()
    seeded_client(sim, remembered).prepare(document("INV/2025/0004", partner=party(city="Faro")))
    assert [(r["method"], r["status"]) for r in requests_to(sim, "/clients")] == [
        ("PUT", 404),
        ("GET", 404),
        ("POST", 201),
    ]


def test_two_workers_creating_the_same_customer_share_one_client(sim):
    """Both looked the code up before either created it: the second POST is answered "Code
    has already been taken"; that worker takes the client the first one created."""
    first, second = make_client(sim), make_client(sim)
    first_id = first.ensure_client(party())
    sim.inject(404, path_contains="find-by-code", method="GET")  # its lookup ran before the create
    assert second.ensure_client(party()) == first_id
    taken = requests_to(sim, "/clients.json", "POST")
    assert [r["status"] for r in taken] == [201, 422], "the service refused the second create"
    assert len(sim.clients) == 1
    issue(second, document())  # and the document goes to that client
    assert sim.final_documents()[0]["client"]["id"] == first_id


def test_client_refused_for_another_reason_stays_refused(sim):
    client = make_client(sim)
    raised(ValidationError, client.ensure_client, party(zip="1050"))
    assert not sim.clients
    assert len(requests_to(sim, "find-by-code")) == 2, "looked up again before giving up"


def test_no_partner_means_final_consumer(sim):
    session = RecordingSession()
    final = issue(make_client(sim, session=session), document(partner=None))
    doc_client = sim.documents[int(final.remote_id)]["client"]
    assert doc_client["name"] == "Consumidor final" and doc_client["fiscal_id"] is None
    (sent,) = session.bodies("/invoices.json")
    assert "fiscal_id" not in sent["invoice"]["client"]


def test_no_fiscal_id_is_sent_when_vat_is_unknown(sim):
    session = RecordingSession()
    issue(make_client(sim, session=session), document(partner=party(vat=None)))
    (client_body,) = session.bodies("/clients.json")
    (document_body,) = session.bodies("/invoices.json")
    assert "fiscal_id" not in client_body["client"]
    assert "fiscal_id" not in document_body["invoice"]["client"]
    assert document_body["invoice"]["client"]["code"] == "ODOO-17"


# ---------------------------------------------------------------------------
# VAT exemption (0 % lines)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["prepare", "create"])
def test_zero_vat_line_without_exemption_is_refused_before_any_request(sim, step):
    client = make_client(sim)
    doc = document(lines=[line(), zero_line(exemption=None)])
    error = raised(ValidationError, getattr(client, step), doc)
    assert "exemption" in str(error) and "Service BOOK" in str(error)
    assert sim.requests == [] and client.calls == 0


def test_two_different_exemption_codes_on_one_document_are_refused(sim):
    client = make_client(sim)
    doc = document(lines=[zero_line("M07"), zero_line("M10", code="COURSE")])
    error = raised(ValidationError, client.create, doc)
    assert "M07" in str(error) and "M10" in str(error)
    assert sim.requests == []


def test_zero_vat_line_with_m07_sends_the_exemption(sim):
    session = RecordingSession()
    client = make_client(sim, session=session)
    final = issue(client, document(lines=[line(), zero_line("M07")]))
    (sent,) = session.bodies("/invoices.json")
    assert sent["invoice"]["tax_exemption"] == "M07"
    assert sim.documents[int(final.remote_id)]["tax_exemption"] == "M07"
    assert final.total == Decimal("81.50")


# ---------------------------------------------------------------------------
# Error taxonomy
# ---------------------------------------------------------------------------


def test_bad_api_key_is_an_authentication_error(sim):
    error = raised(AuthenticationError, make_client(sim, api_key="wrong-key").create, document())
    assert error.status == 401 and "Invalid API key" in str(error)
    assert not error.retryable


def test_bad_portuguese_postal_code_is_a_validation_error_with_the_service_message(sim):
    client = make_client(sim)
    doc = document(partner=party(zip="1100"))
    for step in (client.prepare, client.create):
        error = raised(ValidationError, step, doc)
        assert error.status == 422
        assert "Postal Code must have the following format DDDD-DDD" in str(error)
    assert sim.documents == {} and sim.clients == {}


def test_pdf_of_a_draft_is_an_invalid_state_error(sim):
    client = make_client(sim)
    draft = client.create(document())
    error = raised(InvalidStateError, client.fetch_pdf, "invoice", draft.remote_id)
    assert error.status == 406


def test_status_of_an_unknown_document_is_not_found(sim):
    error = raised(NotFoundError, make_client(sim).fetch_status, "invoice", "999")
    assert error.status == 404


def test_injected_429_is_rate_limited_with_retry_after(sim):
    sim.inject(429, retry_after=7)
    error = raised(RateLimitedError, make_client(sim).create, document())
    assert error.retry_after == 7.0 and error.retryable and isinstance(error, TransientError)
    assert sim.documents == {}


def test_rate_limit_of_the_service_is_rate_limited_error(sim):
    sim.rate_limit_per_minute = 4  # test_connection reads the taxes and the series: two requests
    client = make_client(sim)
    client.test_connection()
    client.test_connection()
    error = raised(RateLimitedError, client.test_connection)
    assert error.retry_after >= 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(sim, status):
    sim.inject(status)
    error = raised(TransientError, make_client(sim).create, document())
    assert error.status == status and error.retryable
    assert "<html" not in str(error)  # the gateway's HTML page is not a message for the user


def test_timeout_is_transient_and_quick(sim):
    sim.timeout_seconds = 3
    sim.inject("timeout")
    started = time.monotonic()
    error = raised(TransientError, make_client(sim, timeout=1).create, document())
    assert time.monotonic() - started < 2.5
    assert "timeout" in str(error)


@pytest.mark.parametrize("fault", ["reset", "malformed", "truncated"])
def test_broken_answers_are_transient(sim, fault):
    sim.inject(fault)
    raised(TransientError, make_client(sim).create, document())


def test_truncated_answer_with_nothing_to_parse_is_not_taken_as_success(sim):
    """send_email reads no body: a 200 whose body was cut short must not count as sent."""
    client = make_client(sim)
    final = issue(client, document())
    sim.inject("truncated", path_contains="email-document")
    raised(TransientError, client.send_email, "invoice", final.remote_id, "a@acme.pt", "Invoice", "Hello")
    assert sim.emails == []


def test_truncated_pdf_download_is_not_returned(sim):
    client = make_client(sim)
    final = issue(client, document())
    # "after": the real PDF is produced, and only its first half reaches the client (still starts with %PDF).
    sim.inject("truncated", path_contains="/simulator-files/", when="after")
    raised(TransientError, client.fetch_pdf, "invoice", final.remote_id)
    assert client.fetch_pdf("invoice", final.remote_id).rstrip().endswith(b"%%EOF")


def test_service_down_is_transient(sim):
    client = make_client(sim)
    sim.stop()
    error = raised(TransientError, client.test_connection)
    assert "connection failed" in str(error)


# ---------------------------------------------------------------------------
# Reconciliation after a lost answer
# ---------------------------------------------------------------------------


def test_lost_finalize_answer_is_reconciled_as_success(sim):
    client = make_client(sim)
    doc = document()
    client.prepare(doc)
    draft = client.create(doc)
    sim.inject("reset", path_contains="change-state", when="after")
    raised(TransientError, client.finalize, "invoice", draft.remote_id)
    assert sim.documents[int(draft.remote_id)]["status"] == "final"  # the service did it

    again = client.finalize("invoice", draft.remote_id)
    assert again.state == "final" and again.number == "FT A/1" and again.remote_id == draft.remote_id
    assert len(sim.final_documents()) == 1
    assert sim.final_documents()[0]["sequence_number"] == "1/A"


def payment(reference, amount="30.75"):
    return FiscalPayment(amount=Decimal(amount), date=date(2025, 1, 15), method="TB", reference=reference)


def test_find_receipt_finds_the_receipt_of_a_payment_whose_answer_was_lost(sim):
    client = make_client(sim)
    invoice = issue(client, document())  # 61.50
    assert client.find_receipt("PAY-1", invoice.remote_id) is None, "nothing paid yet"
    sim.inject("reset", path_contains="partial_payments", when="after")
    raised(TransientError, client.register_payment, "invoice", invoice.remote_id, payment("PAY-1"))
    assert len(sim.receipts) == 1  # the service did it

    found = client.find_receipt("PAY-1", invoice.remote_id)
    (stored,) = sim.receipts.values()
    assert (found.remote_id, found.number, found.state) == (str(stored["id"]), "RG A/1", "final")
    assert found.total == Decimal("30.75")
    assert requests_to(sim, f"/document/{invoice.remote_id}/related_documents.json", "GET")
    # Another payment of the same invoice is not ours.
    client.register_payment("invoice", invoice.remote_id, payment("PAY-2"))
    assert client.find_receipt("PAY-3", invoice.remote_id) is None
    assert client.find_receipt("PAY-2", invoice.remote_id).number == "RG A/2"


def test_find_receipt_needs_the_invoice_and_an_existing_one(sim):
    client = make_client(sim)
    with pytest.raises(ValueError):
        client.find_receipt("PAY-1")
    raised(NotFoundError, client.find_receipt, "PAY-1", "999")


def test_find_by_reference_finds_a_finalized_document(sim):
    client = make_client(sim)
    doc = document("INV/2025/0007", origin="S00042")
    final = issue(client, doc)
    found = client.find_by_reference(doc)
    assert found is not None
    assert (found.remote_id, found.number, found.state) == (final.remote_id, "FT A/1", "final")


def test_find_by_reference_does_not_see_drafts_or_unknown_references(sim):
    client = make_client(sim)
    doc = document("INV/2025/0008")
    client.create(doc)
    assert client.find_by_reference(doc) is None  # drafts are hidden from text search
    assert client.find_by_reference(document("INV/2025/9999")) is None


def test_find_by_reference_does_not_take_a_longer_reference_for_ours(sim):
    client = make_client(sim)
    issue(client, document("INV/2025/100001"))
    assert client.find_by_reference(document("INV/2025/10000")) is None
    assert client.find_by_reference(document("INV/2025/100001")).number == "FT A/1"


# ---------------------------------------------------------------------------
# PDF, email, cancel
# ---------------------------------------------------------------------------


def test_fetch_pdf_polls_until_ready(sim):
    sim.pdf_polls_before_ready = 2
    client = make_client(sim)
    final = issue(client, document())
    pdf = client.fetch_pdf("invoice", final.remote_id)
    assert pdf.startswith(b"%PDF")
    assert [r["status"] for r in requests_to(sim, "/api/pdf/")] == [202, 202, 200]


def test_fetch_pdf_not_ready_within_the_poll_budget(sim):
    sim.pdf_polls_before_ready = 3
    client = make_client(sim, pdf_max_polls=1)
    final = issue(client, document())
    error = raised(NotReadyError, client.fetch_pdf, "invoice", final.remote_id)
    assert error.retryable and error.retry_after
    assert len(requests_to(sim, "/api/pdf/")) == 1


def test_send_email_reaches_the_service(sim):
    client = make_client(sim)
    final = issue(client, document())
    client.send_email("invoice", final.remote_id, "billing@acme.pt", "Your invoice A/1", "Please find it attached.")
    (email,) = sim.emails
    assert email["document_id"] == int(final.remote_id)
    assert (email["email"], email["subject"]) == ("billing@acme.pt", "Your invoice A/1")


def test_cancel_final_document_with_reason(sim):
    client = make_client(sim)
    final = issue(client, document())
    canceled = client.cancel("invoice", final.remote_id, "Wrong customer")
    assert canceled.state == "canceled" and canceled.number == "FT A/1"
    stored = sim.documents[int(final.remote_id)]
    assert stored["status"] == "canceled" and stored["_cancel_message"] == "Wrong customer"


def test_cancel_of_a_draft_deletes_it(sim):
    client = make_client(sim)
    draft = client.create(document())
    assert client.cancel("invoice", draft.remote_id, "").state == "deleted"
    assert sim.documents[int(draft.remote_id)]["status"] == "deleted"


def test_cancel_of_a_final_document_needs_a_reason(sim):
    client = make_client(sim)
    final = issue(client, document())
    sim.requests.clear()
    raised(ValidationError, client.cancel, "invoice", final.remote_id, "")
    assert requests_to(sim, "change-state") == []
    assert sim.documents[int(final.remote_id)]["status"] == "final"


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------


def echo_the_key_in_errors(sim):
    """Some services quote the request (key included) in their error messages."""
    sim.fault_messages = {status: f"Refused api_key {KEY}" for status in (401, 404, 406, 422)}


def test_api_key_is_absent_from_errors_of_every_kind(sim):
    echo_the_key_in_errors(sim)
    client = make_client(sim)
    errors = []
    for fault in (401, 404, 406, 422, 429, 500, "reset", "malformed", "truncated"):
        sim.inject(fault)
        with pytest.raises(ProviderError) as info:
            client.test_connection()
        errors.append(info.value)
    sim.stop()
    with pytest.raises(ProviderError) as info:
        client.test_connection()  # requests' own error text carries the whole URL
    errors.append(info.value)
    assert len({type(e) for e in errors}) >= 6
    assert "Refused api_key ***" in str(errors[0])  # the message survives, masked
    for error in errors:
        assert KEY not in str(error) and KEY not in repr(error) and KEY not in str(error.details)


def test_api_key_is_absent_from_the_trace(sim):
    client = make_client(sim)
    final = issue(client, document())
    client.fetch_pdf("invoice", final.remote_id)
    echo_the_key_in_errors(sim)
    sim.inject(422)
    with pytest.raises(ValidationError):
        client.test_connection()
    trace = client.take_trace()
    assert "Refused api_key ***" in trace[-1].response
    assert len(trace) >= 6 and client.take_trace() == []
    assert any(exchange.request for exchange in trace) and any(exchange.response for exchange in trace)
    for exchange in trace:
        assert KEY not in exchange.path + exchange.request + exchange.response


def test_api_key_is_absent_from_debug_logs(sim, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(sim)
    final = issue(client, document())
    client.fetch_pdf("invoice", final.remote_id)

    urllib3_lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    # urllib3 logs each request line, query string included: the filter masks the key there.
    assert any("api_key=***" in message for message in urllib3_lines)
    assert KEY not in caplog.text
    assert all(KEY not in r.getMessage() for r in caplog.records)


def test_provider_config_repr_hides_credentials():
    config = ProviderConfig(base_url="https://acme.app.invoicexpress.com", credentials={"api_key": KEY})
    assert KEY not in repr(config) and KEY not in str(config)
    assert "hidden" in repr(config)


# ---------------------------------------------------------------------------
# Redactor
# ---------------------------------------------------------------------------


def test_redactor_masks_known_secrets():
    redact = Redactor([KEY, "abc"])  # too short to mask safely: ignored
    assert redact(f"Invalid key {KEY}!") == "Invalid key ***!"
    assert redact("abc stays") == "abc stays"
    assert redact(None) is None


def test_redactor_masks_the_longest_secret_whole():
    redact = Redactor(["token-1234", "token-1234-extended"])
    assert redact("got token-1234-extended") == "got ***"


def test_redactor_masks_secret_query_values_it_does_not_know():
    redact = Redactor()
    url = "GET /invoices.json?api_key=unknown-value&page=2 and ?token=t0k&password=pw"
    assert redact(url) == "GET /invoices.json?api_key=***&page=2 and ?token=***&password=***"
    assert redact("API_KEY=Zz9") == "API_KEY=***"


# ---------------------------------------------------------------------------
# test_connection
# ---------------------------------------------------------------------------


def test_connection_succeeds_with_a_message(sim):
    message = make_client(sim).test_connection()
    assert "Connected to InvoiceXpress" in message and "5 taxes" in message


def test_connection_with_a_bad_key_is_an_authentication_error(sim):
    raised(AuthenticationError, make_client(sim, api_key="not-the-key").test_connection)
