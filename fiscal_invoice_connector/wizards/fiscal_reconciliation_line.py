from odoo import fields, models

from .fiscal_reconciliation import STATUSES


class FiscalReconciliationLine(models.TransientModel):
    _name = "fiscal.reconciliation.line"
    _description = "Fiscal reconciliation line"
    _order = "status desc, id"

    reconciliation_id = fields.Many2one("fiscal.reconciliation", required=True, ondelete="cascade")
    document_id = fields.Many2one("fiscal.document", "Odoo fiscal document")
    move_id = fields.Many2one(related="document_id.move_id", string="Invoice", compute_sudo=False)
    sale_order_id = fields.Many2one(related="document_id.sale_order_id", compute_sudo=False)
    partner_id = fields.Many2one(related="document_id.partner_id", compute_sudo=False)
    kind = fields.Char()
    odoo_number = fields.Char("Number in Odoo")
    remote_number = fields.Char("Number at the provider")
    remote_state = fields.Char("State at the provider")
    currency_id = fields.Many2one(related="reconciliation_id.currency_id")
    odoo_total = fields.Monetary("Total in Odoo")
    provider_total = fields.Monetary("Total at the provider")
    difference = fields.Monetary()
    status = fields.Selection(STATUSES, required=True)
    note = fields.Char("What differs", help="Invoice differs: what the order's posted invoices say otherwise.")
