import re

from odoo import models
from odoo.exceptions import AccessError

from .fiscal_document import LIVE_CHANNEL

# What an open form of an order or invoice asks for (static/src/js/fiscal_live_update.js).
LIVE_SUBSCRIPTION = re.compile(rf"^{LIVE_CHANNEL}:(sale\.order|account\.move):(\d+)$")


class IrWebsocket(models.AbstractModel):
    """A form subscribes to the fiscal changes of the record it shows, if the user may read it
    (as the editor's collaboration channels of html_editor)."""

    _inherit = "ir.websocket"

    def _build_bus_channel_list(self, channels):
        if self.env.uid and not self.env.user._is_public():
            channels = list(channels)
            for channel in list(channels):
                match = isinstance(channel, str) and LIVE_SUBSCRIPTION.match(channel)
                if not match:
                    continue
                record = self.env[match[1]].browse(int(match[2])).exists()
                try:
                    record.check_access("read")
                except AccessError:
                    continue
                if record:
                    channels.append((record, LIVE_CHANNEL))
        return super()._build_bus_channel_list(channels)
