from odoo import api, fields, models
from odoo.exceptions import UserError

from ..providers import PROVIDERS, ProviderConfig, ProviderError, get_provider_class

TRIGGERS = [
    ("order_confirm", "On order confirmation"),
    ("invoice_post", "On invoice posting"),
    ("payment", "On payment"),
    ("manual", "Manual only"),
]
MODES = [
    ("finalize", "Issue and finalize"),
    ("draft", "Leave as draft at the provider"),
    ("data_only", "Send data only (no document)"),
]
DOCUMENT_TYPES = [
    ("invoice", "Invoice"),
    ("invoice_receipt", "Invoice-receipt"),
    ("simplified_invoice", "Simplified invoice"),
]


class FiscalProviderAccount(models.Model):
    """One account at one invoicing service, and the policy that says when and how
    Odoo events become fiscal documents there."""

    _name = "fiscal.provider.account"
    _description = "Fiscal provider account"
    _inherit = ["mail.thread"]
    _order = "sequence, id"
    _check_company_auto = True

    name = fields.Char(required=True, tracking=True)
    active = fields.Boolean(default=True, tracking=True)
    sequence = fields.Integer(default=10)
    company_id = fields.Many2one("res.company", required=True, default=lambda self: self.env.company, index=True)
    provider = fields.Selection(
        selection=[(code, cls.label) for code, cls in PROVIDERS.items()],
        required=True,
        default="invoicexpress",
        tracking=True,
    )
    environment = fields.Selection(
        [("test", "Test"), ("production", "Production")], required=True, default="test", tracking=True
    )
    account_name = fields.Char(
        "Account name",
        help="InvoiceXpress: the sub-domain of your account (ACCOUNT in ACCOUNT.app.invoicexpress.com).",
        tracking=True,
    )
    base_url = fields.Char(
        "Base URL",
        compute="_compute_base_url",
        store=True,
        readonly=False,
        tracking=True,
        help="Where the service is reached. Defaults to the provider's real address; change it only to "
        "point at a sandbox or a local simulator.",
    )
    # Secrets: readable and writable by connector managers only, never exported nor copied.
    api_key = fields.Char(
        "API key", groups="fiscal_invoice_connector.group_fiscal_manager", copy=False, exportable=False
    )
    state = fields.Selection(
        [("active", "Active"), ("paused", "Paused")],
        default="active",
        required=True,
        tracking=True,
        help="An account is paused when the provider refuses its credentials: its queue waits "
        "instead of failing every document. Fix the key, then resume.",
    )
    paused_reason = fields.Text(readonly=True)

    # The issuing policy.
    trigger = fields.Selection(TRIGGERS, required=True, default="order_confirm", tracking=True)
    mode = fields.Selection(MODES, required=True, default="finalize", tracking=True)
    document_type = fields.Selection(DOCUMENT_TYPES, required=True, default="invoice", tracking=True)
    send_email = fields.Boolean(
        "Send by email", help="Ask the provider to email the document to the customer once it is final."
    )
    email_subject = fields.Char(default="Your invoice {number}", translate=True)
    email_body = fields.Text(default="Please find your invoice {number} attached.", translate=True)
    max_attempts = fields.Integer(
        default=8, help="Transient failures are retried with exponential backoff up to this many attempts."
    )
    responsible_user_id = fields.Many2one(
        "res.users",
        "Responsible",
        default=lambda self: self.env.user,
        help="Gets an activity when a document of this account fails.",
    )
    document_ids = fields.One2many("fiscal.document", "account_id")
    document_count = fields.Integer(compute="_compute_document_count")
    error_count = fields.Integer(compute="_compute_document_count")

    @api.depends("provider", "account_name")
    def _compute_base_url(self):
        for account in self:
            template = get_provider_class(account.provider).default_base_url if account.provider else ""
            if "{account_name}" in (template or ""):
                template = template.format(account_name=account.account_name or "ACCOUNT")
            account.base_url = template

    def _compute_document_count(self):
        counts = dict(
            self.env["fiscal.document"]._read_group([("account_id", "in", self.ids)], ["account_id"], ["__count"])
        )
        errors = dict(
            self.env["fiscal.document"]._read_group(
                [("account_id", "in", self.ids), ("state", "in", ("error", "failed"))], ["account_id"], ["__count"]
            )
        )
        for account in self:
            account.document_count = counts.get(account, 0)
            account.error_count = errors.get(account, 0)

    @api.constrains("max_attempts")
    def _check_max_attempts(self):
        for account in self:
            if account.max_attempts < 1:
                raise UserError(self.env._("The maximum number of attempts must be at least 1."))

    # ------------------------------------------------------------------ client
    def _provider_config(self):
        """The only place where credentials leave the database (sudo: the cron and the
        hooks run for users who must not read them)."""
        self.ensure_one()
        account = self.sudo()
        if not account.api_key:
            raise UserError(self.env._("The fiscal account %s has no API key: a manager must set it.", self.name))
        if not account.base_url:
            raise UserError(self.env._("The fiscal account %s has no base URL.", self.name))
        params = self.env["ir.config_parameter"].sudo()
        return ProviderConfig(
            base_url=account.base_url,
            credentials={"api_key": account.api_key},
            environment=account.environment,
            options={
                "pdf_poll_interval": float(params.get_param("fiscal_invoice_connector.pdf_poll_interval", 2.0)),
                "pdf_max_polls": int(params.get_param("fiscal_invoice_connector.pdf_max_polls", 5)),
            },
        )

    def _get_client(self):
        self.ensure_one()
        return get_provider_class(self.provider)(self._provider_config())

    def _capabilities(self):
        return get_provider_class(self.provider).capabilities

    # ------------------------------------------------------------------ policy
    @api.model
    def _default_for_company(self, company):
        """The company's default account, or its first active one."""
        return company.sudo().fiscal_default_account_id or self.sudo().search(
            [("company_id", "=", company.id)], limit=1
        )

    # ------------------------------------------------------------------ actions
    def action_test_connection(self):
        self.ensure_one()
        try:
            message = self._get_client().test_connection()
            kind = "success"
        except ProviderError as e:
            message, kind = self.env._("Connection failed: %s", e), "danger"
        except UserError as e:
            message, kind = str(e), "danger"
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"title": self.name, "message": message, "type": kind, "sticky": kind != "success"},
        }

    def action_resume(self):
        for account in self.filtered(lambda a: a.state == "paused"):
            account.write({"state": "active", "paused_reason": False})
            account.message_post(body=self.env._("Queue resumed: waiting documents will be sent again."))
        self.env["fiscal.document"]._trigger_processing()

    def _pause(self, reason):
        """Stop the queue of this account with one clear message (authentication failures)."""
        for account in self.filtered(lambda a: a.state == "active"):
            account.sudo().write({"state": "paused", "paused_reason": reason})
            account.sudo().message_post(
                body=self.env._(
                    "Queue paused: %(reason)s. Check the API key and the account name, then click Resume.",
                    reason=reason,
                )
            )

    def action_view_documents(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("fiscal_invoice_connector.fiscal_document_action")
        action["domain"] = [("account_id", "=", self.id)]
        action["context"] = {"default_account_id": self.id}
        return action
