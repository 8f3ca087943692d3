"""Actions on many records at once (list "Actions" menu): each record on its own.

One record that cannot be issued, retried or cancelled (wrong state, missing data) is
reported by name in the summary and never stops, nor undoes, the others: each runs in
its own savepoint.
"""

from odoo import api, models
from odoo.exceptions import UserError

# Only states in which nobody is talking to the provider about the document; the others
# ("sending", "to_cancel") belong to the queue until it is done with them.
CANCELLABLE_STATES = ("issued", "draft", "to_send", "error", "check", "failed")
SUMMARY_LIMIT = 8  # reasons listed in the notification
NAMES_LIMIT = 5  # records named per reason; the others are counted


class FiscalMassAction(models.AbstractModel):
    _name = "fiscal.mass.action"
    _description = "Fiscal action on many records"

    @api.model
    def _run(self, records, operation, next_action=None, **kwargs):
        """Run ``operation`` (issue, retry, cancel) on each record; returns a notification
        action saying how many worked and, by name, why the others did not, followed by
        ``next_action`` (default: reload the view)."""
        job, title = {
            "issue": (self._issue, self.env._("Issue fiscal documents now")),
            "retry": (self._retry, self.env._("Retry fiscal documents")),
            "cancel": (self._cancel, self.env._("Cancel fiscal documents")),
        }[operation]
        # Records the user cannot read are refused as a whole (selected by hand over RPC, not in a list).
        records.check_access("read")
        done, failed = 0, {}  # reason -> names of the records it stopped
        for record in records:
            try:
                with self.env.cr.savepoint():
                    job(record, **kwargs)
                done += 1
            except UserError as e:
                failed.setdefault(e.args[0], []).append(record.display_name)
        return self._summary(title, done, failed, next_action or {"type": "ir.actions.client", "tag": "soft_reload"})

    # -- one record --------------------------------------------------------------
    def _issue(self, record):
        """What the "Issue fiscal document now" button does, with its defaults (today's date)."""
        if record._name == "account.move" and record.move_type != "out_invoice":
            raise UserError(self.env._("Only posted customer invoices get a fiscal document."))
        if not record.fiscal_account_id:
            raise UserError(
                self.env._("No fiscal account: choose one on the document, or a default one in the Settings.")
            )
        existing = record.fiscal_document_id
        if existing and existing.state not in ("cancelled", "dropped", "error", "failed"):
            # Said here without the record's name, so that the summary groups them on one line.
            raise UserError(self.env._("Already has a fiscal document (%s).", self._state_label(existing)))
        wizard = self.env["fiscal.issue.wizard"].create({"res_model": record._name, "res_id": record.id})
        wizard.action_issue()

    def _retry(self, record):
        doc = record if record._name == "fiscal.document" else record.fiscal_document_id
        if not doc:
            raise UserError(self.env._("There is no fiscal document to retry."))
        doc.action_retry()

    def _cancel(self, doc, reason):
        if doc.state not in CANCELLABLE_STATES:
            raise UserError(
                self.env._(
                    "A document that is %s cannot be cancelled now: wait until the queue is done with it.",
                    self._state_label(doc).lower(),
                )
            )
        doc.action_request_cancel(reason)

    def _state_label(self, doc):
        return dict(doc._fields["state"]._description_selection(self.env))[doc.state]

    # -- the answer --------------------------------------------------------------
    def _summary(self, title, done, failed, next_action):
        """One line with the counts, then one line per reason with the records it stopped."""
        count = sum(len(names) for names in failed.values())
        if not failed:
            lines = [self.env._("%s done.", done)]
        else:
            lines = [self.env._("%(done)s done, %(failed)s failed.", done=done, failed=count)]
            for reason, names in list(failed.items())[:SUMMARY_LIMIT]:
                shown = ", ".join(names[:NAMES_LIMIT])
                if len(names) > NAMES_LIMIT:
                    shown = self.env._("%(names)s and %(more)s more", names=shown, more=len(names) - NAMES_LIMIT)
                lines.append(f"{shown}: {reason}")
            if len(failed) > SUMMARY_LIMIT:
                lines.append(self.env._("... and %s other reasons.", len(failed) - SUMMARY_LIMIT))
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": title,
                "message": "\n".join(lines),
                "className": "o_fiscal_summary",  # one line per reason (static/src/scss)
                "type": "success" if not failed else "warning" if done else "danger",
                "sticky": bool(failed),
                "next": next_action,
            },
        }
