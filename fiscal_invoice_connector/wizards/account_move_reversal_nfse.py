from odoo import api, fields, models


class AccountMoveReversal(models.TransientModel):
    """Before a refund: what cancelling the sale's NFS-e allows (an NFS-e has no credit note)."""

    _inherit = "account.move.reversal"

    fiscal_cancellation_rules = fields.Html("NFS-e cancellation", compute="_compute_fiscal_cancellation_rules")

    @api.depends("move_ids")
    def _compute_fiscal_cancellation_rules(self):
        for wizard in self:
            docs = self.env["fiscal.document"].sudo()
            for move in wizard.move_ids:
                docs |= move._fiscal_documents()
            accounts = docs.filtered(lambda d: d.state == "issued" and d._is_nfse()).account_id
            wizard.fiscal_cancellation_rules = (
                "".join(
                    "<p>"
                    + self.env._(
                        "This sale has an NFS-e at %(provider)s: an NFS-e has no credit note, it is cancelled%(auto)s.",
                        provider=account.name,
                        auto=self.env._(" when this refund is posted") if account.cancel_on_refund else "",
                    )
                    + f"</p>{account.cancellation_rules or ''}"
                    for account in accounts
                )
                or False
            )
