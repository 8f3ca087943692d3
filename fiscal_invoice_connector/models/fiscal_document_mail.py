from odoo import api, fields, models


class FiscalProviderAccount(models.Model):
    _inherit = "fiscal.provider.account"

    email_sender = fields.Selection(
        [("provider", "The provider e-mails it"), ("odoo", "Odoo e-mails it (mail template)")],
        "Customer e-mail",
        default="provider",
        required=True,
        help="Who e-mails the legal document to the customer. Odoo: once the provider's PDF is attached, "
        "Odoo sends it with the mail template below, logged in the chatter; the provider's e-mail is then off.",
    )
    email_template_id = fields.Many2one(
        "mail.template",
        "Mail template",
        domain=[("model", "=", "fiscal.document")],
        default=lambda self: self.env.ref("fiscal_invoice_connector.mail_template_fiscal_document", False),
        help="Used when Odoo e-mails the document (a template of the fiscal document model).",
    )
    # The workflow reads `send_email` when it queues a document: it is off when Odoo e-mails.
    send_email = fields.Boolean(compute="_compute_send_email", store=True, readonly=False)

    @api.depends("email_sender")
    def _compute_send_email(self):
        for account in self:
            account.send_email = account.send_email and account.email_sender != "odoo"

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if vals.get("email_sender") == "odoo":
                vals["send_email"] = False
        return super().create(vals_list)

    def write(self, vals):
        if vals.get("send_email"):
            by_odoo = self if vals.get("email_sender") == "odoo" else self.filtered(lambda a: a.email_sender == "odoo")
            if "email_sender" in vals and vals["email_sender"] != "odoo":
                by_odoo = self.browse()
            if by_odoo:
                super(FiscalProviderAccount, by_odoo).write({**vals, "send_email": False})
                return super(FiscalProviderAccount, self - by_odoo).write(vals) if self - by_odoo else True
        return super().write(vals)


class FiscalDocument(models.Model):
    _inherit = "fiscal.document"

    def _attach_pdf(self, content, xml=None):
        res = super()._attach_pdf(content, xml)
        self._send_with_odoo_template()
        return res

    def _fiscal_files_on(self, record):
        """This document's PDF and XML as attached to ``record`` (an order or invoice, whose
        readers may read them), else its own copies."""
        own = self.pdf_attachment_id | self.xml_attachment_id
        if not record or not own:
            return own
        copies = (
            self.env["ir.attachment"]
            .sudo()
            .search(
                [("res_model", "=", record._name), ("res_id", "=", record.id), ("name", "in", own.mapped("name"))],
                order="id desc",
            )
        )
        found = self.env["ir.attachment"]
        for attachment in own:
            found |= copies.filtered(lambda a, name=attachment.name: a.name == name)[:1] or attachment
        return found

    def _send_with_odoo_template(self):
        """Odoo e-mails the legal PDF to the customer with the account's mail template (accounts
        whose e-mail is Odoo's), as a message in the order's or invoice's chatter. Called once the
        PDF is attached, in the same transaction: ``email_state`` says it was done, so a document
        is e-mailed once."""
        for doc in self:
            account = doc.account_id
            if account.email_sender != "odoo" or doc.state != "issued" or not doc.pdf_attachment_id:
                continue
            if doc.email_state == "sent":
                continue
            source = (doc.move_id or doc.sale_order_id).sudo()
            if not source:
                continue
            if not doc.partner_id.email:
                doc.write({"email_state": "none"})
                doc._post_on_sources(self.env._("Not emailed: the customer has no email address."))
                continue
            template = (
                account.email_template_id or self.env.ref("fiscal_invoice_connector.mail_template_fiscal_document")
            ).sudo()
            values = template._generate_template(doc.ids, ("subject", "body_html", "email_from"))[doc.id]
            attachments = doc._fiscal_files_on(source)
            source.message_post(
                body=values.get("body_html") or "",
                subject=values.get("subject"),
                **({"email_from": values["email_from"]} if values.get("email_from") else {}),
                author_id=doc.company_id.partner_id.id,
                partner_ids=doc.partner_id.ids,
                attachment_ids=attachments.ids,
                message_type="comment",
                subtype_xmlid="mail.mt_comment",
                email_layout_xmlid="mail.mail_notification_light",
            )
            doc.write({"email_state": "sent"})
            doc.message_post(
                body=self.env._(
                    "Fiscal document emailed to %(email)s by Odoo (template %(template)s).",
                    email=doc.partner_id.email,
                    template=template.name,
                )
            )


class AccountMoveSend(models.AbstractModel):
    """Odoo's Send on an invoice: the legal PDF is the provider's, when there is one."""

    _inherit = "account.move.send"

    @api.model
    def _fiscal_issued_files(self, move):
        doc = move.sudo().fiscal_document_id
        if doc.state == "issued" and doc.pdf_attachment_id:
            return doc._fiscal_files_on(move if doc.move_id == move else doc.sale_order_id)
        return self.env["ir.attachment"]

    @api.model
    def _get_invoice_extra_attachments(self, move):
        files = self._fiscal_issued_files(move)
        # Odoo's own PDF is not the legal document: the provider's replaces it in the e-mail.
        return files or super()._get_invoice_extra_attachments(move)

    @api.model
    def _get_placeholder_mail_attachments_data(self, move, invoice_edi_format=None, extra_edis=None, pdf_report=None):
        if self._fiscal_issued_files(move):
            return []
        return super()._get_placeholder_mail_attachments_data(
            move, invoice_edi_format=invoice_edi_format, extra_edis=extra_edis, pdf_report=pdf_report
        )

    @api.model
    def _prepare_invoice_pdf_report(self, invoices_data):
        # No need to render Odoo's PDF for an invoice whose legal PDF is the provider's.
        legal = {invoice for invoice in invoices_data if self._fiscal_issued_files(invoice)}
        rest = {invoice: data for invoice, data in invoices_data.items() if invoice not in legal}
        if rest:
            super()._prepare_invoice_pdf_report(rest)

    @api.model
    def _hook_invoice_document_after_pdf_report_render(self, invoice, invoice_data):
        # Nothing rendered, nothing to complete (e.g. an e-invoice XML embedded in Odoo's PDF): the
        # provider's PDF is the legal document and is never altered.
        if not invoice_data.get("pdf_attachment_values") and self._fiscal_issued_files(invoice):
            return None
        return super()._hook_invoice_document_after_pdf_report_render(invoice, invoice_data)

    @api.model
    def _link_invoice_documents(self, invoices_data):
        super()._link_invoice_documents(invoices_data)
        for invoice, data in invoices_data.items():
            if not data.get("pdf_attachment_values") and self._fiscal_issued_files(invoice):
                invoice.is_move_sent = True

    @api.model
    def _get_alerts(self, moves, moves_data):
        alerts = super()._get_alerts(moves, moves_data)
        pending = moves.filtered(
            lambda m: m.sudo().fiscal_document_id
            and m.sudo().fiscal_state not in ("cancelled", "dropped")
            and not self._fiscal_issued_files(m)
        )
        if pending:
            alerts["fiscal_invoice_connector_pending"] = {
                "level": "warning",
                "message": self.env._(
                    "The legal document of %(invoices)s is not issued yet, or its PDF has not arrived: "
                    "Odoo's PDF is not the legal invoice. Send once the fiscal number and PDF are there.",
                    invoices=", ".join(pending.mapped("name")),
                ),
                "action_text": self.env._("View fiscal documents"),
                "action": pending.sudo().fiscal_document_id._get_records_action(name=self.env._("Fiscal documents")),
            }
        return alerts
