"""NFS-e cancellations: a motive code and a justification typed by the user (the national
standard's rules), and what each provider allows, shown before anyone cancels or refunds."""

from odoo import fields, models
from odoo.exceptions import UserError
from odoo.tools import formatLang

from ..providers import brazil
from ..providers.base import CancelReason

CANCEL_MOTIVES = list(brazil.CANCEL_MOTIVES.items())


class FiscalDocument(models.Model):
    _inherit = "fiscal.document"

    cancel_motive = fields.Selection(
        CANCEL_MOTIVES, readonly=True, copy=False, help="NFS-e: the motive code sent with the cancellation."
    )

    def _split_by_service_code(self):
        """A sale of several national service codes, on an account that splits them: this document
        becomes part 1 (the first code's lines) and one document per other code is queued, each
        with its own reference, in this transaction (committed with the intent, before any call).
        The one-invoice-per-sale constraint holds one row per part of the sale."""
        self.ensure_one()
        if not self._is_nfse() or self.account_id.nfse_multiple_codes != "split":
            return
        parts = self.env["fiscal.mapping"]._nfse_parts(self)
        if len(parts) < 2:
            return
        (code, total), *others = parts
        count = len(parts)
        self.write({"split_part": 1, "split_count": count, "split_code": code, "amount_total": float(total)})
        self.flush_recordset()  # part 1 in the database before the other parts: the constraint checks each insert
        vals = self.copy_data(
            {
                "state": "to_send",
                "next_attempt": fields.Datetime.now(),
                "split_lead_id": self.id,
                "split_count": count,
            }
        )[0]
        Doc = self.sudo().with_context(mail_create_nolog=True, mail_create_nosubscribe=True, tracking_disable=True)
        Doc.create(
            [
                {**vals, "split_part": part, "split_code": part_code, "amount_total": float(part_total)}
                for part, (part_code, part_total) in enumerate(others, 2)
            ]
        )
        currency = self.currency_id
        self._post_on_sources(
            self.env._(
                "%(count)s NFS-e for this sale, one per national service code (the fiscal account splits them): "
                "%(parts)s.",
                count=count,
                parts=", ".join(
                    f"{part}/{count} {part_code} ({formatLang(self.env, float(part_total), currency_obj=currency)})"
                    for part, (part_code, part_total) in enumerate(parts, 1)
                ),
            )
        )
        self._trigger_processing()

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
