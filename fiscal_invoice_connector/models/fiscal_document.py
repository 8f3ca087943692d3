"""The outbox: a fiscal document that must exist (or be cancelled) at a provider.

Exactly-once protocol (docs/exactly-once.md has the long version):
1. Hooks only *insert* a row (``to_send``) in the user's transaction; a partial unique
   index makes two live documents for one source impossible.
2. The cron locks one row (``FOR UPDATE SKIP LOCKED``), re-reads it, takes a lease
   (``next_attempt`` in the future) and commits: the intent is recorded before any call.
3. ``create_sent`` is committed *before* the create call; after a crash or timeout the
   next attempt probes the provider by our reference before anything is re-sent.
4. Every remote step (create, finalize, PDF, email) commits its result at once, so an
   attempt resumes where the last one stopped; "already finalized" is success.
"""

import logging
import random
from datetime import timedelta
from decimal import Decimal

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..providers import (
    AuthenticationError,
    ProviderError,
    RateLimitedError,
    TransientError,
    get_provider_class,
)
from ..providers.base import Redactor
from .fiscal_provider_account import DOCUMENT_TYPES, MODES

_logger = logging.getLogger(__name__)

STATES = [
    ("to_send", "Waiting"),
    ("sending", "Sending"),
    ("draft", "Draft at provider"),
    ("registered", "Data sent"),
    ("issued", "Issued"),
    ("to_cancel", "Cancelling"),
    ("cancelled", "Cancelled"),
    ("error", "Needs attention"),
    ("failed", "Failed"),
    ("dropped", "Dropped"),
]
# States in which the document occupies its source (the unique indexes ignore the others).
DEAD_STATES = ("cancelled", "dropped")
LEASE = timedelta(minutes=5)


class _Trace:
    """What the attempt log reads from a client, for work done by the batch pipeline."""

    def __init__(self, trace):
        self.trace = trace

    def take_trace(self):
        trace, self.trace = self.trace, []
        return trace


class ProviderRejection(UserError):
    """The provider decided (rejected the document, refused a cancellation)."""


BACKOFF_BASE = 60  # seconds; doubled at each attempt
BACKOFF_CAP = 6 * 3600


class FiscalDocument(models.Model):
    _name = "fiscal.document"
    _description = "Fiscal document"
    _inherit = ["mail.thread", "mail.activity.mixin"]
    _order = "id desc"
    _check_company_auto = True

    name = fields.Char(compute="_compute_name", store=True)
    company_id = fields.Many2one("res.company", required=True, index=True, readonly=True)
    account_id = fields.Many2one(
        "fiscal.provider.account", required=True, index=True, check_company=True, ondelete="restrict", readonly=True
    )
    provider = fields.Selection(related="account_id.provider", store=True)
    sale_order_id = fields.Many2one(
        "sale.order", index="btree_not_null", ondelete="restrict", check_company=True, readonly=True
    )
    move_id = fields.Many2one(
        "account.move", "Invoice", index="btree_not_null", ondelete="restrict", check_company=True, readonly=True
    )
    partner_id = fields.Many2one("res.partner", "Customer", readonly=True)
    kind = fields.Selection(
        [("invoice", "Invoice"), ("credit_note", "Credit note"), ("receipt", "Receipt")],
        required=True,
        default="invoice",
        readonly=True,
    )
    document_type = fields.Selection(
        DOCUMENT_TYPES + [("credit_note", "Credit note"), ("receipt", "Receipt")],
        required=True,
        default="invoice",
        readonly=True,
    )
    related_document_id = fields.Many2one(
        "fiscal.document",
        "Original document",
        readonly=True,
        index="btree_not_null",
        ondelete="restrict",
        help="The fiscal invoice a credit note credits or a receipt pays.",
    )
    related_number = fields.Char(related="related_document_id.number", string="Original number")
    # Receipts: one per payment applied to an invoice.
    payment_key = fields.Char(readonly=True, copy=False, help="The Odoo payment reconciliation this receipt records.")
    payment_amount = fields.Monetary(readonly=True)
    payment_date = fields.Date(readonly=True)
    payment_method = fields.Char(readonly=True, help="TB transfer, NU cash, CC card, ...")
    settle_state = fields.Selection(
        [("none", "Not needed"), ("pending", "Pending"), ("done", "Settled")],
        default="none",
        readonly=True,
        help="InvoiceXpress: mark the invoice paid there when it is paid in Odoo.",
    )
    mode = fields.Selection(MODES, required=True, default="finalize", readonly=True)
    send_email = fields.Boolean(readonly=True)
    state = fields.Selection(STATES, default="to_send", required=True, index=True, tracking=True, readonly=True)
    reference = fields.Char(
        "Our reference",
        readonly=True,
        copy=False,
        index=True,
        help="Sent to the provider with every attempt; used to find the document after a crash.",
    )
    invoice_date = fields.Date(readonly=True)
    due_date = fields.Date(readonly=True)
    currency_id = fields.Many2one("res.currency", readonly=True)
    amount_total = fields.Monetary("Total in Odoo", readonly=True)

    # What the provider said.
    remote_id = fields.Char("Provider id", readonly=True, copy=False, index="btree_not_null")
    remote_state = fields.Char("Provider state", readonly=True, copy=False)
    number = fields.Char("Fiscal number", readonly=True, copy=False, tracking=True)
    atcud = fields.Char("ATCUD / verification code", readonly=True, copy=False)
    remote_total = fields.Monetary("Total at provider", readonly=True, copy=False)
    remote_message = fields.Text("Provider message", readonly=True, copy=False, help="e.g. why it was rejected")
    create_sent = fields.Boolean(
        readonly=True, copy=False, help="A create request may have reached the provider: probe before re-sending."
    )
    pdf_attachment_id = fields.Many2one("ir.attachment", "PDF", readonly=True, copy=False)
    xml_attachment_id = fields.Many2one("ir.attachment", "XML", readonly=True, copy=False)
    pdf_state = fields.Selection(
        [("none", "Not needed"), ("pending", "Pending"), ("done", "Attached")], default="none", readonly=True
    )
    email_state = fields.Selection(
        [("none", "Not requested"), ("pending", "Pending"), ("sent", "Sent")], default="none", readonly=True
    )
    cancel_reason = fields.Char(readonly=True, copy=False)
    totals_mismatch = fields.Boolean(readonly=True, copy=False, help="The provider's draft totals differ from Odoo's.")

    # Retries.
    attempt_count = fields.Integer(readonly=True, copy=False)
    next_attempt = fields.Datetime(index=True, readonly=True, copy=False, default=fields.Datetime.now)
    last_error = fields.Text(readonly=True, copy=False)
    error_kind = fields.Char(readonly=True, copy=False)
    attempt_ids = fields.One2many("fiscal.document.attempt", "document_id", readonly=True)

    # Two live documents of the same kind for one source are impossible.
    _live_per_invoice = models.UniqueIndex(
        "(move_id, kind) WHERE move_id IS NOT NULL AND kind != 'receipt' AND state NOT IN ('cancelled', 'dropped')",
        "This invoice already has a fiscal document.",
    )
    _live_per_payment = models.UniqueIndex(
        "(payment_key) WHERE payment_key IS NOT NULL AND state NOT IN ('cancelled', 'dropped')",
        "This payment already has a fiscal receipt.",
    )
    _live_per_order = models.UniqueIndex(
        "(sale_order_id, kind) WHERE move_id IS NULL AND sale_order_id IS NOT NULL "
        "AND state NOT IN ('cancelled', 'dropped')",
        "This order already has a fiscal document.",
    )

    @api.depends("number", "sale_order_id", "move_id", "state")
    def _compute_name(self):
        for doc in self:
            source = doc.move_id.name if doc.move_id and doc.move_id.name != "/" else doc.sale_order_id.name
            doc.name = doc.number or self.env._("Pending (%s)", source or doc.id or "")

    @api.model_create_multi
    def create(self, vals_list):
        docs = super().create(vals_list)
        # Unique per database and identical on every retry, forever (one query for a batch).
        uuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid", "")[:8]
        self.env.execute_query(
            SQL(
                "UPDATE fiscal_document SET reference = %s || id WHERE id IN %s AND reference IS NULL",
                f"ODOO-{uuid}-",
                tuple(docs.ids),
            )
        )
        docs.invalidate_recordset(["reference"])
        return docs

    def write(self, vals):
        if "reference" in vals and any(doc.reference and doc.reference != vals["reference"] for doc in self):
            raise UserError(self.env._("The reference of a fiscal document never changes."))
        res = super().write(vals)
        self._invalidate_sources()
        return res

    def _invalidate_sources(self):
        """Orders and invoices compute their fiscal fields without dependencies (they are read
        through these documents): keep them right within the same transaction too."""
        orders = self.sale_order_id
        orders.invalidate_recordset()
        orders.invoice_ids.invalidate_recordset()
        self.move_id.invalidate_recordset()

    def unlink(self):
        if any(doc.create_sent or doc.remote_id for doc in self):
            raise UserError(
                self.env._("A fiscal document that may exist at the provider cannot be deleted: cancel it instead.")
            )
        return super().unlink()

    # ------------------------------------------------------------------ enqueue
    @api.model
    def _enqueue(self, account, *, order=None, move=None, kind="invoice", **extra):
        """Record that a fiscal document must exist. Runs in the user's transaction:
        only inserts a row, never talks to a provider, never raises for a duplicate."""
        source_domain = [("kind", "=", kind), ("state", "not in", DEAD_STATES)]
        if move:
            source_domain.append(("move_id", "=", move.id))
        else:
            source_domain += [("sale_order_id", "=", order.id), ("move_id", "=", False)]
        existing = self.sudo().search(source_domain, limit=1)
        if existing:
            return existing
        record = move or order
        vals = {
            "company_id": record.company_id.id,
            "account_id": account.id,
            "sale_order_id": order.id if order else False,
            "move_id": move.id if move else False,
            "partner_id": record.partner_id.commercial_partner_id.id,
            "kind": kind,
            "document_type": "credit_note" if kind == "credit_note" else account.document_type,
            "mode": account.mode,
            "send_email": account.send_email,
            "currency_id": record.currency_id.id,
            "amount_total": record.amount_total,
            "next_attempt": fields.Datetime.now(),
        }
        vals.update(extra)
        # In the user's transaction: the cheapest insert (no creation message, follower or tracking).
        Doc = self.sudo().with_context(mail_create_nolog=True, mail_create_nosubscribe=True, tracking_disable=True)
        try:
            with self.env.cr.savepoint():
                doc = Doc.create(vals)
        except psycopg2.errors.UniqueViolation:
            # A concurrent transaction enqueued the same source (unique index): keep theirs.
            return self.sudo().search(source_domain, limit=1)
        doc._invalidate_sources()
        doc._post_on_sources(self.env._("Fiscal document queued at %s.", account.name), on_document=False)
        self._trigger_processing()
        return doc

    @api.model
    def _enqueue_many(self, account, records, per_minute=30):
        """Bulk enqueue (backfill): one insert for all, no chatter per record, spread in time
        so the queue never sends more than ``per_minute`` of them in a minute."""
        is_move = records._name == "account.move"
        now = fields.Datetime.now()
        vals_list = []
        for index, record in enumerate(records):
            orders = record._fiscal_sale_orders() if is_move else record
            vals_list.append(
                {
                    "company_id": record.company_id.id,
                    "account_id": account.id,
                    "sale_order_id": orders.id if len(orders) == 1 else False,
                    "move_id": record.id if is_move else False,
                    "partner_id": record.partner_id.commercial_partner_id.id,
                    "kind": "invoice",
                    "document_type": account.document_type,
                    "mode": account.mode,
                    "send_email": account.send_email,
                    "currency_id": record.currency_id.id,
                    "amount_total": record.amount_total,
                    "next_attempt": now + timedelta(minutes=index // max(per_minute, 1)),
                }
            )
        Doc = self.sudo().with_context(mail_create_nolog=True, tracking_disable=True)
        try:
            with self.env.cr.savepoint():
                docs = Doc.create(vals_list)
        except psycopg2.errors.UniqueViolation:
            # Someone documented some of them meanwhile: go one by one (each returns the live one).
            docs = self.browse()
            for record in records:
                docs |= self._enqueue(account, **({"move": record} if is_move else {"order": record}))
        self._trigger_processing()
        return docs

    @api.model
    def _trigger_processing(self, at=None):
        cron = self.env.ref("fiscal_invoice_connector.ir_cron_process_fiscal_documents", raise_if_not_found=False)
        if cron:
            cron.sudo()._trigger(at)

    # ------------------------------------------------------------------ the queue
    @api.model
    def _due_domain(self):
        now = fields.Datetime.now()
        return [
            ("next_attempt", "<=", now),
            ("account_id.state", "=", "active"),
            "|",
            ("state", "in", ("to_send", "sending", "to_cancel")),
            "&",
            ("state", "=", "issued"),
            "|",
            "|",
            ("pdf_state", "=", "pending"),
            ("email_state", "=", "pending"),
            ("settle_state", "=", "pending"),
        ]

    @api.model
    def _cron_process_queue(self, batch_size=50):
        """Process due documents one at a time; each is locked, leased and committed on its own."""
        domain = self._due_domain()
        cron = self.env["ir.cron"]
        candidates = self.search(domain, order="next_attempt, id", limit=batch_size)
        # The runner calls us again while it is told that work remains.
        cron._commit_progress(remaining=self.search_count(domain))
        concurrency = int(self.env["ir.config_parameter"].sudo().get_param("fiscal_invoice_connector.concurrency", 8))
        claimed = self.browse([doc.id for doc in candidates if doc._claim()])  # each claim commits
        batch = claimed.filtered(lambda d: d._batchable()) if concurrency > 1 else self.browse()
        processed = 0
        if batch:
            batch._process_batch(concurrency)
            processed += len(batch)
            cron._commit_progress(len(batch))
        for doc in claimed - batch:
            doc._process()
            processed += 1
            if not cron._commit_progress(1):
                break  # time budget of this cron run used up
        return processed

    def _claim(self):
        """Lock the row, check it is still due, take a lease and commit.

        After this commit the row lock is gone, but the lease keeps every other worker
        (their search filters on next_attempt) away until we are done or dead.
        """
        self.ensure_one()
        if not self.try_lock_for_update():
            return False
        self.invalidate_recordset()
        if not self.filtered_domain(self._due_domain()):
            # Release the row lock.
            self.env.cr.commit()  # pylint: disable=invalid-commit
            return False
        self.write({"next_attempt": fields.Datetime.now() + LEASE})
        # Intent recorded before any call.
        self.env.cr.commit()  # pylint: disable=invalid-commit
        return True

    def _process(self):
        """Run the job of one claimed document, recording each attempt."""
        self.ensure_one()
        client = None
        operation = "cancel" if self.state == "to_cancel" else "issue"
        try:
            client = self.account_id._get_client()
            if operation == "cancel":
                waiting = self._job_cancel(client)
            else:
                waiting = self._job_issue(client)
            self._log_attempt(operation, "waiting" if waiting else "ok", client=client)
            # An asynchronous provider is still working: read its answer again later
            # (a webhook wakes us up sooner). Waiting is not a failed attempt.
            delay = timedelta(seconds=max(self.account_id.poll_interval, 1)) if waiting else timedelta()
            self.write({"next_attempt": fields.Datetime.now() + delay, "last_error": False, "error_kind": False})
            if waiting:
                self._trigger_processing(self.next_attempt)
        except AuthenticationError as e:
            self._on_auth_error(e, operation, client)
        except ProviderError as e:
            self._on_provider_error(e, operation, client)
        except ProviderRejection as e:
            # The provider looked at the document and said no (already recorded): the data needs a fix.
            self._on_validation_error(str(e), "rejected", operation, client)
        except UserError as e:
            # Our own validation (mapping) failed: the data needs a fix.
            self._on_validation_error(str(e), "validation", operation, client)
        except Exception as e:
            # A bug or an unexpected answer: keep the document, retry later, say what happened.
            self.env.cr.rollback()  # pylint: disable=invalid-commit
            _logger.exception("Fiscal document %s: unexpected error", self.id)
            message = self._redact(f"{type(e).__name__}: {e}")
            self._on_transient(TransientError(self.env._("Unexpected error: %s", message)), operation, client)
        self.env.cr.commit()  # pylint: disable=invalid-commit

    # ------------------------------------------------------------------ batch (concurrent) path
    def _batchable(self):
        """The common case goes through the concurrent pipeline: issuing an invoice or a credit
        note, or its follow-ups. Anything rarer (cancellation, receipts, waiting for an original,
        re-sending a rejection, replacing a bad draft, data only) takes the one-by-one path."""
        self.ensure_one()
        if self.kind not in ("invoice", "credit_note") or self.mode == "data_only":
            return False
        if self.totals_mismatch or self.remote_state in ("rejected", "pending", "cancel_pending"):
            return False
        if self.related_document_id and self.related_document_id.state != "issued":
            return False
        if self.state == "issued":
            return "pending" in (self.pdf_state, self.email_state, self.settle_state)
        return self.state in ("to_send", "sending")

    def _process_batch(self, concurrency):
        """Plan every document (ORM), run the provider calls concurrently outside the ORM
        (providers/pipeline.py), then write each result and commit it on its own."""
        from ..providers.pipeline import Pipeline, TokenBucket

        jobs, planned = [], self.browse()
        for doc in self:
            job = doc._plan_job()
            if job is not None:
                jobs.append(job)
                planned |= doc
        # Intent of every create in the batch is recorded before any call (exactly-once).
        self.env.cr.commit()  # pylint: disable=invalid-commit
        accounts = planned.account_id
        factories = {a.id: (get_provider_class(a.provider), a._provider_config()) for a in accounts}
        limiters = {
            a.id: TokenBucket.for_budget(a.rate_limit_per_minute, per=60.0)
            for a in accounts
            if a.rate_limit_per_minute > 0
        }
        by_id = {doc.id: doc for doc in planned}
        pipeline = Pipeline(
            lambda account_id: factories[account_id][0](factories[account_id][1]),
            concurrency,
            limiters,
            checkpoint=lambda job: by_id[job.doc_id]._checkpoint_job(job),
        )
        pipeline.run(jobs)  # no ORM, no cursor in there
        for doc, job in zip(planned, jobs, strict=True):
            doc._apply_job(job)
            self.env.cr.commit()  # pylint: disable=invalid-commit

    def _plan_job(self):
        from ..providers.pipeline import Job

        account = self.account_id
        cls = get_provider_class(account.provider)
        try:
            data = None if self.remote_id else self.env["fiscal.mapping"]._document_data(self)
        except UserError as e:
            self._on_validation_error(str(e), "validation", "issue", None)
            self.env.cr.commit()  # pylint: disable=invalid-commit
            return None
        source = self.move_id if self.move_id else self.sale_order_id
        email = None
        if self.send_email and "email" in cls.capabilities and self.email_state != "sent" and self.partner_id.email:
            email = (self.partner_id.email, account.email_subject or "", account.email_body or "")
        job = Job(
            doc_id=self.id,
            account_id=account.id,
            kind=self.document_type,
            data=data,
            # Exists remotely (not mapped again): the date it was created with, by the mapping's rule.
            # Never False: a batch mixing False and dates crashed sorting them in the pipeline's
            # finalize stage, every run, and the queue stopped (fault suite, after a 401 mid-batch).
            date=data.date
            if data
            else (
                self.invoice_date
                or self.move_id.invoice_date
                or (self.sale_order_id.date_order and self.sale_order_id.date_order.date())
                or None
            ),
            mode=self.mode,
            remote_id=self.remote_id or None,
            remote_state=self.remote_state or None,
            number=self.number or None,
            probe=self.create_sent and not self.remote_id,
            expected_total=Decimal(str(source.amount_total)) if source else None,
            tolerance=Decimal(str(account.totals_tolerance or 0)),
            want_pdf="pdf" in cls.capabilities and self.pdf_state != "done",
            want_xml="xml" in cls.capabilities,
            email=email,
            settle=self.settle_state == "pending",
        )
        if not self.remote_id:
            self.write({"state": "sending", "create_sent": True})
        return job

    def _checkpoint_job(self, job):
        """What the provider did for one job, recorded as soon as it is done (main thread): the
        remote id and state (no second create, no second finalize) and a sent email (never twice).
        The full result is written by _apply_job afterwards."""
        vals = {}
        remote = job.remote
        if remote is not None and (remote.remote_id != self.remote_id or remote.state != self.remote_state):
            self._store_remote(remote)
        if job.emailed and self.email_state != "sent":
            vals["email_state"] = "sent"
        if vals:
            self.write(vals)
        if remote is not None or vals:
            self.env.cr.commit()  # pylint: disable=invalid-commit

    def _apply_job(self, job):
        """Write what the provider said for one document, as the one-by-one path would."""
        trace = _Trace(job.trace)
        if not job.remote_id and not job.probe and not job.create_attempted and self.create_sent:
            # The intent was recorded for the batch, but no create request left: nothing can exist.
            self.write({"create_sent": False, "state": "to_send"})
            self._commit()
        if job.remote is not None:
            self._store_remote(job.remote)
            self._commit()
        if job.error is not None and job.failed_stage == "follow-ups":
            # The document is final and some follow-ups may have succeeded: facts, recorded before
            # the error (the one-by-one path commits each step). Otherwise a PDF error left a final
            # document "sending", then "failed" after max attempts (fault suite).
            self._apply_done(job)
            self._commit()
        if job.error is not None:
            error = job.error
            if getattr(error, "kind", None) == "totals" and self.remote_state == "draft":
                self.write({"totals_mismatch": True})
                self._commit()
            if isinstance(error, AuthenticationError):
                self._on_auth_error(error, "issue", trace)
            elif isinstance(error, ProviderError):
                self._on_provider_error(error, "issue", trace)
            else:
                _logger.error("Fiscal document %s: unexpected error: %s", self.id, self._redact(repr(error)))
                message = self._redact(f"{type(error).__name__}: {error}")
                self._on_transient(TransientError(self.env._("Unexpected error: %s", message)), "issue", trace)
            return
        if job.waiting:
            self._log_attempt("issue", "waiting", client=trace)
            self.write({"state": "sending", "next_attempt": fields.Datetime.now()
                        + timedelta(seconds=max(self.account_id.poll_interval, 1))})  # fmt: skip
            self._trigger_processing(self.next_attempt)
            return
        if self.remote_state == "rejected" and self.state in ("to_send", "sending"):
            # As _finalize_remote: the provider looked at it and said no; the data needs a fix (left
            # "sending", the next run would send it again, unchanged).
            label = get_provider_class(self.account_id.provider).label
            reason = self.remote_message or "-"
            message = self.env._("%(provider)s rejected the document: %(reason)s", provider=label, reason=reason)
            self._on_validation_error(message, "rejected", "issue", trace)
            return
        if self.mode == "draft":
            if self.state != "draft":
                self.write({"state": "draft"})
                self._post_on_sources(
                    self.env._(
                        "Draft fiscal document created at %s (not final: finalize it there).", self.account_id.name
                    )
                )
        else:
            self._apply_done(job)
        self._log_attempt("issue", "ok", client=trace)
        self.write({"next_attempt": fields.Datetime.now(), "last_error": False, "error_kind": False})

    def _apply_done(self, job):
        """Final at the provider: issued in Odoo, then the follow-ups the pipeline completed."""
        if self.state in ("to_send", "sending") and self.remote_state in ("final", "settled"):
            self.write({"state": "issued", "pdf_state": "pending" if job.want_pdf else "none",
                        "email_state": "pending" if job.email else "none"})  # fmt: skip
            self._post_on_sources(
                self.env._(
                    "Fiscal document %(number)s issued at %(account)s (ATCUD / verification code %(code)s).",
                    number=self.number or "?",
                    account=self.account_id.name,
                    code=self.atcud or "-",
                )
            )
        if job.pdf:
            self._attach_pdf(job.pdf, job.xml)
        if job.emailed:
            self.write({"email_state": "sent"})
            self._post_on_sources(self.env._("Fiscal document emailed to %s by the provider.", job.email[0]))
        if job.settled:
            self.write({"settle_state": "done"})
            self._post_on_sources(self.env._("Fiscal document %s marked as paid at the provider.", self.number))

    def _redact(self, text):
        return Redactor(self.account_id._secrets())(text)

    def _commit(self):
        # Each remote step is a fact.
        self.env.cr.commit()  # pylint: disable=invalid-commit

    # ------------------------------------------------------------------ jobs
    def _job_issue(self, client):
        """create -> finalize -> PDF -> email, resuming at the first step not yet recorded.
        Returns True while the provider is still authorizing the document."""
        if self.related_document_id and self._wait_for_original():
            return True
        if self.totals_mismatch and self.remote_state == "draft":
            # The user fixed the data after a totals error: the wrong draft goes, a new one comes
            # (a draft is not a legal document; deleting it is what the provider allows).
            client.cancel(self.document_type, self.remote_id, "")
            self.write({"remote_id": False, "remote_state": False, "create_sent": False, "totals_mismatch": False})
            self._commit()
        if self.kind == "receipt" and (not self.remote_id or self.remote_state == "rejected"):
            self._create_receipt(client)
        elif not self.remote_id or self.remote_state == "rejected":
            if not self._create_remote(client):
                return False  # data only: nothing more to do
        if self.mode == "draft" and self.kind != "receipt":
            if self.state != "draft":
                self.write({"state": "draft"})
                self._post_on_sources(
                    self.env._(
                        "Draft fiscal document created at %s (not final: finalize it there).", self.account_id.name
                    )
                )
            return False
        if self.state in ("to_send", "sending") and self._finalize_remote(client):
            return True
        self._follow_ups(client)
        return False

    def _wait_for_original(self):
        """A credit note or a receipt goes after its original document; True while waiting."""
        original = self.related_document_id
        if original.state == "issued":
            return False
        if original.state in ("to_send", "sending"):
            return True
        raise UserError(
            self.env._(
                "The original fiscal document %(name)s is %(state)s: this %(kind)s cannot be issued.",
                name=original.display_name,
                state=dict(original._fields["state"].selection)[original.state],
                kind=dict(self._fields["kind"].selection)[self.kind].lower(),
            )
        )

    def _create_receipt(self, client):
        """A receipt at the provider for one payment of the original invoice (exactly once:
        intent committed first; the payment reference goes with it)."""
        from ..providers import FiscalPayment

        original = self.related_document_id
        if "receipt" not in client.capabilities:
            raise UserError(self.env._("%s does not issue receipts.", client.label))
        if self.create_sent and not self.remote_id and hasattr(client, "find_receipt"):
            found = client.find_receipt(self.reference)
            if found:
                self._store_remote(found)
                self._commit()
                return
        self.write({"state": "sending", "create_sent": True})
        self._commit()
        payment = FiscalPayment(
            amount=Decimal(str(self.payment_amount)),
            date=self.payment_date or fields.Date.context_today(self),
            method=self.payment_method or "TB",
            reference=self.reference,
        )
        remote = client.register_payment(original.document_type, original.remote_id, payment)
        self._store_remote(remote)
        self._commit()

    def _create_remote(self, client):
        """Make the document exist remotely, exactly once. False when only data was sent."""
        resend = self.remote_state == "rejected"
        # Mapped only here: later steps (finalize, PDF, email) never depend on today's data.
        data = self.env["fiscal.mapping"]._document_data(self)
        client.prepare(data)  # customer and items: idempotent, no fiscal document
        if self.mode == "data_only":
            self.write({"state": "registered"})
            self._post_on_sources(
                self.env._("Customer data sent to %s (no fiscal document requested).", self.account_id.name)
            )
            return False
        if not resend and self.create_sent and "find_by_reference" in client.capabilities:
            # A create may have reached the provider before a crash or timeout: look first.
            found = client.find_by_reference(data)
            if found:
                self._store_remote(found)
                self._commit()
                return True
        self.write({"state": "sending", "create_sent": True})
        self._commit()
        try:
            remote = client.create(data)
        except ProviderError as e:
            # "This reference exists already": our earlier attempt got through. Take it.
            remote = client.find_by_reference(data) if e.kind == "duplicate" else None
            if not remote:
                raise
        self._store_remote(remote)
        self._commit()
        return True

    def _finalize_remote(self, client):
        """Finalize (or read the asynchronous authorization). True while still pending."""
        if self.remote_state not in ("final", "settled"):
            if self.remote_state == "draft":
                self._check_draft_totals(client)
            # Also after a crash between finalize and our commit: the client treats
            # "already finalized" as success. Asynchronous providers answer their status.
            self._store_remote(client.finalize(self.document_type, self.remote_id))
            self._commit()
        if self.remote_state == "pending":
            return True
        if self.remote_state == "rejected":
            raise ProviderRejection(
                self.env._(
                    "%(provider)s rejected the document: %(reason)s",
                    provider=client.label,
                    reason=self.remote_message or "-",
                )
            )
        self.write(
            {
                "state": "issued",
                "pdf_state": "pending" if "pdf" in client.capabilities else "none",
                "email_state": "pending" if self.send_email and "email" in client.capabilities else "none",
            }
        )
        self._commit()
        self._post_on_sources(
            self.env._(
                "Fiscal document %(number)s issued at %(account)s (ATCUD / verification code %(code)s).",
                number=self.number or "?",
                account=self.account_id.name,
                code=self.atcud or "-",
            )
        )
        return False

    def _check_draft_totals(self, client):
        """Before a draft becomes a legal document: the provider's totals must be Odoo's."""
        source = self.move_id if self.move_id and self.kind != "receipt" else self.sale_order_id
        expected = source.amount_total if source else self.amount_total
        if self.remote_total is False or self.remote_total is None:
            return
        currency = self.currency_id or source.currency_id
        difference = abs(self.remote_total - expected)
        if currency.compare_amounts(difference, self.account_id.totals_tolerance) > 0:
            self.write({"totals_mismatch": True})
            self._commit()
            raise ProviderRejection(
                self.env._(
                    "Totals differ: Odoo %(odoo)s, %(provider)s %(remote)s (difference %(diff)s). The document "
                    "stays a draft at the provider and is not final. Check prices, discounts and taxes "
                    "(tax names must exist at the provider), then Retry.",
                    odoo=expected,
                    provider=client.label,
                    remote=self.remote_total,
                    diff=round(difference, currency.decimal_places),
                )
            )

    def _follow_ups(self, client):
        if self.state == "issued" and self.settle_state == "pending":
            self._store_remote(client.settle(self.document_type, self.remote_id))
            self.write({"settle_state": "done"})
            self._commit()
            self._post_on_sources(self.env._("Fiscal document %s marked as paid at the provider.", self.number))
        if self.state == "issued" and self.pdf_state == "pending":
            xml = client.fetch_xml(self.document_type, self.remote_id) if "xml" in client.capabilities else None
            self._attach_pdf(client.fetch_pdf(self.document_type, self.remote_id), xml)
            self._commit()
        if self.state == "issued" and self.email_state == "pending":
            email = self.partner_id.email
            if not email:
                self.write({"email_state": "none"})
                self._post_on_sources(self.env._("Not emailed: the customer has no email address."))
                return
            number = self.number or ""
            client.send_email(
                self.document_type,
                self.remote_id,
                email,
                (self.account_id.email_subject or "").replace("{number}", number),
                (self.account_id.email_body or "").replace("{number}", number),
            )
            self.write({"email_state": "sent"})
            self._post_on_sources(self.env._("Fiscal document emailed to %s by the provider.", email))

    def _job_cancel(self, client):
        if not self.remote_id and not self.create_sent:
            self.write({"state": "dropped"})
            self._post_on_sources(self.env._("Queued fiscal document dropped: nothing had been sent."))
            return False
        if not self.remote_id:
            data = self.env["fiscal.mapping"]._document_data(self)
            found = client.find_by_reference(data) if "find_by_reference" in client.capabilities else None
            if not found:
                self.write({"state": "cancelled"})
                return False
            self._store_remote(found)
            self._commit()
        if self.remote_state == "cancel_pending":
            remote = client.fetch_status(self.document_type, self.remote_id)  # asynchronous cancellation
        else:
            remote = client.cancel(self.document_type, self.remote_id, self.cancel_reason or "")
        self._store_remote(remote)
        if remote.state == "cancel_pending":
            return True
        if remote.state == "cancel_denied":
            self.write({"state": "issued", "remote_state": "final"})
            self._commit()
            raise ProviderRejection(
                self.env._(
                    "%(provider)s refused the cancellation: %(reason)s",
                    provider=client.label,
                    reason=remote.message or "-",
                )
            )
        self.write({"state": "cancelled"})
        self._post_on_sources(
            self.env._(
                "Fiscal document %(number)s cancelled at the provider: %(reason)s",
                number=self.number or self.reference,
                reason=self.cancel_reason or "-",
            )
        )
        return False

    def _store_remote(self, remote):
        vals = {"remote_id": remote.remote_id, "remote_state": remote.state, "remote_message": remote.message or False}
        if remote.number:
            vals["number"] = remote.number
        if remote.atcud:
            vals["atcud"] = remote.atcud
        if remote.total is not None:
            vals["remote_total"] = float(remote.total)
        self.write(vals)

    def _attach_pdf(self, content, xml=None):
        """Attach the provider's PDF (and legal XML) to the invoice and the order, and keep them here."""
        stem = (self.number or self.reference).replace("/", "-")
        files = [(f"{stem}.pdf", content, "application/pdf")]
        if xml:
            files.append((f"{stem}.xml", xml, "application/xml"))
        body = self.env._("Fiscal document PDF %s received from the provider.", self.number or "")
        Attachment = self.env["ir.attachment"].sudo()
        own = Attachment
        for record in (self.move_id, self.sale_order_id, self):
            if not record:
                continue
            attachments = Attachment.create(
                [
                    {"name": name, "raw": raw, "mimetype": mimetype, "res_model": record._name, "res_id": record.id}
                    for name, raw, mimetype in files
                ]
            )
            if record == self:
                own = attachments
            else:
                record.sudo().message_post(body=body, attachment_ids=attachments.ids)
        self.write({"pdf_attachment_id": own[:1].id, "xml_attachment_id": own[1:2].id, "pdf_state": "done"})

    # ------------------------------------------------------------------ errors
    def _on_auth_error(self, error, operation, client):
        self.env.cr.rollback()  # pylint: disable=invalid-commit
        message = self._redact(str(error))
        self._log_attempt(operation, error.kind, client=client, message=message)
        # The document is not at fault: it waits, the account is paused with one message.
        self.write(
            {
                "state": "sending" if self.create_sent and not self.remote_id else self.state,
                "next_attempt": fields.Datetime.now(),
                "last_error": self.env._(
                    "Waiting: the account %s is paused (credentials refused).", self.account_id.name
                ),
                "error_kind": error.kind,
            }
        )
        self.account_id._pause(message)

    def _on_provider_error(self, error, operation, client):
        self.env.cr.rollback()  # pylint: disable=invalid-commit
        if error.retryable:
            self._on_transient(error, operation, client)
        else:
            self._on_validation_error(str(error), error.kind, operation, client)

    def _on_validation_error(self, message, kind, operation, client):
        self.env.cr.rollback()  # pylint: disable=invalid-commit
        message = self._redact(message)
        self._log_attempt(operation, kind, client=client, message=message)
        vals = {"last_error": message, "error_kind": kind, "state": "error"}
        if self.state == "issued":
            # The document exists; only a follow-up (PDF, email) failed: keep it issued.
            vals.pop("state")
            vals.update(
                {
                    "pdf_state": "none" if self.pdf_state == "pending" else self.pdf_state,
                    "email_state": "none" if self.email_state == "pending" else self.email_state,
                }
            )
        self.write(vals)
        self._post_on_sources(
            self.env._("Fiscal document not issued: %s Fix the data, then click Retry.", message)
            if "state" in vals
            else self.env._("Fiscal document follow-up failed: %s", message),
            error=True,
        )

    def _on_transient(self, error, operation, client):
        # Failed attempts; waiting for an authorization is not one, and neither is a rate limit
        # (429, InvoiCy 179): that is the provider's budget, not this document failing. Counted,
        # a long 429 storm (a backfill against 100 calls/minute) failed every document it hit
        # max_attempts times (fault suite). It still waits Retry-After.
        attempts = self.attempt_count + (0 if isinstance(error, RateLimitedError) else 1)
        message = self._redact(str(error))
        self._log_attempt(operation, error.kind, client=client, message=message)
        if isinstance(error, RateLimitedError) or error.retry_after:
            delay = max(error.retry_after or 60, 1)
        else:
            delay = min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_CAP) * random.uniform(0.8, 1.2)
        vals = {
            "attempt_count": attempts,
            "last_error": message,
            "error_kind": error.kind,
            "next_attempt": fields.Datetime.now() + timedelta(seconds=delay),
        }
        if self.state in ("to_send", "sending") and self.create_sent:
            vals["state"] = "sending"
        if attempts >= self.account_id.max_attempts:
            if self.state == "issued":
                # Only a follow-up keeps failing: stop it, the document itself exists.
                vals.update(pdf_state="none", email_state="none" if self.email_state == "pending" else self.email_state)
            else:
                vals["state"] = "failed"
            self.write(vals)
            self._schedule_failure_activity(message)
            self._post_on_sources(
                self.env._("Fiscal document failed after %(n)s attempts: %(msg)s", n=attempts, msg=message), error=True
            )
            return
        self.write(vals)
        self._trigger_processing(vals["next_attempt"])

    def _schedule_failure_activity(self, message):
        user = self.account_id.responsible_user_id or self.env.ref("base.user_admin", raise_if_not_found=False)
        if user:
            self.activity_schedule(
                "mail.mail_activity_data_todo",
                user_id=user.id,
                summary=self.env._("Fiscal document failed"),
                note=message,
            )

    def _log_attempt(self, operation, outcome, client=None, message=None):
        trace = client.take_trace() if client else []
        self.env["fiscal.document.attempt"].sudo().create(
            {
                "document_id": self.id,
                "operation": operation,
                "outcome": outcome,
                "message": message,
                "exchange_count": len(trace),
                "summary": "\n".join(
                    f"{x.method} {x.path} -> {x.status or 'no answer'} ({x.duration_ms} ms)"
                    + (f"\n  sent: {x.request}" if x.request else "")
                    + (f"\n  got: {x.response}" if x.response else "")
                    for x in trace
                ),
            }
        )

    # ------------------------------------------------------------------ chatter
    def _post_on_sources(self, body, error=False, on_document=True):
        for doc in self:
            if on_document:
                doc.message_post(body=body)
            for record in (doc.sale_order_id, doc.move_id):
                if record:
                    record.sudo().message_post(body=body, subtype_xmlid="mail.mt_note")

    # ------------------------------------------------------------------ credit notes, receipts
    @api.model
    def _enqueue_credit_note(self, refund):
        """A posted Odoo credit note reversing an invoice that has a fiscal document gets its
        fiscal credit note, referencing the original; one per Odoo credit note, never two."""
        # Even if the original has not reached the provider yet: the credit note waits for it.
        original = refund.reversed_entry_id._fiscal_documents().filtered(
            lambda d: d.kind == "invoice" and d.state not in DEAD_STATES
        )[:1]
        if not original:
            return self.browse()
        account = original.account_id
        if "credit_note" not in account._capabilities():
            original._post_on_sources(
                self.env._(
                    "%(provider)s issues no credit notes: cancel %(number)s there if needed.",
                    provider=account.name,
                    number=original.number or original.reference,
                ),
            )
            return self.browse()
        return self._enqueue(
            account,
            move=refund,
            order=original.sale_order_id,
            kind="credit_note",
            related_document_id=original.id,
            cancel_reason=refund.ref or self.env._("Credit note %s", refund.name),
        )

    @api.model
    def _enqueue_receipt(self, invoice, key, amount, date, method):
        original = invoice._fiscal_documents().filtered(
            lambda d: d.kind == "invoice" and d.state not in DEAD_STATES and d.document_type == "invoice"
        )[:1]
        if not original or not original.account_id.issue_receipts:
            return self.browse()
        if "receipt" not in original.account_id._capabilities():
            return self.browse()
        if self.sudo().search_count([("payment_key", "=", key), ("state", "not in", DEAD_STATES)]):
            return self.browse()
        vals = {
            "company_id": invoice.company_id.id,
            "account_id": original.account_id.id,
            "move_id": invoice.id,
            "sale_order_id": original.sale_order_id.id,
            "partner_id": invoice.partner_id.commercial_partner_id.id,
            "kind": "receipt",
            "document_type": "receipt",
            "mode": "finalize",
            "related_document_id": original.id,
            "currency_id": invoice.currency_id.id,
            "amount_total": amount,
            "payment_key": key,
            "payment_amount": amount,
            "payment_date": date,
            "payment_method": method,
            "next_attempt": fields.Datetime.now(),
        }
        try:
            with self.env.cr.savepoint():
                doc = self.sudo().create(vals)
        except psycopg2.errors.UniqueViolation:
            return self.browse()
        doc._post_on_sources(self.env._("Fiscal receipt queued for a payment of %s.", amount))
        self._trigger_processing()
        return doc

    def _request_settle(self):
        for doc in self.filtered(lambda d: d.kind == "invoice" and d.state in ("issued", "to_send", "sending")):
            if "settle" in doc.account_id._capabilities() and not doc.account_id.issue_receipts:
                vals = {"settle_state": "pending"}
                if doc.state == "issued":  # others settle once issued, at their own pace
                    vals["next_attempt"] = fields.Datetime.now()
                doc.write(vals)
        self._trigger_processing()

    # ------------------------------------------------------------------ refunds
    def _on_source_refunded(self, why):
        """The sale was refunded in full or cancelled. A document still waiting is dropped
        (refund window; or cancel-on-refund); an issued one is cancelled at the provider when
        the account says so. Otherwise the accountant issues a credit note."""
        handled = self.browse()
        for doc in self.filtered(lambda d: d.state not in DEAD_STATES and d.kind == "invoice"):
            account = doc.account_id
            unsent = not doc.create_sent and doc.state in ("to_send", "error", "failed")
            if unsent and (account.trigger == "payment_window" or account.cancel_on_refund):
                doc.write({"state": "dropped", "cancel_reason": why})
                doc._post_on_sources(self.env._("Fiscal document dropped before sending: %s.", why))
                handled |= doc
            elif account.cancel_on_refund and doc.state in ("issued", "draft", "sending", "to_send", "error"):
                if account._can_cancel(doc.document_type):
                    doc.action_request_cancel(why)
                    handled |= doc
                else:
                    doc._post_on_sources(
                        self.env._(
                            "%(provider)s cannot cancel documents: issue a credit note (%(why)s).",
                            provider=account.name,
                            why=why,
                        ),
                    )
        return handled

    # ------------------------------------------------------------------ webhooks
    @api.model
    def _find_for_webhook(self, account, remote_id, reference):
        if not remote_id and not reference:
            return self.browse()
        domain = [("account_id", "=", account.id)]
        if remote_id and reference:
            domain += ["|", ("remote_id", "=", str(remote_id)), ("reference", "=", str(reference))]
        elif remote_id:
            domain.append(("remote_id", "=", str(remote_id)))
        else:
            domain.append(("reference", "=", str(reference)))
        return self.search(domain, limit=1)

    def _wake_up_from_webhook(self):
        """Read the document again soon, if we are waiting on the provider; otherwise nothing
        (a replayed or late notification must not change anything)."""
        waiting = self.filtered(
            lambda d: d.remote_state in ("pending", "cancel_pending") and d.state in ("sending", "to_cancel")
        )
        now = fields.Datetime.now()
        # Not one a worker is reading right now (its lease): it schedules the next read itself.
        wake = waiting.filtered(lambda d: not d._maybe_leased(now))
        if wake:
            wake.write({"next_attempt": now})
            self._trigger_processing()
        return waiting

    def _maybe_leased(self, now):
        """True when a worker may hold this document right now (``_claim``): it is in the queue
        and its next attempt is at most LEASE ahead. Bringing such a document forward would let
        a second worker take it while the first is still talking to the provider (two PDFs, two
        emails: fault suite). A real backoff that short ends within the lease anyway, and a
        worker always ends by scheduling the document again (now, when nothing is left to wait for)."""
        self.ensure_one()
        in_queue = self.state in ("to_send", "sending", "to_cancel") or (
            self.state == "issued" and "pending" in (self.pdf_state, self.email_state, self.settle_state)
        )
        return bool(in_queue and self.next_attempt and now < self.next_attempt <= now + LEASE)

    # ------------------------------------------------------------------ user actions
    def action_retry(self):
        """Send again after the user fixed the data (or after a failure)."""
        if not self.env.su:  # users: checked on the source, then done as superuser (no user writes the outbox)
            self._check_user_action()
            self.sudo().action_retry()
            return True
        for doc in self:
            if doc.state not in ("error", "failed") and not (doc.state == "issued" and doc.last_error):
                raise UserError(self.env._("Only documents that need attention or failed can be retried."))
            now = fields.Datetime.now()
            vals = {"next_attempt": now, "last_error": False, "error_kind": False}
            if doc.state in ("error", "failed"):
                vals["state"] = "sending" if doc.create_sent else "to_send"
                vals["attempt_count"] = 0
            else:
                # Issued, a follow-up (PDF, email) failed. Still queued, a worker may be on it now:
                # keep its lease (see _maybe_leased), the queue retries it within LEASE anyway.
                if doc._maybe_leased(now):
                    del vals["next_attempt"]
                if doc.pdf_state == "none":
                    vals["pdf_state"] = "pending"
            doc.write(vals)
            doc.activity_unlink(["mail.mail_activity_data_todo"])
            doc.message_post(body=self.env._("Retry requested by %s.", self.env.user.name))
        self._trigger_processing()
        return True

    def action_open_pdf(self):
        self.ensure_one()
        self.check_access("read")
        if not self.pdf_attachment_id:
            raise UserError(self.env._("The PDF has not been received yet."))
        return {
            "type": "ir.actions.act_url",
            "url": f"/web/content/{self.pdf_attachment_id.id}?download=false",
            "target": "new",
        }

    def action_request_cancel(self, reason):
        if not self.env.su:
            self._check_user_action("write")
            self.sudo().action_request_cancel(reason)
            return True
        for doc in self:
            if doc.state in DEAD_STATES:
                continue
            if doc.state in ("to_send", "error", "failed") and not doc.create_sent:
                doc.write({"state": "dropped", "cancel_reason": reason})
                doc._post_on_sources(self.env._("Queued fiscal document dropped: %s", reason))
                continue
            if doc.state in ("issued", "draft") and not doc.account_id._can_cancel(doc.document_type):
                raise UserError(
                    self.env._(
                        "%(provider)s cannot cancel a %(type)s: issue a credit note (reverse the invoice) instead.",
                        provider=doc.account_id.name,
                        type=dict(doc._fields["document_type"].selection)[doc.document_type].lower(),
                    )
                )
            doc.write({"state": "to_cancel", "cancel_reason": reason, "next_attempt": fields.Datetime.now()})
            doc.message_post(
                body=self.env._(
                    "Cancellation requested by %(user)s: %(reason)s", user=self.env.user.name, reason=reason
                )
            )
        self._trigger_processing()

    def action_process_now(self):
        """Run the queue now (the same path as the cron: nothing runs in this transaction)."""
        self._check_user_action()
        self._trigger_processing()
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"message": self.env._("The queue will be processed in a few seconds."), "type": "info"},
        }
