from odoo import api, models


class AccountPartialReconcile(models.Model):
    """A payment applied to a customer invoice (wholly or partly) is what a fiscal receipt
    records: one receipt per reconciliation, none for credit notes."""

    _inherit = "account.partial.reconcile"

    @api.model_create_multi
    def create(self, vals_list):
        partials = super().create(vals_list)
        Doc = self.env["fiscal.document"]
        for partial in partials:
            invoice = partial.debit_move_id.move_id
            payment_move = partial.credit_move_id.move_id
            if invoice.move_type != "out_invoice" or invoice.state != "posted":
                continue
            if payment_move.move_type in ("out_refund", "out_invoice"):
                continue  # a credit note settles the invoice; it is not a payment
            method = "NU" if payment_move.journal_id.type == "cash" else "TB"
            Doc._enqueue_receipt(invoice, f"apr-{partial.id}", partial.debit_amount_currency, payment_move.date, method)
        return partials

    def unlink(self):
        receipts = (
            self.env["fiscal.document"]
            .sudo()
            .search(
                [("payment_key", "in", [f"apr-{p.id}" for p in self]), ("state", "not in", ("cancelled", "dropped"))]
            )
        )
        invoices = self.debit_move_id.move_id.filtered(lambda m: m.move_type == "out_invoice")
        paid_before = invoices.filtered(lambda m: m.payment_state in ("paid", "in_payment", "partial"))
        res = super().unlink()
        # A payment taken back (chargeback, bounced transfer): for the payment-based policies the
        # sale's document is dropped while unsent, or cancelled when the account says so.
        for invoice in paid_before.filtered(lambda m: m.payment_state == "not_paid"):
            docs = invoice._fiscal_documents().filtered(
                lambda d: d.account_id.trigger in ("payment", "payment_window") and d.kind == "invoice"
            )
            docs._on_source_refunded(self.env._("payment of %s taken back (chargeback)", invoice.name))
        for receipt in receipts:
            reason = self.env._("payment unreconciled in Odoo")
            if receipt.state == "issued" and not receipt.account_id._can_cancel("receipt"):
                receipt._post_on_sources(
                    self.env._(
                        "Receipt %(number)s stays at the provider: cancel it there (%(reason)s).",
                        number=receipt.number,
                        reason=reason,
                    )
                )
            else:
                receipt.action_request_cancel(reason)
        return res
