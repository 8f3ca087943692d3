from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError


class FiscalBackfillWizard(models.TransientModel):
    """Issue for past sales: the sales (confirmed orders or posted invoices, as each account's
    trigger says) that have no fiscal document yet, queued in batches and spread over time so
    the provider's budget is never flooded."""

    _name = "fiscal.backfill.wizard"
    _description = "Issue fiscal documents for past sales"

    account_id = fields.Many2one(
        "fiscal.provider.account", "Fiscal account", required=True, default=lambda self: self._default_account()
    )
    date_from = fields.Date(
        "From", required=True, default=lambda self: fields.Date.context_today(self) - timedelta(days=30)
    )
    date_to = fields.Date("To", required=True, default=fields.Date.context_today)
    partner_ids = fields.Many2many("res.partner", string="Only these customers")
    per_minute = fields.Integer(
        "Documents per minute",
        default=30,
        help="The queue sends at most this many of these documents per minute (a document costs the "
        "provider several calls: InvoiceXpress allows about 100 calls per minute).",
    )
    source = fields.Selection(
        [("orders", "Confirmed sale orders"), ("invoices", "Posted customer invoices")],
        compute="_compute_source",
    )
    count = fields.Integer("Sales to issue", compute="_compute_count")
    already = fields.Integer("Already with a fiscal document", compute="_compute_count")

    def _default_account(self):
        return self.env["fiscal.provider.account"]._default_for_company(self.env.company)

    @api.depends("account_id")
    def _compute_source(self):
        for wizard in self:
            wizard.source = "orders" if wizard.account_id.trigger in ("order_confirm", "manual") else "invoices"

    def _candidates(self):
        """All sales in the period for this account, and those already documented."""
        self.ensure_one()
        company = self.account_id.company_id
        if self.source == "orders":
            domain = [
                ("company_id", "=", company.id),
                ("state", "=", "sale"),
                ("date_order", ">=", fields.Datetime.to_datetime(self.date_from)),
                ("date_order", "<", fields.Datetime.to_datetime(self.date_to + timedelta(days=1))),
                "|",
                ("fiscal_account_id", "=", self.account_id.id),
                ("fiscal_account_id", "=", False),
            ]
            model = "sale.order"
        else:
            domain = [
                ("company_id", "=", company.id),
                ("move_type", "=", "out_invoice"),
                ("state", "=", "posted"),
                ("invoice_date", ">=", self.date_from),
                ("invoice_date", "<=", self.date_to),
                "|",
                ("fiscal_account_id", "=", self.account_id.id),
                ("fiscal_account_id", "=", False),
            ]
            model = "account.move"
        if self.partner_ids:
            domain.append(("partner_id", "child_of", self.partner_ids.ids))
        records = self.env[model].search(domain, order="id")
        # Already documented: by the order or by one of its invoices (one legal document per sale).
        covered = self.env["fiscal.document"]._live_sale_documents(records)
        documented = records.filtered(lambda r: covered[r.id])
        return records, documented

    @api.depends("account_id", "date_from", "date_to", "partner_ids")
    def _compute_count(self):
        for wizard in self:
            if not wizard.account_id or not wizard.date_from or not wizard.date_to:
                wizard.count = wizard.already = 0
                continue
            records, documented = wizard._candidates()
            wizard.count = len(records - documented)
            wizard.already = len(documented)

    def action_enqueue(self):
        self.ensure_one()
        # Managers only (they configure the account); the sales are searched with the user's rights.
        self.account_id.check_access("write")
        if self.per_minute < 1:
            raise UserError(self.env._("Documents per minute must be at least 1."))
        records, documented = self._candidates()
        todo = records - documented
        if not todo:
            raise UserError(self.env._("Every sale of this period already has a fiscal document."))
        docs = self.env["fiscal.document"]._enqueue_many(self.account_id, todo, per_minute=self.per_minute)
        self.account_id.message_post(
            body=self.env._(
                "%(n)s past sales queued for fiscal documents (%(from)s to %(to)s) by %(user)s.",
                n=len(docs),
                **{"from": self.date_from, "to": self.date_to},
                user=self.env.user.name,
            )
        )
        action = self.env["ir.actions.act_window"]._for_xml_id("fiscal_invoice_connector.fiscal_document_action")
        action["domain"] = [("id", "in", docs.ids)]
        return action
