"""The outbox: a fiscal document that must exist (or be cancelled) at a provider.

Exactly-once protocol (docs/exactly-once.md has the long version):
1. Hooks only *insert* a row (``to_send``) in the user's transaction; a partial unique
   index makes two live documents for one source impossible.
2. The runner (``_cron_process_queue``) locks one row (``FOR UPDATE SKIP LOCKED``), re-reads it,
   takes a lease (``next_attempt`` in the future) with a new ``lease_token`` and commits.
3. ``create_sent`` is committed *before* the create call; after a crash or timeout the
   next attempt probes the provider by our reference before anything is re-sent.
4. One engine (``providers/pipeline.py``, no ORM) makes the provider calls for one document or
   many; what the provider did is checkpointed as each document ends a stage, on a transaction
   started after the call, as a compare-and-set on (id, lease token, state): a worker that lost
   its document writes nothing. Users record requests (cancel, settle) in their own fields.
"""

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import MissingError, UserError
from odoo.tools import SQL, config

from odoo.addons.base.models.ir_cron import MIN_TIME_PER_JOB

from ..providers import (
    AuthenticationError,
    ProviderError,
    RateLimitedError,
    TransientError,
)
from ..providers.base import FinalDocumentError, Redactor, TotalsMismatchError
from .fiscal_mapping import PT_PROVIDERS
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
    ("check", "Check at provider"),
    ("failed", "Failed"),
    ("dropped", "Dropped"),
]
# States in which the document occupies its source (the unique indexes ignore the others).
DEAD_STATES = ("cancelled", "dropped")
# What orders and invoices show of a document: a change is pushed to their open forms.
LIVE_FIELDS = frozenset(("state", "number", "atcud", "last_error", "pdf_attachment_id", "email_state", "settle_state"))
LIVE_CHANNEL = "fiscal_invoice_connector"  # the bus sub-channel of an order or invoice
LIVE_NOTIFICATION = "fiscal_invoice_connector/source_changed"
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


@dataclass
class _Lease:
    """What a worker holds: the token of its claim and the state it left the document in."""

    token: str
    state: str
    lost: bool = False


BACKOFF_BASE = 60  # seconds; doubled at each attempt
BACKOFF_CAP = 6 * 3600
FENCE_RETRIES = 5  # fresh transactions tried for one checkpoint when users commit meanwhile
FOLLOW_UP_ROUNDS = 4  # an issued document's follow-ups are given up after max_attempts x this


class FiscalDocument(models.Model):
    _name = "fiscal.document"
    _description = "Fiscal document"
    _inherit = ["mail.thread", "mail.activity.mixin"]
    _order = "id desc"
    _check_company_auto = True

    name = fields.Char(compute="_compute_name", store=True, precompute=True)
    company_id = fields.Many2one("res.company", required=True, index=True, readonly=True)
    account_id = fields.Many2one(
        "fiscal.provider.account", required=True, index=True, check_company=True, ondelete="restrict", readonly=True
    )
    provider = fields.Selection(related="account_id.provider", store=True, precompute=True)
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
    # Not tracked (a related field inherits ``number``'s tracking): every tracked write would read it,
    # and every new number would then search the documents relating to it (one query per document).
    related_number = fields.Char(related="related_document_id.number", string="Original number", tracking=False)
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
        [
            ("none", "Not requested"),
            ("pending", "Pending"),
            ("sending", "Sending"),
            ("sent", "Sent"),
            ("unknown", "Check at provider"),
        ],
        default="none",
        readonly=True,
        help="Check at provider: the request left and its answer was lost; it is never sent twice.",
    )
    cancel_reason = fields.Char(readonly=True, copy=False)
    totals_mismatch = fields.Boolean(readonly=True, copy=False, help="The provider's draft totals differ from Odoo's.")

    # Fencing: the token of the worker's claim; every write of a worker compares it (and the state).
    lease_token = fields.Char(readonly=True, copy=False)
    # User requests, never erased by a worker's write: honoured once the call in flight ends.
    cancel_requested = fields.Boolean(readonly=True, copy=False)

    # Retries.
    attempt_count = fields.Integer(readonly=True, copy=False)
    next_attempt = fields.Datetime(index=True, readonly=True, copy=False, default=fields.Datetime.now)
    last_error = fields.Text(readonly=True, copy=False)
    error_kind = fields.Char(readonly=True, copy=False)
    attempt_ids = fields.One2many("fiscal.document.attempt", "document_id", readonly=True)

    # A sale split into one NFS-e per national service code (the account's choice): the row the
    # hook inserted becomes part 1, the worker adds the others before anything is sent. Each part
    # is a document of its own (reference, probe, retry); part 0 is a whole sale.
    split_part = fields.Integer(
        "Part", readonly=True, copy=False, help="NFS-e: part n of a sale split into one note per service code."
    )
    split_count = fields.Integer("Parts", readonly=True, copy=False)
    split_code = fields.Char("Service code of the part", readonly=True, copy=False)
    split_lead_id = fields.Many2one(
        "fiscal.document", "First part", readonly=True, copy=False, index="btree_not_null", ondelete="restrict"
    )
    split_part_ids = fields.One2many("fiscal.document", "split_lead_id", "Other parts", readonly=True)

    # Two live documents of the same kind (and part) for one source are impossible.
    _live_per_invoice = models.UniqueIndex(
        "(move_id, kind, COALESCE(split_part, 0)) WHERE move_id IS NOT NULL AND kind != 'receipt' "
        "AND state NOT IN ('cancelled', 'dropped')",
        "This invoice already has a fiscal document.",
    )
    _live_per_payment = models.UniqueIndex(
        "(payment_key) WHERE payment_key IS NOT NULL AND state NOT IN ('cancelled', 'dropped')",
        "This payment already has a fiscal receipt.",
    )
    # One legal document per sale (docs/exactly-once.md): an invoice-kind document of an order
    # (move_id empty) stands for every invoice of that order, so it and a document of one of
    # those invoices cannot both be live, whatever the policy or account said when each was
    # queued. Each live row holds a range on its order: the whole order for an order-level
    # document, one point (its invoice) for an invoice-level one; two ranges of one order that
    # overlap are refused. Ids are int4, so order * 2^32 + move never collides across orders.
    # Documents of an invoice grouping several orders carry no order: _live_sale_documents
    # checks those (see the doc for the remaining race). A split sale's parts hold one part each
    # (a whole-sale row holds every part): two rows for the same part of a sale are refused too.
    _one_invoice_per_sale = models.Constraint(
        "EXCLUDE USING gist (int8range("
        "sale_order_id::bigint * 4294967296 + COALESCE(move_id, 0), "
        "sale_order_id::bigint * 4294967296 + COALESCE(move_id, 4294967295), '[]') WITH &&, "
        "int4range(CASE WHEN split_part > 0 THEN split_part ELSE 1 END, "
        "CASE WHEN split_part > 0 THEN split_part ELSE 1000000 END, '[]') WITH &&) "
        "WHERE (kind = 'invoice' AND sale_order_id IS NOT NULL AND state NOT IN ('cancelled', 'dropped'))",
        "This sale already has a fiscal invoice (of its order or of one of its invoices).",
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
        # No live notification for a new document: it is queued in the transaction of the user
        # who confirmed or posted, whose form reloads with the action (a bus message costs a
        # connection of its own at commit); the queue's first step tells the other open forms.
        self.env.cr.precommit.data.setdefault("fiscal_invoice_connector.created", set()).update(docs.ids)
        return docs

    def write(self, vals):
        if "reference" in vals and any(doc.reference and doc.reference != vals["reference"] for doc in self):
            raise UserError(self.env._("The reference of a fiscal document never changes."))
        res = super().write(vals)
        if not LIVE_FIELDS.isdisjoint(vals):
            self._notify_sources()
        return res

    def _notify_sources(self):
        """Open forms of the orders and invoices showing these documents reload their fiscal
        button, banner and chatter (static/src/js/fiscal_live_update.js): collected during the
        transaction, sent once per record when it commits; the payload names the record only."""
        data = self.env.cr.precommit.data
        pending = data.get("fiscal_invoice_connector.live")
        if pending is None:
            pending = data["fiscal_invoice_connector.live"] = set()
            Doc = self.env["fiscal.document"].sudo()
            self.env.cr.precommit.add(lambda: Doc.browse(pending)._send_live_notifications())
        pending.update(self.ids)

    def _send_live_notifications(self):
        docs = self
        try:  # in the cache already (no query), unless one was deleted meanwhile
            # Beside its original, a receipt or credit note changes the original's records too.
            orders = docs.sale_order_id | docs.related_document_id.sale_order_id
        except MissingError:
            docs = self.exists()
            orders = docs.sale_order_id | docs.related_document_id.sale_order_id
        moves = docs.move_id | docs.related_document_id.move_id
        # An order's document is its invoices' one too. A document queued in this transaction
        # (an order being confirmed) reads its order's invoice lines from the cache, which spares
        # the search; the queue's transactions search the invoices showing it at once.
        created = self.env.cr.precommit.data.get("fiscal_invoice_connector.created", set())
        order_docs = docs.filtered(
            lambda d: not d.move_id
            and d.sale_order_id
            and (d.id not in created or d.sale_order_id.order_line.invoice_lines)
        )
        if order_docs:
            moves |= self.env["account.move"].sudo().search([("fiscal_document_id", "in", order_docs.ids)])
        Bus = self.env["bus.bus"].sudo()
        for record in [*orders, *moves]:
            Bus._sendone((record, LIVE_CHANNEL), LIVE_NOTIFICATION, {"model": record._name, "id": record.id})

    def unlink(self):
        if any(doc.create_sent or doc.remote_id for doc in self):
            raise UserError(
                self.env._("A fiscal document that may exist at the provider cannot be deleted: cancel it instead.")
            )
        return super().unlink()

    # ------------------------------------------------------------------ enqueue
    @api.model
    def _live_sale_documents(self, records):
        """The live invoice-kind documents that already stand for the sale of each record
        (sale orders, or customer invoices), as ``{record id: documents}``: one legal document
        per sale. An order is covered by its own document or by one of any of its invoices; an
        invoice by its own or by an order-level document of one of its orders. The hooks,
        ``_enqueue``, ``_enqueue_many`` and the wizards all ask here (docs/exactly-once.md)."""
        Doc = self.sudo()
        live = [("kind", "=", "invoice"), ("state", "not in", DEAD_STATES)]
        result = {record.id: Doc for record in records}
        if not records:
            return result
        if records._name == "sale.order":
            # Their invoices through the invoice lines, in one query: no invoice_ids computed for a
            # whole backfill, and no domain through four relations to prepare at each confirmation
            # (it cost four times the search itself).
            self.env["sale.order.line"].flush_model(["order_id", "invoice_lines"])
            self.env["account.move.line"].flush_model(["move_id"])
            rows = self.env.execute_query(
                SQL(
                    "SELECT DISTINCT line.move_id FROM sale_order_line sol"
                    " JOIN sale_order_line_invoice_rel rel ON rel.order_line_id = sol.id"
                    " JOIN account_move_line line ON line.id = rel.invoice_line_id"
                    " WHERE sol.order_id IN %s",
                    tuple(records.ids),
                )
            )
            domain = ["|", ("sale_order_id", "in", records.ids), ("move_id", "in", [row[0] for row in rows])]
            for doc in Doc.search(live + domain, order="id"):
                for order in doc.sale_order_id | doc.move_id._fiscal_sale_orders():
                    if order.id in result:
                        result[order.id] |= doc
            return result
        orders = {move.id: move._fiscal_sale_orders() for move in records}
        all_orders = Doc.env["sale.order"].union(*orders.values())
        domain = ["|", ("move_id", "in", records.ids), "&", ("move_id", "=", False),
                  ("sale_order_id", "in", all_orders.ids)]  # fmt: skip
        by_move, by_order = {}, {}  # the invoice's own documents; order-level ones
        for doc in Doc.search(live + domain, order="id"):
            if doc.move_id:
                by_move[doc.move_id.id] = by_move.get(doc.move_id.id, Doc) | doc
            else:
                by_order[doc.sale_order_id.id] = by_order.get(doc.sale_order_id.id, Doc) | doc
        for move in records:
            result[move.id] = by_move.get(move.id, Doc).union(*(by_order.get(o.id, Doc) for o in orders[move.id]))
        return result

    def _note_sale_covered(self, move):
        """Posting (or paying) an invoice whose sale already has its fiscal document, queued for
        its order (a policy or account changed since): say so on the invoice, and which of its
        orders, if any, still has none."""
        own = self.filtered(lambda d: d.move_id == move)
        if own:
            return
        orders = move._fiscal_sale_orders()
        missing = orders - self.sale_order_id
        body = self.env._(
            "The fiscal document %(docs)s of %(orders)s already stands for this sale: no second one is issued.",
            docs=", ".join(self.mapped(lambda d: d.number or d.reference)),
            orders=", ".join(self.sale_order_id.mapped("name")),
        )
        if missing:
            body += " " + self.env._(
                "This invoice also bills %(orders)s, which have no fiscal document: issue them from the order "
                "(Issue fiscal document now), or cancel %(docs)s and issue one for this invoice.",
                orders=", ".join(missing.mapped("name")),
                docs=", ".join(self.mapped(lambda d: d.number or d.reference)),
            )
        move.sudo().message_post(body=body, subtype_xmlid="mail.mt_note")

    @api.model
    def _commercial_partner(self, record):
        """The customer a document is issued to: the commercial entity of ``record``'s partner.
        Read alone and as superuser (an invoice has it stored): not the partner's hundred
        columns under the user's multi-company rule, at each confirmation."""
        if "commercial_partner_id" in record._fields:
            return record.commercial_partner_id
        partner = record.partner_id.sudo()
        partner.fetch(["commercial_partner_id"])
        return partner.commercial_partner_id

    @api.model
    def _enqueue(self, account, *, order=None, move=None, kind="invoice", **extra):
        """Record that a fiscal document must exist. Runs in the user's transaction:
        only inserts a row, never talks to a provider, never raises for a duplicate.
        An invoice whose sale already has its document (of the order, or of this invoice)
        gets that one back, whatever the account or policy says now."""
        record = move or order
        if kind == "invoice":
            existing = self._live_sale_documents(record)[record.id]
            if existing:
                if move:
                    existing._note_sale_covered(move)
                return existing
        else:
            source_domain = [("kind", "=", kind), ("state", "not in", DEAD_STATES)]
            if move:
                source_domain.append(("move_id", "=", move.id))
            else:
                source_domain += [("sale_order_id", "=", order.id), ("move_id", "=", False)]
            existing = self.sudo().search(source_domain, limit=1)
            if existing:
                return existing
        vals = {
            "company_id": record.company_id.id,
            "account_id": account.id,
            "sale_order_id": order.id if order else False,
            "move_id": move.id if move else False,
            "partner_id": self._commercial_partner(record).id,
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
        except (psycopg2.errors.UniqueViolation, psycopg2.errors.ExclusionViolation):
            # A concurrent transaction documented the same sale (unique index, exclusion
            # constraint): keep theirs (invisible to this snapshot when it committed after it began).
            if kind == "invoice":
                return self._live_sale_documents(record)[record.id]
            return self.sudo().search(source_domain, limit=1)
        # No chatter message here: the order shows "Waiting" on its fiscal button.
        self._trigger_processing()
        return doc

    @api.model
    def _enqueue_many(self, account, records, per_minute=30):
        """Bulk enqueue (backfill): one insert for all, no chatter per record, spread in time
        so the queue never sends more than ``per_minute`` of them in a minute. A sale that
        already has its document keeps it (returned with the new ones)."""
        is_move = records._name == "account.move"
        covered = self._live_sale_documents(records)
        existing = self.sudo().union(*covered.values())
        todo = records.filtered(lambda r: not covered[r.id])
        now = fields.Datetime.now()
        vals_list = []
        for index, record in enumerate(todo):
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
        except (psycopg2.errors.UniqueViolation, psycopg2.errors.ExclusionViolation):
            # Someone documented some of them meanwhile: go one by one (each returns the live one).
            docs = self.browse()
            for record in todo:
                docs |= self._enqueue(account, **({"move": record} if is_move else {"order": record}))
        if docs:
            self._trigger_processing()
        return existing | docs

    @api.model
    def _trigger_processing(self, at=None):
        # The id from the cached xmlid (env.ref would read the row once more to check it exists).
        cron_id = self.env["ir.model.data"]._xmlid_to_res_id(
            "fiscal_invoice_connector.ir_cron_process_fiscal_documents", raise_if_not_found=False
        )
        if cron_id:
            self.env["ir.cron"].sudo().browse(cron_id)._trigger(at)

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
            ("email_state", "in", ("pending", "sending")),
            ("settle_state", "=", "pending"),
        ]

    # ------------------------------------------------------------------ the runner
    # The runner alone owns transactions: it claims (lease token), plans (intent committed before
    # any call), runs the engine (providers/pipeline.py, no ORM), checkpoints what the provider did
    # as each document ends a stage, and applies the outcome. Every write of a worker goes through
    # _fenced: a compare-and-set on (id, lease token, state it left), on a transaction started
    # after the provider call, retried on a serialization failure; dropped when the row moved on.
    @api.model
    def _cron_process_queue(self, batch_size=50):
        """Process due documents in slices the run can finish within its time budget (the cron's
        real-time limit, the HTTP request limit when run by hand, the accounts' rate budgets);
        re-trigger the cron while work remains."""
        from ..providers.pipeline import TimeBudget

        cron = self.env["ir.cron"]
        params = self.env["ir.config_parameter"].sudo()
        concurrency = max(1, int(params.get_param("fiscal_invoice_connector.concurrency", 8)))
        # Killed after the smallest real-time limit that applies (a cron worker's, or the HTTP
        # request's when the scheduled action is run by hand), counted from the job's start.
        limits = [float(config.get(key) or 0) for key in ("limit_time_real_cron", "limit_time_real")]
        limits = [limit for limit in limits if limit > 0]
        end = self.env.context.get("cron_end_time")
        budget = TimeBudget(
            min(limits) if limits else 120.0,
            seconds_per_document=float(params.get_param("fiscal_invoice_connector.seconds_per_document", 2.0)),
            started=end - MIN_TIME_PER_JOB if end else None,
        )
        domain = self._due_domain()
        seen, processed = [], 0
        allowance = {}  # account -> documents this run may still take at its request budget
        while True:
            size = budget.slice(batch_size)
            if size < 1:
                break
            candidates = self.search(domain + [("id", "not in", seen)], order="next_attempt, id", limit=size)
            if not candidates:
                break
            seen += candidates.ids
            # Within each account's request budget for the run (the rest waits for the next run).
            kept = []
            for doc in candidates:
                account = doc.account_id
                if account not in allowance:
                    allowance[account] = budget.rate_cap(account.rate_limit_per_minute)
                if allowance[account] is not None:
                    if allowance[account] <= 0:
                        continue
                    allowance[account] -= 1
                kept.append(doc.id)
            candidates = self.browse(kept)
            claimed = candidates._claim()  # commits
            if not claimed:
                continue
            started = budget.clock()
            claimed._process_batch(concurrency)
            budget.record(len(claimed), budget.clock() - started)
            processed += len(claimed)
            cron._commit_progress(len(claimed))
        left = self.search_count(domain + [("id", "not in", seen)])
        # The runner calls us again while it is told that work remains, until its own time is up.
        cron._commit_progress(remaining=left if budget.left() > 0 else 0)
        if left or self.search_count(domain):
            self._trigger_processing()  # a fresh run (its own time budget) takes the rest
        return processed

    def _claim(self):
        """Lock the rows, keep those still due, give each a lease with a new token and commit
        (one transaction for a batch); returns the documents claimed.

        After this commit the row locks are gone, but the lease keeps every other worker
        (their search filters on next_attempt) away until we are done or dead, and the token
        fences our writes: once another worker took a document over, ours are dropped.
        """
        locked = self.try_lock_for_update()  # rows another worker holds are skipped
        locked.invalidate_recordset()
        due = locked.filtered_domain(self._due_domain())
        lease_end = fields.Datetime.now() + LEASE
        for doc in due:
            doc.write({"next_attempt": lease_end, "lease_token": uuid.uuid4().hex})
        # Intent recorded before any call (and the row locks released).
        self.env.cr.commit()  # pylint: disable=invalid-commit
        return due

    def _fenced(self, lease, step, *args):
        """Run ``step(*args)`` as one transaction that starts now (after the provider call: no
        snapshot older than the call) if this worker still holds the document: same lease token,
        same state as it left it. Otherwise the write is dropped (another worker took over, or a
        user changed the document while no worker held it). A serialization failure (a user's
        commit meanwhile) is retried on a fresh transaction; it never aborts other documents."""
        cr = self.env.cr
        for attempt in range(FENCE_RETRIES):
            cr.commit()  # pylint: disable=invalid-commit
            self.env.invalidate_all()
            try:
                cr.execute(
                    SQL("SELECT lease_token, state FROM fiscal_document WHERE id = %s FOR NO KEY UPDATE", self.id)
                )
                row = cr.fetchone()
                if not row or row[0] != lease.token or row[1] != lease.state:
                    cr.rollback()  # pylint: disable=invalid-commit
                    _logger.info("Fiscal document %s moved on (%s): a stale write is dropped", self.id, row)
                    lease.lost = True
                    return None
                result = step(*args)
                self.env.flush_all()
                lease.state = self.state
                cr.commit()  # pylint: disable=invalid-commit
                return result
            except (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected):
                cr.rollback()  # pylint: disable=invalid-commit
                self.env.invalidate_all()
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        _logger.warning("Fiscal document %s: write not applied after %s conflicts", self.id, FENCE_RETRIES)
        return None

    def _process_batch(self, concurrency):
        """Plan every claimed document (ORM, intent committed), run the engine (provider calls,
        no ORM), checkpoint each document as it ends a stage, then apply its outcome."""
        from ..providers.pipeline import Pipeline, TokenBucket

        leases = {doc.id: _Lease(doc.lease_token, doc.state) for doc in self}
        jobs, by_id = [], {}
        planned = self._fenced_many(leases, "_plan_job", lambda doc: (), before="_prefetch_sources")
        for doc in self:
            job = planned.get(doc.id)
            if job is not None:
                jobs.append(job)
                by_id[doc.id] = doc
        if not jobs:
            return
        accounts = self.browse(list(by_id)).account_id
        factories = {a.id: (a._get_provider_class(), a._provider_config()) for a in accounts}
        limiters = {
            a.id: TokenBucket.for_budget(a.rate_limit_per_minute, per=60.0)
            for a in accounts
            if a.rate_limit_per_minute > 0
        }
        # What earlier runs sent about these customers (their ids at the provider): an unchanged
        # customer costs no request, a changed one one update.
        codes = {
            job.data.partner.code
            if job.data.partner
            else getattr(factories[job.account_id][0], "final_consumer_code", "")
            for job in jobs
            if job.data is not None
        }
        bindings = self.env["fiscal.partner.binding"]
        known = bindings._known(factories, codes - {""})
        shared = {account_id: {"clients": dict(clients)} for account_id, clients in known.items()}
        self.env.cr.commit()  # pylint: disable=invalid-commit

        def make_client(account_id, services):
            cls, config = factories[account_id]
            return cls(config, services=services)

        recorded = {job.doc_id: self._job_facts(job) for job in jobs}
        jobs_by_id = {job.doc_id: job for job in jobs}

        def checkpoint(done):
            # Jobs that ended a stage together, in one transaction. A stage that brought nothing
            # to record (a customer made ready, a PDF still being rendered or received) costs no
            # transaction: the next stage's checkpoint or the apply step follows.
            news = []
            for job in done:
                facts = self._job_facts(job)
                if facts != recorded[job.doc_id]:
                    recorded[job.doc_id] = facts
                    news.append(job.doc_id)
            if news:
                self.browse(news)._fenced_many(leases, "_checkpoint_job", lambda doc: (jobs_by_id[doc.id],))

        def intent(job, step):
            doc = by_id[job.doc_id]
            return bool(doc._guarded(leases[doc.id], doc._record_intent, job, step))

        pipeline = Pipeline(make_client, concurrency, limiters, checkpoint=checkpoint, intent=intent, shared=shared)
        try:
            pipeline.run(jobs)
        except Exception as e:  # noqa: BLE001 - a bug in the engine: every job says so, nothing is lost
            _logger.exception("Fiscal engine: unexpected error")
            for job in jobs:
                if job.error is None:
                    job.error, job.failed_stage = e, job.failed_stage or "engine"
        self._remember_clients(pipeline.shared, known)
        self.browse(list(by_id))._fenced_many(leases, "_apply_job", lambda doc: (jobs_by_id[doc.id],))

    def _fenced_many(self, leases, step, args_of, before=None):
        """``_fenced`` for a whole batch in one transaction: the rows still held (same lease
        token and state) are locked at once, ``step`` (a method name) runs on each of them and
        one commit records them all; the batch shares its reads (orders, lines, partners, taxes:
        ``before``, a method name, reads them at once for the documents held) and its writes.
        Any exception (a bug, a user's concurrent commit) rolls the batch back and each document
        then goes alone through ``_guarded`` (retries, errors reported on that document only).
        Returns ``{document id: result}``."""
        if not self:
            return {}
        cr = self.env.cr
        cr.commit()  # pylint: disable=invalid-commit
        self.env.invalidate_all()
        results, lost = {}, []
        try:
            cr.execute(
                SQL(
                    "SELECT id, lease_token, state FROM fiscal_document WHERE id IN %s ORDER BY id FOR NO KEY UPDATE",
                    tuple(self.ids),
                )
            )
            rows = {row[0]: tuple(row[1:]) for row in cr.fetchall()}
            held = self.browse()
            for doc in self:
                lease = leases[doc.id]
                if lease.lost:
                    continue
                if rows.get(doc.id) != (lease.token, lease.state):
                    _logger.info("Fiscal document %s moved on (%s): a stale write is dropped", doc.id, rows.get(doc.id))
                    lost.append(lease)
                    continue
                held |= doc
            if before and held:
                getattr(held, before)()
            for doc in held:
                results[doc.id] = getattr(doc, step)(*args_of(doc))
            self.env.flush_all()
            states = {doc.id: doc.state for doc in held}
            cr.commit()  # pylint: disable=invalid-commit
        except Exception:  # noqa: BLE001 - one document's trouble never costs the others their turn
            cr.rollback()  # pylint: disable=invalid-commit
            self.env.invalidate_all()
            _logger.info("Fiscal batch step %s: one transaction failed, each document goes alone", step, exc_info=True)
            return {
                doc.id: doc._guarded(leases[doc.id], getattr(doc, step), *args_of(doc))
                for doc in self
                if not leases[doc.id].lost
            }
        for lease in lost:
            lease.lost = True
        for doc_id, state in states.items():
            leases[doc_id].state = state
        return results

    def _prefetch_sources(self):
        """Read at once for the batch what mapping each document reads one by one (its order or
        invoice, their lines, taxes and customer): a few queries per batch, not per document."""
        for sources, lines in ((self.sale_order_id, "order_line"), (self.move_id, "invoice_line_ids")):
            sources.partner_id.fetch(["commercial_partner_id"])
            sources[lines].fetch(["tax_ids"])

    def _remember_clients(self, shared, known):
        """Store the remote customers the run found, created or updated (not what it was seeded
        with): the next run reuses them without a request. Lost on a crash: then looked up again."""
        try:
            for account_id, cache in shared.items():
                seen = known.get(account_id, {})
                clients = cache.get("clients") or {}
                changed = {code: value for code, value in clients.items() if seen.get(code) != value}
                if changed:
                    self.env["fiscal.partner.binding"]._remember(account_id, changed)
            self.env.cr.commit()  # pylint: disable=invalid-commit
        except Exception:  # noqa: BLE001 - only a cache: the documents' outcome matters, not this
            self.env.cr.rollback()  # pylint: disable=invalid-commit
            _logger.exception("Fiscal engine: remote customers not remembered")

    def _guarded(self, lease, step, *args):
        """_fenced, and a bug in ``step`` is reported on the document (retried later), not raised."""
        try:
            return self._fenced(lease, step, *args)
        except Exception as e:  # noqa: BLE001 - a bug or an unexpected answer: keep the document
            self.env.cr.rollback()  # pylint: disable=invalid-commit
            _logger.exception("Fiscal document %s: unexpected error", self.id)
            message = self._redact(f"{type(e).__name__}: {e}")
            error = TransientError(self.env._("Unexpected error: %s", message))
            operation = "cancel" if lease.state == "to_cancel" else "issue"
            self._fenced(lease, self._on_error, error, operation, None)
            return None

    # ------------------------------------------------------------------ plan, checkpoint, apply
    def _plan_job(self):
        """One job for the engine, or None when there is nothing to call (decided here)."""
        from ..providers import FiscalPayment
        from ..providers.pipeline import Job

        account = self.account_id
        cls = account._get_provider_class()
        operation = "cancel" if self.state == "to_cancel" else "issue"
        if operation == "cancel" and not self.remote_id and not self.create_sent:
            self.write({"state": "dropped", "lease_token": False})
            self._post_on_sources(self.env._("Queued fiscal document dropped: nothing had been sent."))
            return None
        if self.email_state == "sending":
            # A worker recorded that it was sending the e-mail and died before recording the
            # answer: it may have gone. Never sent twice.
            self._email_unknown(
                self.partner_id.email,
                self.env._("the worker sending it stopped before recording the provider's answer"),
            )
        original = self.related_document_id
        if operation == "issue" and original and original.state != "issued" and not original._final_at_provider():
            if original.state in ("to_send", "sending"):
                # A credit note or a receipt goes after its original document: waiting is no failure.
                self._log_attempt("issue", "waiting")
                self._release(timedelta(seconds=max(account.poll_interval, 1)))
                return None
            self._on_validation_error(
                self.env._(
                    "The original fiscal document %(name)s is %(state)s: this %(kind)s cannot be issued.",
                    name=original.display_name,
                    state=dict(original._fields["state"].selection)[original.state],
                    kind=dict(self._fields["kind"].selection)[self.kind].lower(),
                ),
                "validation",
                operation,
                None,
            )
            return None
        resend = self.remote_state == "rejected"
        replace = bool(operation == "issue" and self.totals_mismatch and self.remote_state == "draft")
        creating = operation == "issue" and (not self.remote_id or resend or replace)
        receipt = self.kind == "receipt"
        data = None
        if (creating and not receipt) or (operation == "cancel" and not self.remote_id):
            try:
                if creating and self.kind == "invoice" and not (self.split_part or self.create_sent):
                    self._split_by_service_code()  # NFS-e, when the account splits: before anything is sent
                # Mapped only here: later steps (finalize, PDF, email) never depend on today's data.
                data = self.env["fiscal.mapping"]._document_data(self)
            except UserError as e:
                self._on_validation_error(str(e), "validation", operation, None)
                return None
        email = None
        if self.send_email and "email" in cls.capabilities and self.email_state in ("none", "pending"):
            if self.partner_id.email:
                email = (self.partner_id.email, account.email_subject or "", account.email_body or "")
        source = self.move_id if self.move_id and not receipt else self.sale_order_id
        job = Job(
            doc_id=self.id,
            account_id=account.id,
            kind=self.document_type,
            data=data,
            # Exists remotely (not mapped again): the date it was created with, by the mapping's rule.
            # Never False: a batch mixing False and dates crashed sorting them in the finalize stage.
            date=data.date
            if data
            else (
                self.payment_date
                or self.invoice_date
                or self.move_id.invoice_date
                or (self.sale_order_id.date_order and self.sale_order_id.date_order.date())
                or None
            ),
            action=operation,
            mode=self.mode if not receipt else "finalize",
            remote_id=(self.remote_id or None) if not resend else None,
            remote_state=(self.remote_state or None) if not resend else None,
            number=self.number or None,
            probe=bool(self.create_sent and not self.remote_id),
            await_webhook=bool(account.webhook_received_at) and "async" in cls.capabilities,
            replace_draft=replace,
            expected_total=Decimal(str(self.amount_total if self.split_part else source.amount_total))
            if source and not receipt
            else None,
            tolerance=Decimal(str(account.totals_tolerance or 0)),
            want_pdf="pdf" in cls.capabilities and self.pdf_state != "done",
            want_xml="xml" in cls.capabilities,
            email=email if self.email_state != "sent" else None,
            settle=self.settle_state == "pending",
            cancel_reason=self._provider_cancel_reason(),
            recheck=operation == "issue" and self.state != "issued",
            final_check=bool(cls.atcud_required or cls.compare_final_total),
        )
        if receipt and creating:
            job.payment = FiscalPayment(
                amount=Decimal(str(self.payment_amount)),
                date=self.payment_date or fields.Date.context_today(self),
                method=self.payment_method or "TB",
                reference=self.reference,
            )
            job.original_kind, job.original_remote_id = original.document_type, original.remote_id
        if creating and self.mode != "data_only":
            # The intent is committed before any call: after a crash, the next attempt probes.
            # Not a message of its own in the document's history: its outcome (issued) is.
            self.with_context(tracking_disable=True).write({"state": "sending", "create_sent": True})
        return job

    def _fiscal_parts(self):
        """This document and the other parts of its split sale (live ones when it is live), by part."""
        if len(self) != 1 or not self.split_count:
            return self
        parts = self | self.split_part_ids
        if self.state not in DEAD_STATES:
            parts = parts.filtered(lambda d: d.state not in DEAD_STATES)
        return parts.sorted("split_part")

    def _split_by_service_code(self):
        """Split this sale into several documents, before anything is sent (NFS-e: one note per
        service code, when the account says so). Nothing to split by default."""

    @staticmethod
    def _job_facts(job):
        """What ``_checkpoint_job`` records of a job: equal facts, nothing new to commit."""
        remote = job.remote
        remote_facts = remote and (
            remote.remote_id,
            remote.state,
            remote.number,
            remote.atcud,
            remote.total,
            remote.message,
        )
        # The PDF alone is no fact to commit at once: the apply step, right after the engine,
        # stores it (lost in a crash, it is only asked again; a number or an e-mail never is).
        return (remote_facts, job.replaced, job.emailed, job.settled)

    def _checkpoint_job(self, job):
        """What the provider did for one job, recorded as soon as it ended a stage: the remote id
        and state (no second create, no second finalize), issued, the PDF, a sent email (never
        twice), a settlement. Idempotent: the apply step runs it again."""
        if job.replaced and not job.remote_id and self.remote_id:
            self.write({"remote_id": False, "remote_state": False, "totals_mismatch": False})
        remote = job.remote
        if remote is not None and (
            remote.remote_id != self.remote_id
            or remote.state != self.remote_state
            or (remote.atcud or False) != self.atcud  # read again after a problem (e.g. ATCUD missing)
        ):
            self._store_remote(remote)
        if job.action == "issue" and job.mode == "finalize" and not isinstance(job.error, FinalDocumentError):
            if job.final_check and job.recheck and job.payment is None and not job.checked:
                return  # final there, not checked yet in this run (a re-read failed): not issued on trust
            self._apply_done(job)

    def _apply_job(self, job):
        """The outcome of one job, written once the engine is done with it; then user requests
        recorded meanwhile are honoured and the lease is released."""
        trace = _Trace(job.trace)
        operation = job.action
        self._checkpoint_job(job)
        if (
            operation == "issue"
            and not job.remote_id
            and not job.probe
            and not job.create_attempted
            and not job.unknown
            and self.create_sent
            and not self.remote_id
        ):
            # The intent was recorded, but no create request left: nothing can exist.
            self.write({"create_sent": False, "state": "to_send"})
        if self.email_state == "sending" and not job.emailed and not job.email_unknown:
            # The intent was recorded but the request did not go through (a known refusal, or
            # never sent): the e-mail is still to send.
            self.write({"email_state": "pending"})
        if job.email_unknown:
            self._email_unknown(job.email[0] if job.email else None, str(job.error), trace)
            job.error = None
        if job.unknown:
            self._park(job.unknown, operation, trace)
        elif job.error is not None:
            error = job.error
            if isinstance(error, TotalsMismatchError) and self.remote_state == "draft":
                self.write({"totals_mismatch": True})
                error = ProviderRejection(self._totals_message(job))
            self._on_error(error, operation, trace)
        elif job.waiting:
            self._log_attempt(operation, "waiting", client=trace)
            self.write({"state": "to_cancel" if operation == "cancel" else "sending"})
            # An asynchronous provider is still working: read its answer again later (a webhook
            # wakes us up sooner). Waiting is not a failed attempt.
            self._release(timedelta(seconds=max(self.account_id.poll_interval, 1)))
        elif operation == "cancel":
            self._apply_cancel(job, trace)
        elif self.remote_state == "rejected" and self.state in ("to_send", "sending"):
            # The provider looked at it and said no: the data needs a fix.
            label = self.account_id._get_provider_class().label
            message = self.env._(
                "%(provider)s rejected the document: %(reason)s", provider=label, reason=self.remote_message or "-"
            )
            self._on_validation_error(message, "rejected", operation, trace)
        else:
            if job.registered and self.state != "registered":
                self.write({"state": "registered"})
                self._post_on_sources(self._data_only_message(self.account_id._get_provider_class()))
            elif job.mode == "draft" and self.kind != "receipt" and self.remote_id and self.state != "draft":
                self.write({"state": "draft"})
                self._post_on_sources(
                    self.env._(
                        "Draft fiscal document created at %s (not final: finalize it there).", self.account_id.name
                    )
                )
            self._log_attempt(operation, "ok", client=trace)
            vals = {"last_error": False, "error_kind": False}
            if self.state == "issued" and "pending" not in (self.pdf_state, self.email_state, self.settle_state):
                vals["attempt_count"] = 0
            self.write(vals)
            self._release()
        self._honour_requests()

    def _apply_cancel(self, job, trace):
        self._log_attempt("cancel", "ok", client=trace)
        self.write({"state": "cancelled", "last_error": False, "error_kind": False, "lease_token": False})
        self._post_on_sources(
            self.env._(
                "Fiscal document %(number)s cancelled at the provider: %(reason)s",
                number=self.number or self.reference,
                reason=self.cancel_reason or "-",
            )
        )

    def _apply_done(self, job):
        """Final at the provider: issued in Odoo, then the follow-ups the engine completed."""
        if self.state in ("to_send", "sending") and self.remote_state in ("final", "settled"):
            self.write({"state": "issued", "attempt_count": 0, "pdf_state": "pending" if job.want_pdf else "none",
                        "email_state": "pending" if job.email else "none"})  # fmt: skip
            self._post_on_sources(
                self.env._(
                    "Fiscal document %(number)s issued at %(account)s (ATCUD / verification code %(code)s).",
                    number=self.number or "?",
                    account=self.account_id.name,
                    code=self.atcud or "-",
                )
            )
        if self.state != "issued":
            return
        if job.pdf and self.pdf_state != "done":
            self._attach_pdf(job.pdf, job.xml)
        if job.emailed and self.email_state != "sent":
            self.write({"email_state": "sent"})
            self._post_on_sources(self.env._("Fiscal document emailed to %s by the provider.", job.email[0]))
        if job.settled and self.settle_state != "done":
            self.write({"settle_state": "done"})
            self._post_on_sources(self.env._("Fiscal document %s marked as paid at the provider.", self.number))

    def _record_intent(self, job, step):
        """Committed before a call nobody can take back leaves (an e-mail): after a crash between
        the call and its checkpoint, the next run finds "sending" and never sends it again."""
        if step == "email" and self.email_state in ("none", "pending"):
            self.write({"email_state": "sending"})
            return True
        return False

    def _email_unknown(self, address, error, trace=None):
        """The e-mail request left and its answer was lost: it may have been sent. Never twice."""
        message = self._redact(error)
        self._log_attempt("issue", "unknown", client=trace, message=message)
        self.write({"email_state": "unknown"})
        text = self.env._(
            "The e-mail to %(email)s may or may not have been sent (%(error)s). It is not sent again "
            "automatically: check at the provider and send it from there if needed.",
            email=address or "-",
            error=message,
        )
        self._post_on_sources(text, error=True)
        self._schedule_failure_activity(text, summary=self.env._("Fiscal e-mail: check at the provider"))

    def _park(self, message, operation, trace):
        """The outcome is unknown and the provider cannot be searched for it: a person looks."""
        message = self._redact(message)
        self._log_attempt(operation, "unknown", client=trace, message=message)
        self.write({"state": "check", "last_error": message, "error_kind": "unknown", "lease_token": False})
        text = self.env._(
            "Check at the provider: %s Nothing is sent again automatically. If the document is not "
            "there, click Retry; if it is, note its number and cancel or keep it there.",
            message,
        )
        self._post_on_sources(text, error=True)
        self._schedule_failure_activity(text, summary=self.env._("Fiscal document: check at the provider"))

    def _totals_message(self, job):
        source = self.move_id if self.move_id and self.kind != "receipt" else self.sale_order_id
        expected = source.amount_total if source and not self.split_part else self.amount_total  # a part: its own
        currency = self.currency_id or source.currency_id
        difference = abs((self.remote_total or 0.0) - expected)
        return self.env._(
            "Totals differ: Odoo %(odoo)s, %(provider)s %(remote)s (difference %(diff)s). The document "
            "stays a draft at the provider and is not final. Check prices, discounts and taxes "
            "(tax names must exist at the provider), then Retry.",
            odoo=expected,
            provider=self.account_id._get_provider_class().label,
            remote=self.remote_total,
            diff=round(difference, currency.decimal_places),
        )

    def _release(self, delay=None):
        """End of the worker's turn: the lease goes, the next attempt is now (or after ``delay``)."""
        # (Datetime.now() drops the microseconds: one second more keeps a wait at least ``delay``.)
        at = fields.Datetime.now() + (delay + timedelta(seconds=1) if delay else timedelta())
        self.write({"lease_token": False, "next_attempt": at})
        if delay:
            self._trigger_processing(at)

    def _honour_requests(self):
        """A cancellation a user requested while a worker held the document is honoured as soon
        as the worker is done: dropped when nothing was sent, else cancelled at the provider."""
        if not self.cancel_requested or self.state in ("to_cancel", *DEAD_STATES):
            return
        now = fields.Datetime.now()
        if not self.create_sent and not self.remote_id and self.state in ("to_send", "error", "failed"):
            self.write({"state": "dropped", "lease_token": False})
            self._post_on_sources(self.env._("Queued fiscal document dropped: %s", self.cancel_reason or "-"))
        elif self.state in ("issued", "draft") and not self.account_id._can_cancel(self.document_type):
            self.write({"cancel_requested": False})
            self._post_on_sources(
                self.env._(
                    "%(provider)s cannot cancel this document: issue a credit note (reverse the invoice) instead.",
                    provider=self.account_id.name,
                ),
                error=True,
            )
        elif self.state != "check":
            self.write({"state": "to_cancel", "next_attempt": now, "lease_token": False})
            self._trigger_processing()

    def _redact(self, text):
        return Redactor(self.account_id._secrets())(text)

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
        """Store the provider's PDF (and legal XML) once, on the invoice (else the order); the
        document, the order and the invoice all point to that one attachment."""
        stem = (self.number or self.reference).replace("/", "-")
        files = [(f"{stem}.pdf", content, "application/pdf")]
        if xml:
            files.append((f"{stem}.xml", xml, "application/xml"))
        record = self.move_id or self.sale_order_id or self
        attachments = (
            self.env["ir.attachment"]
            .sudo()
            .create(
                [
                    {"name": name, "raw": raw, "mimetype": mimetype, "res_model": record._name, "res_id": record.id}
                    for name, raw, mimetype in files
                ]
            )
        )
        self.write(
            {"pdf_attachment_id": attachments[:1].id, "xml_attachment_id": attachments[1:2].id, "pdf_state": "done"}
        )
        self._post_on_sources(
            self.env._("Fiscal document PDF %s received from the provider.", self.number or ""),
            attachments=attachments,
        )

    # ------------------------------------------------------------------ errors
    # Called by the runner inside a fenced transaction: they write, never commit or roll back.
    def _on_error(self, error, operation, client):
        if isinstance(error, AuthenticationError):
            self._on_auth_error(error, operation, client)
        elif isinstance(error, FinalDocumentError):
            self._on_final_problem(error, operation, client)
        elif isinstance(error, ProviderError):
            if error.retryable:
                self._on_transient(error, operation, client)
            else:
                self._on_validation_error(str(error), error.kind, operation, client)
        elif isinstance(error, ProviderRejection):
            # The provider looked at the document and said no: the data needs a fix.
            self._on_validation_error(str(error), "rejected", operation, client)
        elif isinstance(error, UserError):
            # Our own validation (mapping) failed: the data needs a fix.
            self._on_validation_error(str(error), "validation", operation, client)
        else:
            _logger.error("Fiscal document %s: unexpected error: %s", self.id, self._redact(repr(error)))
            message = self._redact(f"{type(error).__name__}: {error}")
            self._on_transient(TransientError(self.env._("Unexpected error: %s", message)), operation, client)

    def _on_auth_error(self, error, operation, client):
        message = self._redact(str(error))
        self._log_attempt(operation, error.kind, client=client, message=message)
        # The document is not at fault: it waits, the account is paused with one message.
        self.write(
            {
                "state": "sending"
                if self.create_sent and not self.remote_id and self.state == "to_send"
                else self.state,
                "last_error": self.env._(
                    "Waiting: the account %s is paused (credentials refused).", self.account_id.name
                ),
                "error_kind": error.kind,
            }
        )
        self._release()
        self.account_id._pause(message)

    def _on_final_problem(self, error, operation, client):
        """Final at the provider (numbered: legally issued there) but not what it must be: the
        document keeps its number and remote id and is never sent again; it needs attention, the
        account's responsible gets an activity, and Retry reads it again at the provider."""
        message = self._redact(str(error))
        self._log_attempt(operation, error.kind, client=client, message=message)
        self.write({"state": "error", "last_error": message, "error_kind": error.kind, "lease_token": False})
        text = self.env._(
            "Fiscal document %(number)s is final at %(account)s but is not issued: %(msg)s",
            number=self.number or self.reference,
            account=self.account_id.name,
            msg=message,
        )
        self._post_on_sources(text, error=True)
        self._schedule_failure_activity(text, summary=self.env._("Fiscal document final with a problem"))

    def _final_at_provider(self):
        """Legally issued at the provider (numbered, final), whatever Odoo's state says of it."""
        self.ensure_one()
        return bool(self.remote_id and self.number and self.remote_state in ("final", "settled"))

    def _on_validation_error(self, message, kind, operation, client):
        message = self._redact(message)
        self._log_attempt(operation, kind, client=client, message=message)
        vals = {"last_error": message, "error_kind": kind, "state": "error", "lease_token": False}
        if operation == "cancel" and self.remote_state == "cancel_denied":
            # The provider refused the cancellation: the document stays what it was, final.
            vals.update(state="issued", remote_state="final", cancel_requested=False)
            message = self.env._("Cancellation refused: %s", message)
        elif self.state == "issued":
            # The document exists; only a follow-up (PDF, email, settle) failed: keep it issued,
            # stop that follow-up and tell someone.
            vals.pop("state")
            vals.update(
                pdf_state="none" if self.pdf_state == "pending" else self.pdf_state,
                email_state="none" if self.email_state == "pending" else self.email_state,
            )
        self.write(vals)
        if self.state == "issued" and operation == "issue":
            self._schedule_failure_activity(message, summary=self.env._("Fiscal follow-up failed"))
        self._post_on_sources(
            self.env._("Fiscal document not issued: %s Fix the data, then click Retry.", message)
            if vals.get("state") == "error"
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
        vals = {"attempt_count": attempts, "last_error": message, "error_kind": error.kind}
        if self.state == "to_send" and self.create_sent:
            vals["state"] = "sending"
        limit = self.account_id.max_attempts
        if self.state == "issued":
            # Follow-ups (PDF, e-mail, settle) keep their own schedule: retried (backoff up to
            # BACKOFF_CAP) until the provider answers again; an activity when they keep failing,
            # given up after FOLLOW_UP_ROUNDS times the account's attempts.
            self.write(vals)
            if attempts == limit:
                self._schedule_failure_activity(
                    self.env._("A follow-up keeps failing (still retried): %s", message),
                    summary=self.env._("Fiscal follow-up failing"),
                )
            if attempts >= limit * FOLLOW_UP_ROUNDS:
                self.write({"pdf_state": "none" if self.pdf_state == "pending" else self.pdf_state,
                            "email_state": "none" if self.email_state == "pending" else self.email_state,
                            "settle_state": "none" if self.settle_state == "pending" else self.settle_state,
                            "lease_token": False})  # fmt: skip
                text = self.env._(
                    "Fiscal document follow-up given up after %(n)s attempts: %(msg)s", n=attempts, msg=message
                )
                self._schedule_failure_activity(text, summary=self.env._("Fiscal follow-up given up"))
                self._post_on_sources(text, error=True)
                return
            self._release(timedelta(seconds=delay))
            return
        if attempts >= limit and operation == "issue":
            if self.create_sent or self.remote_id:
                # The provider may hold it (a create left, or it exists as a draft or pending):
                # "failed" would invite a second legal document. A person checks.
                self.write(vals)
                self._park(
                    self.env._("No answer after %(n)s attempts (%(msg)s): the provider may hold this document.",
                               n=attempts, msg=message),
                    operation,
                    None,
                )  # fmt: skip
                return
            vals.update(state="failed", lease_token=False)
            self.write(vals)
            self._schedule_failure_activity(message)
            self._post_on_sources(
                self.env._("Fiscal document failed after %(n)s attempts: %(msg)s", n=attempts, msg=message), error=True
            )
            return
        self.write(vals)
        self._release(timedelta(seconds=delay))

    def _schedule_failure_activity(self, message, summary=None):
        user = self.account_id.responsible_user_id or self.env.ref("base.user_admin", raise_if_not_found=False)
        if user:
            self.activity_schedule(
                "mail.mail_activity_data_todo",
                user_id=user.id,
                summary=summary or self.env._("Fiscal document failed"),
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
    def _post_on_sources(self, body, error=False, on_document=True, attachments=None):
        """One chatter message per event, on the record people look at: the invoice, else the
        order (the order of an invoice shows its status on its fiscal button). The document
        keeps its own history (tracking of its state and number, attempts)."""
        # A logged note (as message_post with the note subtype, which notifies nobody): without
        # the recipients' computation, a third of the queries of a posted note.
        for doc in self:
            record = doc.move_id or doc.sale_order_id
            if not record:
                if on_document:
                    record = doc
                else:
                    continue
            record.sudo()._message_log(body=body, attachment_ids=attachments.ids if attachments else False)
        self._notify_sources()

    # ------------------------------------------------------------------ credit notes, receipts
    @api.model
    def _enqueue_credit_note(self, refund):
        """A posted Odoo credit note reversing an invoice that has a fiscal document gets its
        fiscal credit note, referencing the original; one per Odoo credit note, never two."""
        # Even if the original has not reached the provider yet: the credit note waits for it.
        invoice = refund.reversed_entry_id
        original = self._live_sale_documents(invoice)[invoice.id][:1] if invoice else self.browse()
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
        original = self._live_sale_documents(invoice)[invoice.id].filtered(lambda d: d.document_type == "invoice")[:1]
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
        now = fields.Datetime.now()
        for doc in self.filtered(lambda d: d.kind == "invoice" and d.state in ("issued", "to_send", "sending")):
            if "settle" in doc.account_id._capabilities() and not doc.account_id.issue_receipts:
                vals = {"settle_state": "pending"}
                # Others settle once issued, at their own pace; a worker holding the document
                # schedules it again itself (its lease is kept).
                if doc.state == "issued" and not doc._maybe_leased(now):
                    vals["next_attempt"] = now
                doc.write(vals)
        self._trigger_processing()

    # ------------------------------------------------------------------ refunds
    def _on_source_refunded(self, why, refund=None):
        """The sale was refunded in full (``refund``: the Odoo credit note) or cancelled. A document
        still waiting is dropped (refund window; or cancel-on-refund); an issued one is cancelled at
        the provider when the account says so, except a Portuguese one that may be final there: that
        one is corrected by a credit note (the refund's, which is then issued). Otherwise the
        accountant issues a credit note."""
        handled = self.browse()
        for doc in self.filtered(lambda d: d.state not in DEAD_STATES and d.kind == "invoice"):
            account = doc.account_id
            unsent = not doc.create_sent and doc.state in ("to_send", "error", "failed")
            if unsent and (account.trigger == "payment_window" or account.cancel_on_refund):
                doc.write({"state": "dropped", "cancel_reason": why})
                doc._post_on_sources(self.env._("Fiscal document dropped before sending: %s.", why))
                handled |= doc
            elif account.cancel_on_refund and doc.state in ("issued", "draft", "sending", "to_send", "error"):
                if doc._credit_not_cancel():
                    doc._post_on_sources(
                        self.env._(
                            "Fiscal document %(number)s may be final at %(provider)s: a finalized Portuguese "
                            "document is corrected by a credit note, not cancelled (art. 29(1)(c) CIVA). "
                            "%(what)s (%(why)s).",
                            number=doc.number or doc.reference,
                            provider=account.name,
                            what=self.env._("The credit note %s is issued for it instead", refund.name)
                            if refund
                            else self.env._("Reverse the invoice to issue its credit note"),
                            why=why,
                        )
                    )
                elif account._can_cancel(doc.document_type):
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

    def _credit_not_cancel(self):
        """Portugal: a document final at the service (or that may be: a create left and no draft is
        known) is corrected by a credit note (art. 29(1)(c) CIVA), never cancelled by a policy. Only
        a draft at the provider (InvoiceXpress) is deleted."""
        self.ensure_one()
        if self.account_id.provider not in PT_PROVIDERS:
            return False
        return (
            self.state == "issued"
            or self._final_at_provider()
            or ((self.create_sent or self.remote_id) and self.remote_state != "draft")
        )

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
        """True when a worker holds this document right now: it took a lease (token) that has not
        expired. Bringing such a document forward would let a second worker take it while the
        first is still talking to the provider (two PDFs, two emails: fault suite); a worker always
        ends by scheduling the document again itself (_release)."""
        self.ensure_one()
        return bool(self.lease_token and self.next_attempt and now < self.next_attempt)

    # ------------------------------------------------------------------ user actions
    # A user never writes what a worker holding the document writes: requests go to their own
    # fields (cancel_requested, settle_state) and the worker honours them when its call ends.
    def action_retry(self):
        """Send again after the user fixed the data (or after a failure, or after checking at
        the provider)."""
        if not self.env.su:  # users: checked on the source, then done as superuser (no user writes the outbox)
            self._check_user_action()
            self.sudo().action_retry()
            return True
        now = fields.Datetime.now()
        for doc in self:
            retryable = doc.state in ("error", "failed", "check")
            if not retryable and not (doc.state == "issued" and doc.last_error):
                raise UserError(self.env._("Only documents that need attention or failed can be retried."))
            vals = {"next_attempt": now, "last_error": False, "error_kind": False}
            if retryable:
                vals.update(attempt_count=0, lease_token=False)
                if doc.cancel_requested:
                    # A cancellation was requested: Retry carries it out, it never re-issues.
                    vals["state"] = "to_cancel"
                elif doc.state == "check" and "find_by_reference" not in doc.account_id._capabilities():
                    # The provider cannot be searched: the user checked, it is not there.
                    vals.update(state="to_send", create_sent=False)
                else:
                    vals["state"] = "sending" if doc.create_sent else "to_send"
            else:
                # Issued, a follow-up (PDF, email) failed. Still queued, a worker may be on it now:
                # keep its lease, it schedules the document again itself.
                if doc._maybe_leased(now):
                    del vals["next_attempt"]
                if doc.pdf_state == "none" and "pdf" in doc.account_id._capabilities():
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
        now = fields.Datetime.now()
        for doc in self:
            if doc.state in DEAD_STATES:
                continue
            held = doc._maybe_leased(now)
            if not held and doc.state in ("to_send", "error", "failed") and not doc.create_sent:
                doc.write({"state": "dropped", "cancel_reason": reason, "cancel_requested": True})
                doc._post_on_sources(self.env._("Queued fiscal document dropped: %s", reason))
                continue
            final = doc.state in ("issued", "draft") or doc._final_at_provider()
            if final and not doc.account_id._can_cancel(doc.document_type):
                raise UserError(
                    self.env._(
                        "%(provider)s cannot cancel a %(type)s: issue a credit note (reverse the invoice) instead.",
                        provider=doc.account_id.name,
                        type=dict(doc._fields["document_type"].selection)[doc.document_type].lower(),
                    )
                )
            vals = {"cancel_requested": True, "cancel_reason": reason}
            if not held:
                # No worker on it: the request becomes the document's next job now.
                vals.update(state="to_cancel", next_attempt=now, lease_token=False)
            # Held: recorded only; the worker honours it as soon as its call ends (_honour_requests).
            doc.write(vals)
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
