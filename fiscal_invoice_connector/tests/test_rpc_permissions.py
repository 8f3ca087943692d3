"""Who may do what with fiscal documents, over real XML-RPC (``/xmlrpc/2/object``), as each
kind of user: nobody creates, writes or deletes a fiscal document or an attempt; a user reads
only the documents of the orders and invoices he may read; the buttons check the source.
"""

import xmlrpc.client

from odoo import Command
from odoo.tests import HttpCase, tagged

from .common import API_KEY, FiscalTestCommon

PASSWORD = "Fiscal-rpc-Pa55word-19"


@tagged("post_install", "-at_install")
class TestRpcPermissions(FiscalTestCommon, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()

        def user(login, *groups, **vals):
            return cls.env["res.users"].create(
                {
                    "name": login.replace("_", " ").title(),
                    "login": login,
                    "password": PASSWORD,
                    "group_ids": [Command.set([cls.quick_ref(g).id for g in groups])],
                    "company_ids": [Command.set(cls.company.ids)],
                    "company_id": cls.company.id,
                    **vals,
                }
            )

        # "Own documents only": the default salesman.
        cls.salesman = user("rpc_salesman", "sales_team.group_sale_salesman")
        cls.billing = user("rpc_billing", "account.group_account_invoice")
        cls.employee = user("rpc_employee", "base.group_user")
        cls.manager = user("rpc_manager", "account.group_account_manager", "base.group_allow_export")
        contact = cls.env["res.partner"].create({"name": "Portal contact", "parent_id": cls.customer.id})
        cls.portal = user("rpc_portal", "base.group_portal", partner_id=contact.id)
        cls.roles = {
            "salesman": cls.salesman,
            "billing": cls.billing,
            "portal": cls.portal,
            "employee": cls.employee,
            "manager": cls.manager,
        }

    def setUp(self):
        super().setUp()
        # The test user's (an accountant's) sales: a quotation and a confirmed order with its document.
        self.admin_quotation = self.make_order()
        self.admin_order = self.confirm(self.make_order())
        self.admin_doc = self.admin_order.fiscal_document_id
        # The salesman's own confirmed sale, its document still waiting.
        self.own_order = self.confirm(self.make_order(user_id=self.salesman.id))
        self.own_doc = self.own_order.fiscal_document_id
        self.assertTrue(self.admin_doc and self.own_doc)

    # -- helpers ---------------------------------------------------------------------
    def rpc(self, user, model, method, *args, **kwargs):
        return self.xmlrpc_object.execute_kw(self.env.cr.dbname, user.id, PASSWORD, model, method, list(args), kwargs)

    def assertRefused(self, user, model, method, *args, pattern=r"(?i)access|rights|allowed|not allowed", **kwargs):
        with self.assertRaises(xmlrpc.client.Fault, msg=f"{user.login}: {model}.{method}") as caught:
            self.rpc(user, model, method, *args, **kwargs)
        self.assertRegex(caught.exception.faultString, pattern, f"{user.login}: {model}.{method}")
        return caught.exception.faultString

    def snapshot(self, docs):
        self.env.invalidate_all()
        return [(d.state, d.number, d.remote_id, d.cancel_reason, d.next_attempt) for d in docs.sudo()]

    def doc_vals(self, order):
        return {
            "company_id": self.company.id,
            "account_id": self.account.id,
            "sale_order_id": order.id,
            "partner_id": self.customer.id,
            "currency_id": order.currency_id.id,
            "amount_total": order.amount_total,
        }

    def error_document(self, order):
        """A document that needs attention, as a user meets one: the provider refused the address."""
        order.sudo().partner_id = self.customer.copy({"zip": "1100", "vat": "PT255530307"})
        self.confirm(order)
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "error", doc.last_error)
        return doc

    # -- the test (e) ---------------------------------------------------------
    def test_salesman_cannot_create_or_write_a_fiscal_document_nor_read_one_of_an_order_he_cannot_read(self):
        before = self.snapshot(self.admin_doc | self.own_doc)
        # A fiscal document for someone else's quotation: the cron would have issued it.
        self.assertRefused(self.salesman, "fiscal.document", "create", self.doc_vals(self.admin_quotation))
        self.assertRefused(self.salesman, "fiscal.document", "create", self.doc_vals(self.own_order))
        # Through his own order's one2many too.
        self.assertRefused(
            self.salesman,
            "sale.order",
            "write",
            [self.own_order.id],
            {"fiscal_document_ids": [(0, 0, self.doc_vals(self.own_order))]},
        )
        self.assertFalse(
            self.env["fiscal.document"].sudo().search([("sale_order_id", "=", self.admin_quotation.id)]),
            "no document for the quotation",
        )
        # Writing the legal fields of his own document: a number, "dropped", another sale's remote id.
        for vals in ({"number": "FT 2026/999"}, {"state": "dropped"}, {"remote_id": "424242"}):
            self.assertRefused(self.salesman, "fiscal.document", "write", [self.own_doc.id], vals)
        self.assertRefused(
            self.salesman,
            "sale.order",
            "write",
            [self.own_order.id],
            {"fiscal_document_ids": [(1, self.own_doc.id, {"state": "dropped"})]},
        )
        self.assertRefused(self.salesman, "fiscal.document", "unlink", [self.own_doc.id])
        # Reading the document of an order he cannot read.
        self.assertRefused(self.salesman, "sale.order", "read", [self.admin_order.id], ["name"])
        self.assertRefused(self.salesman, "fiscal.document", "read", [self.admin_doc.id], ["partner_id", "number"])
        found = self.rpc(self.salesman, "fiscal.document", "search", [])
        self.assertEqual(found, [self.own_doc.id], "he sees the document of his own sale only")
        # And cancelling it (the note of another sale cancelled at the provider).
        self.assertRefused(self.salesman, "fiscal.document", "action_request_cancel", [self.admin_doc.id], "x")
        self.assertEqual(self.snapshot(self.admin_doc | self.own_doc), before, "nothing changed")

    # -- every role ----------------------------------------------------------------
    def test_no_role_writes_the_outbox_nor_the_attempt_log(self):
        self.run_queue()  # the documents are issued: attempts exist
        self.assertTrue(self.admin_doc.attempt_ids)
        attempt = self.admin_doc.attempt_ids[:1]
        before = self.snapshot(self.admin_doc | self.own_doc)
        for role, user in self.roles.items():
            with self.subTest(role=role):
                self.assertRefused(user, "fiscal.document", "create", self.doc_vals(self.admin_quotation))
                self.assertRefused(user, "fiscal.document", "write", [self.own_doc.id], {"state": "dropped"})
                # (issued: the model's own rule answers first; refused all the same)
                self.assertRefused(
                    user, "fiscal.document", "unlink", [self.own_doc.id], pattern="(?i)access|allowed|cannot be deleted"
                )
                self.assertRefused(user, "fiscal.document", "copy", [self.own_doc.id])
                self.assertRefused(
                    user,
                    "fiscal.document.attempt",
                    "create",
                    {"document_id": self.admin_doc.id, "operation": "create", "outcome": "ok"},
                )
                self.assertRefused(
                    user, "fiscal.document.attempt", "write", [attempt.id], {"message": "x"}, pattern="."
                )
                self.assertRefused(user, "fiscal.document.attempt", "unlink", [attempt.id], pattern=".")
        self.assertEqual(self.snapshot(self.admin_doc | self.own_doc), before)
        self.assertEqual(self.env["fiscal.document"].sudo().search_count([]), 2)

    def test_each_role_reads_the_documents_of_the_sales_it_may_read(self):
        self.run_queue()
        admin_attempts = self.admin_doc.attempt_ids.ids
        # Who sees what: the salesman his own sale; a billing user (all invoices and orders) and a
        # manager everything; an employee without sales rights and a portal user nothing.
        expected = {
            "salesman": [self.own_doc.id],
            "billing": sorted([self.admin_doc.id, self.own_doc.id]),
            "manager": sorted([self.admin_doc.id, self.own_doc.id]),
            "employee": [],
        }
        for role, user in self.roles.items():
            with self.subTest(role=role):
                if role == "portal":
                    self.assertRefused(user, "fiscal.document", "search", [])
                    self.assertRefused(user, "fiscal.document", "read", [self.own_doc.id], ["name"])
                    self.assertRefused(user, "fiscal.document.attempt", "search_read", [], ["summary"])
                    continue
                self.assertEqual(sorted(self.rpc(user, "fiscal.document", "search", [])), expected[role])
                self.assertEqual(self.rpc(user, "fiscal.document", "search_count", []), len(expected[role]))
                if self.admin_doc.id not in expected[role]:
                    self.assertRefused(user, "fiscal.document", "read", [self.admin_doc.id], ["partner_id"])
                if role == "employee":
                    self.assertRefused(user, "fiscal.document.attempt", "search", [])
                    continue
                attempts = self.rpc(user, "fiscal.document.attempt", "search", [])
                self.assertEqual(
                    bool(set(admin_attempts) & set(attempts)),
                    self.admin_doc.id in expected[role],
                    "attempt logs follow their document",
                )
                if self.admin_doc.id not in expected[role]:
                    self.assertRefused(user, "fiscal.document.attempt", "read", admin_attempts, ["summary"])

    def test_credentials_are_read_by_managers_only_and_exported_by_nobody(self):
        for role, user in self.roles.items():
            with self.subTest(role=role):
                if role == "manager":
                    continue
                self.assertRefused(user, "fiscal.provider.account", "read", [self.account.id], ["api_key"])
                self.assertRefused(user, "fiscal.provider.account", "search_count", [("api_key", "=", API_KEY)])
        # The manager reads the key (the form shows it), but no export gives it, not even through a relation.
        self.assertEqual(
            self.rpc(self.manager, "fiscal.provider.account", "read", [self.account.id], ["api_key"])[0]["api_key"],
            API_KEY,
        )
        exported = self.rpc(self.manager, "fiscal.provider.account", "export_data", [self.account.id], ["name"])
        self.assertEqual(exported["datas"], [[self.account.name]], "he may export, the secrets aside")
        for fields in (["name", "api_key"], ["access_key"], ["webhook_secret"], ["webhook_url"]):
            with self.subTest(fields=fields):
                fault = self.assertRefused(
                    self.manager,
                    "fiscal.provider.account",
                    "export_data",
                    [self.account.id],
                    fields,
                    pattern="never exported",
                )
                self.assertNotIn(API_KEY, fault)
        self.assertRefused(
            self.manager,
            "fiscal.document",
            "export_data",
            [self.admin_doc.id],
            ["name", "account_id/api_key"],
            pattern="never exported",
        )
        # Saving the form with the key left blank keeps the stored key.
        self.assertIs(
            self.rpc(self.manager, "fiscal.provider.account", "write", [self.account.id], {"api_key": ""}), True
        )
        self.account.invalidate_recordset()
        self.assertEqual(self.account.api_key, API_KEY)

    # -- the buttons, where each role may use them ----------------------------------
    def test_salesman_buttons_on_his_own_sale(self):
        # Cancelling his own waiting document drops it (nothing reached the provider)...
        result = self.rpc(self.salesman, "fiscal.document", "action_request_cancel", [self.own_doc.id], "typo")
        self.assertIs(result, True)
        self.env.invalidate_all()
        self.assertEqual(self.own_doc.state, "dropped")
        # ... and "Issue now" queues a new one for his confirmed order.
        wizard = self.rpc(self.salesman, "sale.order", "action_issue_fiscal_now", [self.own_order.id])
        self.assertEqual(wizard["res_model"], "fiscal.issue.wizard")
        wizard_id = self.rpc(
            self.salesman,
            "fiscal.issue.wizard",
            "create",
            wizard["context"]
            and {"res_model": wizard["context"]["default_res_model"], "res_id": wizard["context"]["default_res_id"]},
        )
        result = self.rpc(self.salesman, "fiscal.issue.wizard", "action_issue", [wizard_id])
        self.assertEqual(result["tag"], "display_notification")
        self.env.invalidate_all()
        self.assertEqual(self.own_order.fiscal_state, "to_send")
        self.assertNotEqual(self.own_order.fiscal_document_id, self.own_doc)
        # Not for a quotation, even his own.
        quotation = self.make_order(user_id=self.salesman.id)
        wizard_id = self.rpc(
            self.salesman,
            "fiscal.issue.wizard",
            "create",
            {"res_model": "sale.order", "res_id": quotation.id, "account_id": self.account.id},
        )
        self.assertRefused(
            self.salesman, "fiscal.issue.wizard", "action_issue", [wizard_id], pattern="Confirm the order"
        )
        self.assertFalse(quotation.fiscal_document_id)
        # A document that needs attention: he sees it, retries it, asks the queue to run.
        order = self.make_order(user_id=self.salesman.id)
        doc = self.error_document(order)
        action = self.rpc(self.salesman, "sale.order", "action_view_fiscal_documents", [order.id])
        self.assertEqual((action["res_model"], action["res_id"]), ("fiscal.document", doc.id))
        self.assertIs(self.rpc(self.salesman, "sale.order", "action_retry_fiscal", [order.id]), True)
        self.env.invalidate_all()
        self.assertEqual(doc.state, "to_send", "retried")
        result = self.rpc(self.salesman, "fiscal.document", "action_process_now", [])
        self.assertEqual(result["type"], "ir.actions.client")

    def test_salesman_buttons_on_sales_he_cannot_read_are_refused(self):
        before = self.snapshot(self.admin_doc)
        for method in (
            "action_view_fiscal_documents",
            "action_issue_fiscal_now",
            "action_retry_fiscal",
            "action_open_fiscal_pdf",
        ):
            self.assertRefused(self.salesman, "sale.order", method, [self.admin_order.id])
        self.assertRefused(self.salesman, "fiscal.document", "action_retry", [self.admin_doc.id])
        self.assertRefused(self.salesman, "fiscal.document", "action_open_pdf", [self.admin_doc.id])
        # The issue wizard, pointed by hand at someone else's quotation or order.
        for order in (self.admin_quotation, self.admin_order):
            self.assertRefused(
                self.salesman,
                "fiscal.issue.wizard",
                "create",
                {"res_model": "sale.order", "res_id": order.id, "account_id": self.account.id},
            )
        self.assertFalse(self.admin_quotation.fiscal_document_id)
        # The cancel dialog and the list's mass actions, with someone else's document.
        self.assertRefused(
            self.salesman,
            "fiscal.cancel.wizard",
            "create",
            {"document_ids": [(6, 0, self.admin_doc.ids)], "reason": "x"},
        )
        retry = self.env.ref("fiscal_invoice_connector.action_fiscal_document_retry")
        self.assertRefused(
            self.salesman,
            "ir.actions.server",
            "run",
            [retry.id],
            context={
                "active_model": "fiscal.document",
                "active_ids": self.admin_doc.ids,
                "active_id": self.admin_doc.id,
            },
        )
        # What only accountants and managers use.
        self.assertRefused(self.salesman, "fiscal.backfill.wizard", "create", {"account_id": self.account.id})
        self.assertRefused(self.salesman, "fiscal.reconciliation", "create", {"account_id": self.account.id})
        self.assertRefused(self.salesman, "fiscal.provider.account", "action_test_connection", [self.account.id])
        self.assertEqual(self.snapshot(self.admin_doc), before)

    def test_billing_user_buttons_on_a_posted_invoice(self):
        order = self.make_order()
        doc = self.error_document(order)
        invoice = self.invoice_and_post(order)
        self.assertEqual(invoice.fiscal_document_id, doc)
        action = self.rpc(self.billing, "account.move", "action_view_fiscal_documents", [invoice.id])
        self.assertEqual(action["res_id"], doc.id)
        self.assertIs(self.rpc(self.billing, "account.move", "action_retry_fiscal", [invoice.id]), True)
        order.partner_id.zip = "1100-053"
        self.make_due(doc)
        self.run_queue()
        self.assertEqual(doc.state, "issued", doc.last_error)
        pdf = self.rpc(self.billing, "account.move", "action_open_fiscal_pdf", [invoice.id])
        self.assertEqual(pdf["type"], "ir.actions.act_url")
        self.assertEqual(self.rpc(self.billing, "fiscal.document", "action_open_pdf", [doc.id]), pdf)
        self.assertRefused(self.billing, "fiscal.document", "write", [doc.id], {"number": "X"})

    def test_employee_and_portal_user_have_no_button(self):
        for user in (self.employee, self.portal):
            for method in ("action_view_fiscal_documents", "action_issue_fiscal_now", "action_retry_fiscal"):
                self.assertRefused(user, "sale.order", method, [self.own_order.id])
            self.assertRefused(user, "fiscal.document", "action_retry", [self.own_doc.id])
            self.assertRefused(user, "fiscal.document", "action_request_cancel", [self.own_doc.id], "x")
            self.assertRefused(user, "fiscal.document", "action_process_now", [])
        self.env.invalidate_all()
        self.assertEqual(self.own_doc.state, "to_send")

    def test_every_button_answers_what_xmlrpc_can_carry(self):
        """Each action a user or a manager calls over RPC returns True or an action (never None)."""
        self.run_queue()
        self.env.invalidate_all()
        self.assertEqual(self.admin_doc.state, "issued", self.admin_doc.last_error)
        account = [self.account.id]
        for method in ("action_test_connection", "action_view_documents"):
            self.assertIsInstance(self.rpc(self.manager, "fiscal.provider.account", method, account), dict, method)
        self.assertIs(self.rpc(self.manager, "fiscal.provider.account", "action_resume", account), True)
        today = str(self.admin_doc.create_date.date())
        rec = self.rpc(
            self.billing,
            "fiscal.reconciliation",
            "create",
            {"account_id": self.account.id, "date_from": today, "date_to": today},
        )
        self.assertEqual(
            self.rpc(self.billing, "fiscal.reconciliation", "action_compare", [rec])["res_model"],
            "fiscal.reconciliation.line",
        )
        self.assertRefused(self.billing, "fiscal.backfill.wizard", "create", {"account_id": self.account.id})
        # A past sale without document (manual policy) for the manager's backfill.
        self.account.trigger = "manual"
        past = self.confirm(self.make_order())
        backfill = self.rpc(self.manager, "fiscal.backfill.wizard", "create", {"account_id": self.account.id})
        action = self.rpc(self.manager, "fiscal.backfill.wizard", "action_enqueue", [backfill])
        self.assertEqual(action["res_model"], "fiscal.document")
        self.env.invalidate_all()
        self.assertTrue(past.fiscal_document_id)
        wizard = self.rpc(
            self.billing,
            "fiscal.cancel.wizard",
            "create",
            {"document_ids": [(6, 0, self.admin_doc.ids)], "reason": "Erro no NIF"},
        )
        self.assertIsInstance(self.rpc(self.billing, "fiscal.cancel.wizard", "action_cancel", [wizard]), dict)
        self.env.invalidate_all()
        self.assertEqual(self.admin_doc.state, "to_cancel", "a billing user cancels an issued invoice")
