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

from .base import AuthenticationError, NotReadyError, ProviderError, TotalsMismatchError


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

    @classmethod
    def for_budget(cls, calls, per=60.0, margin=0.02, **kwargs):
        """A bucket that stays within "``calls`` per ``per`` seconds" however the provider counts
        them (a sliding window too), and still uses (1 - ``margin``) of it: no burst, and it starts
        empty (the previous batch may have spent the window's budget just before). A burst of
        rate/10 on top of the full rate would put 110 calls in some minute of a 100/minute budget."""
        bucket = cls(calls * (1 - margin), per=per, burst=1, **kwargs)
        bucket.tokens = 0.0
        return bucket

    def _refill(self):
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate / self.per)
        self.updated = now

    def acquire(self):
        while True:
            with self.lock:
                self._refill()
                # (Float rounding leaves 0.999...: a wait of 1e-16 s would never move a clock.)
                if self.tokens >= 1 - 1e-9:
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

    def __init__(self, make_client, concurrency=8, limiters=None, checkpoint=None):
        self.make_client = make_client  # account_id -> a new provider client (config only)
        self.concurrency = max(1, int(concurrency))
        self.limiters = limiters or {}  # account_id -> TokenBucket
        self.local = threading.local()
        self.shared = defaultdict(dict)  # account_id -> cache shared by its clients (remote client ids)
        self.refused = {}  # account_id -> the AuthenticationError that stopped its jobs
        # Called in the caller's thread as each job ends a stage, so that what the provider did
        # is recorded at once: a crash mid-batch then only redoes the calls that were in flight.
        self.checkpoint = checkpoint
        # An account's first contact is made by one job alone: a refused key costs one call.
        self.contact = threading.Condition()
        self.contacted = {}  # account_id -> "talking" (one job is on it) | "done" (it answered)
        self.pool = None  # one thread pool for every stage: threads keep their clients and connections
        self.pdf_polls = {}  # account_id -> (polls, seconds between polls) of a PDF still being rendered

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
            if hasattr(client, "pdf_max_polls"):
                # A PDF still being rendered is asked again by run(), in rounds: no thread sleeps
                # between two polls of one document while the others wait behind it.
                self.pdf_polls[account_id] = (max(1, client.pdf_max_polls), client.pdf_poll_interval)
                client.pdf_max_polls = 1
            clients[account_id] = client
        return client

    def _first_contact(self, account_id):
        """True for the job that talks to this account first (the others wait until it has an
        answer: if the key is refused, they are not even tried)."""
        with self.contact:
            while True:
                state = self.contacted.get(account_id)
                if state is None:
                    self.contacted[account_id] = "talking"
                    return True
                if state == "done":
                    return False
                self.contact.wait()

    def _end_contact(self, account_id, answered):
        with self.contact:
            # No call made (nothing to do, or a local error): the next job makes the first contact.
            self.contacted[account_id] = "done" if answered else None
            self.contact.notify_all()

    def _run(self, jobs, step, name):
        def guarded(job):
            if job.error is not None or job.waiting:
                return
            first, answered = self._first_contact(job.account_id), False
            try:
                if job.account_id in self.refused:
                    # Credentials refused: the account's other documents are not even tried.
                    job.error, job.failed_stage = self.refused[job.account_id], name
                    answered = True
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
                    answered = client.calls > calls or job.account_id in self.refused
            finally:
                if first:
                    self._end_contact(job.account_id, answered)

        if not jobs:
            return
        if self.pool is None or len(jobs) == 1:
            for job in jobs:
                guarded(job)
                self._checkpoint(job)
            return
        # map() yields in order as the jobs end: the checkpoints run here, never in a thread.
        for job, _done in zip(jobs, self.pool.map(guarded, jobs), strict=True):
            self._checkpoint(job)

    def _checkpoint(self, job):
        if self.checkpoint is not None:
            self.checkpoint(job)

    def run(self, jobs):
        if self.concurrency > 1 and len(jobs) > 1:
            self.pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs)))
        try:
            return self._stages(jobs)
        finally:
            if self.pool is not None:
                self.pool.shutdown()
                self.pool = None

    def _stages(self, jobs):
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
        # Stage 3: follow-ups in parallel; PDFs not rendered yet (InvoiceXpress: 202) are asked
        # again, all of them after one pause, as many times as the client would have polled.
        self._run(jobs, self._follow_ups, "follow-ups")
        for poll in range(1, max((polls for polls, _pause in self.pdf_polls.values()), default=1)):
            later = [
                j
                for j in jobs
                if isinstance(j.error, NotReadyError)
                and j.failed_stage == "follow-ups"
                and poll < self.pdf_polls.get(j.account_id, (1, 0))[0]
            ]
            if not later:
                break
            time.sleep(max(self.pdf_polls[j.account_id][1] for j in later))
            for j in later:
                j.error = j.failed_stage = None
            self._run(later, self._follow_ups, "follow-ups")
        # Emails last, one checkpoint each: an email is the one step nobody can take back.
        self._run([j for j in jobs if j.email and not j.emailed], self._email, "email")
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
        if job.settle and not job.settled:
            client.settle(job.kind, job.remote_id)
            job.settled = True

    def _email(self, client, job):
        if job.mode == "draft" or job.remote_state not in ("final", "settled"):
            return
        if job.email and not job.emailed:
            address, subject, body = job.email
            number = (job.remote.number if job.remote is not None else None) or job.number or ""
            client.send_email(
                job.kind, job.remote_id, address, subject.replace("{number}", number), body.replace("{number}", number)
            )
            job.emailed = True
