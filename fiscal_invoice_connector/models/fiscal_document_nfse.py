"""NFS-e cancellations: a motive code and a justification typed by the user (the national
standard's rules), and what each provider allows, shown before anyone cancels or refunds."""

from odoo import fields, models
from odoo.exceptions import UserError

from ..providers import brazil
from ..providers.base import CancelReason

CANCEL_MOTIVES = list(brazil.CANCEL_MOTIVES.items())


class FiscalDocument(models.Model):
    _inherit = "fiscal.document"

    cancel_motive = fields.Selection(
        CANCEL_MOTIVES, readonly=True, copy=False, help="NFS-e: the motive code sent with the cancellation."
    )

    def _provider_cancel_reason(self):
        """What ``client.cancel`` gets as its reason: the text, carrying the motive code."""
        self.ensure_one()
        return CancelReason(self.cancel_reason or "", self.cancel_motive or None)

    def _is_nfse(self):
        return self.account_id.provider in ("enotas", "invoicy")

    def _data_only_message(self, client):
        """What "Send data only" did, in the chatter: some services keep customer records (the
        data were sent), the NFS-e services keep none (nothing is sent: the data were checked)."""
        if client.keeps_customer_records:
            return self.env._("Customer data sent to %s (no fiscal document requested).", self.account_id.name)
        return self.env._(
            "Send data only: %(provider)s keeps no customer records, so nothing was sent to it. The note's data "
            "were checked (customer, service codes, amounts) and no NFS-e was requested.",
            provider=client.label,
        )

    def action_request_cancel(self, reason):
        """NFS-e: refused at once (nothing queued) when the justification is too short or the
        provider does not take the motive; the motive is kept with the request."""
        motive = getattr(reason, "motive", None)
        nfse = self.filtered(lambda doc: doc._is_nfse() and doc.state in ("issued", "sending", "error", "failed"))
        for doc in nfse.filtered("create_sent"):
            cls = doc.account_id._get_provider_class()
            accepted = cls.cancel_motives
            try:
                brazil.check_cancel_reason(reason, accepted, cls.label)
            except brazil.ValidationError as e:
                raise UserError(str(e)) from None
        result = super().action_request_cancel(reason)
        if motive:
            # As superuser, as the request itself (no user writes the outbox); also when the request
            # was only recorded because a worker holds the document.
            nfse.sudo().filtered(lambda doc: doc.state == "to_cancel" or doc.cancel_requested).write(
                {"cancel_motive": motive}
            )
        return result
