from odoo import fields, models
from odoo.exceptions import UserError

from ..providers import FiscalProduct, ProviderError
from ..providers.base import Redactor
from .fiscal_mapping import _d


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


class FiscalProviderAccount(models.Model):
    _inherit = "fiscal.provider.account"

    product_binding_ids = fields.One2many("fiscal.product.binding", "account_id")

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
                unit_price=_d(product.list_price),
                tax_name=tax.fiscal_tax_name or (f"IVA{int(tax.amount)}" if tax else None),
                tax_rate=_d(tax.amount),
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
