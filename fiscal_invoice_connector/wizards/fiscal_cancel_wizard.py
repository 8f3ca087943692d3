from odoo import fields, models


class FiscalCancelWizard(models.TransientModel):
    _name = "fiscal.cancel.wizard"
    _description = "Cancel fiscal documents"

    document_ids = fields.Many2many("fiscal.document", required=True)
    reason = fields.Char(required=True, help="Printed on the cancellation at the provider (legally required).")

    def action_cancel(self):
        self.document_ids.action_request_cancel(self.reason)
        return {"type": "ir.actions.act_window_close"}
