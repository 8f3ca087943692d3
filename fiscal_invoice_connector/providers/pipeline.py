"""Concurrent sending, outside the ORM (plain Python: threads never see Odoo).

The Odoo layer plans a batch (one :class:`Job` per document, with everything the provider
calls need, intent already committed), this module runs the calls, and the Odoo layer
writes the results. Three stages, so that concurrency never breaks a series:

1. make each document exist remotely (prepare, probe, create) — all in parallel, except
   for providers whose documents are final on creation (a series!): those go in stage 2;
2. make it final, date by date (a series refuses a document dated before its last final
   one: documents of one date run in parallel, dates in order);
3. follow-ups (PDF, XML, email, settle) — all in parallel.

Calls are paced per account by a token bucket fed by the provider's published limit and
its rate-limit headers, so a backlog drains at the provider's budget without a 429.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from .base import AuthenticationError, ProviderError, TotalsMismatchError


class TokenBucket:
    """``rate`` calls per ``per`` seconds, at most ``burst`` at once; thread-safe."""

    def __init__(self, rate, per=60.0, burst=None, clock=time.monotonic, sleep=time.sleep):
        self.rate = float(rate)
        self.per = float(per)
        self.capacity = float(burst if burst is not None else max(1.0, rate / 10))
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep
        self.updated = clock()
        self.lock = threading.Lock()
        self.waited = 0.0
        self.acquired = 0

    def _refill(self):
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate / self.per)
        self.updated = now

    def acquire(self):
        while True:
            with self.lock:
                self._refill()
                if self.tokens >= 1:
                    self.tokens -= 1
                    self.acquired += 1
                    return
                wait = (1 - self.tokens) * self.per / self.rate
            self.waited += wait
            self.sleep(wait)

    def observe(self, remaining=None, reset=None):
        """The provider said how much is left: never believe we have more than that."""
        if remaining is None:
            return
        with self.lock:
            self._refill()
            self.tokens = min(self.tokens, float(remaining))
            if remaining <= 0 and reset:
                # Nothing left until the window resets: schedule the refill from then.
                self.updated = self.clock() + float(reset)


@dataclass
class Job:
    """One document's provider work, planned by the Odoo layer."""

    doc_id: int
    account_id: int
    kind: str  # the provider document type (invoice, invoice_receipt, credit_note...)
    data: object  # FiscalDocumentData (None when the remote document exists already)
    date: object  # document date: finalization order
    mode: str = "finalize"
    remote_id: str | None = None
    remote_state: str | None = None
    number: str | None = None
    probe: bool = False  # a create may have reached the provider: look by reference first
    create_attempted: bool = False  # the create request was (about to be) sent
    expected_total: object = None
    tolerance: object = 0
    want_pdf: bool = False
    want_xml: bool = False
    email: tuple | None = None  # (address, subject, body)
    settle: bool = False
    # Results
    remote: object = None
    pdf: bytes | None = None
    xml: bytes | None = None
    emailed: bool = False
    settled: bool = False
    waiting: bool = False
    error: Exception | None = None
    failed_stage: str | None = None
    trace: list = field(default_factory=list)
    calls: int = 0


class Pipeline:
    """Runs planned jobs through the three stages with ``concurrency`` threads."""

    def __init__(self, make_client, concurrency=8, limiters=None):
        self.make_client = make_client  # account_id -> a new provider client (config only)
        self.concurrency = max(1, int(concurrency))
        self.limiters = limiters or {}  # account_id -> TokenBucket
        self.local = threading.local()
        self.shared = defaultdict(dict)  # account_id -> cache shared by its clients (remote client ids)
        self.refused = {}  # account_id -> the AuthenticationError that stopped its jobs

    # -- clients: one per thread and account, each with its own pooled session ----------
    def _client(self, account_id):
        clients = getattr(self.local, "clients", None)
        if clients is None:
            clients = self.local.clients = {}
        client = clients.get(account_id)
        if client is None:
            client = self.make_client(account_id)
            client.session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4)
            client.session.mount("http://", adapter)
            client.session.mount("https://", adapter)
            limiter = self.limiters.get(account_id)
            if limiter is not None:
                client.throttle = limiter.acquire
                client.observe_rate = limiter.observe
            if hasattr(client, "client_ids"):
                client.client_ids = self.shared[account_id].setdefault("client_ids", {})
            clients[account_id] = client
        return client

    def _run(self, jobs, step, name):
        def guarded(job):
            if job.error is not None or job.waiting:
                return
            if job.account_id in self.refused:
                # Credentials refused: the account's other documents are not even tried.
                job.error, job.failed_stage = self.refused[job.account_id], name
                return
            client = self._client(job.account_id)
            calls = client.calls
            try:
                step(client, job)
            except AuthenticationError as e:
                self.refused.setdefault(job.account_id, e)
                job.error, job.failed_stage = e, name
            except ProviderError as e:
                job.error, job.failed_stage = e, name
            except Exception as e:  # noqa: BLE001 - reported on the document, never lost
                job.error, job.failed_stage = e, name
            finally:
                job.calls += client.calls - calls
                job.trace.extend(client.take_trace())

        if not jobs:
            return
        if self.concurrency == 1 or len(jobs) == 1:
            for job in jobs:
                guarded(job)
            return
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool:
            list(pool.map(guarded, jobs))

    def run(self, jobs):
        final_on_create = [j for j in jobs if "draft" not in self._client(j.account_id).capabilities]
        drafts_first = [j for j in jobs if j not in final_on_create]
        # Stage 0: what documents refer to (the customer) is made to exist once per account and
        # customer, before documents race to create it twice.
        first = {}
        for job in jobs:
            if job.data is not None and not job.remote_id:
                party = getattr(job.data, "partner", None)
                first.setdefault((job.account_id, party.code if party else None), job)
        self._run(list(first.values()), lambda client, job: client.prepare(job.data), "prepare")
        # Stage 1: documents that start as drafts (or async requests) are created in parallel.
        self._run([j for j in drafts_first if not j.remote_id], self._create, "create")
        # Stage 2: final, date by date (series order); final-on-create providers create here.
        by_date = defaultdict(list)
        for job in jobs:
            by_date[job.date].append(job)
        for day in sorted(by_date, key=lambda d: (d is None, d)):
            self._run(by_date[day], self._finalize, "finalize")
        # Stage 3: follow-ups in parallel.
        self._run(jobs, self._follow_ups, "follow-ups")
        return jobs

    # -- steps (provider calls only) ---------------------------------------------
    def _create(self, client, job):
        client.prepare(job.data)
        if job.probe and "find_by_reference" in client.capabilities:
            found = client.find_by_reference(job.data)
            if found:
                job.remote, job.remote_id, job.remote_state = found, found.remote_id, found.state
                return
        job.create_attempted = True
        try:
            remote = client.create(job.data)
        except ProviderError as e:
            remote = client.find_by_reference(job.data) if e.kind == "duplicate" else None
            if not remote:
                raise
        job.remote, job.remote_id, job.remote_state = remote, remote.remote_id, remote.state

    def _finalize(self, client, job):
        if not job.remote_id:
            self._create(client, job)  # final on creation (e.g. Vendus): in date order
        if job.mode == "draft" or job.remote_state in ("final", "settled"):
            return
        if (
            job.remote_state == "draft"
            and job.expected_total is not None
            and job.remote
            and job.remote.total is not None
        ):
            if abs(job.remote.total - job.expected_total) > job.tolerance:
                raise TotalsMismatchError(
                    f"Totals differ: Odoo {job.expected_total}, {client.label} {job.remote.total}.",
                    details=[{"odoo": str(job.expected_total), "provider": str(job.remote.total)}],
                )
        remote = client.finalize(job.kind, job.remote_id)
        job.remote, job.remote_state = remote, remote.state
        if remote.state == "pending":
            job.waiting = True

    def _follow_ups(self, client, job):
        if job.mode == "draft" or job.remote_state not in ("final", "settled"):
            return
        if job.want_pdf and job.pdf is None:
            job.xml = client.fetch_xml(job.kind, job.remote_id) if job.want_xml else None
            job.pdf = client.fetch_pdf(job.kind, job.remote_id)
        if job.email and not job.emailed:
            address, subject, body = job.email
            number = (job.remote.number if job.remote is not None else None) or job.number or ""
            client.send_email(
                job.kind, job.remote_id, address, subject.replace("{number}", number), body.replace("{number}", number)
            )
            job.emailed = True
        if job.settle and not job.settled:
            client.settle(job.kind, job.remote_id)
            job.settled = True
