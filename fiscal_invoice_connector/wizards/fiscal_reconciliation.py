from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..providers import ProviderError

STATUSES = [
    ("match", "Match"),
    ("amount", "Amount mismatch"),
    ("state", "State mismatch"),
    ("missing_provider", "Missing at the provider"),
    ("missing_odoo", "Missing in Odoo"),
    ("books", "Invoice differs"),
]


class FiscalReconciliation(models.TransientModel):
    """For a period and an account: Odoo's fiscal documents against the provider's, line by line.
    The lines are a list the accountant filters and exports (Export, from the list view)."""

    _name = "fiscal.reconciliation"
    _description = "Fiscal documents reconciliation"

    account_id = fields.Many2one("fiscal.provider.account", "Fiscal account", required=True)
    date_from = fields.Date(required=True, default=lambda self: fields.Date.context_today(self).replace(day=1))
    date_to = fields.Date(required=True, default=fields.Date.context_today)
    line_ids = fields.One2many("fiscal.reconciliation.line", "reconciliation_id", readonly=True)
    currency_id = fields.Many2one(related="account_id.company_id.currency_id")
    odoo_count = fields.Integer(compute="_compute_summary")
    provider_count = fields.Integer(compute="_compute_summary")
    odoo_total = fields.Monetary(compute="_compute_summary")
    provider_total = fields.Monetary(compute="_compute_summary")
    problem_count = fields.Integer(compute="_compute_summary")
    summary = fields.Char(compute="_compute_summary")

    @api.depends("line_ids")
    def _compute_summary(self):
        for rec in self:
            lines = rec.line_ids
            rec.odoo_count = len(lines.filtered("document_id"))
            rec.provider_count = len(lines.filtered("remote_number"))
            rec.odoo_total = sum(lines.mapped("odoo_total"))
            rec.provider_total = sum(lines.mapped("provider_total"))
            rec.problem_count = len(lines.filtered(lambda ln: ln.status != "match"))
            rec.summary = self.env._(
                "%(odoo)s documents in Odoo, %(provider)s at the provider, %(problems)s to look at.",
                odoo=rec.odoo_count,
                provider=rec.provider_count,
                problems=rec.problem_count,
            )

    def action_compare(self):
        self.ensure_one()
        # Accountants and connector managers only (ir.model.access.csv): every document of the
        # account, the provider's too. Odoo's documents are searched with the user's own rights.
        self.account_id.check_access("read")
        if self.date_to < self.date_from:
            raise UserError(self.env._("The period ends before it starts."))
        client = self.account_id._get_client()
        try:
            remotes = client.list_documents(self.date_from, self.date_to)
        except NotImplementedError:
            raise UserError(
                self.env._("%s cannot list its documents: compare in its own back office.", client.label)
            ) from None
        except ProviderError as e:
            raise UserError(
                self.env._("%(provider)s did not answer the list: %(error)s", provider=client.label, error=str(e))
            ) from None
        docs = self.env["fiscal.document"].search(
            [
                ("account_id", "=", self.account_id.id),
                ("create_sent", "=", True),
                ("state", "not in", ("dropped",)),
                ("create_date", ">=", fields.Datetime.to_datetime(self.date_from)),
                ("create_date", "<", fields.Datetime.to_datetime(self.date_to + timedelta(days=1))),
            ]
        )
        by_id = {d.remote_id: d for d in docs if d.remote_id}
        by_reference = {d.reference: d for d in docs}
        seen = self.env["fiscal.document"]
        values = []
        for remote in remotes:
            doc = by_id.get(remote.remote_id) or self._match_reference(by_reference, remote.reference)
            if not doc:
                # A receipt or a document made at the provider by hand may have no Odoo twin.
                doc = self.env["fiscal.document"].search(
                    [("account_id", "=", self.account_id.id), ("remote_id", "=", remote.remote_id)], limit=1
                )
            seen |= doc
            values.append(self._line_values(doc, remote))
        for doc in docs - seen:
            if doc.state in ("issued", "cancelled") and doc.remote_id:
                values.append(self._line_values(doc, None))
        self.line_ids.unlink()
        self.write({"line_ids": [fields.Command.create(v) for v in values]})
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Reconciliation: %s", self.summary),
            "res_model": "fiscal.reconciliation.line",
            "view_mode": "list",
            "domain": [("reconciliation_id", "=", self.id)],
            "context": {"search_default_problems": 1 if self.problem_count else 0},
            "target": "current",
        }

    @staticmethod
    def _match_reference(by_reference, reference):
        if not reference:
            return None
        # InvoiceXpress shows "<order> <our reference>" in its reference field.
        return by_reference.get(reference) or by_reference.get(reference.rsplit(" ", 1)[-1])

    def _line_values(self, doc, remote):
        odoo_total = doc.amount_total if doc else 0.0
        if doc and doc.kind == "credit_note":
            odoo_total = -odoo_total
        provider_total = float(remote.total or 0) if remote else 0.0
        if remote and remote.kind == "credit_note":
            provider_total = -provider_total
        if not doc:
            status = "missing_odoo"
        elif not remote:
            status = "missing_provider"
        elif (doc.state == "cancelled") != (remote.state == "canceled"):
            status = "state"
        elif (doc.currency_id or self.currency_id).compare_amounts(odoo_total, provider_total):
            status = "amount"
        else:
            status = "match"
        note = False
        if status == "match" and doc and not doc.move_id and doc.kind == "invoice":
            # Order vs books: issued for the order, the invoices posted since say something else.
            differences = doc._books_differences()[0]
            if differences:
                status, note = "books", "; ".join(differences)
        return {
            "note": note,
            "document_id": doc.id if doc else False,
            "kind": (remote.kind if remote else doc.kind) or False,
            "odoo_number": doc.number if doc else False,
            "remote_number": remote.number if remote else False,
            "remote_state": remote.state if remote else False,
            "odoo_total": odoo_total,
            "provider_total": provider_total,
            "difference": round(odoo_total - provider_total, 2),
            "status": status,
        }
