/**
 * The fiscal status of an order or invoice, live: when the queue changes one of its fiscal
 * documents (sending, issued, PDF received, error; a document being queued shows on the form of
 * the user whose action queued it, reloaded by that action), the server sends a bus notification on the record's
 * channel (fiscal.document._notify_sources); the open form reloads its record, which also
 * reloads the chatter (mail's FormController reloads the thread of the same record).
 * Placed in the form views as <widget name="fiscal_live_update"/>; renders nothing.
 */
import { Component, onWillDestroy, useEffect, xml } from "@odoo/owl";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { useDebounced } from "@web/core/utils/timing";
import { standardWidgetProps } from "@web/views/widgets/standard_widget_props";

export const LIVE_CHANNEL = "fiscal_invoice_connector";
export const LIVE_NOTIFICATION = "fiscal_invoice_connector/source_changed";

export class FiscalLiveUpdate extends Component {
    static template = xml`<t/>`;
    static props = { ...standardWidgetProps };

    setup() {
        this.busService = useService("bus_service");
        // The queue commits each step (sending, issued, PDF...): one reload for a burst of them.
        this.reload = useDebounced(this.reload, 300);
        const onChange = (payload) => this.onChange(payload);
        this.busService.subscribe(LIVE_NOTIFICATION, onChange);
        onWillDestroy(() => this.busService.unsubscribe(LIVE_NOTIFICATION, onChange));
        useEffect(
            (resModel, resId) => {
                if (!resId) {
                    return;
                }
                // Checked by the server (ir.websocket): only records the user may read.
                const channel = `${LIVE_CHANNEL}:${resModel}:${resId}`;
                this.busService.addChannel(channel);
                return () => this.busService.deleteChannel(channel);
            },
            () => [this.props.record.resModel, this.props.record.resId]
        );
    }

    onChange({ model, id }) {
        // Only this record's: the forms of other tabs share the same bus.
        const record = this.props.record;
        if (model === record.resModel && id === record.resId) {
            this.reload();
        }
    }

    async reload() {
        const record = this.props.record;
        if (await record.isDirty()) {
            return; // never lose what the user is typing: the next save reloads it anyway
        }
        await record.load();
    }
}

registry.category("view_widgets").add("fiscal_live_update", { component: FiscalLiveUpdate });
