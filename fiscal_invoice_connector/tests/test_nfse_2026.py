"""Brazil 2026: the national standard, the tax reform and what municipalities accept, the same
through eNotas (REST) and InvoiCy (SOAP), through the real outbox and the simulators."""

from datetime import datetime

import psycopg2

from odoo import Command
from odoo.exceptions import UserError
from odoo.tests import tagged

from .common import FiscalTestCommon

REFORM = {
    "fiscal_national_code": "010701",
    "fiscal_nbs_code": "115021000",
    "fiscal_reform_class": "000001",
    "fiscal_operation_indicator": "100301",
}
COMPANY_CUSTOMER_VAT = "11.222.333/0001-81"
ALPHANUMERIC_CNPJ = "12.ABC.345/01DE-35"  # the Receita Federal's example


class Nfse2026Cases:
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.withholding = {
            kind: cls.env["account.tax"].create(
                {
                    "name": f"{kind.upper()} retido {rate}% (test)",
                    "amount": -rate,
                    "amount_type": "percent",
                    "type_tax_use": "sale",
                    "company_id": cls.company.id,
                    "fiscal_nfse_withholding": kind,
                }
            )
            for kind, rate in (("iss", 2.0), ("pis", 0.65), ("cofins", 3.0), ("csll", 1.0), ("ir", 1.5))
        }
        cls.company_customer = cls.customer.copy(
            {"name": "Padaria Mineira Ltda", "is_company": True, "vat": COMPANY_CUSTOMER_VAT}
        )

    def setUp(self):
        super().setUp()
        self.adapter.set_regime("simples")  # the simulator outlives a test

    def issued(self, order):
        doc = order.fiscal_document_id
        self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        (remote,) = self.sim_docs_for(doc)
        return doc, remote

    def refused_before_sending(self, order):
        doc = order.fiscal_document_id
        self.run_queue()
        self.assertEqual(doc.state, "error")
        self.assertEqual(self.adapter.all_docs(), [], "nothing sent")
        return doc.last_error

    def new_service(self, name, code, **values):
        return self.env["product.product"].create(
            {
                "name": name,
                "default_code": code,
                "type": "service",
                "invoice_policy": "order",
                "taxes_id": [Command.clear()],
                **values,
            }
        )

    # -- 1. reform fields per product, category and account; regime pre-flight --------
    def test_lucro_presumido_note_lacking_reform_fields_is_refused_naming_the_product(self):
        self.account.tax_regime = "presumido"
        self.adapter.set_regime("presumido")
        product = self.new_service("Suporte técnico", "SUP-1", fiscal_nbs_code="115021000")
        self.assertIn("national service code", product.fiscal_nfse_missing, "named on the product")
        self.assertNotIn("NBS", product.fiscal_nfse_missing)
        order = self.confirm(self.make_order(product=product, qty=1, price=500.0))
        error = self.refused_before_sending(order)
        self.assertIn("Lucro Presumido", error)
        self.assertIn("Suporte técnico", error)
        self.assertIn("cClassTrib", error)
        self.assertNotIn("NBS", error, "only what is missing is listed")
        # The category gives what the product lacks; the account gives the operation indicator.
        product.categ_id = self.env["product.category"].create(
            {"name": "Serviços de TI", "fiscal_national_code": "010701", "fiscal_reform_class": "000001"}
        )
        self.account.service_operation_indicator = "100301"
        self.env.invalidate_all()
        self.assertFalse(product.fiscal_nfse_missing)
        order.fiscal_document_id.action_retry()
        _doc, remote = self.issued(order)
        fields_sent = self.adapter.nfse_fields(remote)
        self.assertEqual(
            (fields_sent["national_code"], fields_sent["nbs_code"], fields_sent["reform_class"]),
            ("010701", "115021000", "000001"),
        )

    def test_an_account_without_a_tax_regime_is_refused_before_sending(self):
        self.account.tax_regime = False
        error = self.refused_before_sending(self.confirm(self.make_order(qty=1)))
        self.assertIn("no tax regime", error)

    # -- 2. withholdings from Odoo's own taxes -------------------------------------------
    def test_company_customer_withholding_iss_and_federal_taxes_gets_odoo_figures(self):
        self.company_customer.fiscal_iss_withholding = "yes"
        taxes = self.withholding["iss"] | self.withholding["pis"] | self.withholding["cofins"]
        taxes |= self.withholding["csll"] | self.withholding["ir"]
        self.product.taxes_id = taxes
        order = self.make_order(partner=self.company_customer, qty=4, price=250.0)
        order.order_line.discount = 10.0
        self.confirm(order)
        _doc, remote = self.issued(order)
        self.assertEqual(
            self.adapter.nfse_figures(remote),
            {
                "services": 1000.0,
                "discounts": 100.0,
                "iss_withheld": 18.0,  # 2 % of 900
                "pis": 5.85,
                "cofins": 27.0,
                "csll": 9.0,
                "ir": 13.5,
                "inss": 0.0,
                "net": order.amount_total,  # 900 - 73.35 = 826.65, Odoo's total
            },
        )
        self.assertAlmostEqual(order.amount_total, 826.65)

    def test_a_person_never_withholds_iss(self):
        self.account.iss_withheld = True  # the account's default applies to companies only
        self.product.taxes_id = self.withholding["iss"]
        error = self.refused_before_sending(self.confirm(self.make_order(qty=1)))
        self.assertIn("Ana Souza does not withhold it", error)
        self.product.taxes_id = False
        order = self.confirm(self.make_order(qty=1, price=300.0))
        _doc, remote = self.issued(order)
        figures = self.adapter.nfse_figures(remote)
        self.assertEqual((figures["iss_withheld"], figures["net"]), (0.0, 300.0))

    def test_a_withholding_company_without_the_iss_tax_is_told_what_to_add(self):
        self.account.iss_withheld = True  # default for the customers left on "as the account says"
        error = self.refused_before_sending(self.confirm(self.make_order(partner=self.company_customer, qty=1)))
        self.assertIn("Padaria Mineira Ltda withholds the ISS", error)
        self.assertIn("Add the ISS withholding tax", error)

    def test_a_tax_added_to_the_price_is_refused_with_advice(self):
        self.product.taxes_id = self.tax_23
        error = self.refused_before_sending(self.confirm(self.make_order(qty=1)))
        self.assertIn("IVA 23% (test)", error)
        self.assertIn("no withholding", error)

    # -- 3. several national codes in one sale -----------------------------------------
    def test_a_sale_of_several_national_codes_is_refused_with_the_groups_to_split(self):
        training = self.new_service("Treinamento", "TRN-1", fiscal_national_code="080201")
        self.product.fiscal_national_code = "010701"
        order = self.make_order(qty=1)
        order.order_line = [Command.create({"product_id": training.id, "product_uom_qty": 1, "price_unit": 80.0})]
        error = self.refused_before_sending(self.confirm(order))
        self.assertIn("2 service codes", error)
        self.assertIn("010701: [CONS-1] Consultoria em sistemas", error)
        self.assertIn("080201: [TRN-1] Treinamento", error)
        self.assertIn("Invoice each code separately", error)
        self.assertIn("split such sales into one NFS-e per code", error)

    def _two_code_sale(self):
        """Consulting (010701) for a company that withholds ISS and PIS/COFINS, and training (080201)."""
        self.account.nfse_multiple_codes = "split"
        self.account.cancel_on_refund = True
        self.company_customer.fiscal_iss_withholding = "yes"
        taxes = self.withholding["iss"] | self.withholding["pis"] | self.withholding["cofins"]
        training = self.new_service("Treinamento", "TRN-1", fiscal_national_code="080201", taxes_id=taxes.ids)
        self.product.write({"fiscal_national_code": "010701", "taxes_id": taxes.ids})
        order = self.make_order(partner=self.company_customer, qty=3, price=333.33)
        order.order_line.discount = 12.5
        order.order_line = [
            Command.create({"product_id": training.id, "product_uom_qty": 2.5, "price_unit": 81.17}),
            Command.create({"product_id": self.product.id, "product_uom_qty": 1, "price_unit": 19.99}),
        ]
        return self.confirm(order)

    def test_a_split_account_issues_one_note_per_national_code_adding_up_to_odoo(self):
        order = self._two_code_sale()
        self.run_queue()
        docs = order.fiscal_document_ids.sorted("split_part")
        self.assertEqual(docs.mapped("split_part"), [1, 2])
        self.assertEqual(docs.mapped("split_count"), [2, 2])
        self.assertEqual(docs.mapped("split_code"), ["010701", "080201"])
        self.assertEqual(len(set(docs.mapped("reference"))), 2, "each note has its own reference")
        for doc in docs:
            self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        notes = [self.sim_docs_for(doc) for doc in docs]
        self.assertEqual([len(found) for found in notes], [1, 1], "one note per part, found by its reference")
        self.assertEqual([self.adapter.nfse_fields(n)["national_code"] for (n,) in notes], ["010701", "080201"])
        figures = [self.adapter.nfse_figures(n) for (n,) in notes]
        total = {key: round(sum(f[key] for f in figures), 2) for key in figures[0]}
        # To the cent, Odoo's figures: base, each withholding, net.
        withheld = {
            kind: round(-sum(line.price_subtotal * tax.amount / 100 for line in order.order_line), 2)
            for kind, tax in self.withholding.items()
            if kind in ("iss", "pis", "cofins")
        }
        self.assertEqual(round(total["services"] - total["discounts"], 2), order.amount_untaxed)
        self.assertEqual(total["net"], round(order.amount_total, 2))
        self.assertEqual(
            (total["iss_withheld"], total["pis"], total["cofins"]),
            (withheld["iss"], withheld["pis"], withheld["cofins"]),
        )
        self.assertEqual(round(order.amount_untaxed - order.amount_total, 2), round(sum(withheld.values()), 2))
        for doc, figure in zip(docs, figures, strict=True):
            self.assertEqual(doc.amount_total, figure["net"], "each part's total in Odoo is its note's net value")
        # The order shows both notes: their numbers, one status, each PDF.
        order.invalidate_recordset()
        self.assertEqual(order.fiscal_document_id, docs[0])
        self.assertEqual(order.fiscal_state, "issued")
        self.assertEqual(order.fiscal_number, ", ".join(docs.mapped("number")))
        self.assertFalse(order.fiscal_related_document_ids, "the second note is no receipt nor credit note")
        action = order.action_open_fiscal_pdf()
        self.assertEqual(action["domain"], [("id", "in", docs.ids)])
        self.assertTrue(all(docs.mapped("pdf_attachment_id")), "each note's PDF")
        self.assertIn("2 NFS-e for this sale", self.chatter_text(order))

    def test_an_invoice_of_several_codes_is_split_and_shows_both_notes(self):
        self.account.trigger = "invoice_post"
        order = self._two_code_sale()
        self.assertFalse(order.fiscal_document_ids, "the invoice is documented, not the order")
        invoice = self.invoice_and_post(order)
        self.run_queue()
        docs = invoice.fiscal_document_ids.sorted("split_part")
        self.assertEqual(docs.mapped("split_part"), [1, 2])
        for doc in docs:
            self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        notes = [self.adapter.nfse_figures(n) for doc in docs for n in self.sim_docs_for(doc)]
        self.assertEqual(round(sum(n["net"] for n in notes), 2), round(invoice.amount_total, 2))
        invoice.invalidate_recordset()
        self.assertEqual((invoice.fiscal_state, invoice.fiscal_number), ("issued", ", ".join(docs.mapped("number"))))
        self.assertEqual(invoice.action_view_fiscal_documents()["domain"], [("id", "in", docs.ids)])

    def test_a_split_sale_never_gets_two_notes_for_one_part(self):
        order = self._two_code_sale()
        self.run_queue()
        first, second = order.fiscal_document_ids.sorted("split_part")
        Doc = self.env["fiscal.document"].sudo()
        vals = second.copy_data({"split_lead_id": first.id, "split_part": 2})[0]
        with self.assertRaises(psycopg2.IntegrityError), self.env.cr.savepoint():
            Doc.create(vals)  # a second live part 2 of the sale
        with self.assertRaises(psycopg2.IntegrityError), self.env.cr.savepoint():
            Doc.create({**vals, "split_part": 0, "split_lead_id": False})  # a whole-sale note beside the parts
        # Hooks and wizards get the parts back, never a new document.
        self.assertEqual(Doc._enqueue(self.account, order=order), first | second)

    def test_a_lost_answer_is_probed_by_the_part_reference_not_sent_again(self):
        order = self._two_code_sale()
        self.run_queue()
        docs = order.fiscal_document_ids.sorted("split_part")
        for doc in docs:
            self.run_until(doc, ("issued",))
        # The answer to part 2's create was lost: the next attempt finds it by its own reference.
        second = docs[1]
        second.sudo().write({"state": "sending", "remote_id": False, "number": False, "create_sent": True})
        self.assertEqual(self.run_until(second, ("issued",)), "issued", second.last_error)
        self.assertEqual(len(self.sim_docs_for(second)), 1, "not sent twice")
        self.assertEqual(len(self.adapter.all_docs()), 2)

    def test_cancelling_a_split_sale_cancels_every_note(self):
        order = self._two_code_sale()
        self.run_queue()
        docs = order.fiscal_document_ids
        for doc in docs:
            self.run_until(doc, ("issued",))
        order._action_cancel()
        self.assertEqual(docs.mapped("state"), ["to_cancel", "to_cancel"])
        for doc in docs:
            self.assertEqual(self.run_until(doc, ("cancelled",)), "cancelled", doc.last_error)
        self.assertEqual([self.adapter.status(n) for doc in docs for n in self.sim_docs_for(doc)], ["canceled"] * 2)

    # -- 4. dates, currency, address -----------------------------------------------------
    def test_competence_date_is_the_day_in_brazil_not_in_utc(self):
        # 23:30 in São Paulo on 31 January is 02:30 UTC on 1 February.
        self.company.partner_id.tz = "America/Sao_Paulo"
        order = self.confirm(self.make_order(qty=1))
        order.date_order = datetime(2026, 2, 1, 2, 30)
        _doc, remote = self.issued(order)
        self.assertEqual(self.adapter.nfse_fields(remote)["competence"], "2026-01-31")

    def test_a_sale_in_another_currency_is_refused(self):
        self.pricelist = None  # the company's currency (USD)
        error = self.refused_before_sending(self.confirm(self.make_order(qty=1)))
        self.assertIn("reais (BRL) only", error)

    def test_the_street_number_is_not_sent_twice(self):
        self.customer.street = "Rua Sergipe, 1014"
        _doc, remote = self.issued(self.confirm(self.make_order(qty=1)))
        fields_sent = self.adapter.nfse_fields(remote)
        self.assertEqual((fields_sent["street"], fields_sent["number"]), ("Rua Sergipe", "1014"))

    # -- 5. cancellation: motive and justification ----------------------------------------
    def _wizard(self, docs, reason, motive="1"):
        return (
            self.env["fiscal.cancel.wizard"]
            .with_context(active_ids=docs.ids)
            .create({"document_ids": [Command.set(docs.ids)], "reason": reason, "motive": motive})
        )

    def test_cancellation_carries_the_motive_and_a_justification_of_15_characters(self):
        order = self.confirm(self.make_order(qty=1))
        doc, _remote = self.issued(order)
        short = self._wizard(doc, "Erro no valor")
        self.assertTrue(short.is_nfse)
        self.assertIn("15", short.cancellation_rules)
        with self.assertRaisesRegex(UserError, "at least 15 characters"):
            short.action_cancel()
        self.assertEqual(doc.state, "issued", "nothing queued")
        run = self.env.ref("fiscal_invoice_connector.action_fiscal_cancel_wizard_run")
        wizard = self._wizard(doc, "Serviço não foi prestado ao cliente", motive="2")
        run.with_context(active_model="fiscal.cancel.wizard", active_id=wizard.id).run()
        self.assertEqual((doc.state, doc.cancel_motive), ("to_cancel", "2"))
        self.assertEqual(self.run_until(doc, ("cancelled",)), "cancelled", doc.last_error)
        (remote,) = self.sim_docs_for(doc)
        fields_sent = self.adapter.nfse_fields(remote)
        justification = "Serviço não foi prestado ao cliente"
        if self.provider == "invoicy":
            justification = "Servico nao foi prestado ao cliente"  # InvoiCy takes plain ASCII
        self.assertEqual((fields_sent["cancel_motive"], fields_sent["cancel_justification"]), ("2", justification))

    def test_a_motive_the_provider_does_not_take_is_refused_at_once(self):
        doc, _remote = self.issued(self.confirm(self.make_order(qty=1)))
        motive = "4" if self.provider == "enotas" else "9"
        with self.assertRaisesRegex(UserError, "does not take the motive"):
            self._wizard(doc, "Nota emitida em duplicidade", motive=motive).action_cancel()

    def test_the_refund_dialog_shows_what_cancelling_the_note_allows(self):
        order = self.confirm(self.make_order(qty=1))
        self.issued(order)
        invoice = self.invoice_and_post(order)
        reversal = (
            self.env["account.move.reversal"]
            .with_context(active_model="account.move", active_ids=invoice.ids)
            .create({"reason": "Cliente desistiu", "journal_id": invoice.journal_id.id})
        )
        rules = reversal.fiscal_cancellation_rules
        self.assertIn("has no credit note", rules)
        self.assertIn("15", rules)
        self.assertIn("asynchronous" if self.provider == "enotas" else "E-Nota", rules)

    # -- 6. alphanumeric CNPJ ----------------------------------------------------------
    def test_an_alphanumeric_cnpj_is_accepted_and_a_wrong_one_refused(self):
        customer = self.company_customer.copy({"vat": ALPHANUMERIC_CNPJ})
        _doc, remote = self.issued(self.confirm(self.make_order(partner=customer, qty=1)))
        self.assertEqual(self.adapter.nfse_fields(remote)["tax_id"], "12ABC34501DE35")
        self.sim.reset()
        wrong = self.company_customer.copy({"vat": "12.ABC.345/01DE-36"})
        self.assertIn("is invalid", self.refused_before_sending(self.confirm(self.make_order(partner=wrong))))

    # -- 7. send data only ----------------------------------------------------------------
    def test_send_data_only_says_nothing_was_sent(self):
        self.account.mode = "data_only"
        order = self.confirm(self.make_order(qty=1))
        self.run_queue()
        self.assertEqual(order.fiscal_document_id.state, "registered")
        chatter = self.chatter_text(order)
        self.assertIn("keeps no customer records, so nothing was sent", chatter)
        self.assertNotIn("Customer data sent", chatter)
        self.assertEqual(self.sim.requests, [], "no request at all")


@tagged("post_install", "-at_install")
class TestNfse2026Enotas(Nfse2026Cases, FiscalTestCommon):
    provider = "enotas"

    def test_the_simulator_refuses_a_lucro_real_note_without_reform_fields(self):
        # The account says Simples Nacional, so our pre-flight asks for nothing; eNotas knows the
        # company is in Lucro Real and refuses: the strict simulator is what makes this test fail.
        self.adapter.set_regime("real")
        doc = self.confirm(self.make_order(qty=1)).fiscal_document_id
        self.assertEqual(self.run_until(doc, ("error",)), "error")
        self.assertIn("codigoTributacaoNacional", doc.last_error)
        self.assertEqual(self.adapter.all_docs(), [])


@tagged("post_install", "-at_install")
class TestNfse2026Invoicy(Nfse2026Cases, FiscalTestCommon):
    provider = "invoicy"
