from odoo import models


class FiscalSourceMixin(models.AbstractModel):
    _inherit = "fiscal.source.mixin"

    def _fiscal_portal_files(self):
        """The legal files the customer may download from this record's portal page (its own
        fiscal document's PDF and XML; nothing while it is cancelled or dropped). A sale split into
        several NFS-e: the first note's as ``pdf``/``xml``, the others' as ``pdf-2``, ``xml-2``..."""
        self.ensure_one()
        doc = self.fiscal_document_id
        if not doc or doc.state in ("cancelled", "dropped"):
            return {}
        files = {}
        for part in doc._fiscal_parts():
            suffix = f"-{part.split_part}" if part.split_part > 1 else ""
            for kind, attachment in (("pdf", part.pdf_attachment_id), ("xml", part.xml_attachment_id)):
                if attachment:
                    files[kind + suffix] = attachment
        return files
