import logging

from odoo import Command
from odoo.exceptions import AccessError
from odoo.tests import tagged

from .common import API_KEY, FiscalTestCommon


@tagged("post_install", "-at_install")
class TestSecurity(FiscalTestCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.salesman = cls.env["res.users"].create(
            {
                "name": "Salesman",
                "login": "fiscal_salesman",
                "group_ids": [Command.set(cls.quick_ref("sales_team.group_sale_salesman").ids)],
                "company_ids": [Command.set(cls.company.ids)],
                "company_id": cls.company.id,
            }
        )

    def test_non_manager_cannot_read_credentials(self):
        account = self.account.with_user(self.salesman)
        self.assertEqual(account.name, "IX test", "users may see which account is used")
        with self.assertRaises(AccessError):
            account.read(["api_key"])
        self.assertNotIn("api_key", account.fields_get())
        with self.assertRaises(AccessError):
            account.write({"api_key": "stolen"})

    def test_salesman_confirms_and_sees_the_fiscal_status(self):
        order = self.make_order().with_user(self.salesman)
        order.sudo().user_id = self.salesman
        order.action_confirm()
        self.assertEqual(order.fiscal_state, "to_send")
        self.run_queue()
        self.assertEqual(order.fiscal_state, "issued")
        self.assertTrue(order.fiscal_number)

    def test_credentials_are_not_copied_nor_exported(self):
        copy = self.account.copy()
        self.assertFalse(copy.api_key)
        self.assertFalse(self.account._fields["api_key"].exportable)

    def test_secret_never_in_logs_attempts_chatter_or_errors(self):
        with self.assertLogs(level=logging.DEBUG) as logs:
            logging.getLogger("odoo.addons.fiscal_invoice_connector").debug("capture start")
            self.sim.inject("reset", path_contains="/invoices.json", method="POST")
            order = self.confirm(self.make_order())
            self.run_queue()
            self.make_due(order.fiscal_document_id)
            self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "issued", doc.last_error)
        texts = [
            "\n".join(logs.output),
            "\n".join(doc.attempt_ids.mapped(lambda a: f"{a.summary} {a.message}")),
            self.chatter_text(order),
            self.chatter_text(doc),
        ]
        self.assertIn("POST /invoices.json", texts[1], "the attempt log shows the requests")
        for text in texts:
            self.assertNotIn(API_KEY, text)

    def test_wrong_key_pauses_the_account_instead_of_failing_documents(self):
        self.account.api_key = "wrong-key-123456"
        orders = self.confirm(self.make_order()) | self.confirm(self.make_order())
        self.run_queue()
        self.assertEqual(self.account.state, "paused")
        self.assertIn("refused the credentials", self.account.paused_reason)
        self.assertEqual(set(orders.mapped("fiscal_state")), {"to_send"}, "documents wait, they do not fail")
        posts = [r for r in self.sim.requests if r["status"] == 401]
        self.assertEqual(len(posts), 1, "one refused call pauses the queue; the rest is not attempted")
        self.account.api_key = API_KEY
        self.account.action_resume()
        self.run_queue()
        self.assertEqual(set(orders.mapped("fiscal_state")), {"issued"})

    def test_other_company_documents_are_invisible(self):
        order = self.confirm(self.make_order())
        other = self.setup_other_company()["company"]
        user = self.env["res.users"].create(
            {
                "name": "Other company user",
                "login": "fiscal_other_company",
                "group_ids": [Command.set(self.quick_ref("fiscal_invoice_connector.group_fiscal_user").ids)],
                "company_ids": [Command.set(other.ids)],
                "company_id": other.id,
            }
        )
        Doc = self.env["fiscal.document"].with_user(user)
        self.assertFalse(Doc.search([("id", "=", order.fiscal_document_id.id)]))
        self.assertFalse(self.env["fiscal.provider.account"].with_user(user).search([("id", "=", self.account.id)]))
