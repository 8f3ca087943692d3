/**
 * What a user does in the browser, run by tests/test_tour.py in headless Chromium.
 * The test prepares the data (an account pointing at the local InvoiceXpress simulator, no
 * API key yet; a quotation), runs the queue between the tours, and checks the database.
 */
import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_utils";

// The key the simulator of tests/common.py accepts (API_KEY there): a test value, not a secret.
const SIMULATOR_KEY = "ix-test-key-4f9c2a7d1e";

const notification = (kind, text) => `.o_notification:has(.o_notification_bar.bg-${kind}):contains(${text})`;

registry.category("web_tour.tours").add("fiscal_invoice_connector_configure", {
    steps: () => [
        {
            content: "Without a key, Test connection says what is missing",
            trigger: ".o_form_view .o_statusbar_buttons button[name=action_test_connection]",
            run: "click",
        },
        {
            trigger: notification("danger", "no API key"),
        },
        {
            trigger: `${notification("danger", "no API key")} .o_notification_close`,
            run: "click",
        },
        {
            content: "Type the API key (write-only: never shown back)",
            trigger: ".o_form_view .o_field_widget[name=api_key] input",
            run: `edit ${SIMULATOR_KEY}`,
        },
        {
            content: "Test connection saves the account and calls the service",
            trigger: ".o_form_view .o_statusbar_buttons button[name=action_test_connection]",
            run: "click",
        },
        {
            trigger: notification("success", "Connected to InvoiceXpress"),
        },
        {
            trigger: `${notification("success", "Connected to InvoiceXpress")} .o_notification_close`,
            run: "click",
        },
        {
            content: "The Invoicing settings show the company's default account",
            trigger: "body",
            run: "goToUrl /odoo/action-account.action_account_config",
            expectUnloadPage: true,
        },
        {
            trigger: "#fiscal_default_account .o_field_widget[name=fiscal_default_account_id] input:value(IX tour)",
        },
        {
            trigger: "#fiscal_default_account .o_field_widget[name=fiscal_default_environment]:contains(Test)",
        },
        {
            trigger: "#fiscal_default_policy .o_field_widget[name=fiscal_default_trigger]:contains(On order confirmation)",
        },
        {
            content: "Test connection from the settings",
            trigger: "#fiscal_default_account button[name=action_fiscal_test_connection]",
            run: "click",
        },
        {
            trigger: notification("success", "Connected to InvoiceXpress"),
        },
    ],
});

// The README's demo steps, in its words: Sales > Quotations (the admin's own, "My Quotations"),
// open the quotation of Tasca do Bairro, Confirm.
registry.category("web_tour.tours").add("fiscal_invoice_connector_confirm", {
    steps: () => [
        ...stepUtils.goToAppSteps("sale.sale_menu_root", "Open Sales"),
        {
            content: "Sales > Quotations",
            trigger: ".o_main_navbar .o_menu_sections [data-menu-xmlid='sale.sale_order_menu']",
            run: "click",
        },
        {
            trigger: ".o-dropdown--menu [data-menu-xmlid='sale.menu_sale_quotations']",
            run: "click",
        },
        {
            content: "The list opens on the admin's own quotations",
            trigger: ".o_searchview .o_facet_value:contains(My Quotations)",
        },
        {
            content: "Open the quotation of Tasca do Bairro",
            trigger: ".o_list_view .o_data_row td[name=partner_id]:contains(Tasca do Bairro)",
            run: "click",
        },
        {
            content: "Confirm the quotation",
            trigger: ".o_form_view .o_statusbar_buttons button[name=action_confirm]",
            run: "click",
        },
        {
            trigger: ".o_form_view .o_statusbar_status .o_arrow_button_current:contains(Sales Order)",
        },
        stepUtils.autoExpandMoreButtons(),
        {
            content: "The order shows its fiscal document, queued (no number yet)",
            trigger: ".o_form_view button[name=action_view_fiscal_documents] .o_stat_value:contains(Waiting)",
        },
    ],
});

registry.category("web_tour.tours").add("fiscal_invoice_connector_issued", {
    steps: () => [
        stepUtils.autoExpandMoreButtons(),
        {
            content: "The fiscal number is on the order",
            trigger: ".o_form_view button[name=action_view_fiscal_documents] .o_stat_value:contains(FT A/)",
        },
        {
            content: "and the PDF the service returned",
            trigger: ".o_form_view button[name=action_open_fiscal_pdf]:contains(Fiscal PDF)",
        },
        {
            content: "The customer's portal page (Preview) shows the legal document",
            trigger: ".o_form_view .o_statusbar_buttons button[name=action_preview_sale_order]",
            run: "click",
            expectUnloadPage: true,
        },
        {
            trigger: "#fiscal_document_portal:contains(FT A/):contains(ATCUD)",
        },
        {
            content: "with its legal PDF to download",
            trigger: "#fiscal_document_portal a.o_fiscal_portal_pdf[href*='/fiscal/pdf?access_token=']",
        },
        {
            content: "Back to the order",
            trigger: "a.alert-link:contains(Back to edit mode)",
            run: "click",
            expectUnloadPage: true,
        },
        stepUtils.autoExpandMoreButtons(),
        {
            content: "Open the fiscal document",
            trigger: ".o_form_view button[name=action_view_fiscal_documents]",
            run: "click",
        },
        {
            trigger: ".o_form_view .o_statusbar_status .o_arrow_button_current:contains(Issued)",
        },
        {
            trigger: ".o_form_view .o_field_widget[name=number]:contains(FT A/)",
        },
        {
            content: "The fiscal documents kanban, by state",
            trigger: "body",
            run: "goToUrl /odoo/action-fiscal_invoice_connector.fiscal_document_action?view_type=kanban",
            expectUnloadPage: true,
        },
        {
            trigger: ".o_kanban_view .o_kanban_group:contains(Issued) .o_kanban_record:contains(FT A/)",
        },
    ],
});
