import logging
import threading
import unittest
from unittest.mock import patch

from odoo import SUPERUSER_ID, Command, api
from odoo.tests import HttpCase, tagged
from odoo.tests import common as odoo_test_common
from odoo.tools.misc import file_path

from ..models.fiscal_document import LIVE_CHANNEL
from .common import API_KEY, FiscalTestCommon

_logger = logging.getLogger(__name__)

# Debian's odoo-19 package (dfsg) ships without this library of mail: the backend bundle then
# holds a console.error for it, which fails every tour. When (and only when) the file is
# missing, the tours run with a bundle without it; any other browser error still fails.
DEBIAN_MISSING_ASSET = "mail/static/lib/selfie_segmentation/selfie_segmentation.js"


def _asset_missing():
    try:
        file_path(DEBIAN_MISSING_ASSET)
    except FileNotFoundError:
        return True
    return False


@tagged("post_install", "-at_install")
class TestTour(FiscalTestCommon, HttpCase):
    """The newcomer's journey in a real browser (headless Chromium): finish configuring the
    account against the local InvoiceXpress simulator, check it from the settings, confirm a
    quotation, and see the fiscal number and the PDF on the order once the queue ran."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if _asset_missing():
            IrAsset = type(cls.env["ir.asset"])
            get_paths = IrAsset._get_asset_paths

            def _get_asset_paths(self, bundle, assets_params):
                return [p for p in get_paths(self, bundle, assets_params) if p[0] != DEBIAN_MISSING_ASSET]

            cls.startClassPatcher(patch.object(IrAsset, "_get_asset_paths", _get_asset_paths))
            cls.registry.clear_cache("assets")
            cls.addClassCleanup(cls.registry.clear_cache, "assets")
        # The admin works in the test company, where the simulator account lives.
        cls.env.ref("base.user_admin").sudo().write(
            {"company_ids": [Command.link(cls.company.id)], "company_id": cls.company.id}
        )
        # The accounting test base leaves cash-basis taxes without the cash-basis setting and
        # pricelists without the pricelist feature: the Settings page would open on warnings.
        cls.company.sudo().tax_exigibility = True
        cls.env.ref("base.group_user").sudo().write(
            {"implied_ids": [Command.link(cls.env.ref("product.group_product_pricelist").id)]}
        )
        # An account as a manager leaves it before the first test: everything but the key.
        cls.tour_account = cls.account.copy({"name": "IX tour"})
        cls.company.fiscal_default_account_id = cls.tour_account

    def start_tour(self, url_path, tour_name, **kwargs):
        """A tour that cannot run is a failure here, unless Chromium is not installed."""
        self.assertIsNotNone(odoo_test_common.websocket, "websocket-client is needed to drive Chromium")
        try:
            odoo_test_common._find_executable()
            has_chromium = True
        except Exception:  # noqa: BLE001 - Odoo raises its own kinds when there is none
            has_chromium = False
        _logger.info(
            "browser tour %s: websocket-client %s, chromium %s",
            tour_name,
            odoo_test_common.websocket.__version__,
            "found" if has_chromium else "missing",
        )
        try:
            return super().start_tour(url_path, tour_name, **kwargs)
        except unittest.SkipTest as e:
            if has_chromium:
                self.fail(f"the browser tour {tour_name} was skipped although Chromium is installed: {e}")
            raise

    def test_configure_confirm_and_see_the_fiscal_number(self):
        account = self.tour_account
        self.assertFalse(account.api_key, "the tour types the key")
        self.start_tour(
            f"/odoo/action-fiscal_invoice_connector.fiscal_provider_account_action/{account.id}",
            "fiscal_invoice_connector_configure",
            login="admin",
        )
        self.assertEqual(account.api_key, API_KEY, "the key typed in the browser is stored")
        self.assertEqual(
            [r["path"] for r in self.sim.requests if r["status"] == 200].count("/taxes.json"),
            2,
            "Test connection called the service from the account and from the settings",
        )

        # The admin's own quotation (the README: Sales > Quotations opens on "My Quotations").
        order = self.make_order(user_id=self.env.ref("base.user_admin").id)
        self.assertEqual(order.fiscal_account_id, account)
        tested = len(self.sim.requests)  # Test connection's requests (taxes, series) are behind us
        self.start_tour("/odoo", "fiscal_invoice_connector_confirm", login="admin", timeout=120)
        self.assertEqual(order.state, "sale")
        self.assertEqual(order.fiscal_state, "to_send")
        self.assertFalse(self.sim.requests[tested:], "confirming never calls the provider")

        self.run_queue()
        self.assertEqual(order.fiscal_state, "issued", order.fiscal_error)
        self.assertTrue(order.fiscal_pdf_id)
        self.start_tour(
            f"/odoo/action-sale.action_orders/{order.id}",
            "fiscal_invoice_connector_issued",
            login="admin",
            timeout=240,  # it opens the customer portal too: the first frontend page builds its assets
        )

    def test_the_fiscal_number_appears_on_the_open_order_without_reloading(self):
        """The browser shows a confirmed order waiting for its document; the queue issues it
        meanwhile (another thread, as the cron worker would); the form shows the number, the
        PDF button and the chatter message by itself (fiscal_live_update.js, the bus)."""
        self.tour_account.api_key = API_KEY
        order = self.confirm(self.make_order())
        self.assertEqual(order.fiscal_state, "to_send")
        IrWebsocket = type(self.env["ir.websocket"])
        build_channels = IrWebsocket._build_bus_channel_list
        listening = threading.Event()

        def _build_bus_channel_list(this, channels):
            channels = build_channels(this, channels)
            if any(c == (order, LIVE_CHANNEL) for c in channels):
                listening.set()
            return channels

        def cron_worker():
            if not listening.wait(120):
                return
            with self.registry.cursor() as cr:
                cron = api.Environment(cr, SUPERUSER_ID, {}).ref(
                    "fiscal_invoice_connector.ir_cron_process_fiscal_documents"
                )
                cron.method_direct_trigger()

        worker = threading.Thread(target=cron_worker, name="fiscal-live-tour-cron")
        worker.start()
        try:
            with patch.object(IrWebsocket, "_build_bus_channel_list", _build_bus_channel_list):
                self.start_tour(
                    f"/odoo/action-sale.action_orders/{order.id}", "fiscal_invoice_connector_live", login="admin"
                )
        finally:
            listening.set()
            worker.join()
        self.env.invalidate_all()
        self.assertEqual(order.fiscal_state, "issued", order.fiscal_error)
