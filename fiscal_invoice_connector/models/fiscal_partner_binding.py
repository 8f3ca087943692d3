from odoo import fields, models
from odoo.tools import SQL


class FiscalPartnerBinding(models.Model):
    """A customer's twin at a provider that keeps customer records (InvoiceXpress clients): its id
    there and a digest of the data last sent, so that a customer is looked up or updated only
    when it is new or changed. Written by the queue after each run, never by users."""

    _name = "fiscal.partner.binding"
    _description = "Customer at a fiscal provider"

    account_id = fields.Many2one("fiscal.provider.account", required=True, ondelete="cascade", index=True)
    code = fields.Char("Our code", required=True, help="The customer's stable code sent to the provider.")
    remote_id = fields.Char("Id at the provider", required=True)
    digest = fields.Char(help="Digest of the customer data the provider holds (as last sent).")

    _one_per_code = models.Constraint("UNIQUE(account_id, code)", "A customer is bound once per fiscal account.")

    def _known(self, account_ids, codes):
        """{account_id: {code: (remote id, digest)}} for the runner to seed its clients with."""
        known = {}
        if not account_ids or not codes:
            return known
        for binding in self.sudo().search([("account_id", "in", list(account_ids)), ("code", "in", list(codes))]):
            known.setdefault(binding.account_id.id, {})[binding.code] = (binding.remote_id, binding.digest or None)
        return known

    def _remember(self, account_id, clients):
        """Store what a run left in its clients' cache: ``{code: (remote id, digest)}``. One upsert:
        two workers finishing together keep the last one's values, never fail."""
        rows = [(account_id, code, str(remote_id), digest) for code, (remote_id, digest) in clients.items()]
        rows = [row for row in rows if row[2] not in ("", "None")]
        if not rows:
            return
        self.env.cr.execute(
            SQL(
                """INSERT INTO fiscal_partner_binding
                       (account_id, code, remote_id, digest, create_uid, write_uid, create_date, write_date)
                   SELECT v.account_id, v.code, v.remote_id, v.digest, %(uid)s, %(uid)s, now() AT TIME ZONE 'UTC',
                          now() AT TIME ZONE 'UTC'
                     FROM (VALUES %(rows)s) AS v(account_id, code, remote_id, digest)
                   ON CONFLICT (account_id, code) DO UPDATE
                      SET remote_id = EXCLUDED.remote_id, digest = EXCLUDED.digest,
                          write_uid = EXCLUDED.write_uid, write_date = EXCLUDED.write_date""",
                uid=self.env.uid,
                rows=SQL(", ").join(SQL("(%s::int, %s, %s, %s)", *row) for row in rows),
            )
        )
        self.invalidate_model()
