from odoo import fields, models
from odoo.exceptions import AccessError, UserError

from .fiscal_document import STATES


class FiscalSourceMixin(models.AbstractModel):
    """What orders and invoices show of their fiscal document (one concept, one place)."""

    _name = "fiscal.source.mixin"
    _description = "Record that may have a fiscal document"

    fiscal_document_id = fields.Many2one(
        "fiscal.document", "Fiscal document", compute="_compute_fiscal_document", compute_sudo=True
    )
    fiscal_state = fields.Selection(
        STATES, "Fiscal status", compute="_compute_fiscal_document", search="_search_fiscal_state", compute_sudo=True
    )
    fiscal_number = fields.Char("Fiscal number", compute="_compute_fiscal_document", compute_sudo=True)
    fiscal_atcud = fields.Char("ATCUD", compute="_compute_fiscal_document", compute_sudo=True)
    fiscal_error = fields.Text("Fiscal error", compute="_compute_fiscal_document", compute_sudo=True)
    fiscal_pdf_id = fields.Many2one(
        "ir.attachment", "Fiscal PDF", compute="_compute_fiscal_document", compute_sudo=True
    )
    fiscal_document_count = fields.Integer(compute="_compute_fiscal_document", compute_sudo=True)

    def _fiscal_documents(self):
        """All fiscal documents of this record, newest first (override)."""
        raise NotImplementedError

    def _compute_fiscal_document(self):
        for record in self:
            docs = record._fiscal_documents() if record.id else self.env["fiscal.document"]
            live = docs.filtered(lambda d: d.state not in ("cancelled", "dropped"))
            doc = (live or docs)[:1]
            record.fiscal_document_id = doc
            record.fiscal_state = doc.state
            record.fiscal_number = doc.number
            record.fiscal_atcud = doc.atcud
            record.fiscal_error = doc.last_error
            record.fiscal_pdf_id = doc.pdf_attachment_id
            record.fiscal_document_count = len(docs)

    def _search_fiscal_state(self, operator, value):
        return [("id", "in", self._fiscal_source_ids(operator, value))]

    def _fiscal_source_ids(self, operator, value):
        raise NotImplementedError

    # -- actions -----------------------------------------------------------------
    # Users never write fiscal documents: each button checks the user's access to this record
    # (and the fiscal user group for what changes something), the document's own methods do the rest.
    def _check_fiscal_action(self, act=True):
        self.check_access("read")
        self.env["fiscal.document"].check_access("read")
        if act and not self.env.su and not self.env.user.has_group("fiscal_invoice_connector.group_fiscal_user"):
            raise AccessError(
                self.env._("You are not allowed to act on fiscal documents: ask for the Fiscal connector user group.")
            )

    def action_issue_fiscal_now(self):
        self.ensure_one()
        self._check_fiscal_action()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Issue fiscal document now"),
            "res_model": "fiscal.issue.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {"default_res_model": self._name, "default_res_id": self.id},
        }

    def action_view_fiscal_documents(self):
        self.ensure_one()
        self._check_fiscal_action(act=False)
        action = self.env["ir.actions.act_window"]._for_xml_id("fiscal_invoice_connector.fiscal_document_action")
        docs = self._fiscal_documents()
        action["domain"] = [("id", "in", docs.ids)]
        if len(docs) == 1:
            action.update(res_id=docs.id, view_mode="form", views=[(False, "form")])
        return action

    def action_open_fiscal_pdf(self):
        self.ensure_one()
        self._check_fiscal_action(act=False)
        if not self.fiscal_document_id:
            raise UserError(self.env._("%s has no fiscal document.", self.display_name))
        return self.fiscal_document_id.action_open_pdf()

    def action_retry_fiscal(self):
        self._check_fiscal_action()
        for record in self:
            if not record.fiscal_document_id:
                raise UserError(self.env._("%s has no fiscal document to retry.", record.display_name))
        self.mapped("fiscal_document_id").action_retry()
        return True
