from odoo import fields, models


class FiscalProductBinding(models.Model):
    """Our product <-> its twin in a provider's catalogue (InvoiceXpress items, Vendus products),
    matched by internal reference (SKU)."""

    _name = "fiscal.product.binding"
    _description = "Product at a fiscal provider"
    _check_company_auto = True

    account_id = fields.Many2one("fiscal.provider.account", required=True, ondelete="cascade", index=True)
    company_id = fields.Many2one(related="account_id.company_id", store=True)
    product_id = fields.Many2one("product.product", required=True, ondelete="cascade", index=True)
    default_code = fields.Char(related="product_id.default_code", string="SKU")
    remote_id = fields.Char("Id at the provider", required=True)
    synced_at = fields.Datetime(default=fields.Datetime.now)

    _one_per_product = models.Constraint(
        "UNIQUE(account_id, product_id)", "A product is bound once per fiscal account."
    )
