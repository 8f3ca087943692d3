"""The concurrent pipeline (providers.pipeline), plain Python against the simulators over real HTTP.

What the Odoo layer relies on: the token bucket paces calls (fake clock, no waiting); many
documents go out much faster at concurrency 8 than one by one; a series is finalized date by
date; a customer is created once per account; a refused key stops its account after one 401;
a bucket set to the provider's budget sees no 429; and a job is data in, data out.
"""

import ast
import copy
import random
import threading
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fiscal_simulators.invoicexpress import InvoiceXpressSimulator
from fiscal_simulators.vendus import VendusSimulator

from odoo.addons.fiscal_invoice_connector.providers import invoicexpress
from odoo.addons.fiscal_invoice_connector.providers.base import (
    AuthenticationError,
    ClientServices,
    FiscalDocumentData,
    FiscalLine,
    FiscalParty,
    NotReadyError,
    ProviderConfig,
    RemoteDocument,
)
from odoo.addons.fiscal_invoice_connector.providers.invoicexpress import InvoiceXpressProvider
from odoo.addons.fiscal_invoice_connector.providers.pipeline import Job, Pipeline, TimeBudget, TokenBucket
from odoo.addons.fiscal_invoice_connector.providers.vendus import VendusProvider

KEY = "pl-Secret-Key-31c8e0"
NIF = "509442013"  # a valid Portuguese NIF (check digit)
TODAY = date.today()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class FakeClock:
    """``time.monotonic`` and ``time.sleep`` for a bucket: sleeping only moves the clock."""

    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        if len(self.slept) > 10_000:
            raise AssertionError("the bucket keeps sleeping: it never gets its token")
        self.now += seconds


def party(code="ODOO-C1", name="ACME Lda"):
    return FiscalParty(
        code=code,
        name=name,
        vat=NIF,
        country_code="PT",
        country_name="Portugal",
        email="a@acme.pt",
        street="Av. Saldanha 1",
        city="Lisboa",
        zip="1050-555",
        is_company=True,
    )


def document(n, day=TODAY, customer="ODOO-C1"):
    return FiscalDocumentData(
        reference=f"ODOO-pipeline-{n}",
        kind="invoice",
        date=day,
        due_date=day + timedelta(days=30),
        currency="EUR",
        lines=[
            FiscalLine(
                code="SRV1",
                description="Service",
                quantity=Decimal("2"),
                unit_price=Decimal("10"),
                tax_name="IVA23",
                tax_rate=Decimal("23"),
            )
        ],
        partner=party(customer, f"Customer {customer}"),
        origin=f"S{n:05d}",
    )


def job(n, account_id=1, day=TODAY, customer="ODOO-C1", **kw):
    return Job(doc_id=n, account_id=account_id, kind="invoice", data=document(n, day, customer), date=day, **kw)


def ix_factory(sim, key=KEY, **options):
    def make(services=None):
        config = ProviderConfig(
            base_url=sim.base_url,
            credentials={"api_key": key},
            timeout=5,
            # These simulators render PDFs at once (pdf_render_seconds 0): no wait before the first poll.
            options={"pdf_poll_interval": 0.01, "pdf_ready_after": 0.0, **options},
        )
        return InvoiceXpressProvider(config, services=services)

    return make


def vendus_factory(sim):
    def make(services=None):
        config = ProviderConfig(
            base_url=sim.base_url,
            credentials={"api_key": KEY},
            timeout=5,
            options={"register_id": 1, "payment_methods": {"TB": 1, "NU": 2, "CC": 3}},
        )
        return VendusProvider(config, services=services)

    return make


def pipeline(factories, concurrency=8, limiters=None):
    """``factories``: account id -> a function making a new client from the engine's services
    (session, throttle, rate observer: what the Odoo layer passes)."""
    return Pipeline(lambda account_id, services: factories[account_id](services), concurrency, limiters)


def statuses(sim, status):
    return [r for r in sim.requests if r["status"] == status]


def requests_to(sim, fragment, method=None):
    return [r for r in sim.requests if fragment in r["path"] and (method is None or r["method"] == method)]


@pytest.fixture
def ix():
    with InvoiceXpressSimulator(api_key=KEY, rate_limit_per_minute=None, pdf_polls_before_ready=0) as sim:
        yield sim


# ---------------------------------------------------------------------------
# TokenBucket (fake clock)
# ---------------------------------------------------------------------------


def test_bucket_paces_calls_at_its_rate():
    clock = FakeClock()
    bucket = TokenBucket(60, per=60.0, burst=1, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(11):
        bucket.acquire()
    # One call at once (the burst), then one per second.
    assert clock.now - start == pytest.approx(10.0)
    assert bucket.acquired == 11
    assert bucket.waited == pytest.approx(10.0)


def test_bucket_burst_is_free_then_the_rate_applies():
    clock = FakeClock()
    bucket = TokenBucket(10, per=1.0, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        bucket.acquire()
    assert clock.slept == []
    for _ in range(10):
        bucket.acquire()
    assert clock.now - 1000.0 == pytest.approx(1.0)


def test_bucket_never_saves_more_than_its_burst():
    clock = FakeClock()
    bucket = TokenBucket(10, per=1.0, burst=3, clock=clock, sleep=clock.sleep)
    clock.now += 3600  # idle for an hour
    for _ in range(3):
        bucket.acquire()
    assert clock.slept == []
    bucket.acquire()
    assert sum(clock.slept) == pytest.approx(0.1)


def test_bucket_believes_the_provider_when_nothing_is_left():
    clock = FakeClock()
    bucket = TokenBucket(100, per=60.0, burst=10, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    # Rate-Limit-Remaining: 0, reset in 5 s: no call before the window resets.
    bucket.observe(remaining=0, reset=5)
    before = clock.now
    bucket.acquire()
    assert clock.now - before >= 5.0
    # A larger remaining never adds tokens.
    clock2 = FakeClock()
    bucket2 = TokenBucket(60, per=60.0, burst=1, clock=clock2, sleep=clock2.sleep)
    bucket2.acquire()
    bucket2.observe(remaining=50)
    bucket2.acquire()
    assert sum(clock2.slept) == pytest.approx(1.0)
    # No header: nothing changes.
    bucket2.observe(remaining=None)
    assert bucket2.tokens <= 1


def _most_in_a_window(bucket, clock, calls, window):
    times = []
    for _ in range(calls):
        bucket.acquire()
        times.append(clock.now)
    # Largest number of calls in any sliding window (start, start + window].
    return max(sum(1 for t in times if start - window < t <= start) for start in times)


def test_bucket_for_a_budget_never_exceeds_it_in_any_window():
    clock = FakeClock()
    bucket = TokenBucket.for_budget(100, per=60.0, clock=clock, sleep=clock.sleep)
    most = _most_in_a_window(bucket, clock, 300, 60.0)
    # Within the budget, and close to it (98 %: room for the network's jitter).
    assert 95 <= most <= 100
    # Starts empty: the previous batch may have used the minute just before.
    assert clock.slept[0] == pytest.approx(60 / 98)
    # A shortened window (10 calls per 6 s) is the same budget: the bucket holds it too.
    clock = FakeClock()
    bucket = TokenBucket.for_budget(10, per=6.0, clock=clock, sleep=clock.sleep)
    assert _most_in_a_window(bucket, clock, 60, 6.0) <= 10
    # Whereas a burst of rate/10 on top of the rate overflows a 100/minute window.
    clock = FakeClock()
    assert _most_in_a_window(TokenBucket(100, per=60.0, clock=clock, sleep=clock.sleep), clock, 300, 60.0) > 100


def test_bucket_is_thread_safe():
    bucket = TokenBucket(2000, per=1.0, burst=1)
    started = time.monotonic()

    def take():
        for _ in range(25):
            bucket.acquire()

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bucket.acquired == 200
    # 199 tokens at 2000/s: at least ~0.1 s, whatever the interleaving.
    assert time.monotonic() - started >= 0.09


# ---------------------------------------------------------------------------
# Pipeline against the simulators
# ---------------------------------------------------------------------------


def _issue_batch(concurrency, count=12, latency=0.03):
    with InvoiceXpressSimulator(
        api_key=KEY, rate_limit_per_minute=None, pdf_polls_before_ready=0, latency=latency
    ) as sim:
        jobs = [job(n, customer=f"ODOO-C{n % 3}", want_pdf=True) for n in range(count)]
        started = time.monotonic()
        pipeline({1: ix_factory(sim)}, concurrency).run(jobs)
        elapsed = time.monotonic() - started
        assert all(j.error is None and j.remote_state == "final" and j.pdf.startswith(b"%PDF") for j in jobs)
        assert len(sim.final_documents()) == count
        return elapsed


def test_concurrency_8_is_far_faster_than_one_by_one():
    sequential = _issue_batch(concurrency=1)
    concurrent = _issue_batch(concurrency=8)
    # 12 documents x 4 requests + 3 customers at 30 ms: ~1.6 s one by one, a few rounds at 8.
    assert sequential / concurrent >= 3, (sequential, concurrent)


def test_documents_are_finalized_date_by_date(ix):
    days = [TODAY - timedelta(days=k) for k in (6, 4, 2, 0)]
    jobs = [job(n, day=days[n % 4], customer=f"ODOO-C{n % 2}") for n in range(16)]
    random.Random(7).shuffle(jobs)
    pipeline({1: ix_factory(ix)}, concurrency=8).run(jobs)
    assert [j.error for j in jobs if j.error] == []
    assert all(j.remote_state == "final" for j in jobs)
    # The series numbers follow the dates: number order == date order.
    finals = sorted(ix.final_documents(), key=lambda d: int(d["sequence_number"].split("/")[0]))
    assert len(finals) == 16
    dates = [d["_date"] for d in finals]
    assert dates == sorted(dates)
    assert not [r for r in ix.requests if r["status"] == 422]


def test_final_on_create_documents_are_created_date_by_date():
    """Vendus numbers a document when it is created: creation itself goes date by date."""
    days = sorted({max(TODAY - timedelta(days=k), date(TODAY.year, 1, 1)) for k in (3, 2, 1, 0)})
    with VendusSimulator(api_key=KEY, rate_limit=None) as sim:
        jobs = [job(n, day=days[n % len(days)], customer=f"ODOO-C{n % 2}", want_pdf=True) for n in range(12)]
        random.Random(3).shuffle(jobs)
        pipeline({1: vendus_factory(sim)}, concurrency=8).run(jobs)
        assert [j.error for j in jobs if j.error] == []
        docs = sorted(sim.documents.values(), key=lambda d: int(d["number"].rsplit("/", 1)[1]))
        assert len(docs) == 12
        assert [d["date"] for d in docs] == sorted(d["date"] for d in docs)
        assert not [r for r in sim.requests if r["status"] not in (200, 201)]
        # Final on creation: one call per document, plus its PDF.
        assert len(requests_to(sim, "/documents", "POST")) == 12
        assert sum(j.calls for j in jobs) == 24


def test_one_customer_creation_per_account_and_customer():
    with (
        InvoiceXpressSimulator(api_key=KEY, rate_limit_per_minute=None, latency=0.01) as sim_a,
        InvoiceXpressSimulator(api_key=KEY, rate_limit_per_minute=None, latency=0.01) as sim_b,
    ):
        jobs = [job(n, account_id=1 + n % 2, customer=f"ODOO-C{n % 3}") for n in range(24)]
        pipeline({1: ix_factory(sim_a), 2: ix_factory(sim_b)}, concurrency=8).run(jobs)
        assert [j.error for j in jobs if j.error] == []
        for sim in (sim_a, sim_b):
            assert len(requests_to(sim, "/clients.json", "POST")) == 3
            assert len(requests_to(sim, "/clients/find-by-code.json")) == 3
            assert len(sim.clients) == 3
            assert len(sim.final_documents()) == 12
            # create + finalize per document, the three customers once: nothing else.
            assert len(requests_to(sim, "/taxes.json")) <= 1  # the account's taxes, once per process
            assert len(sim.requests) == 12 * 2 + 3 * 2 + len(requests_to(sim, "/taxes.json"))


def test_a_refused_key_stops_its_account_after_one_401():
    with (
        InvoiceXpressSimulator(api_key="the-real-key", rate_limit_per_minute=None, latency=0.02) as refused,
        InvoiceXpressSimulator(api_key=KEY, rate_limit_per_minute=None, latency=0.02) as fine,
    ):
        # Several customers on the refused account: their customer steps would all run at once.
        jobs = [job(n, account_id=1 + n % 2, customer=f"ODOO-C{n % 5}", want_pdf=True) for n in range(20)]
        jobs.append(job(99, account_id=1, want_pdf=True, remote_id="1000001", remote_state="final"))
        jobs[-1].data = None  # follow-ups only
        runner = pipeline({1: ix_factory(refused), 2: ix_factory(fine)}, concurrency=8)
        runner.run(jobs)
        assert len(statuses(refused, 401)) == 1
        assert len(refused.requests) == 1
        assert isinstance(runner.refused[1], AuthenticationError)
        mine = [j for j in jobs if j.account_id == 1]
        assert all(isinstance(j.error, AuthenticationError) for j in mine)
        assert not any(j.create_attempted for j in mine)
        # The other account is not affected.
        others = [j for j in jobs if j.account_id == 2]
        assert all(j.error is None and j.remote_state == "final" and j.pdf for j in others)


def test_a_bucket_set_to_the_budget_sees_no_429():
    """10 requests per 1 s sliding window (a minute, shortened); the bucket at that budget."""
    with InvoiceXpressSimulator(api_key=KEY, rate_limit_per_minute=10, pdf_polls_before_ready=0) as sim:
        sim.rate_window = 1.0
        jobs = [job(n, customer=f"ODOO-C{n % 2}") for n in range(10)]
        bucket = TokenBucket.for_budget(10, per=1.0)
        started = time.monotonic()
        pipeline({1: ix_factory(sim)}, concurrency=8, limiters={1: bucket}).run(jobs)
        elapsed = time.monotonic() - started
        assert statuses(sim, 429) == []
        assert [j.error for j in jobs if j.error] == []
        calls = len(sim.requests)
        assert len(requests_to(sim, "/taxes.json")) <= 1  # the account's taxes, once per process
        assert calls == 10 * 2 + 2 * 2 + len(requests_to(sim, "/taxes.json"))
        # Paced by the bucket, and close to the budget (not far slower).
        assert calls / 10 * 0.9 <= elapsed <= calls / 10 * 1.5 + 0.5, elapsed


def test_an_unpaced_burst_does_get_429():
    """The control of the test above: the same batch without the bucket exceeds the budget."""
    with InvoiceXpressSimulator(api_key=KEY, rate_limit_per_minute=10, pdf_polls_before_ready=0) as sim:
        sim.rate_window = 1.0
        jobs = [job(n, customer=f"ODOO-C{n % 2}") for n in range(10)]
        pipeline({1: ix_factory(sim)}, concurrency=8).run(jobs)
        assert statuses(sim, 429)


def test_pdfs_are_asked_for_once_rendered_so_the_first_poll_answers():
    """InvoiceXpress renders a PDF after finalizing: the batch waits that delay once after its last
    finalization, then every document's first poll answers 200 (no 202 spent on the budget)."""
    with InvoiceXpressSimulator(
        api_key=KEY, rate_limit_per_minute=None, pdf_polls_before_ready=0, pdf_render_seconds=0.3
    ) as sim:
        jobs = [job(n, want_pdf=True) for n in range(6)]
        started = time.monotonic()
        pipeline({1: ix_factory(sim, pdf_ready_after=0.4)}, concurrency=3).run(jobs)
        assert all(j.error is None and j.pdf.startswith(b"%PDF") for j in jobs)
        assert [r["status"] for r in requests_to(sim, "/api/pdf/")] == [200] * 6
        assert time.monotonic() - started < 2.0, "one pause for the batch, not one per document"


def test_pdfs_being_rendered_are_polled_in_rounds():
    """InvoiceXpress answers 202 while it renders a PDF: every such document is asked again after
    one pause (not one sleeping thread per document), as many times as the client would poll."""
    with InvoiceXpressSimulator(api_key=KEY, rate_limit_per_minute=None, pdf_polls_before_ready=2) as sim:
        jobs = [job(n, want_pdf=True) for n in range(24)]
        factory = ix_factory(sim, pdf_poll_interval=0.3, pdf_max_polls=3)
        started = time.monotonic()
        pipeline({1: factory}, concurrency=4).run(jobs)
        elapsed = time.monotonic() - started
        assert all(j.error is None and j.pdf.startswith(b"%PDF") for j in jobs)
        assert len(requests_to(sim, "/api/pdf/")) == 24 * 3
        # Two pauses in all; a thread sleeping per document would take 24 / 4 x 2 x 0.3 = 3.6 s.
        assert elapsed < 2.0, elapsed
    with InvoiceXpressSimulator(api_key=KEY, rate_limit_per_minute=None, pdf_polls_before_ready=5) as sim:
        jobs = [job(n, want_pdf=True) for n in range(4)]
        pipeline({1: ix_factory(sim, pdf_max_polls=3)}, concurrency=4).run(jobs)
        # Still not rendered after the client's 3 polls: the document comes back later (retry_after).
        assert all(isinstance(j.error, NotReadyError) and j.error.retry_after for j in jobs)
        assert all(j.remote_state == "final" for j in jobs)
        assert len(requests_to(sim, "/api/pdf/")) == 4 * 3


def test_jobs_are_data_in_data_out(ix):
    # The module knows nothing of Odoo: only the standard library, requests and the provider base.
    source = Path(__import__(Pipeline.__module__, fromlist=["Pipeline"]).__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or "").split(".")[0])
    allowed = {"__future__", "threading", "time", "collections", "concurrent", "dataclasses", "requests", ".base"}
    assert imported <= allowed
    # The factory gets an account id and the engine's services (constructor arguments of the
    # client, nothing patched afterwards); inputs come back unchanged.
    asked = []

    def make_client(account_id, services):
        asked.append(account_id)
        assert isinstance(services, ClientServices) and services.session is not None
        client = ix_factory(ix)(services)
        assert client.session is services.session
        return client

    jobs = [job(n, customer=f"ODOO-C{n % 2}", want_pdf=True) for n in range(6)]
    inputs = copy.deepcopy([j.data for j in jobs])
    Pipeline(make_client, 8).run(jobs)
    assert set(asked) == {1}
    assert [j.data for j in jobs] == inputs
    for j in jobs:
        assert isinstance(j.remote, RemoteDocument) and isinstance(j.pdf, bytes) and j.error is None
        assert all(type(x).__name__ == "Exchange" for x in j.trace)
    # Every request the provider saw was made by a job, and counted on it.
    assert sum(j.calls for j in jobs) == len(ix.requests)
    assert sum(len(j.trace) for j in jobs) == len([r for r in ix.requests if "/simulator-files/" not in r["path"]])


# ---------------------------------------------------------------------------
# The engine's rules: time budget, unknown outcomes
# ---------------------------------------------------------------------------


def test_time_budget_takes_only_what_fits_then_nothing():
    clock = FakeClock()
    budget = TimeBudget(120, seconds_per_document=2.0, clock=clock)  # plans 60 s of the 120 s limit
    # Nothing measured yet: the conservative estimate.
    assert budget.slice(50) == 30
    assert budget.slice(10) == 10
    clock.now += 8 * 1.5
    budget.record(8, 8 * 1.5)  # 1.5 s per document, measured
    # 48 s left at 1.5 s per document: 32 documents.
    assert budget.slice(50) == 32
    # A slower slice (a paced account, slow answers): the estimate follows the slowest.
    clock.now += 20
    budget.record(4, 20)
    assert budget.per_document >= 3.25
    assert budget.slice(50) == int(28 / budget.per_document)
    clock.now += 30
    assert budget.left() == 0
    assert budget.slice(50) == 0
    # A tiny budget still takes one document (else the queue would stall for ever).
    assert TimeBudget(1, seconds_per_document=30, clock=FakeClock()).slice(50) == 1
    # An account's published budget: 100 requests a minute, ~4 per document, 60 s planned.
    assert TimeBudget(120, clock=FakeClock()).rate_cap(100) == 25
    assert TimeBudget(120, clock=FakeClock()).rate_cap(0) is None
    assert TimeBudget(2, clock=FakeClock()).rate_cap(10) == 1
    # A run started earlier (Odoo: the cron job's start) has less left.
    clock = FakeClock()
    assert TimeBudget(120, clock=clock, started=clock.now - 50).left() == pytest.approx(10)


class _Unsearchable(InvoiceXpressProvider):
    """A provider whose documents cannot be found by our reference."""

    capabilities = InvoiceXpressProvider.capabilities - {"find_by_reference"}


def unsearchable_factory(sim):
    def make(services=None):
        config = ProviderConfig(base_url=sim.base_url, credentials={"api_key": KEY}, timeout=5, options={})
        return _Unsearchable(config, services=services)

    return make


def test_an_unknown_create_outcome_that_cannot_be_searched_is_parked_not_resent(ix):
    ix.inject("reset", path_contains="/invoices.json", method="POST", when="after")
    lost = job(1)
    pipeline({1: unsearchable_factory(ix)}, concurrency=1).run([lost])
    assert lost.unknown and "cannot be searched" in lost.unknown
    assert len(requests_to(ix, "/invoices.json", "POST")) == 1
    # The next attempt (create_sent: probe) must not create again: parked at once.
    again = job(1, probe=True)
    pipeline({1: unsearchable_factory(ix)}, concurrency=1).run([again])
    assert again.unknown and not again.create_attempted
    assert len(requests_to(ix, "/invoices.json", "POST")) == 1


def test_an_email_whose_answer_is_lost_is_never_sent_again(ix):
    ix.inject("reset", path_contains="/email-document", method="PUT", when="after")
    mailed = job(1, email=("a@acme.pt", "Invoice {number}", "Hello"))
    pipeline({1: ix_factory(ix)}, concurrency=1).run([mailed])
    assert mailed.email_unknown and not mailed.emailed
    assert len(ix.emails) == 1
    assert len(requests_to(ix, "/email-document")) == 1
    # A 429 says nothing was done: that one is retried later, not parked.
    ix.inject(429, path_contains="/email-document", method="PUT")
    limited = job(2, email=("a@acme.pt", "Invoice {number}", "Hello"))
    pipeline({1: ix_factory(ix)}, concurrency=1).run([limited])
    assert not limited.email_unknown and limited.error is not None and limited.error.kind == "rate_limited"


def test_one_document_or_many_go_through_the_same_stages(ix):
    """Concurrency 1 is the same code without threads: same requests, same results."""
    single = [job(n, customer="ODOO-C1", want_pdf=True) for n in range(3)]
    pipeline({1: ix_factory(ix)}, concurrency=1).run(single)
    by_one = sorted((r["method"], r["path"].split("?")[0].rstrip("0123456789")) for r in ix.requests)
    ix.reset()
    invoicexpress._TAXES_CACHE.clear()  # the account's taxes are read once per process and account
    many = [job(n + 10, customer="ODOO-C1", want_pdf=True) for n in range(3)]
    pipeline({1: ix_factory(ix)}, concurrency=8).run(many)
    by_many = sorted((r["method"], r["path"].split("?")[0].rstrip("0123456789")) for r in ix.requests)
    assert all(j.error is None and j.pdf for j in single + many)
    assert len(by_one) == len(by_many)
