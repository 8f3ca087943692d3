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

    fiscal_document_ids = fields.One2many("fiscal.document", "move_id", "Own fiscal documents")

    # Not on payment_state: the routing runs when the sale is made, not at every payment
    # (a rule for paid invoices is applied when the payment policy fires: _fiscal_route_paid).
    @api.depends("company_id", "invoice_line_ids.sale_line_ids", "partner_id", "team_id")
    def _compute_fiscal_account_id(self):
        Rule = self.env["fiscal.routing.rule"]
        for move in self:
            if not move.is_sale_document(include_receipts=False):
                move.fiscal_account_id = False
                continue
            if move.state == "posted" and move.fiscal_account_id and move._origin.fiscal_document_id:
                continue  # a document exists: its account never changes
            orders = move.invoice_line_ids.sale_line_ids.order_id
            move.fiscal_account_id = orders[:1].fiscal_account_id or Rule._route(
                move.company_id, move.team_id, move.partner_id, move.invoice_line_ids.product_id
            )

    def _fiscal_route_paid(self):
        """Invoices of no order paid now: a routing rule for paid invoices may send them to
        another account. Decided once, when a payment policy is about to enqueue them."""
        Rule = self.env["fiscal.routing.rule"].sudo()
        moves = self.filtered(lambda m: not m.fiscal_document_id and not m._fiscal_sale_orders())
        if not moves or not Rule.search_count(
            [("company_id", "in", moves.company_id.ids), ("payment_state", "!=", "any")], limit=1
        ):
            return
        for move in moves:
            move.fiscal_account_id = Rule._route(
                move.company_id, move.team_id, move.partner_id, move.invoice_line_ids.product_id, paid=True
            )

    @api.depends(
        "move_type",
        "fiscal_document_ids.state",
        "fiscal_document_ids.number",
        "fiscal_document_ids.kind",
        # An order's document (issued at confirmation) is its invoice's one: when such a
        # document appears, and then whatever happens to it.
        "invoice_line_ids.sale_line_ids.order_id.fiscal_document_ids.state",
        "invoice_line_ids.sale_line_ids.order_id.fiscal_document_ids.number",
    )
    def _compute_fiscal_document(self):
        return super()._compute_fiscal_document()

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
        docs = self.sudo().fiscal_document_ids
        if self.move_type == "out_invoice":
            docs |= self._fiscal_sale_orders().fiscal_document_ids.filtered(lambda d: not d.move_id)
        return docs.sorted("id", reverse=True)

    def _fiscal_main_candidates(self):
        """An invoice shows its fiscal invoice (its own, else its order's), a credit note its
        fiscal credit note: never a receipt or a credit note in their place."""
        if self.move_type == "out_refund":
            return self.fiscal_document_ids.filtered(lambda d: d.kind == "credit_note")
        if self.move_type != "out_invoice":
            return self.env["fiscal.document"]
        own = self.fiscal_document_ids.filtered(lambda d: d.kind == "invoice")
        if own:
            return own
        orders = self.invoice_line_ids.sale_line_ids.order_id
        return orders.fiscal_document_ids.filtered(lambda d: not d.move_id and d.kind == "invoice")

    def _fiscal_related_documents(self):
        """Beside the invoice's document: its receipts and credit notes (theirs on other moves)."""
        main = self.fiscal_document_id
        docs = self.sudo().fiscal_document_ids - main._fiscal_parts()
        if main:
            docs |= self.env["fiscal.document"].sudo().search([("related_document_id", "=", main.id)])
        return docs.sorted("id", reverse=True)

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
                    self.env._("refunded by %s", refund.name or refund.display_name), refund=refund
                )
            if not handled:
                Doc._enqueue_credit_note(refund)
        return posted

    def _invoice_paid_hook(self):
        res = super()._invoice_paid_hook()
        self.filtered(lambda m: m.move_type == "out_invoice")._fiscal_route_paid()
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
