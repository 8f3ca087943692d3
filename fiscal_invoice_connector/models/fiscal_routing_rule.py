from odoo import api, fields, models


class FiscalRoutingRule(models.Model):
    """Which of a company's provider accounts issues a sale (e.g. two stores): the first rule,
    by sequence, whose conditions all hold; an empty condition always holds. No rule matching:
    the company's default account."""

    _name = "fiscal.routing.rule"
    _description = "Fiscal account routing rule"
    _order = "sequence, id"
    _check_company_auto = True

    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True)
    company_id = fields.Many2one("res.company", required=True, default=lambda self: self.env.company, index=True)
    account_id = fields.Many2one(
        "fiscal.provider.account", "Fiscal account", required=True, check_company=True, ondelete="cascade"
    )
    team_ids = fields.Many2many("crm.team", string="Sales teams")
    categ_ids = fields.Many2many(
        "product.category", string="Product categories", help="Holds when a line's product is in one of them."
    )
    country_ids = fields.Many2many("res.country", string="Customer countries")
    payment_state = fields.Selection(
        [("any", "Any"), ("paid", "Paid"), ("not_paid", "Not paid")],
        default="any",
        required=True,
        help="For invoices: route paid and unpaid ones differently (orders count as not paid).",
    )
    description = fields.Char(compute="_compute_description")

    @api.depends("team_ids", "categ_ids", "country_ids", "payment_state", "account_id")
    def _compute_description(self):
        for rule in self:
            parts = []
            if rule.team_ids:
                parts.append(self.env._("team in %s", ", ".join(rule.team_ids.mapped("name"))))
            if rule.categ_ids:
                parts.append(self.env._("category in %s", ", ".join(rule.categ_ids.mapped("name"))))
            if rule.country_ids:
                parts.append(self.env._("country in %s", ", ".join(rule.country_ids.mapped("code"))))
            if rule.payment_state != "any":
                parts.append(dict(rule._fields["payment_state"].selection)[rule.payment_state].lower())
            rule.description = " and ".join(parts) or self.env._("always")

    def _matches(self, team, partner, products, paid):
        self.ensure_one()
        if self.team_ids and team not in self.team_ids:
            return False
        if self.country_ids and partner.commercial_partner_id.country_id not in self.country_ids:
            return False
        if self.categ_ids and not any(p.categ_id in self.categ_ids for p in products):
            return False
        if self.payment_state == "paid" and not paid:
            return False
        if self.payment_state == "not_paid" and paid:
            return False
        return True

    @api.model
    def _route(self, company, team, partner, products, paid=False):
        """The account for a sale, or the company's default when no rule holds."""
        rules = self.sudo().search([("company_id", "=", company.id), ("account_id.active", "=", True)])
        for rule in rules:
            if rule._matches(team, partner, products, paid):
                return rule.account_id
        return self.env["fiscal.provider.account"]._default_for_company(company)
