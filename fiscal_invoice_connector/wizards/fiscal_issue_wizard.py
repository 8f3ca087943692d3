from odoo import api, fields, models
from odoo.exceptions import UserError

from ..models.fiscal_mapping import PT_PROVIDERS
from ..models.fiscal_provider_account import DOCUMENT_TYPES


class FiscalIssueWizard(models.TransientModel):
    """ "Issue fiscal document now": the manual flow, with its dates. It queues the
    document and wakes the queue up; the provider is still called by the cron only,
    so a click and the cron can never issue the same sale twice."""

    _name = "fiscal.issue.wizard"
    _description = "Issue fiscal document now"

    res_model = fields.Selection([("sale.order", "Sale order"), ("account.move", "Invoice")], required=True)
    res_id = fields.Integer(required=True)
    company_id = fields.Many2one("res.company", compute="_compute_defaults", store=True, precompute=True)
    account_id = fields.Many2one(
        "fiscal.provider.account",
        "Fiscal account",
        required=True,
        compute="_compute_defaults",
        store=True,
        readonly=False,
        precompute=True,
        domain="[('company_id', '=', company_id)]",
    )
    document_type = fields.Selection(
        DOCUMENT_TYPES, required=True, compute="_compute_defaults", store=True, readonly=False, precompute=True
    )
    invoice_date = fields.Date(required=True, default=fields.Date.context_today)
    due_date = fields.Date(compute="_compute_defaults", store=True, readonly=False, precompute=True)

    def _record(self):
        return self.env[self.res_model].browse(self.res_id).exists()

    @api.depends("res_model", "res_id")
    def _compute_defaults(self):
        for wizard in self:
            record = wizard._record() if wizard.res_model and wizard.res_id else None
            if record:  # computed as superuser (stored field): the check is the user's
                record.with_env(self.env(su=False)).check_access("read")
            wizard.company_id = record.company_id if record else self.env.company
            if record is not None and not wizard.account_id:
                wizard.account_id = record.fiscal_account_id
            wizard.document_type = wizard.account_id.document_type or "invoice"
            if wizard.account_id.provider in PT_PROVIDERS:
                # Portugal: dated the day it is issued (the company's day); the sale's date is its supply date.
                wizard.invoice_date = self.env["fiscal.mapping"]._company_today(wizard.company_id)
                if record is not None and record._name == "account.move":
                    wizard.due_date = max(record.invoice_date_due or wizard.invoice_date, wizard.invoice_date)
            elif record is not None and record._name == "account.move":
                wizard.invoice_date = record.invoice_date or wizard.invoice_date
                wizard.due_date = record.invoice_date_due
            elif not wizard.due_date:
                wizard.due_date = wizard.invoice_date

    def action_issue(self):
        self.ensure_one()
        record = self._record()
        if not record:
            raise UserError(self.env._("The record no longer exists."))
        # The user's own rights on the sale; the document itself is queued as superuser.
        record._check_fiscal_action()
        self.account_id.check_access("read")
        if self.account_id.company_id != record.company_id:
            raise UserError(
                self.env._(
                    "The fiscal account %(account)s belongs to another company than %(record)s.",
                    account=self.account_id.name,
                    record=record.display_name,
                )
            )
        if self.due_date and self.due_date < self.invoice_date:
            raise UserError(self.env._("The due date cannot be before the invoice date."))
        if self.account_id.provider in PT_PROVIDERS:
            problem = self.env["fiscal.mapping"]._pt_date_problem(
                self.account_id, self.document_type, self.invoice_date
            )
            if problem:
                raise UserError(problem)
        if record._name == "sale.order" and record.state != "sale":
            raise UserError(self.env._("Confirm the order before issuing its fiscal document."))
        if record._name == "account.move" and (record.state != "posted" or record.move_type != "out_invoice"):
            raise UserError(self.env._("Only posted customer invoices get a fiscal document."))
        Doc = self.env["fiscal.document"]
        # One legal document per sale: the order's, or one of its invoices', whatever account
        # this wizard names (the same check as the hooks and the backfill).
        existing = Doc._live_sale_documents(record)[record.id]
        if existing:
            stuck = existing.filtered(lambda d: d.state in ("error", "failed"))
            if stuck and stuck == existing:
                stuck.action_retry()
                return self._notify(self.env._("The fiscal document will be sent again in a few seconds."))
            states = dict(existing._fields["state"].selection)
            raise UserError(
                self.env._(
                    "%(record)s already has a fiscal document: %(docs)s. A sale gets one legal document; "
                    "to issue another, cancel that one first.",
                    record=record.display_name,
                    docs=", ".join(f"{d.name} ({states[d.state]})" for d in existing),
                )
            )
        extra = {"invoice_date": self.invoice_date, "due_date": self.due_date, "document_type": self.document_type}
        if record._name == "sale.order":
            Doc._enqueue(self.account_id, order=record, **extra)
        else:
            orders = record._fiscal_sale_orders()
            Doc._enqueue(self.account_id, move=record, order=orders if len(orders) == 1 else None, **extra)
        return self._notify(self.env._("Fiscal document queued: it appears here in a few seconds."))

    def _notify(self, message):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"message": message, "type": "success", "next": {"type": "ir.actions.act_window_close"}},
        }
