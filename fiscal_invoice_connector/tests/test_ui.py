import re

import polib

from odoo import Command
from odoo.tests import tagged
from odoo.tools.misc import file_path

from .common import API_KEY, FiscalTestCommon


@tagged("post_install", "-at_install")
class TestUserInterface(FiscalTestCommon):
    """What users see and click outside the browser: settings, secrets kept on save,
    the fiscal documents views, list actions on many records, filters."""

    # -- settings ----------------------------------------------------------------
    def settings(self, **vals):
        return self.env["res.config.settings"].with_company(self.company).create(vals)

    def test_settings_show_and_change_the_company_default_account(self):
        other = self.account.copy({"name": "Second store", "environment": "production", "trigger": "manual"})
        settings = self.settings()
        self.assertEqual(settings.fiscal_default_account_id, self.account)
        self.assertEqual(settings.fiscal_default_environment, "test")
        self.assertEqual(settings.fiscal_default_trigger, "order_confirm")
        settings = self.settings(fiscal_default_account_id=other.id)
        settings.execute()
        self.assertEqual(self.company.fiscal_default_account_id, other)
        self.assertEqual(self.settings().fiscal_default_environment, "production")
        self.assertEqual(self.settings().fiscal_default_trigger, "manual")

    def test_settings_test_connection_reports_success_or_the_reason(self):
        action = self.settings().action_fiscal_test_connection()
        self.assertEqual(action["params"]["type"], "success", action["params"]["message"])
        self.assertIn("Connected to InvoiceXpress", action["params"]["message"])
        self.assertTrue(any(r["path"].endswith("/taxes.json") for r in self.sim.requests))
        self.account.api_key = "wrong-key-123456"
        action = self.settings().action_fiscal_test_connection()
        self.assertEqual(action["params"]["type"], "danger")
        self.assertIn("Connection failed", action["params"]["message"])
        self.assertNotIn("wrong-key-123456", action["params"]["message"])

    def test_settings_open_the_default_account(self):
        action = self.settings().action_open_fiscal_default_account()
        self.assertEqual((action["res_model"], action["res_id"]), ("fiscal.provider.account", self.account.id))

    def test_settings_view_has_the_connector_block(self):
        arch = self.env["res.config.settings"].get_views([(False, "form")])["views"]["form"]["arch"]
        for name in ("fiscal_default_account_id", "fiscal_default_environment", "action_fiscal_test_connection"):
            self.assertIn(name, arch)

    # -- secrets -----------------------------------------------------------------
    def test_blank_secret_on_save_keeps_the_stored_key(self):
        self.account.write({"api_key": "", "access_key": False, "name": "Renamed"})
        self.assertEqual(self.account.api_key, API_KEY, "an empty field in the form keeps the key")
        self.assertEqual(self.account.name, "Renamed", "the other values are saved")
        self.account.api_key = False
        self.assertEqual(self.account.api_key, API_KEY)
        self.account.write({"api_key": "new-key-7a3b9c", "access_key": "ak-1"})
        self.assertEqual((self.account.api_key, self.account.access_key), ("new-key-7a3b9c", "ak-1"))
        self.account.access_key = ""
        self.assertEqual(self.account.access_key, "ak-1")

    def test_new_account_may_start_without_a_key(self):
        account = self.env["fiscal.provider.account"].create({"name": "No key yet", "api_key": False})
        self.assertFalse(account.api_key)

    # -- fiscal documents views ---------------------------------------------------
    def test_fiscal_documents_kanban_list_pivot_graph(self):
        self.confirm(self.make_order())
        action = self.env["ir.actions.act_window"]._for_xml_id("fiscal_invoice_connector.fiscal_document_action")
        self.assertEqual(action["view_mode"].split(","), ["list", "kanban", "form", "pivot", "graph"])
        views = self.env["fiscal.document"].get_views(
            [(False, v) for v in ("list", "kanban", "form", "pivot", "graph", "search")]
        )
        self.assertIn('default_group_by="state"', views["views"]["kanban"]["arch"])
        self.assertIn('records_draggable="false"', views["views"]["kanban"]["arch"], "states belong to the queue")
        groups = self.env["fiscal.document"].formatted_read_group([], ["account_id", "state"], ["__count"])
        self.assertEqual(
            [(g["account_id"][0], g["state"], g["__count"]) for g in groups], [(self.account.id, "to_send", 1)]
        )

    def one_rejected_one_issued(self):
        """Two confirmed orders; the provider refuses the first creation it receives (422)."""
        self.sim.inject(422, path_contains="/invoices.json", method="POST")
        orders = self.confirm(self.make_order()) | self.confirm(self.make_order())
        self.run_queue()
        rejected = orders.filtered(lambda o: o.fiscal_state == "error")
        self.assertEqual(len(rejected), 1, orders.mapped("fiscal_error"))
        issued = orders - rejected
        self.assertEqual(issued.fiscal_state, "issued", issued.fiscal_error)
        return rejected, issued

    # -- list actions on many records ---------------------------------------------
    def test_mass_issue_treats_each_order_on_its_own(self):
        self.account.trigger = "manual"
        first, second = self.confirm(self.make_order()), self.confirm(self.make_order())
        quotation, other_quotation = self.make_order(), self.make_order()
        orders = first | quotation | second | other_quotation
        action = (
            self.env.ref("fiscal_invoice_connector.action_sale_order_fiscal_issue")
            .with_context(active_model="sale.order", active_ids=orders.ids)
            .run()
        )
        params = action["params"]
        self.assertEqual(params["type"], "warning")
        # One line per reason, naming the records it stopped.
        self.assertEqual(
            params["message"].splitlines(),
            [
                "2 done, 2 failed.",
                f"{quotation.name}, {other_quotation.name}: Confirm the order before issuing its fiscal document.",
            ],
        )
        self.assertEqual((first | second).mapped("fiscal_state"), ["to_send", "to_send"])
        self.assertFalse((quotation | other_quotation).fiscal_document_id)
        # Again: both already have their document, nothing is queued twice.
        action = self.env["fiscal.mass.action"]._run(first | second, "issue")
        self.assertEqual(action["params"]["type"], "danger")
        self.assertEqual(
            action["params"]["message"].splitlines()[1],
            f"{first.name}, {second.name}: Already has a fiscal document (Waiting).",
        )
        self.assertEqual(len(self.env["fiscal.document"].search([("sale_order_id", "in", orders.ids)])), 2)

    def test_mass_issue_on_invoices(self):
        self.account.trigger = "manual"
        invoice = self.invoice_and_post(self.confirm(self.make_order()))
        draft = self.confirm(self.make_order())._create_invoices()
        action = (
            self.env.ref("fiscal_invoice_connector.action_account_move_fiscal_issue")
            .with_context(active_model="account.move", active_ids=(invoice | draft).ids)
            .run()
        )
        self.assertTrue(action["params"]["message"].startswith("1 done, 1 failed."), action["params"]["message"])
        self.assertEqual(invoice.fiscal_state, "to_send")
        self.assertFalse(draft.fiscal_document_id)

    def test_mass_retry_continues_after_a_record_that_cannot_be_retried(self):
        rejected, issued = self.one_rejected_one_issued()
        docs = (rejected | issued).fiscal_document_id
        action = (
            self.env.ref("fiscal_invoice_connector.action_fiscal_document_retry")
            .with_context(active_model="fiscal.document", active_ids=docs.ids)
            .run()
        )
        self.assertTrue(action["params"]["message"].startswith("1 done, 1 failed."), action["params"]["message"])
        self.assertIn(f"{issued.fiscal_number}: Only documents that need attention", action["params"]["message"])
        self.assertIn(rejected.fiscal_state, ("to_send", "sending"), "queued again")
        self.run_queue()
        self.assertEqual(rejected.fiscal_state, "issued")
        # From the orders list too.
        action = (
            self.env.ref("fiscal_invoice_connector.action_sale_order_fiscal_retry")
            .with_context(active_model="sale.order", active_ids=rejected.ids)
            .run()
        )
        self.assertEqual(action["params"]["type"], "danger")

    def test_mass_cancel_asks_the_reason_once_and_cancels_each_document(self):
        queued, issued, dropped = (self.confirm(self.make_order()) for _ in range(3))
        self.run_queue()
        queued.fiscal_document_id.sudo().write({"state": "to_send"})  # still waiting for the queue
        dropped.fiscal_document_id.action_request_cancel("duplicate")  # issued: cancelled at the provider
        self.run_queue()
        dropped_doc = dropped.fiscal_document_id
        self.assertEqual(dropped_doc.state, "cancelled")
        docs = queued.fiscal_document_id | issued.fiscal_document_id | dropped_doc
        wizard = (
            self.env["fiscal.cancel.wizard"]
            .with_context(active_ids=docs.ids)
            .create({"document_ids": [Command.set(docs.ids)], "reason": "Wrong customer"})
        )
        arch = self.env["fiscal.cancel.wizard"].get_views([(False, "form")])["views"]["form"]["arch"]
        run = self.env.ref("fiscal_invoice_connector.action_fiscal_cancel_wizard_run")
        self.assertIn(f'name="{run.id}"', arch, "the dialog's button runs the per-document action")
        action = run.with_context(active_model="fiscal.cancel.wizard", active_id=wizard.id).run()
        self.assertTrue(action["params"]["message"].startswith("2 done, 1 failed."), action["params"]["message"])
        self.assertEqual(action["params"]["next"], {"type": "ir.actions.act_window_close"})
        self.assertEqual(issued.fiscal_document_id.state, "to_cancel")
        self.assertEqual(issued.fiscal_document_id.cancel_reason, "Wrong customer")
        self.run_queue()
        self.assertEqual(self.remote_statuses(issued.fiscal_document_id), ["canceled"])

    # -- where users look ---------------------------------------------------------
    def test_filters_on_orders_and_invoices(self):
        rejected, issued = self.one_rejected_one_issued()
        waiting = self.confirm(self.make_order())
        Order = self.env["sale.order"]
        self.assertEqual(Order.search([("fiscal_state", "in", ("error", "failed"))]), rejected)
        self.assertEqual(Order.search([("fiscal_state", "=", "issued")]), issued)
        self.assertEqual(Order.search([("fiscal_state", "in", ("to_send", "sending", "to_cancel"))]), waiting)
        invoice = self.invoice_and_post(issued)
        Move = self.env["account.move"]
        self.assertEqual(
            Move.search([("fiscal_state", "=", "issued")]), invoice, "the invoice shows its order's document"
        )
        for model, xmlid in (
            ("sale.order", "sale.view_sales_order_filter"),
            ("account.move", "account.view_account_invoice_filter"),
        ):
            arch = self.env[model].get_views([(self.env.ref(xmlid).id, "search")])["views"]["search"]["arch"]
            for name in ("fiscal_errors", "fiscal_waiting", "fiscal_issued"):
                self.assertIn(f'name="{name}"', arch)

    def test_credit_notes_list_shows_their_own_fiscal_document(self):
        self.account.trigger = "invoice_post"
        invoice = self.invoice_and_post(self.confirm(self.make_order()))
        self.run_queue()
        refund = self.refund(invoice)
        self.run_queue()
        self.assertEqual(refund.fiscal_document_id.kind, "credit_note")
        self.assertEqual(refund.fiscal_state, "issued", refund.fiscal_error)
        self.assertNotEqual(refund.fiscal_number, invoice.fiscal_number)
        arch = (
            self.env["account.move"]
            .with_context(default_move_type="out_refund")
            .get_views([(self.env.ref("account.view_invoice_tree").id, "list")])["views"]["list"]["arch"]
        )
        self.assertIn('name="fiscal_state"', arch)

    def test_failure_activity_goes_to_the_account_responsible(self):
        responsible = self.env["res.users"].create(
            {
                "name": "Fiscal accountant",
                "login": "fiscal_accountant_ui",
                "group_ids": [Command.set(self.quick_ref("account.group_account_invoice").ids)],
                "company_ids": [Command.set(self.company.ids)],
                "company_id": self.company.id,
            }
        )
        self.account.write({"responsible_user_id": responsible.id, "max_attempts": 1})
        self.sim.inject(502, count=None)
        order = self.confirm(self.make_order())
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "failed")
        self.assertEqual(doc.activity_ids.user_id, responsible)
        self.assertIn("failed after 1 attempts", self.chatter_text(order))

    # -- languages ----------------------------------------------------------------
    def test_translations_are_complete_and_keep_placeholders(self):
        """pt_PT and pt_BR translate every string of the exported template, and keep its
        placeholders (a lost %(name)s breaks the message at run time)."""
        placeholders = re.compile(r"%\(\w+\)s|%s|%d")
        pot = polib.pofile(file_path("fiscal_invoice_connector/i18n/fiscal_invoice_connector.pot"))
        for lang in ("pt_PT", "pt_BR"):
            po = polib.pofile(file_path(f"fiscal_invoice_connector/i18n/{lang}.po"))
            translations = {e.msgid: e for e in po.translated_entries()}
            for entry in pot:
                with self.subTest(lang=lang, msgid=entry.msgid):
                    self.assertIn(entry.msgid, translations, "not translated")
                    self.assertEqual(
                        sorted(placeholders.findall(translations[entry.msgid].msgstr)),
                        sorted(placeholders.findall(entry.msgid)),
                    )

    def test_portuguese_users_read_portuguese(self):
        for lang, label in (("pt_PT", "Conta fiscal predefinida"), ("pt_BR", "Conta fiscal padrão")):
            self.env["res.lang"].sudo()._activate_lang(lang)
            self.env["ir.module.module"].sudo()._load_module_terms(["fiscal_invoice_connector"], [lang], overwrite=True)
            Settings = self.env["res.config.settings"].with_context(lang=lang)
            self.assertEqual(
                Settings.fields_get(["fiscal_default_account_id"])["fiscal_default_account_id"]["string"], label
            )
            message = self.env["fiscal.mass.action"].with_context(lang=lang)._run(self.make_order(), "retry")
            self.assertIn("Não há nenhum documento fiscal para tentar novamente.", message["params"]["message"])
