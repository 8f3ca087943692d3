from odoo import api, fields, models

from ..models.fiscal_document_nfse import CANCEL_MOTIVES
from ..providers import brazil
from ..providers.base import CancelReason


class FiscalCancelWizard(models.TransientModel):
    _name = "fiscal.cancel.wizard"
    _description = "Cancel fiscal documents"

    document_ids = fields.Many2many("fiscal.document", required=True)
    reason = fields.Char(required=True, help="Printed on the cancellation at the provider (legally required).")
    # NFS-e (Brazil): the national standard asks for a motive code and a justification.
    is_nfse = fields.Boolean(compute="_compute_nfse")
    motive = fields.Selection(CANCEL_MOTIVES, default=brazil.DEFAULT_CANCEL_MOTIVE)
    cancellation_rules = fields.Html(compute="_compute_nfse", string="What the provider allows")

    @api.depends("document_ids")
    def _compute_nfse(self):
        for wizard in self:
            accounts = wizard.document_ids.account_id.filtered(lambda a: a.provider in ("enotas", "invoicy"))
            wizard.is_nfse = bool(accounts)
            wizard.cancellation_rules = (
                "".join(f"<p><b>{account.name}</b></p>{account.cancellation_rules or ''}" for account in accounts)
                or False
            )

    def _cancel_reason(self):
        """The reason the documents are cancelled with (an NFS-e's carries the motive code)."""
        self.ensure_one()
        return CancelReason(self.reason, self.motive if self.is_nfse else None)

    def action_cancel(self):
        self.document_ids.action_request_cancel(self._cancel_reason())
        return {"type": "ir.actions.act_window_close"}
