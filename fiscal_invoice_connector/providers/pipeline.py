"""The issuing engine: one state machine for every fiscal document, outside the ORM.

Plain Python (threads never see Odoo). The Odoo layer (``fiscal.document._process_batch``, the
runner) claims documents, plans one :class:`Job` per document with everything the provider calls
need (intent already committed), runs this engine, and writes each result back under the
document's lease token. The engine never touches a database: it calls the provider and records
what happened on the job; every decision that needs the database is the runner's.

One path for one document or many (concurrency 1 runs the same code without a thread pool).
Per provider capabilities, a job goes through:

0. ``prepare`` what documents refer to (the customer), once per account and customer;
1. ``replace`` a draft whose totals differed (deleted at the provider, then created again);
   ``create`` documents that start as drafts or asynchronous requests (in parallel), probing by
   reference first when an earlier create may have reached the provider; data-only jobs send
   the customer only;
2. ``finalize`` date by date (a series refuses a document dated before its last final one);
   documents final on creation (Vendus) and receipts are created here; asynchronous providers
   (eNotas, InvoiCy) answer their status (``pending`` = read again later; not read right after
   the emission when the account's notifications say when to read it);
3. follow-ups (PDF, XML, settle), PDFs still being rendered asked in rounds;
4. e-mails last, one checkpoint each (the one step nobody can take back; an e-mail whose
   outcome is unknown is never sent again);
5. ``cancel`` (waiting for an asynchronous authorization to end first).

Calls are paced per account by a token bucket fed by the provider's published limit and
its rate-limit headers, so a backlog drains at the provider's budget without a 429.
A result whose outcome is unknown and cannot be searched at the provider is marked
``job.unknown`` (the runner parks the document "check at the provider").
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import requests

from .base import (
    AuthenticationError,
    ClientServices,
    FinalDocumentError,
    InvalidStateError,
    NotReadyError,
    ProviderError,
    RateLimitedError,
    TotalsMismatchError,
    TransientError,
)


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


class TimeBudget:
    """How much work a run may take: it must end well before the process running it is killed
    (Odoo's ``limit_time_real_cron`` for a cron worker, ``limit_time_real`` for a request that
    runs the scheduled action by hand). Slices are sized from the time left and the measured
    wall time per document (which includes the accounts' rate budgets: a paced batch is slower).
    """

    def __init__(self, seconds, seconds_per_document=2.0, share=0.5, clock=time.monotonic, started=None):
        self.clock = clock
        # Only a share of the limit is planned: a slice's tail (slow answers) must still fit.
        self.planned = seconds * share
        self.deadline = (started if started is not None else clock()) + self.planned
        self.per_document = max(float(seconds_per_document), 0.001)
        self.measured = False

    def left(self):
        return max(self.deadline - self.clock(), 0.0)

    def slice(self, limit):
        """Documents the next slice may take: what fits in the time left at the estimated (then
        measured) wall time per document, at most ``limit``, at least one while time is left (a
        small budget must not stall the queue)."""
        left = self.left()
        if left <= 0:
            return 0
        return max(1, min(limit, int(left / self.per_document)))

    def rate_cap(self, per_minute, calls_per_document=4):
        """Documents of one account a run may take at its budget of ``per_minute`` requests (0: no
        budget published), about ``calls_per_document`` requests each: at least one."""
        if per_minute <= 0:
            return None
        return max(1, int(per_minute * self.planned / 60 / calls_per_document))

    def record(self, documents, seconds):
        """A slice of ``documents`` took ``seconds`` (wall time): the estimate follows the slowest."""
        if documents > 0:
            observed = seconds / documents
            self.per_document = observed if not self.measured else max(observed, (self.per_document + observed) / 2)
            self.measured = True


@dataclass
class Job:
    """One document's provider work, planned by the Odoo layer."""

    doc_id: int
    account_id: int
    kind: str  # the provider document type (invoice, invoice_receipt, credit_note, receipt...)
    data: object  # FiscalDocumentData (None when the remote document exists already)
    date: object  # document date: finalization order
    action: str = "issue"  # issue | cancel
    mode: str = "finalize"  # finalize | draft | data_only
    remote_id: str | None = None
    remote_state: str | None = None
    number: str | None = None
    probe: bool = False  # a create may have reached the provider: look by reference first
    # The provider notifies this account (webhook): an asynchronous document just sent is not read
    # back at once (it is almost always still pending), but when the notification comes.
    await_webhook: bool = False
    create_attempted: bool = False  # the create request was (about to be) sent
    replace_draft: bool = False  # delete the draft (totals differed) and create it again
    expected_total: object = None
    tolerance: object = 0
    want_pdf: bool = False
    want_xml: bool = False
    email: tuple | None = None  # (address, subject, body)
    settle: bool = False
    # Not issued in Odoo yet: a document final at the provider is checked before it is called issued
    # (read again first when this run has not read it: Retry after a problem found on it).
    recheck: bool = False
    # The service checks what it finalized (its ATCUD, its total: ``final_document_problems``): such a
    # document is issued in Odoo only once this run has checked it (``checked``), never on a state
    # read from the database alone (a re-read that failed leaves it to the next run).
    final_check: bool = False
    payment: object = None  # FiscalPayment: this job is a receipt for the original below
    original_kind: str | None = None
    original_remote_id: str | None = None
    cancel_reason: str = ""  # may be a CancelReason (a str carrying the NFS-e motive code)
    # Results
    remote: object = None
    checked: bool = False  # the final document was checked in this run (or needed no check)
    pdf: bytes | None = None
    xml: bytes | None = None
    emailed: bool = False
    email_unknown: bool = False  # the e-mail request left, its answer did not come back
    settled: bool = False
    registered: bool = False  # data only: the customer is at the provider
    replaced: bool = False  # the wrong draft is gone
    cancelled: bool = False  # the provider holds the document cancelled (or never held it)
    waiting: bool = False
    unknown: str | None = None  # outcome unknown and not searchable: check at the provider
    error: Exception | None = None
    failed_stage: str | None = None
    trace: list = field(default_factory=list)
    calls: int = 0
    final_at: float | None = None  # time.monotonic() when it became final in this run (PDF delay)

    def store(self, remote):
        self.remote, self.remote_id, self.remote_state = remote, remote.remote_id, remote.state


def outcome_unknown(error):
    """A request left and no usable answer came back (timeout, reset, cut body, server error):
    the provider may have done it. A 429 and a refused key say it did nothing."""
    return isinstance(error, TransientError) and not isinstance(error, (RateLimitedError, NotReadyError))


class _ThreadClients(threading.local):
    """Each thread's clients, by account (a client's session is not shared between threads)."""

    def __init__(self):
        self.clients = {}


class Pipeline:
    """Runs planned jobs through the stages with ``concurrency`` threads."""

    def __init__(self, make_client, concurrency=8, limiters=None, checkpoint=None, intent=None, shared=None):
        # account_id, ClientServices -> a new provider client (its class and config only)
        self.make_client = make_client
        self.concurrency = max(1, int(concurrency))
        self.limiters = limiters or {}  # account_id -> TokenBucket
        self.local = _ThreadClients()
        # account_id -> cache shared by its clients (remote clients), seeded by the caller if given
        self.shared = defaultdict(dict, shared or {})
        self.refused = {}  # account_id -> the AuthenticationError that stopped its jobs
        # Called in the caller's thread with the jobs that ended a stage, in completion order (the
        # jobs done at the same moment together: one transaction for them), so that what the
        # provider did is recorded at once: a crash then only redoes calls in flight.
        self.checkpoint = checkpoint
        # job, step -> bool: record that a call nobody can take back is about to leave (e-mails),
        # before it leaves; False: not recorded, so the call is not made.
        self.intent = intent
        # An account's first contact is made by one job alone: a refused key costs one call.
        self.contact = threading.Condition()
        self.contacted = {}  # account_id -> "talking" (one job is on it) | "done" (it answered)
        self.pool = None  # one thread pool for every stage: threads keep their clients and connections
        self.pdf_polls = {}  # account_id -> (polls, seconds between polls) of a PDF still being rendered

    # -- clients: one per thread and account, each with its own pooled session ----------
    def _client(self, account_id):
        clients = self.local.clients
        client = clients.get(account_id)
        if client is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            limiter = self.limiters.get(account_id)
            services = ClientServices(
                session=session,
                throttle=limiter.acquire if limiter is not None else None,
                observe_rate=limiter.observe if limiter is not None else None,
                shared=self.shared[account_id],
                # A PDF still being rendered is asked again by run(), in rounds: no thread sleeps
                # between two polls of one document while the others wait behind it.
                pdf_polls=1,
            )
            client = self.make_client(account_id, services)
            self.pdf_polls[account_id] = (max(1, client.pdf_max_polls), client.pdf_poll_interval)
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
            if job.error is not None or job.waiting or job.unknown:
                return job
            first, answered = self._first_contact(job.account_id), False
            try:
                if job.account_id in self.refused:
                    # Credentials refused: the account's other documents are not even tried.
                    job.error, job.failed_stage = self.refused[job.account_id], name
                    answered = True
                    return job
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
            return job

        if not jobs:
            return
        if self.pool is None or len(jobs) == 1:
            for job in jobs:
                self._checkpoint([guarded(job)])
            return
        # In completion order, what ended meanwhile together; the checkpoints run here, never
        # in a thread, and never wait for a job still running.
        pending = [self.pool.submit(guarded, job) for job in jobs]
        order = {future: n for n, future in enumerate(pending)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            self._checkpoint([future.result() for future in sorted(done, key=order.get)])

    def _checkpoint(self, jobs):
        if self.checkpoint is not None:
            self.checkpoint(jobs)

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
        cancels = [j for j in jobs if j.action == "cancel"]
        jobs = [j for j in jobs if j.action != "cancel"]
        final_on_create = [
            j for j in jobs if j.payment is not None or "draft" not in self._client(j.account_id).capabilities
        ]
        drafts_first = [j for j in jobs if j not in final_on_create]
        # Stage 0: what documents refer to (the customer) is made to exist once per account and
        # customer, before documents race to create it twice.
        first = {}
        for job in jobs:
            if job.data is not None and not job.remote_id and job.payment is None:
                party = job.data.partner
                first.setdefault((job.account_id, party.code if party else None), job)
        self._run(list(first.values()), lambda client, job: client.prepare(job.data), "prepare")
        # Stage 1: a wrong draft goes; documents that start as drafts (or async requests) are
        # created in parallel; data only: the customer is all the provider gets.
        self._run([j for j in jobs if j.replace_draft and j.remote_id], self._replace, "replace")
        creates = [j for j in jobs if j.mode == "data_only" or (j in drafts_first and not j.remote_id)]
        self._run(creates, self._create, "create")
        # Stage 2: final, date by date (series order); final-on-create providers create here.
        by_date = defaultdict(list)
        for job in jobs:
            if job.mode != "data_only":
                by_date[job.date].append(job)
        for day in sorted(by_date, key=lambda d: (d is None, d)):
            self._run(by_date[day], self._finalize, "finalize")
        # Stage 3: follow-ups in parallel. A PDF the service renders after finalizing (InvoiceXpress)
        # is asked for once that delay has passed since the batch's last finalization (one short
        # pause for the batch, never per document), so that the first poll answers 200; PDFs not
        # rendered yet (202) are asked again, all of them after one pause, as many times as the
        # client would have polled.
        self._wait_for_pdfs(jobs)
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
        # Emails last, one checkpoint each: an email is the one step nobody can take back. Its
        # intent is recorded first: a worker killed after sending it and before its checkpoint
        # leaves "sending", which the next run reads as "unknown" (never sent twice).
        mailing = [j for j in jobs if self._will_email(j)]
        if self.intent is not None:
            for job in mailing:
                if not self.intent(job, "email"):
                    job.email = None
        self._run([j for j in mailing if j.email], self._email, "email")
        # Stage 5: cancellations.
        self._run(cancels, self._cancel, "cancel")
        return jobs + cancels

    def _wait_for_pdfs(self, jobs):
        ready = [
            job.final_at + self._client(job.account_id).pdf_ready_after
            for job in jobs
            if job.want_pdf and job.pdf is None and job.final_at is not None and job.error is None
        ]
        wait = max(ready, default=0.0) - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    # -- steps (provider calls only) ---------------------------------------------
    def _replace(self, client, job):
        # A draft is not a legal document; deleting it is what the provider allows.
        client.cancel(job.kind, job.remote_id, "")
        job.replaced, job.remote, job.remote_id, job.remote_state, job.probe = True, None, None, None, False

    def _create(self, client, job):
        if job.payment is not None:
            # A receipt for one payment of the original invoice, found by the payment's reference.
            return self._exactly_once(
                client,
                job,
                "receipt",
                "find_receipt" in client.capabilities,
                lambda: client.find_receipt(job.payment.reference, job.original_remote_id),
                lambda: client.register_payment(job.original_kind, job.original_remote_id, job.payment),
            )
        client.prepare(job.data)  # customer and items: idempotent, no fiscal document
        if job.mode == "data_only":
            job.registered = True
            return None
        return self._exactly_once(
            client,
            job,
            "document",
            "find_by_reference" in client.capabilities,
            lambda: client.find_by_reference(job.data),
            lambda: client.create(job.data),
        )

    def _still_accepted(self, job):
        """Between two calls of one step: the account's key was refused meanwhile (another
        thread), so no further call of this job."""
        if job.account_id in self.refused:
            raise self.refused[job.account_id]

    def _exactly_once(self, client, job, what, searchable, find, send):
        """Probe by our reference when an earlier request may have reached the provider, else
        send; an outcome that is unknown and cannot be searched parks the job (``unknown``)."""
        if job.probe:
            if not searchable:
                job.unknown = f"{client.label} may hold this {what} (an answer was lost) and cannot be searched."
                return None
            found = find()
            if found:
                return job.store(found)
        self._still_accepted(job)
        job.create_attempted = True
        try:
            remote = send()
        except ProviderError as e:
            # "This reference exists already": our earlier attempt got through. Take it.
            remote = find() if e.kind == "duplicate" and searchable else None
            if not remote:
                if outcome_unknown(e) and not searchable:
                    job.unknown = f"{client.label}: {e} The {what} may exist there and cannot be searched."
                raise
        return job.store(remote)

    def _finalize(self, client, job):
        if not job.remote_id or job.remote_state == "rejected":
            if job.remote_state == "rejected":  # the provider said no to the last one: a new one
                job.remote_id = job.remote_state = None
                job.probe = False
            self._create(client, job)  # final on creation (e.g. Vendus), receipts: in date order
            if not job.remote_id:
                return
            if job.await_webhook and job.remote_state == "pending":
                job.waiting = True  # read once, when the service says it has decided
                return
        if job.mode == "draft" or job.remote_state == "rejected":
            return
        if job.remote_state in ("final", "settled"):
            return self._check_final(client, job)
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
        self._still_accepted(job)
        # Also after a crash between finalize and our commit: the client treats "already
        # finalized" as success. Asynchronous providers answer their status.
        job.store(client.finalize(job.kind, job.remote_id))
        if job.remote_state in ("final", "settled"):
            job.final_at = time.monotonic()
        if job.remote_state == "pending":
            job.waiting = True
        elif job.remote_state in ("final", "settled"):
            self._check_final(client, job)

    @staticmethod
    def _check_final(client, job):
        """A document final at the provider is issued only when it is what it must be (its ATCUD in
        production; its total, at services final on creation). Otherwise FinalDocumentError: it is
        recorded with its number, never sent again; Retry (``recheck``) reads it again first."""
        if job.payment is not None or not job.recheck:
            job.checked = True
            return
        if job.remote is None:
            job.store(client.fetch_status(job.kind, job.remote_id))
        problems = client.final_document_problems(job.remote, job.expected_total, job.tolerance)
        if problems:
            raise FinalDocumentError(
                " ".join(problems),
                details=[{"odoo": str(job.expected_total), "provider": str(job.remote.total)}],
            )
        job.checked = True

    def _follow_ups(self, client, job):
        if job.mode == "draft" or job.remote_state not in ("final", "settled"):
            return
        if job.want_pdf and job.pdf is None:
            job.xml = client.fetch_xml(job.kind, job.remote_id) if job.want_xml else None
            job.pdf = client.fetch_pdf(job.kind, job.remote_id)
        if job.settle and not job.settled:
            client.settle(job.kind, job.remote_id)
            job.settled = True

    @staticmethod
    def _will_email(job):
        """The e-mail step would call the provider for this job."""
        return bool(
            job.email
            and not job.emailed
            and not job.email_unknown
            and job.error is None
            and not job.waiting
            and not job.unknown
            and job.mode != "draft"
            and job.remote_state in ("final", "settled")
        )

    def _email(self, client, job):
        if job.mode == "draft" or job.remote_state not in ("final", "settled"):
            return
        if job.email and not job.emailed and not job.email_unknown:
            address, subject, body = job.email
            number = (job.remote.number if job.remote is not None else None) or job.number or ""
            try:
                client.send_email(
                    job.kind,
                    job.remote_id,
                    address,
                    subject.replace("{number}", number),
                    body.replace("{number}", number),
                )
            except ProviderError as e:
                # Sent or not, nobody knows: never sent twice (the runner asks a person).
                job.email_unknown = outcome_unknown(e)
                raise
            job.emailed = True

    def _cancel(self, client, job):
        if not job.remote_id:
            # An earlier create may have reached the provider: find it before anything else.
            if "find_by_reference" not in client.capabilities:
                job.unknown = f"{client.label} may hold this document and cannot be searched: cancel it there."
                return
            found = client.find_by_reference(job.data)
            if not found:
                job.cancelled = True  # nothing exists there: nothing to cancel
                return
            job.store(found)
        if job.remote_state == "pending":
            # An asynchronous authorization is running: only its result can be cancelled.
            job.store(client.fetch_status(job.kind, job.remote_id))
            if job.remote_state == "pending":
                job.waiting = True
                return
        if job.remote_state in ("rejected", "canceled", "deleted"):
            job.cancelled = True  # never legal, or cancelled already
            return
        if job.remote_state == "cancel_pending":
            job.store(client.fetch_status(job.kind, job.remote_id))  # asynchronous cancellation
        else:
            job.store(client.cancel(job.kind, job.remote_id, job.cancel_reason))
        if job.remote_state == "cancel_pending":
            job.waiting = True
        elif job.remote_state == "cancel_denied":
            raise InvalidStateError(f"{client.label} refused the cancellation: {job.remote.message or '-'}")
        else:
            job.cancelled = True
