/**
 * The fiscal number appears on an open order by itself: tests/test_tour.py runs the queue
 * (in another thread) once this form listens to its order, while the browser waits here.
 */
import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_utils";

const fiscalButton = ".o_form_view button[name=action_view_fiscal_documents] .o_stat_value";

registry.category("web_tour.tours").add("fiscal_invoice_connector_live", {
    steps: () => [
        stepUtils.autoExpandMoreButtons(),
        {
            content: "The confirmed order waits for its fiscal document",
            trigger: `${fiscalButton}:contains(Waiting)`,
            run: () => {
                window.fiscalLiveTourPage = true; // gone if the page is reloaded
            },
        },
        {
            content: "The number appears without reloading the page",
            trigger: `${fiscalButton}:contains(FT A/)`,
            timeout: 30000,
        },
        {
            content: "with the PDF button",
            trigger: ".o_form_view button[name=action_open_fiscal_pdf]",
        },
        {
            content: "and the chatter says it was issued",
            trigger: ".o-mail-Chatter .o-mail-Message:contains(issued at)",
        },
        {
            content: "and brings the PDF (the queue's last step)",
            trigger: ".o-mail-Chatter .o-mail-Message:contains(received from the provider)",
            run: () => {
                if (!window.fiscalLiveTourPage) {
                    throw new Error("the page was reloaded: the number did not come by itself");
                }
            },
        },
    ],
});
