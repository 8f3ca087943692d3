from odoo import fields, models
from odoo.exceptions import AccessError, UserError

from .fiscal_document import DEAD_STATES, STATES

# The status of a split sale is its least advanced part's.
SPLIT_STATE_ORDER = [
    "error", "failed", "check", "to_cancel", "sending", "to_send",
    "draft", "registered", "issued", "cancelled", "dropped",
]  # fmt: skip


class FiscalSourceMixin(models.AbstractModel):
    """What orders and invoices show of their fiscal documents (one concept, one place).

    The record's own fiscal document, its status and number are stored on the record and kept
    right by dependencies on its documents (as account_peppol keeps ``peppol_move_state`` on
    the move): a list of 80 records reads them with its other columns, a filter on the status
    is plain SQL, and a document changing never runs a search per record. Receipts and credit
    notes are shown beside the record's own document, never instead of it."""

    _name = "fiscal.source.mixin"
    _description = "Record that may have a fiscal document"

    fiscal_document_id = fields.Many2one(
        "fiscal.document",
        "Fiscal document",
        compute="_compute_fiscal_document",
        store=True,
        readonly=True,
        copy=False,
        index="btree_not_null",
        compute_sudo=True,
        help="This record's own fiscal document (not a receipt or a credit note of it).",
    )
    fiscal_state = fields.Selection(
        STATES,
        "Fiscal status",
        compute="_compute_fiscal_document",
        store=True,
        readonly=True,
        copy=False,
        index="btree_not_null",
        compute_sudo=True,
    )
    fiscal_number = fields.Char(
        "Fiscal number", compute="_compute_fiscal_document", store=True, readonly=True, copy=False, compute_sudo=True
    )
    # Shown on the form only: read through the stored relation.
    fiscal_atcud = fields.Char(related="fiscal_document_id.atcud", string="ATCUD")
    fiscal_error = fields.Text(related="fiscal_document_id.last_error", string="Fiscal error")
    fiscal_pdf_id = fields.Many2one(related="fiscal_document_id.pdf_attachment_id", string="Fiscal PDF")
    fiscal_related_document_ids = fields.Many2many(
        "fiscal.document",
        string="Receipts and credit notes",
        compute="_compute_fiscal_related_documents",
        compute_sudo=True,
        help="The other fiscal documents of this sale: receipts of its payments, credit notes.",
    )
    fiscal_related_count = fields.Integer(compute="_compute_fiscal_related_documents", compute_sudo=True)
    fiscal_deadline_checked = fields.Boolean(
        readonly=True,
        copy=False,
        help="Portugal: the legal deadline watch is done with this sale: its account's responsible got an "
        "activity because it reached 5 working days without an issued fiscal document, or its document was "
        "found issued by another record (models/fiscal_legal_watch.py).",
    )

    def _fiscal_documents(self):
        """All fiscal documents of this record, newest first (override)."""
        raise NotImplementedError

    def _fiscal_main_candidates(self):
        """The documents that may be this record's own one (override)."""
        raise NotImplementedError

    def _compute_fiscal_document(self):
        # Overridden with the dependencies of each model.
        for record in self:
            # A sale split into several NFS-e (one per service code): its first part stands for it,
            # the status is the least advanced part's, the number all the parts' numbers.
            doc = self._fiscal_pick(record._fiscal_main_candidates().filtered(lambda d: not d.split_lead_id))
            parts = doc._fiscal_parts()
            record.fiscal_document_id = doc
            record.fiscal_state = min(parts.mapped("state"), key=SPLIT_STATE_ORDER.index, default=False)
            numbers = [doc.number for doc in parts]
            record.fiscal_number = ", ".join(numbers) if all(numbers) and numbers else False

    @staticmethod
    def _fiscal_pick(docs):
        """The live one if any (two live ones are impossible), else the newest."""
        live = docs.filtered(lambda d: d.state not in DEAD_STATES)
        return max(live or docs, key=lambda d: d.id, default=docs[:0])

    def _compute_fiscal_related_documents(self):
        for record in self:
            related = record._fiscal_related_documents() if record.id else self.env["fiscal.document"]
            record.fiscal_related_document_ids = related
            record.fiscal_related_count = len(related)

    def _fiscal_related_documents(self):
        """The documents shown beside the record's own one (override)."""
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
        """This record's own fiscal document (every part of a split sale)."""
        self.ensure_one()
        self._check_fiscal_action(act=False)
        return self._fiscal_documents_action(self.fiscal_document_id._fiscal_parts())

    def action_view_fiscal_related_documents(self):
        """The receipts and credit notes beside it (and an order's other documents)."""
        self.ensure_one()
        self._check_fiscal_action(act=False)
        return self._fiscal_documents_action(self.fiscal_related_document_ids)

    def _fiscal_documents_action(self, docs):
        action = self.env["ir.actions.act_window"]._for_xml_id("fiscal_invoice_connector.fiscal_document_action")
        action["domain"] = [("id", "in", docs.ids)]
        action["context"] = {"create": False}
        if len(docs) == 1:
            action.update(res_id=docs.id, view_mode="form", views=[(False, "form")])
        return action

    def action_open_fiscal_pdf(self):
        self.ensure_one()
        self._check_fiscal_action(act=False)
        if not self.fiscal_document_id:
            raise UserError(self.env._("%s has no fiscal document.", self.display_name))
        parts = self.fiscal_document_id._fiscal_parts()
        if len(parts) > 1:  # one PDF per note: the notes, each with its PDF
            return self._fiscal_documents_action(parts)
        return self.fiscal_document_id.action_open_pdf()

    def action_retry_fiscal(self):
        self._check_fiscal_action()
        for record in self:
            if not record.fiscal_document_id:
                raise UserError(self.env._("%s has no fiscal document to retry.", record.display_name))
        self.mapped("fiscal_document_id").action_retry()
        return True
