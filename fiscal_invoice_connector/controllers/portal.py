from odoo import http
from odoo.exceptions import AccessError, MissingError
from odoo.http import request

from odoo.addons.portal.controllers.portal import CustomerPortal


class FiscalPortal(CustomerPortal):
    """The customer downloads the legal document of an order or invoice from its portal page,
    with the rights the portal enforces there: the logged-in customer owning the record, or the
    record's access token. The file served is always the record's own fiscal document's."""

    @http.route("/my/orders/<int:record_id>/fiscal/<string:kind>", type="http", auth="public", readonly=True)
    def portal_order_fiscal_file(self, record_id, kind, access_token=None, **kw):
        return self._fiscal_file("sale.order", record_id, kind, access_token)

    @http.route("/my/invoices/<int:record_id>/fiscal/<string:kind>", type="http", auth="public", readonly=True)
    def portal_invoice_fiscal_file(self, record_id, kind, access_token=None, **kw):
        return self._fiscal_file("account.move", record_id, kind, access_token)

    def _fiscal_file(self, model, record_id, kind, access_token):
        try:
            record_sudo = self._document_check_access(model, record_id, access_token=access_token)
        except (AccessError, MissingError):
            return request.redirect("/my")
        attachment = record_sudo._fiscal_portal_files().get(kind)
        if not attachment:
            raise request.not_found()
        return request.env["ir.binary"]._get_stream_from(attachment.sudo()).get_response(as_attachment=True)
