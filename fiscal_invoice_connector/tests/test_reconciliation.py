from datetime import timedelta

from odoo import fields
from odoo.tests import tagged

from .common import FiscalTestCommon


class ReconciliationCases:
    def _issue(self, count):
        orders = [self.confirm(self.make_order(qty=1, price=10.0 * (i + 1))) for i in range(count)]
        for order in orders:
            self.run_until(order.fiscal_document_id, ("issued",))
        return [o.fiscal_document_id for o in orders]

    def _report(self):
        today = fields.Date.context_today(self.account)
        report = self.env["fiscal.reconciliation"].create(
            {"account_id": self.account.id, "date_from": today - timedelta(days=1), "date_to": today}
        )
        report.action_compare()
        return report

    def test_report_matches_everything_when_both_sides_agree(self):
        docs = self._issue(3)
        report = self._report()
        self.assertEqual(report.problem_count, 0, report.line_ids.mapped("status"))
        self.assertEqual((report.odoo_count, report.provider_count), (3, 3))
        self.assertAlmostEqual(report.odoo_total, report.provider_total)
        self.assertEqual(set(report.line_ids.document_id.ids), set(d.id for d in docs))

    def test_report_finds_planted_mismatches(self):
        good, tampered, lost = self._issue(3)
        self.plant_amount_mismatch(tampered)
        # A document Odoo believes issued that the provider does not have, and one made by hand
        # in the provider's back office that Odoo does not know.
        remote = self.sim_docs_for(lost)[0]
        self.sim.documents.pop(remote["id"])
        self.sim.documents[remote["id"] + 500] = dict(remote, id=remote["id"] + 500, **self.foreign_reference())
        report = self._report()
        by_status = {}
        for line in report.line_ids:
            by_status.setdefault(line.status, []).append(line)
        self.assertEqual([ln.document_id for ln in by_status["amount"]], [tampered])
        self.assertEqual([ln.document_id for ln in by_status["missing_provider"]], [lost])
        self.assertEqual(len(by_status["missing_odoo"]), 1, "the back-office document has no Odoo match")
        self.assertEqual([ln.document_id for ln in by_status["match"]], [good])
        self.assertEqual(report.problem_count, 3)


@tagged("post_install", "-at_install")
class TestReconciliationInvoiceXpress(ReconciliationCases, FiscalTestCommon):
    provider = "invoicexpress"

    def plant_amount_mismatch(self, doc):
        self.sim_docs_for(doc)[0]["total"] = 999.99

    def foreign_reference(self):
        return {"reference": "Loja física 17"}


@tagged("post_install", "-at_install")
class TestReconciliationVendus(ReconciliationCases, FiscalTestCommon):
    provider = "vendus"

    def plant_amount_mismatch(self, doc):
        self.sim_docs_for(doc)[0]["_gross"] += 1
        self.sim_docs_for(doc)[0]["amount_gross"] = "999.99"

    def foreign_reference(self):
        return {"external_reference": "LOJA-17"}
