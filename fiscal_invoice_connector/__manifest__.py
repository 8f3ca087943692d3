{
    "name": "Fiscal Invoice Connector",
    "summary": "Legal invoices at InvoiceXpress, Vendus, eNotas and InvoiCy from orders, invoices "
    "and payments, through a reliable outbox",
    "version": "19.0.1.0.0",
    "category": "Accounting/Accounting",
    "author": "fiscal_invoice_connector contributors",
    "website": "https://github.com/fiscal-invoice-connector/fiscal_invoice_connector",
    "license": "LGPL-3",
    "depends": ["sale_management", "account", "mail"],
    "external_dependencies": {"python": ["requests", "python-stdnum", "zeep", "xmltodict"]},
    "data": [
        "security/fiscal_security.xml",
        "security/ir.model.access.csv",
        "data/ir_cron.xml",
        "data/server_actions.xml",
        "wizards/fiscal_issue_wizard_views.xml",
        "wizards/fiscal_cancel_wizard_views.xml",
        "wizards/fiscal_backfill_wizard_views.xml",
        "views/fiscal_provider_account_views.xml",
        "views/fiscal_document_views.xml",
        "views/sale_order_views.xml",
        "views/account_move_views.xml",
        "views/account_tax_views.xml",
        "views/product_partner_views.xml",
        "views/res_config_settings_views.xml",
        "views/menus.xml",
        "views/fiscal_routing_rule_views.xml",
        "wizards/fiscal_reconciliation_views.xml",
    ],
    "demo": [
        "demo/fiscal_demo.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "fiscal_invoice_connector/static/src/scss/fiscal_invoice_connector.scss",
        ],
        "web.assets_tests": [
            "fiscal_invoice_connector/static/src/js/tours/**/*",
        ],
    },
    "images": ["static/description/icon.png"],
    "application": False,
}
