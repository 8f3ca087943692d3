from odoo import api, fields, models


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

    @api.depends("company_id", "invoice_line_ids.sale_line_ids")
    def _compute_fiscal_account_id(self):
        for move in self:
            if not move.is_sale_document(include_receipts=False):
                move.fiscal_account_id = False
                continue
            orders = move.invoice_line_ids.sale_line_ids.order_id
            account = orders[:1].fiscal_account_id
            if not account and (not move.fiscal_account_id or move.fiscal_account_id.company_id != move.company_id):
                account = self.env["fiscal.provider.account"]._default_for_company(move.company_id)
            move.fiscal_account_id = account or move.fiscal_account_id

    def _fiscal_sale_orders(self):
        return self.sudo().invoice_line_ids.sale_line_ids.order_id

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

    def _fiscal_enqueue(self, trigger):
        for move in self.filtered(lambda m: m.move_type == "out_invoice" and m.state == "posted"):
            account = move.fiscal_account_id
            if not account or not account.active or account.trigger != trigger:
                continue
            orders = move._fiscal_sale_orders()
            self.env["fiscal.document"]._enqueue(account, move=move, order=orders if len(orders) == 1 else None)

    def _post(self, soft=True):
        posted = super()._post(soft=soft)
        posted._fiscal_enqueue("invoice_post")
        return posted

    def _invoice_paid_hook(self):
        res = super()._invoice_paid_hook()
        self._fiscal_enqueue("payment")
        return res
