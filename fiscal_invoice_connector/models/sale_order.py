from odoo import api, fields, models


class SaleOrder(models.Model):
    _name = "sale.order"
    _inherit = ["sale.order", "fiscal.source.mixin"]

    fiscal_account_id = fields.Many2one(
        "fiscal.provider.account",
        "Fiscal account",
        compute="_compute_fiscal_account_id",
        store=True,
        readonly=False,
        precompute=True,
        check_company=True,
        help="Where this sale's fiscal document is issued. Defaults to the company's fiscal account.",
    )
    fiscal_document_ids = fields.One2many("fiscal.document", "sale_order_id", "Fiscal documents")

    @api.depends("company_id", "team_id", "partner_id", "order_line.product_id")
    def _compute_fiscal_account_id(self):
        Rule = self.env["fiscal.routing.rule"]
        for order in self:
            if order.state in ("sale", "cancel") and order.fiscal_account_id:
                continue  # decided at confirmation: never moves afterwards
            order.fiscal_account_id = Rule._route(
                order.company_id, order.team_id, order.partner_id, order.order_line.product_id
            )

    @api.depends("fiscal_document_ids.state", "fiscal_document_ids.number", "fiscal_document_ids.kind")
    def _compute_fiscal_document(self):
        return super()._compute_fiscal_document()

    def _fiscal_documents(self):
        return self.sudo().fiscal_document_ids.sorted("id", reverse=True)

    def _fiscal_main_candidates(self):
        # The order's own document, or its invoice's: never a receipt or a credit note.
        return self.fiscal_document_ids.filtered(lambda d: d.kind == "invoice")

    def _fiscal_related_documents(self):
        return self._fiscal_documents() - self.fiscal_document_id._fiscal_parts()

    def _action_cancel(self):
        res = super()._action_cancel()
        for order in self:
            order._fiscal_documents()._on_source_refunded(self.env._("order %s cancelled", order.name))
        return res

    def _action_confirm(self):
        res = super()._action_confirm()
        # Only a row in the outbox: the provider is called later by the cron, never here.
        for order in self:
            account = order.fiscal_account_id
            if account and account.active and account.trigger == "order_confirm":
                self.env["fiscal.document"]._enqueue(account, order=order)
        return res
