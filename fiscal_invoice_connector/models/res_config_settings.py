from odoo import fields, models
from odoo.exceptions import UserError


class ResConfigSettings(models.TransientModel):
    """Invoicing settings: the company's default fiscal account, its policy at a glance and a
    connection check. The policy itself is edited on the account (one concept, one place)."""

    _inherit = "res.config.settings"

    fiscal_default_account_id = fields.Many2one(
        related="company_id.fiscal_default_account_id",
        readonly=False,
        domain="[('company_id', '=', company_id)]",
    )
    fiscal_default_provider = fields.Selection(related="fiscal_default_account_id.provider", string="Service")
    fiscal_default_environment = fields.Selection(related="fiscal_default_account_id.environment", string="Environment")
    fiscal_default_state = fields.Selection(related="fiscal_default_account_id.state", string="Queue")
    fiscal_default_trigger = fields.Selection(related="fiscal_default_account_id.trigger", string="Issue")
    fiscal_default_mode = fields.Selection(related="fiscal_default_account_id.mode", string="Mode")
    fiscal_default_document_type = fields.Selection(
        related="fiscal_default_account_id.document_type", string="Document type"
    )
    fiscal_default_responsible_id = fields.Many2one(
        related="fiscal_default_account_id.responsible_user_id", string="Failures go to"
    )

    def action_fiscal_test_connection(self):
        self.ensure_one()
        if not self.fiscal_default_account_id:
            raise UserError(self.env._("Choose a default fiscal account first."))
        return self.fiscal_default_account_id.action_test_connection()

    def action_open_fiscal_default_account(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "fiscal_invoice_connector.fiscal_provider_account_action"
        )
        action.update(res_id=self.fiscal_default_account_id.id, view_mode="form", views=[(False, "form")])
        return action
