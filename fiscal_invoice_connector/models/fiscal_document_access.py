"""Who may see and act on fiscal documents.

No user group writes the outbox: ``ir.model.access.csv`` gives read access at most, and every
change is made by code running as superuser after it checked the user's rights on the *source*
(the order or invoice). A user sees the documents of the orders and invoices he may read,
through those models' own access rules (``source_readable``, used by the record rules), so a
salesman with "own documents only" sees the documents of his own sales, a billing user those
of every invoice, an employee without sales or invoicing rights none.
"""

from odoo import api, fields, models
from odoo.exceptions import AccessError
from odoo.fields import Domain

USER_GROUP = "fiscal_invoice_connector.group_fiscal_user"
SOURCE_FIELDS = ("sale_order_id", "move_id")


class FiscalDocument(models.Model):
    _inherit = "fiscal.document"
    # Notes and activities on a document the user can read: the chatter is not the legal record.
    _mail_post_access = "read"

    source_readable = fields.Boolean(
        compute="_compute_source_readable",
        search="_search_source_readable",
        help="The current user may read the order or the invoice of this document (record rules).",
    )

    @api.depends_context("uid", "allowed_company_ids")
    def _compute_source_readable(self):
        # Record rules evaluate this as superuser for the user: the check is the user's, not sudo's.
        env = self.env(su=False)
        readable = set()
        for fname in SOURCE_FIELDS:
            readable.update((fname, rid) for rid in self[fname].with_env(env)._filtered_access("read").ids)
        for doc in self:
            doc.source_readable = any((fname, doc[fname].id) in readable for fname in SOURCE_FIELDS if doc[fname])

    def _search_source_readable(self, operator, value):
        if operator not in ("in", "not in"):
            return NotImplemented
        env = self.env(su=False)
        parts = []
        for fname in SOURCE_FIELDS:
            Source = env[self._fields[fname].comodel_name]
            if Source.has_access("read"):
                # A subquery carrying the source model's own record rules for this user.
                parts.append(Domain(fname, "in", Source._search([])))
        readable = Domain.OR(parts) if parts else Domain.FALSE
        wanted = set(value)
        if wanted == {True, False} or not wanted:
            return Domain.TRUE if wanted else Domain.FALSE
        positive = (True in wanted) == (operator == "in")
        return readable if positive else ~readable

    # ------------------------------------------------------------------ checks
    def _check_user_action(self, source_access="read"):
        """Raise unless the current user may act on these documents: a fiscal user who can read
        them (the record rules: he can read their order or invoice) and, for ``source_access``
        "write", who may change at least one of their sources (cancelling a legal document)."""
        if self.env.su:
            return
        if not self.env.user.has_group(USER_GROUP):
            raise AccessError(
                self.env._("You are not allowed to act on fiscal documents: ask for the Fiscal connector user group.")
            )
        self.check_access("read")
        if source_access == "read":
            return
        for doc in self:
            if not any(doc[fname].has_access(source_access) for fname in SOURCE_FIELDS if doc[fname]):
                raise AccessError(
                    self.env._(
                        "You may not change the order or invoice of %s, so you may not cancel it.",
                        doc.display_name,
                    )
                )
