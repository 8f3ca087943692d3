from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError


class AccountMove(models.Model):
    _name = "account.move"
    _inherit = ["account.move", "fiscal.source.mixin"]

    fiscal_account_id = fields.Many2one(
        "fiscal.provider.account",
        "Fiscal account",
        compute="_compute_fiscal_account_id",
        store=True,
        readonly=False,
        check_company=True,
        help="Where this invoice's fiscal document is issued: the order's account, else the company's.",
    )

    @api.depends("company_id", "invoice_line_ids.sale_line_ids", "partner_id", "team_id", "payment_state")
    def _compute_fiscal_account_id(self):
        Rule = self.env["fiscal.routing.rule"]
        for move in self:
            if not move.is_sale_document(include_receipts=False):
                move.fiscal_account_id = False
                continue
            if move.state == "posted" and move.fiscal_account_id and move._origin.fiscal_document_count:
                continue  # a document exists: its account never changes
            orders = move.invoice_line_ids.sale_line_ids.order_id
            move.fiscal_account_id = orders[:1].fiscal_account_id or Rule._route(
                move.company_id,
                move.team_id,
                move.partner_id,
                move.invoice_line_ids.product_id,
                paid=move.payment_state in ("paid", "in_payment"),
            )

    def _fiscal_sale_orders(self):
        return self.sudo().invoice_line_ids.sale_line_ids.order_id

    def _fiscal_sale_date(self):
        """When the sale happened: its order's date, else the invoice's."""
        orders = self._fiscal_sale_orders()
        if orders:
            return min(orders.mapped("date_order"))
        return fields.Datetime.to_datetime(self.invoice_date or self.date or fields.Date.today())

    def _fiscal_documents(self):
        """The invoice's own documents, and an order-level document of its sale (issued
        at confirmation): the invoice shows it instead of getting a second one."""
        Doc = self.env["fiscal.document"].sudo()
        domain = [("move_id", "=", self.id)]
        orders = self._fiscal_sale_orders()
        if orders:
            domain = ["|", ("move_id", "=", self.id), "&", ("move_id", "=", False), ("sale_order_id", "in", orders.ids)]
        return Doc.search(domain, order="id desc")

    def _fiscal_source_ids(self, operator, value):
        docs = self.env["fiscal.document"].sudo().search([("state", operator, value)])
        ids = set(docs.move_id.ids)
        order_docs = docs.filtered(lambda d: not d.move_id and d.sale_order_id)
        if order_docs:
            ids |= set(order_docs.sale_order_id.invoice_ids.ids)
        return list(ids)

    def _fiscal_enqueue(self, trigger, **extra):
        states = ("draft", "posted") if trigger == "invoice_create" else ("posted",)
        for move in self.filtered(lambda m: m.move_type == "out_invoice" and m.state in states):
            account = move.fiscal_account_id
            if not account or not account.active or account.trigger != trigger:
                continue
            vals = dict(extra)
            if trigger == "payment_window":
                # New sales only: older ones belong to the backfill, not to this policy.
                if account.policy_start and move._fiscal_sale_date() < account.policy_start:
                    continue
                vals["next_attempt"] = fields.Datetime.now() + timedelta(days=account.refund_window_days)
            orders = move._fiscal_sale_orders()
            self.env["fiscal.document"]._enqueue(account, move=move, order=orders if len(orders) == 1 else None, **vals)

    @api.model_create_multi
    def create(self, vals_list):
        moves = super().create(vals_list)
        moves._fiscal_enqueue("invoice_create")
        return moves

    def _post(self, soft=True):
        posted = super()._post(soft=soft)
        posted._fiscal_enqueue("invoice_post")
        Doc = self.env["fiscal.document"]
        for refund in posted.filtered(lambda m: m.move_type == "out_refund" and m.reversed_entry_id):
            original = refund.reversed_entry_id
            handled = Doc
            if refund.currency_id.compare_amounts(refund.amount_total, original.amount_total) >= 0:
                # A full refund: dropped while unsent (refund window), or cancelled if the account says so.
                handled = original._fiscal_documents()._on_source_refunded(
                    self.env._("refunded by %s", refund.name or refund.display_name)
                )
            if not handled:
                Doc._enqueue_credit_note(refund)
        return posted

    def _invoice_paid_hook(self):
        res = super()._invoice_paid_hook()
        self._fiscal_enqueue("payment")
        self._fiscal_enqueue("payment_window")
        for move in self.filtered(lambda m: m.move_type == "out_invoice"):
            move._fiscal_documents()._request_settle()
        return res

    def unlink(self):
        # A draft invoice queued "on invoice creation" may be deleted: its unsent document goes with it.
        docs = self.env["fiscal.document"].sudo().search([("move_id", "in", self.ids)])
        sent = docs.filtered(lambda d: d.create_sent or d.remote_id)
        if sent:
            raise UserError(
                self.env._(
                    "%s has a fiscal document at the provider: reverse it with a credit note.", sent[0].move_id.name
                )
            )
        docs.unlink()
        return super().unlink()
