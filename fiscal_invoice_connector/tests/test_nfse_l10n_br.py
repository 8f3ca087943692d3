"""The NFS-e address with Odoo's Brazilian localization installed (l10n_br, which brings
base_address_extended): the street and its number are structured fields there, and ``street`` is
"Avenida Paulista 107 - Conj. 52". The note must carry the number once: ``logradouro`` without it,
``numero`` apart (issue 14: all 71 notes of an acceptance run repeated it).

Needs l10n_br in the database: scripts/run_tests.sh runs it in its localization stage (a database
with l10n_pt and l10n_br); the main test database skips it."""

import unittest

from odoo.modules.registry import Registry
from odoo.tests import tagged
from odoo.tests.common import get_db_name

from .common import FiscalTestCommon


class L10nBrAddressCases:
    @classmethod
    def setUpClass(cls):
        if "l10n_br" not in Registry(get_db_name())._init_modules:
            raise unittest.SkipTest("Odoo's Brazilian localization (l10n_br) is not installed in this database")
        super().setUpClass()

    def issued_address(self, partner):
        order = self.confirm(self.make_order(partner=partner, qty=1))
        doc = order.fiscal_document_id
        self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        (remote,) = self.sim_docs_for(doc)
        fields_sent = self.adapter.nfse_fields(remote)
        return fields_sent["street"], fields_sent["number"]

    def test_structured_street_fields_send_the_number_once(self):
        # As the contact form of l10n_br fills them: street name, number, complement.
        partner = self.customer.copy({"name": "Clínica Paulista"})
        partner.write({"street_name": "Avenida Paulista", "street_number": "107", "street_number2": "Conj. 52"})
        self.assertEqual(partner.street, "Avenida Paulista 107 - Conj. 52", "Odoo's street repeats the number")
        self.assertEqual(self.issued_address(partner), ("Avenida Paulista", "107"))

    def test_a_street_typed_whole_is_split_by_odoo_and_sent_apart(self):
        partner = self.customer.copy({"name": "Padaria Paulista"})
        partner.write({"street": "Avenida Paulista 1578"})
        self.assertEqual((partner.street_name, partner.street_number), ("Avenida Paulista", "1578"))
        self.assertEqual(self.issued_address(partner), ("Avenida Paulista", "1578"))


@tagged("post_install", "-at_install")
class TestL10nBrAddressEnotas(L10nBrAddressCases, FiscalTestCommon):
    provider = "enotas"


@tagged("post_install", "-at_install")
class TestL10nBrAddressInvoicy(L10nBrAddressCases, FiscalTestCommon):
    provider = "invoicy"
