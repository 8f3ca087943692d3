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

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..providers import (
    AuthenticationError,
    ProviderError,
    RateLimitedError,
    TransientError,
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
        [("invoice", "Invoice"), ("credit_note", "Credit note")], required=True, default="invoice", readonly=True
    )
    document_type = fields.Selection(
        DOCUMENT_TYPES + [("credit_note", "Credit note")], required=True, default="invoice", readonly=True
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
    create_sent = fields.Boolean(
        readonly=True, copy=False, help="A create request may have reached the provider: probe before re-sending."
    )
    pdf_attachment_id = fields.Many2one("ir.attachment", "PDF", readonly=True, copy=False)
    pdf_state = fields.Selection(
        [("none", "Not needed"), ("pending", "Pending"), ("done", "Attached")], default="none", readonly=True
    )
    email_state = fields.Selection(
        [("none", "Not requested"), ("pending", "Pending"), ("sent", "Sent")], default="none", readonly=True
    )
    cancel_reason = fields.Char(readonly=True, copy=False)

    # Retries.
    attempt_count = fields.Integer(readonly=True, copy=False)
    next_attempt = fields.Datetime(index=True, readonly=True, copy=False, default=fields.Datetime.now)
    last_error = fields.Text(readonly=True, copy=False)
    error_kind = fields.Char(readonly=True, copy=False)
    attempt_ids = fields.One2many("fiscal.document.attempt", "document_id", readonly=True)

    # Two live documents of the same kind for one source are impossible.
    _live_per_invoice = models.UniqueIndex(
        "(move_id, kind) WHERE move_id IS NOT NULL AND state NOT IN ('cancelled', 'dropped')",
        "This invoice already has a fiscal document.",
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
        uuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid", "")[:8]
        for doc in docs:
            if not doc.reference:
                # Unique per database and identical on every retry, forever.
                doc.reference = f"ODOO-{uuid}-{doc.id}"
        return docs

    def write(self, vals):
        if "reference" in vals and any(doc.reference and doc.reference != vals["reference"] for doc in self):
            raise UserError(self.env._("The reference of a fiscal document never changes."))
        return super().write(vals)

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
        try:
            with self.env.cr.savepoint():
                doc = self.sudo().create(vals)
        except psycopg2.errors.UniqueViolation:
            # A concurrent transaction enqueued the same source (unique index): keep theirs.
            return self.sudo().search(source_domain, limit=1)
        # The fiscal fields of orders and invoices are computed without dependencies:
        # make the new document visible in this transaction too.
        doc.sale_order_id.invalidate_recordset()
        doc.sale_order_id.invoice_ids.invalidate_recordset()
        doc.move_id.invalidate_recordset()
        doc._post_on_sources(self.env._("Fiscal document queued at %s.", account.name))
        self._trigger_processing()
        return doc

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
            ("pdf_state", "=", "pending"),
            ("email_state", "=", "pending"),
        ]

    @api.model
    def _cron_process_queue(self, batch_size=50):
        """Process due documents one at a time; each is locked, leased and committed on its own."""
        domain = self._due_domain()
        cron = self.env["ir.cron"]
        candidates = self.search(domain, order="next_attempt, id", limit=batch_size)
        # The runner calls us again while it is told that work remains.
        cron._commit_progress(remaining=self.search_count(domain))
        processed = 0
        for doc in candidates:
            if doc._claim():
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
        self.write({"next_attempt": fields.Datetime.now() + LEASE, "attempt_count": self.attempt_count + 1})
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
                self._job_cancel(client)
            else:
                self._job_issue(client)
            self._log_attempt(operation, "ok", client=client)
            self.write({"next_attempt": fields.Datetime.now(), "last_error": False, "error_kind": False})
        except AuthenticationError as e:
            self._on_auth_error(e, operation, client)
        except ProviderError as e:
            self._on_provider_error(e, operation, client)
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

    def _redact(self, text):
        return Redactor([self.account_id.sudo().api_key or ""])(text)

    def _commit(self):
        # Each remote step is a fact.
        self.env.cr.commit()  # pylint: disable=invalid-commit

    # ------------------------------------------------------------------ jobs
    def _job_issue(self, client):
        # Mapped only while the document does not exist remotely: a follow-up (finalize,
        # PDF, email) never depends on today's data of the order.
        data = None if self.remote_id else self.env["fiscal.mapping"]._document_data(self)
        if not self.remote_id:
            client.prepare(data)  # customer and items: idempotent, no fiscal document
        if not self.remote_id and self.mode == "data_only":
            self.write({"state": "registered"})
            self._post_on_sources(
                self.env._("Customer data sent to %s (no fiscal document requested).", self.account_id.name)
            )
            return
        if not self.remote_id and self.create_sent and "find_by_reference" in client.capabilities:
            # A create may have reached the provider before a crash or timeout: look first.
            found = client.find_by_reference(data)
            if found:
                self._store_remote(found)
                self._commit()
        if not self.remote_id:
            self.write({"state": "sending", "create_sent": True})
            self._commit()
            remote = client.create(data)
            self._store_remote(remote)
            self._commit()
        if self.mode == "draft":
            if self.state != "draft":
                self.write({"state": "draft"})
                self._post_on_sources(
                    self.env._(
                        "Draft fiscal document created at %s (not final: finalize it there).", self.account_id.name
                    )
                )
            return
        if self.state in ("to_send", "sending"):
            if self.remote_state not in ("final", "settled"):
                # Also after a crash between finalize and our commit: the client treats
                # "already finalized" as success.
                self._store_remote(client.finalize(self.document_type, self.remote_id))
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
                    "Fiscal document %(number)s issued at %(account)s (ATCUD %(atcud)s).",
                    number=self.number or "?",
                    account=self.account_id.name,
                    atcud=self.atcud or "-",
                )
            )
        if self.state == "issued" and self.pdf_state == "pending":
            self._attach_pdf(client.fetch_pdf(self.document_type, self.remote_id))
            self._commit()
        if self.state == "issued" and self.email_state == "pending":
            email = self.partner_id.email
            if not email:
                self.write({"email_state": "none"})
                self._post_on_sources(self.env._("Not emailed: the customer has no email address."))
            else:
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
            return
        if not self.remote_id:
            data = self.env["fiscal.mapping"]._document_data(self)
            found = client.find_by_reference(data) if "find_by_reference" in client.capabilities else None
            if not found:
                self.write({"state": "cancelled"})
                return
            self._store_remote(found)
            self._commit()
        remote = client.cancel(self.document_type, self.remote_id, self.cancel_reason or "")
        self._store_remote(remote)
        self.write({"state": "cancelled"})
        self._post_on_sources(
            self.env._(
                "Fiscal document %(number)s cancelled at the provider: %(reason)s",
                number=self.number or self.reference,
                reason=self.cancel_reason or "-",
            )
        )

    def _store_remote(self, remote):
        vals = {"remote_id": remote.remote_id, "remote_state": remote.state}
        if remote.number:
            vals["number"] = remote.number
        if remote.atcud:
            vals["atcud"] = remote.atcud
        if remote.total is not None:
            vals["remote_total"] = float(remote.total)
        self.write(vals)

    def _attach_pdf(self, content):
        """Attach the provider's PDF to the invoice and the order (and keep it on the document)."""
        filename = f"{(self.number or self.reference).replace('/', '-')}.pdf"
        body = self.env._("Fiscal document PDF %s received from the provider.", self.number or "")
        attachments = self.env["ir.attachment"]
        for record in (self.move_id, self.sale_order_id, self):
            if not record:
                continue
            attachment = (
                self.env["ir.attachment"]
                .sudo()
                .create(
                    {
                        "name": filename,
                        "raw": content,
                        "mimetype": "application/pdf",
                        "res_model": record._name,
                        "res_id": record.id,
                    }
                )
            )
            attachments |= attachment
            if record != self:
                record.sudo().message_post(body=body, attachment_ids=attachment.ids)
        self.write({"pdf_attachment_id": attachments[-1].id, "pdf_state": "done"})

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
        attempts = self.attempt_count
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
    def _post_on_sources(self, body, error=False):
        for doc in self:
            doc.message_post(body=body)
            for record in (doc.sale_order_id, doc.move_id):
                if record:
                    record.sudo().message_post(body=body, subtype_xmlid="mail.mt_note")

    # ------------------------------------------------------------------ user actions
    def action_retry(self):
        """Send again after the user fixed the data (or after a failure)."""
        for doc in self:
            if doc.state not in ("error", "failed") and not (doc.state == "issued" and doc.last_error):
                raise UserError(self.env._("Only documents that need attention or failed can be retried."))
            vals = {"next_attempt": fields.Datetime.now(), "last_error": False, "error_kind": False}
            if doc.state in ("error", "failed"):
                vals["state"] = "sending" if doc.create_sent else "to_send"
                vals["attempt_count"] = 0
            elif doc.pdf_state == "none":
                vals["pdf_state"] = "pending"
            doc.write(vals)
            doc.activity_unlink(["mail.mail_activity_data_todo"])
            doc.message_post(body=self.env._("Retry requested by %s.", self.env.user.name))
        self._trigger_processing()
        return True

    def action_open_pdf(self):
        self.ensure_one()
        if not self.pdf_attachment_id:
            raise UserError(self.env._("The PDF has not been received yet."))
        return {
            "type": "ir.actions.act_url",
            "url": f"/web/content/{self.pdf_attachment_id.id}?download=false",
            "target": "new",
        }

    def action_request_cancel(self, reason):
        for doc in self:
            if doc.state in DEAD_STATES:
                continue
            if doc.state in ("to_send", "error", "failed") and not doc.create_sent:
                doc.write({"state": "dropped", "cancel_reason": reason})
                doc._post_on_sources(self.env._("Queued fiscal document dropped: %s", reason))
                continue
            if "cancel" not in doc.account_id._capabilities():
                raise UserError(self.env._("%s cannot cancel documents: issue a credit note.", doc.account_id.name))
            doc.write({"state": "to_cancel", "cancel_reason": reason, "next_attempt": fields.Datetime.now()})
            doc.message_post(
                body=self.env._(
                    "Cancellation requested by %(user)s: %(reason)s", user=self.env.user.name, reason=reason
                )
            )
        self._trigger_processing()

    def action_process_now(self):
        """Run the queue now (the same path as the cron: nothing runs in this transaction)."""
        self._trigger_processing()
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"message": self.env._("The queue will be processed in a few seconds."), "type": "info"},
        }
