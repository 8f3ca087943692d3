import secrets
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError

from ..providers import FiscalProduct, ProviderConfig, ProviderError
from ..providers.base import Redactor
from ..providers.numbers import from_float

TRIGGERS = [
    ("order_confirm", "On order confirmation"),
    ("invoice_create", "On invoice creation"),
    ("invoice_post", "On invoice posting"),
    ("payment", "On payment confirmation"),
    ("payment_window", "After the refund window"),
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
    # Each service adds itself (selection_add) and its client class (_get_provider_classes), as
    # account_peppol extends account_edi_proxy_client: see fiscal_provider_account_builtin.py.
    provider = fields.Selection(selection=[], required=True, tracking=True)
    environment = fields.Selection(
        [("test", "Test"), ("production", "Production")],
        required=True,
        default="test",
        tracking=True,
        help="Portugal, production: every document must carry its ATCUD, which exists once the series is "
        "communicated to the Tax Authority (InvoiceXpress: Settings > Series; Vendus: the register's series). "
        "Test connection checks it; a document finalized without ATCUD needs attention (it is never issued "
        "twice: Retry reads it again once the series is communicated).",
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
        "API key",
        groups="fiscal_invoice_connector.group_fiscal_manager",
        copy=False,
        exportable=False,
        help="InvoiceXpress, Vendus, eNotas: the account's API key. InvoiCy: the partner key. "
        "Leave it empty to keep the stored key.",
    )
    access_key = fields.Char(
        "Access key",
        groups="fiscal_invoice_connector.group_fiscal_manager",
        copy=False,
        exportable=False,
        help="InvoiCy: the company's access key (signs every request). Leave it empty to keep the stored key.",
    )
    webhook_secret = fields.Char(
        groups="fiscal_invoice_connector.group_fiscal_manager",
        copy=False,
        exportable=False,
        default=lambda self: secrets.token_urlsafe(24),
        help="Random part of the webhook URL: the services do not sign their calls, so the URL is the secret.",
    )
    webhook_url = fields.Char(
        compute="_compute_webhook_url",
        groups="fiscal_invoice_connector.group_fiscal_manager",
        exportable=False,  # holds the webhook secret
        help="Give this address to the provider (eNotas: Gateway panel > Webhooks).",
    )
    # Provider-specific settings that are not secrets.
    company_ref = fields.Char(
        "Company id at the provider",
        help="eNotas: the company (empresa) id. InvoiCy: the issuing company's CNPJ.",
        tracking=True,
    )
    issuer_municipal_registration = fields.Char(
        "Issuer municipal registration", help="InvoiCy: the issuing company's inscrição municipal."
    )
    rps_series = fields.Char("RPS series", help="InvoiCy: the RPS series (empty: the gateway's default).")
    register_id = fields.Char("Register id", help="Vendus: the register (caixa) documents are issued on.")
    store_id = fields.Char("Store id", help="Vendus: the store of the register (optional).")
    payment_method_codes = fields.Char(
        "Payment method ids",
        default="TB=1, NU=2, CC=3",
        help="Vendus: the provider's payment method id for each kind of payment (TB transfer, NU cash, CC card, "
        "MB Multibanco, CH cheque, OU other), as CODE=ID pairs.",
    )
    rate_limit_per_minute = fields.Integer(
        "Calls per minute",
        compute="_compute_rate_limit",
        store=True,
        readonly=False,
        help="The provider's budget for this account (InvoiceXpress: 100 per minute). The queue paces its "
        "calls to stay within it instead of spending them on 429 answers. 0: no limit known.",
    )
    webhook_received_at = fields.Datetime(
        "Last notification",
        readonly=True,
        copy=False,
        help="When the provider last notified a document's status on the webhook URL. Once it does, a "
        "document just sent is not read back at once: the notification says when to read it.",
    )
    poll_interval = fields.Integer(
        default=30,
        help="Seconds between status reads while a provider authorizes a document (eNotas, InvoiCy). "
        "Webhooks wake the queue up sooner.",
    )
    # Brazilian NFS-e defaults (product or category values win).
    service_description = fields.Char(help="NFS-e: default service description.")
    service_code = fields.Char("Municipal service code", help="NFS-e: código de serviço do município.")
    service_lc116 = fields.Char("LC 116 item", help="NFS-e: item da lista de serviço (LC 116/2003), e.g. 1.07.")
    service_cnae = fields.Char("CNAE")
    iss_rate = fields.Float("ISS rate (%)", digits=(5, 2))
    iss_withheld = fields.Boolean("ISS withheld at source")
    service_city_code = fields.Char(
        "Service city (IBGE)", help="NFS-e: IBGE code of the municipality where the service is provided."
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
    trigger = fields.Selection(
        TRIGGERS,
        required=True,
        default="order_confirm",
        tracking=True,
        help="On order confirmation: the document is made of the order; when the invoices posted later "
        "differ from it (quantities delivered, edited prices, lines), the invoice says so and the "
        "responsible gets an activity: nothing is issued automatically for the difference.",
    )
    mode = fields.Selection(MODES, required=True, default="finalize", tracking=True)
    document_type = fields.Selection(
        DOCUMENT_TYPES,
        required=True,
        default="invoice",
        tracking=True,
        help="Portugal: a simplified invoice (FS) is allowed up to 1,000 EUR for a sale to a final consumer "
        "(no NIF) and 100 EUR otherwise (art. 40 CIVA). Above, an invoice-receipt (FR) is issued instead, "
        "and the document's chatter says so.",
    )
    default_payment_method = fields.Selection(
        [
            ("TB", "Bank transfer"),
            ("NU", "Cash"),
            ("CC", "Credit card"),
            ("MB", "Multibanco"),
            ("CH", "Cheque"),
            ("OU", "Other"),
        ],
        default="TB",
        required=True,
        help="How invoice-receipts and simplified invoices say they were paid when Odoo has no payment yet.",
    )
    issue_receipts = fields.Boolean(
        "Receipts on payment",
        help="Issue a fiscal receipt at the provider for every payment of an invoice (InvoiceXpress partial "
        "payment receipts, Vendus RG). Without it, InvoiceXpress invoices are marked settled when paid.",
    )
    refund_window_days = fields.Integer(
        "Refund window (days)",
        default=7,
        help="After the refund window: the document is issued this many days after the payment; "
        "a refund or cancellation inside the window drops it and nothing is sent. Portugal: a sale must be "
        "invoiced within 5 working days; later, its responsible gets an activity.",
    )
    policy_start = fields.Datetime(
        default=fields.Datetime.now,
        readonly=True,
        help="Sales created before this moment are not issued by the refund-window policy (new sales only); "
        "use Issue for past sales for them.",
    )
    cancel_on_refund = fields.Boolean(
        "Cancel on refund",
        help="When the sale is refunded (credit note) or cancelled: a queued document is dropped and an "
        "issued one is cancelled at the provider. Portugal: a document final at InvoiceXpress or Vendus is "
        "corrected by the refund's credit note instead (art. 29 CIVA); only an InvoiceXpress draft is deleted. "
        "Vendus credits a line at its original price: a price adjustment is refused (credit the quantity, "
        "invoice again).",
    )
    send_email = fields.Boolean(
        "Send by email", help="Ask the provider to email the document to the customer once it is final."
    )
    email_subject = fields.Char(default="Your invoice {number}", translate=True)
    email_body = fields.Text(default="Please find your invoice {number} attached.", translate=True)
    totals_tolerance = fields.Float(
        "Totals tolerance",
        default=0.0,
        digits=(6, 2),
        help="Largest difference accepted between Odoo's total and the provider's before a document becomes "
        "final (0.00: to the cent). A bigger difference keeps the document as a draft with an error.",
    )
    max_attempts = fields.Integer(
        default=8, help="Transient failures are retried with exponential backoff up to this many attempts."
    )
    responsible_user_id = fields.Many2one(
        "res.users",
        "Responsible",
        default=lambda self: self.env.user,
        help="Gets an activity when a document of this account fails; in Portugal also when a sale reaches "
        "its legal deadline without an issued document (5 working days of the company's working calendar, "
        "art. 36(1)(a) CIVA), and when the invoices of an order differ from the document issued at its "
        "confirmation.",
    )
    document_ids = fields.One2many("fiscal.document", "account_id")
    product_binding_ids = fields.One2many("fiscal.product.binding", "account_id")
    document_count = fields.Integer(compute="_compute_document_count")
    error_count = fields.Integer(compute="_compute_document_count")

    @api.depends("provider", "account_name", "environment")
    def _compute_base_url(self):
        for account in self:
            cls = account._get_provider_class() if account.provider else None
            urls = cls.default_urls if cls else {}
            template = (cls.default_base_url or urls.get(account.environment)) if cls else ""
            if "{account_name}" in (template or ""):
                template = template.format(account_name=account.account_name or "ACCOUNT")
            account.base_url = template or ""

    @api.depends("provider")
    def _compute_rate_limit(self):
        for account in self:
            cls = account._get_provider_class() if account.provider else None
            account.rate_limit_per_minute = cls.default_rate_limit if cls else 0

    def _webhook_received(self):
        """A valid notification about one of our documents arrived: the provider notifies this
        account (written at most once an hour: no write on the account row per notification)."""
        now = fields.Datetime.now()
        if not self.webhook_received_at or now - self.webhook_received_at > timedelta(hours=1):
            self.sudo().write({"webhook_received_at": now})

    def _compute_webhook_url(self):
        base = self.env["ir.config_parameter"].sudo().get_param("web.base.url", "")
        for account in self:
            account.webhook_url = (
                f"{base}/fiscal_invoice_connector/webhook/{account.id}/{account.webhook_secret}"
                if account.id and account.webhook_secret
                else False
            )

    def _payment_methods(self):
        """``"TB=1, NU=2"`` -> ``{"TB": 1, "NU": 2}`` (ids stay strings when not numeric)."""
        methods = {}
        for pair in (self.payment_method_codes or "").replace(";", ",").split(","):
            code, _sep, value = pair.partition("=")
            if code.strip() and value.strip():
                value = value.strip()
                methods[code.strip().upper()] = int(value) if value.isdigit() else value
        return methods

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

    def write(self, vals):
        # A blank secret means "unchanged", never "erase": a form saved by someone who cannot
        # (or did not) read the key must not wipe it.
        blank = [name for name in ("api_key", "access_key") if name in vals and not vals[name]]
        if blank:
            vals = {name: value for name, value in vals.items() if name not in blank}
        if "trigger" in vals:
            vals = dict(vals, policy_start=fields.Datetime.now())
        return super().write(vals)

    def _export_rows(self, fields, *, _is_toplevel_call=True):
        # Odoo's export dialog hides non-exportable fields, but export_data (RPC, /web/export/*
        # with hand-written field names, or through a relation such as account_id/api_key) does
        # not check them: secrets are never exported, not even by a manager.
        names = {path[0].split(".")[0] for path in fields if path}
        secret = {name for name in names if name in self._fields and not self._fields[name].exportable}
        if secret:
            raise AccessError(self.env._("These fields are never exported: %s.", ", ".join(sorted(secret))))
        return super()._export_rows(fields, _is_toplevel_call=_is_toplevel_call)

    @api.constrains("max_attempts")
    def _check_max_attempts(self):
        for account in self:
            if account.max_attempts < 1:
                raise UserError(self.env._("The maximum number of attempts must be at least 1."))

    # ------------------------------------------------------------------ client
    @api.model
    def _get_provider_classes(self):
        """``{code: client class}`` of every installed service (a subclass of
        providers.base.FiscalProvider). To extend: an addon adding a service adds its code to
        the ``provider`` selection (selection_add) and its class here, calling super()."""
        return {}

    def _get_provider_class(self, code=None):
        """The client class of this account's service (or of ``code``)."""
        code = code or self.provider
        try:
            return self._get_provider_classes()[code]
        except KeyError:
            raise ValueError(f"Unknown fiscal provider {code!r}") from None

    def _provider_config(self):
        """The only place where credentials leave the database (sudo: the cron and the
        hooks run for users who must not read them)."""
        self.ensure_one()
        account = self.sudo()
        cls = account._get_provider_class()
        values = {"api_key": account.api_key, "partner_key": account.api_key, "access_key": account.access_key}
        credentials = {name: values.get(name) for name in cls.credential_fields}
        labels = {"partner_key": "api_key"}
        missing = [self._fields[labels.get(name, name)].string for name, value in credentials.items() if not value]
        if missing:
            raise UserError(
                self.env._(
                    "The fiscal account %(name)s has no %(what)s: a manager must set it.",
                    name=self.name,
                    what=", ".join(missing),
                )
            )
        if not account.base_url:
            raise UserError(self.env._("The fiscal account %s has no base URL.", self.name))
        params = self.env["ir.config_parameter"].sudo()
        # How long the service takes to render a PDF after finalizing: the provider's own guess unless set.
        ready_after = params.get_param("fiscal_invoice_connector.pdf_ready_after")
        return ProviderConfig(
            base_url=account.base_url,
            credentials=credentials,
            environment=account.environment,
            options={
                **({"pdf_ready_after": float(ready_after)} if ready_after else {}),
                "pdf_poll_interval": float(params.get_param("fiscal_invoice_connector.pdf_poll_interval", 2.0)),
                "pdf_max_polls": int(params.get_param("fiscal_invoice_connector.pdf_max_polls", 5)),
                "company_id": account.company_ref or None,
                "company_code": account.company_ref or None,
                "register_id": account.register_id or None,
                "store_id": account.store_id or None,
                "payment_methods": account._payment_methods(),
                "totals_tolerance": account.totals_tolerance,
                "municipal_registration": account.issuer_municipal_registration or None,
                "city_code": account.service_city_code or None,
                "rps_series": account.rps_series or None,
            },
        )

    def _secrets(self):
        """Every secret of the account, for redaction."""
        account = self.sudo()
        return [value for value in (account.api_key, account.access_key, account.webhook_secret) if value]

    def _get_client(self):
        self.ensure_one()
        return self._get_provider_class()(self._provider_config())

    def _capabilities(self):
        return self._get_provider_class().capabilities

    def _can_cancel(self, document_type):
        """Whether a final document of this type can be cancelled at the provider (else: credit note)."""
        return not self._get_provider_class().cancel_requires_credit_note(document_type)

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
        self.check_access("write")  # managers: it uses the credentials
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
        return True

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

    # ------------------------------------------------------------------ catalogue
    def action_sync_products(self):
        """Create or update, at the provider, every saleable product with a SKU (matched by it)."""
        self.ensure_one()
        self.check_access("write")  # managers: it changes the provider's catalogue
        if "product_sync" not in self._capabilities():
            raise UserError(self.env._("%s keeps no product catalogue to sync.", self.name))
        products = self.env["product.product"].search(
            [("sale_ok", "=", True), ("company_id", "in", (False, self.company_id.id))], order="id"
        )
        client = self._get_client()
        bindings = {b.product_id.id: b for b in self.product_binding_ids}
        done, skipped, failed = 0, [], []
        for product in products:
            if not product.default_code:
                skipped.append(product.display_name)
                continue
            tax = product.taxes_id.filtered(lambda t: t.company_id == self.company_id)[:1]
            binding = bindings.get(product.id)
            data = FiscalProduct(
                code=product.default_code,
                description=product.name,
                unit_price=from_float(product.list_price),
                tax_name=tax._fiscal_tax_name() if tax else None,
                tax_rate=from_float(tax.amount),
                tax_exemption_code=tax.fiscal_exemption_code or None,
                remote_id=binding.remote_id if binding else None,
            )
            try:
                remote_id = client.sync_product(data)
            except ProviderError as e:
                failed.append(f"{product.default_code}: {Redactor(self._secrets())(str(e))}")
                continue
            if binding:
                binding.write({"remote_id": remote_id, "synced_at": fields.Datetime.now()})
            else:
                bindings[product.id] = self.env["fiscal.product.binding"].create(
                    {"account_id": self.id, "product_id": product.id, "remote_id": remote_id}
                )
            done += 1
        message = self.env._("%(n)s products synced by SKU.", n=done)
        if skipped:
            message += " " + self.env._("Without SKU, not sent: %s.", ", ".join(skipped[:10]))
        if failed:
            message += " " + self.env._("Refused: %s.", "; ".join(failed[:10]))
        self.message_post(body=message)
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"title": self.name, "message": message, "type": "warning" if failed else "success"},
        }
