from odoo import fields, models
from odoo.exceptions import UserError


class FiscalDocumentAttempt(models.Model):
    """Append-only log of what was asked of the provider and what it answered
    (redacted: no credential ever reaches this table)."""

    _name = "fiscal.document.attempt"
    _description = "Fiscal document attempt"
    _order = "id desc"

    document_id = fields.Many2one("fiscal.document", required=True, index=True, ondelete="cascade", readonly=True)
    company_id = fields.Many2one(related="document_id.company_id", store=True, precompute=True)
    operation = fields.Char(readonly=True)
    outcome = fields.Char(readonly=True, help="ok, or the error class: validation, transient, rate_limited...")
    message = fields.Text(readonly=True)
    exchange_count = fields.Integer("Calls", readonly=True)
    summary = fields.Text("Requests and answers", readonly=True)

    def write(self, vals):
        raise UserError(self.env._("The attempt log is append-only."))

    def unlink(self):
        raise UserError(self.env._("The attempt log is append-only."))
