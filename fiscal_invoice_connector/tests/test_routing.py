from fiscal_simulators.invoicexpress import InvoiceXpressSimulator

from odoo import Command
from odoo.tests import tagged

from .common import FiscalTestCommon


@tagged("post_install", "-at_install")
class TestRoutingAndIsolation(FiscalTestCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sim_porto = InvoiceXpressSimulator(api_key="porto-key-9c2e71", rate_limit_per_minute=None).start()
        cls.addClassCleanup(cls.sim_porto.stop)
        cls.account_porto = cls.env["fiscal.provider.account"].create(
            {
                "name": "Loja do Porto",
                "company_id": cls.company.id,
                "provider": "invoicexpress",
                "account_name": "porto",
                "base_url": cls.sim_porto.base_url,
                "api_key": "porto-key-9c2e71",
                "trigger": "order_confirm",
            }
        )
        cls.wine = cls.env["product.category"].create({"name": "Vinhos"})
        cls.product.categ_id = cls.wine
        cls.other_product = cls.make_product_cls("Consultoria", "CONS")
        cls.env["fiscal.routing.rule"].create(
            {"company_id": cls.company.id, "categ_ids": [Command.set(cls.wine.ids)], "account_id": cls.account_porto.id}
        )

    @classmethod
    def make_product_cls(cls, name, code):
        return cls.env["product.product"].create(
            {
                "name": name,
                "default_code": code,
                "list_price": 10.0,
                "type": "service",
                "taxes_id": [Command.set(cls.tax_23.ids)],
            }  # fmt: skip
        )

    def setUp(self):
        super().setUp()
        self.sim_porto.reset()

    def test_rules_route_each_sale_to_its_account_and_its_credentials_only(self):
        wine_order = self.confirm(self.make_order(product=self.product))
        other_order = self.confirm(self.make_order(product=self.other_product))
        self.assertEqual(wine_order.fiscal_account_id, self.account_porto)
        self.assertEqual(other_order.fiscal_account_id, self.account)
        self.run_queue()
        self.assertEqual(wine_order.fiscal_state, "issued", wine_order.fiscal_error)
        self.assertEqual(other_order.fiscal_state, "issued", other_order.fiscal_error)
        porto_refs = {d["reference"] for d in self.sim_porto.documents.values()}
        lisbon_refs = {d["reference"] for d in self.sim.documents.values()}
        self.assertTrue(any(wine_order.fiscal_document_id.reference in r for r in porto_refs))
        self.assertFalse(any(wine_order.fiscal_document_id.reference in r for r in lisbon_refs))
        self.assertTrue(any(other_order.fiscal_document_id.reference in r for r in lisbon_refs))
        # Each simulator only accepts its own key: not a single refused call means no key crossed.
        refused = [r for r in self.sim.requests + self.sim_porto.requests if r["status"] == 401]
        self.assertEqual(refused, [])

    def test_account_chosen_at_confirmation_never_moves(self):
        order = self.confirm(self.make_order(product=self.other_product))
        self.assertEqual(order.fiscal_account_id, self.account)
        self.env["fiscal.routing.rule"].create({"company_id": self.company.id, "account_id": self.account_porto.id,
                                                "sequence": 1})  # fmt: skip
        order.partner_id = self.customer.copy()
        self.assertEqual(order.fiscal_account_id, self.account)

    def test_explicit_account_on_the_order_wins(self):
        order = self.make_order(product=self.other_product)
        order.fiscal_account_id = self.account_porto
        self.confirm(order)
        self.assertEqual(order.fiscal_document_id.account_id, self.account_porto)


class ProductSyncCases:
    def test_products_synced_by_sku_created_once_then_updated(self):
        self.product.write({"list_price": 40.0})
        no_sku = self.make_product(self.tax_23, name="Sem referência", code=False)
        self.account.action_sync_products()
        bindings = self.env["fiscal.product.binding"].search([("account_id", "=", self.account.id)])
        self.assertIn(self.product, bindings.product_id)
        self.assertNotIn(no_sku, bindings.product_id, "no SKU, not sent")
        remote_ids = set(bindings.mapped("remote_id"))
        first = self.remote_catalogue()
        # Again after a price change: the same remote products, updated, none added.
        self.product.write({"list_price": 42.0})
        self.account.action_sync_products()
        bindings = self.env["fiscal.product.binding"].search([("account_id", "=", self.account.id)])
        self.assertEqual(set(bindings.mapped("remote_id")), remote_ids)
        self.assertEqual(len(self.remote_catalogue()), len(first), "never duplicated")
        skus = [self.sku_of(p) for p in self.remote_catalogue()]
        self.assertEqual(len(skus), len(set(skus)))
        self.assertIn(42.0, [self.price_of(p) for p in self.remote_catalogue() if self.sku_of(p) == "PORTO-1"])


@tagged("post_install", "-at_install")
class TestProductSyncInvoiceXpress(ProductSyncCases, FiscalTestCommon):
    provider = "invoicexpress"

    def remote_catalogue(self):
        return list(self.sim.items.values())

    def sku_of(self, item):
        return item["name"]

    def price_of(self, item):
        return item["unit_price"]


@tagged("post_install", "-at_install")
class TestProductSyncVendus(ProductSyncCases, FiscalTestCommon):
    provider = "vendus"

    def remote_catalogue(self):
        return list(self.sim.products.values())

    def sku_of(self, product):
        return product["reference"]

    def price_of(self, product):
        return round(float(product["gross_price"]) / 1.23, 2)
