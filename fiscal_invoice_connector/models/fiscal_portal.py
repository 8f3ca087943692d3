from odoo import models


class FiscalSourceMixin(models.AbstractModel):
    _inherit = "fiscal.source.mixin"

    def _fiscal_portal_files(self):
        """The legal files the customer may download from this record's portal page (its own
        fiscal document's PDF and XML; nothing while it is cancelled or dropped)."""
        self.ensure_one()
        doc = self.fiscal_document_id
        if not doc or doc.state in ("cancelled", "dropped"):
            return {}
        return {kind: att for kind, att in (("pdf", doc.pdf_attachment_id), ("xml", doc.xml_attachment_id)) if att}
