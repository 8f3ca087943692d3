from odoo import Command
from odoo.tests import HttpCase, tagged

from .common import FiscalTestCommon


@tagged("post_install", "-at_install")
class TestCustomerPortal(FiscalTestCommon, HttpCase):
    """The customer's portal pages of an order and an invoice, over HTTP: the fiscal number, the
    ATCUD and the legal PDF, with the access the portal enforces (owner logged in, or the record's
    access token); another customer's documents stay out of reach."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.other_customer = cls.customer.copy({"name": "Outro Cliente, Lda", "email": "outro@cliente.example"})
        cls.portal_user = (
            cls.env["res.users"]
            .sudo()
            .create(
                {
                    "name": "Tasca portal",
                    "login": "fic_portal_customer",
                    "password": "fic_portal_customer",
                    "partner_id": cls.customer.id,
                    "group_ids": [Command.set(cls.env.ref("base.group_portal").ids)],
                }
            )
        )

    def setUp(self):
        super().setUp()
        self.order = self.confirm(self.make_order())
        self.other_order = self.confirm(self.make_order(partner=self.other_customer))
        self.run_queue()
        for order in (self.order, self.other_order):
            self.assertEqual(order.fiscal_state, "issued", order.fiscal_error)
            self.assertTrue(order.fiscal_pdf_id)
        self.invoice = self.order._create_invoices()
        self.invoice.action_post()
        self.other_invoice = self.other_order._create_invoices()
        self.other_invoice.action_post()

    def get(self, url):
        return self.url_open(url, allow_redirects=False)

    def assertServesPdf(self, response, record):
        self.assertEqual(response.status_code, 200, response.text[:300])
        self.assertEqual(response.headers["Content-Type"], "application/pdf")
        self.assertIn("attachment", response.headers.get("Content-Disposition", ""))
        self.assertEqual(response.content, record.fiscal_pdf_id.raw)

    def assertRefused(self, response):
        self.assertIn(response.status_code, (302, 303), "refused requests go back to /my (or the login page)")
        self.assertNotEqual(response.headers.get("Content-Type"), "application/pdf")
        self.assertNotIn(b"%PDF", response.content[:20])

    def test_anonymous_visitor_with_the_access_token(self):
        page = self.get(self.order.get_portal_url())
        self.assertEqual(page.status_code, 200)
        self.assertIn(self.order.fiscal_number, page.text)
        self.assertIn(self.order.fiscal_atcud, page.text)
        token = self.order.access_token
        pdf_url = f"/my/orders/{self.order.id}/fiscal/pdf?access_token={token}"
        self.assertIn(pdf_url.replace("&", "&amp;"), page.text, "the page links the legal PDF")
        self.assertServesPdf(self.get(pdf_url), self.order)

        page = self.get(self.invoice.get_portal_url())
        self.assertEqual(page.status_code, 200)
        self.assertIn(self.invoice.fiscal_number, page.text)
        self.assertServesPdf(
            self.get(f"/my/invoices/{self.invoice.id}/fiscal/pdf?access_token={self.invoice.access_token}"),
            self.invoice,
        )

    def test_anonymous_visitor_without_or_with_a_wrong_token_is_refused(self):
        self.assertRefused(self.get(f"/my/orders/{self.order.id}/fiscal/pdf"))
        self.assertRefused(self.get(f"/my/orders/{self.order.id}/fiscal/pdf?access_token=wrong"))
        # Another record's valid token does not open this one.
        other_token = self.other_order._portal_ensure_token()
        self.assertRefused(self.get(f"/my/orders/{self.order.id}/fiscal/pdf?access_token={other_token}"))
        self.assertRefused(self.get(f"/my/invoices/{self.invoice.id}/fiscal/pdf"))
        page = self.get(f"/my/orders/{self.order.id}")
        self.assertNotIn(self.order.fiscal_number, page.text)

    def test_portal_user_sees_their_documents_and_not_another_customers(self):
        self.authenticate(self.portal_user.login, self.portal_user.login)
        page = self.get(f"/my/orders/{self.order.id}")
        self.assertEqual(page.status_code, 200)
        self.assertIn(self.order.fiscal_number, page.text)
        self.assertServesPdf(self.get(f"/my/orders/{self.order.id}/fiscal/pdf"), self.order)

        page = self.get(f"/my/invoices/{self.invoice.id}")
        self.assertEqual(page.status_code, 200)
        self.assertIn(self.invoice.fiscal_number, page.text)
        self.assertServesPdf(self.get(f"/my/invoices/{self.invoice.id}/fiscal/pdf"), self.invoice)

        self.assertRefused(self.get(f"/my/orders/{self.other_order.id}/fiscal/pdf"))
        self.assertRefused(self.get(f"/my/invoices/{self.other_invoice.id}/fiscal/pdf"))
        page = self.get(f"/my/orders/{self.other_order.id}")
        self.assertNotIn(self.other_order.fiscal_number, page.text)

    def test_nothing_to_download_before_the_pdf_or_after_cancellation(self):
        self.order._portal_ensure_token()
        self.assertEqual(
            self.get(f"/my/orders/{self.order.id}/fiscal/xml?access_token={self.order.access_token}").status_code, 404
        )
        self.order.fiscal_document_id.sudo().write({"state": "cancelled"})
        page = self.get(self.order.get_portal_url())
        self.assertNotIn(self.order.fiscal_document_id.number, page.text)
        response = self.get(f"/my/orders/{self.order.id}/fiscal/pdf?access_token={self.order.access_token}")
        self.assertEqual(response.status_code, 404)


@tagged("post_install", "-at_install")
class TestCustomerPortalNfse(FiscalTestCommon, HttpCase):
    """A Brazilian customer's portal page: the NFS-e number, its verification code, the PDF and
    the XML, with the order's access token only."""

    provider = "enotas"

    def test_nfse_number_code_pdf_and_xml(self):
        order = self.confirm(self.make_order(qty=1, price=1000.0))
        doc = order.fiscal_document_id
        self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        self.assertTrue(doc.xml_attachment_id, "the provider's XML came back")
        page = self.url_open(order.get_portal_url())
        self.assertIn(doc.number, page.text)
        self.assertIn(doc.atcud, page.text)
        token = order.access_token
        xml = self.url_open(f"/my/orders/{order.id}/fiscal/xml?access_token={token}", allow_redirects=False)
        self.assertEqual(xml.status_code, 200)
        self.assertEqual(xml.content, doc.xml_attachment_id.raw)
        pdf = self.url_open(f"/my/orders/{order.id}/fiscal/pdf?access_token={token}", allow_redirects=False)
        self.assertEqual(pdf.content, doc.pdf_attachment_id.raw)
        refused = self.url_open(f"/my/orders/{order.id}/fiscal/xml", allow_redirects=False)
        self.assertNotEqual(refused.status_code, 200)
        self.assertNotEqual(refused.content, doc.xml_attachment_id.raw)

    def test_a_split_nfse_sale_offers_each_notes_pdf_and_xml(self):
        self.account.nfse_multiple_codes = "split"
        training = self.env["product.product"].create(
            {
                "name": "Treinamento",
                "default_code": "TRN-1",
                "type": "service",
                "invoice_policy": "order",
                "taxes_id": [Command.clear()],
                "fiscal_national_code": "080201",
            }
        )
        self.product.fiscal_national_code = "010701"
        order = self.make_order(qty=1, price=1000.0)
        order.order_line = [Command.create({"product_id": training.id, "product_uom_qty": 1, "price_unit": 80.0})]
        self.confirm(order)
        self.run_queue()
        docs = order.fiscal_document_ids.sorted("split_part")
        for doc in docs:
            self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        page = self.url_open(order.get_portal_url())
        self.assertIn(", ".join(docs.mapped("number")), page.text)
        token = order.access_token
        for doc, suffix in zip(docs, ("", "-2"), strict=True):
            for kind, attachment in (("pdf", doc.pdf_attachment_id), ("xml", doc.xml_attachment_id)):
                self.assertIn(f"/fiscal/{kind}{suffix}?", page.text)
                answer = self.url_open(f"/my/orders/{order.id}/fiscal/{kind}{suffix}?access_token={token}")
                self.assertEqual(answer.content, attachment.raw, (doc.split_part, kind))
