"""Odoo records -> a Brazilian NFS-e (eNotas, InvoiCy). The rules, with their reasons, are in
docs/mapping-rules.md (Brazil). In short:

- One note declares one service: every line must share the national service code (else the
  municipal code and LC 116 item); a sale mixing several is refused with the groups to split, or,
  when the account says so, split into one note per code (one fiscal document per part).
- The service's codes come from the product, then its category, then the fiscal account.
- Amounts are Odoo's (base-lines API): service value = quantity x price per line, unconditional
  discount = what Odoo's line discounts take off, base = Odoo's untaxed amount; withholdings are
  the invoice's negative taxes marked with their kind (ISS, PIS, COFINS, CSLL, IR, INSS); the net
  value is Odoo's total. Any other non-zero tax is refused (an NFS-e price carries no added tax).
- ISS is withheld only by a company (CNPJ) customer that withholds (its setting, else the
  account's), and then the invoice must carry the ISS withholding tax.
- Dates in the company's timezone; BRL only.
"""

from datetime import datetime
from decimal import Decimal

import pytz

from odoo import api, models
from odoo.exceptions import UserError

from ..providers import FiscalDocumentData, FiscalLine, FiscalService, brazil
from .fiscal_mapping import UNIT_PRICE_DIGITS, _cents, _d

NFSE_PROVIDERS = ("enotas", "invoicy")
DEFAULT_TIMEZONE = "America/Sao_Paulo"


class FiscalMapping(models.AbstractModel):
    _inherit = "fiscal.mapping"

    @api.model
    def _is_nfse(self, doc):
        return doc.account_id.provider in NFSE_PROVIDERS

    @api.model
    def _nfse_timezone(self, company):
        return pytz.timezone(company.partner_id.tz or DEFAULT_TIMEZONE)

    @api.model
    def _nfse_source(self, doc):
        if doc.move_id:
            record, rows = doc.move_id, self._move_rows(doc.move_id)
        elif doc.sale_order_id:
            record, rows = doc.sale_order_id, self._order_rows(doc.sale_order_id)
        else:
            raise UserError(self.env._("The fiscal document %s has no order nor invoice.", doc.display_name))
        if not rows:
            raise UserError(self.env._("%s has no line to invoice.", record.display_name))
        return record, rows

    @api.model
    def _nfse_notes(self, doc):
        """The notes of the document's sale, ``{service code: (service, rows, lines, amounts)}`` in
        the order of the lines: one, or one per national service code when the sale mixes several
        (refused unless the account splits them). Their amounts add up to Odoo's to the cent: each
        part's base is Odoo's own rounded base of its lines (the last part takes what rounding
        globally left), its withholdings Odoo's tax amounts of its lines, and their net values sum
        to the sale's total."""
        record, rows = self._nfse_source(doc)
        currency = record.currency_id
        groups = self._nfse_service_groups(doc, record, rows)
        if len(groups) > 1 and doc.account_id.nfse_multiple_codes != "split":
            self._nfse_refuse_several_codes(record, groups)
        details = {base_line["record"]: base_line for base_line in self._nfse_base_lines(record)}
        untaxed = _cents(_d(record.amount_untaxed, currency.decimal_places), currency.decimal_places)
        notes, left = {}, untaxed
        for index, (code, (service, group_rows)) in enumerate(groups.items()):
            if index == len(groups) - 1:
                base = left
            else:
                base = sum(
                    (
                        _d(details[row]["tax_details"]["total_excluded_currency"], currency.decimal_places)
                        if row in details
                        else _d(row.price_subtotal, currency.decimal_places)
                        for row in group_rows
                    ),
                    Decimal(0),
                )
                left -= base
            lines, amounts = self._nfse_lines_and_amounts(record, group_rows, currency, details, base)
            notes[code] = (service, group_rows, lines, amounts)
        net = sum((amounts.net for *_rest, amounts in notes.values()), Decimal(0))
        if currency.compare_amounts(float(net), record.amount_total):
            raise UserError(
                self.env._(
                    "The NFS-e's net value (%(net)s) would differ from %(record)s's total (%(total)s): check that "
                    "every tax on the lines is a withholding marked with its kind.",
                    net=net,
                    record=record.display_name,
                    total=record.amount_total,
                )
            )
        return notes

    @api.model
    def _nfse_parts(self, doc):
        """``[(service code, net value)]`` of the notes of the document's sale."""
        return [(code, note[3].net) for code, note in self._nfse_notes(doc).items()]

    @api.model
    def _nfse_document_data(self, doc):
        record, _rows = self._nfse_source(doc)
        notes = self._nfse_notes(doc)
        if doc.split_part:
            if doc.split_code not in notes:
                raise UserError(
                    self.env._(
                        "%(record)s no longer has services of code %(code)s, which this NFS-e (part %(part)s of "
                        "%(count)s) declares: cancel it, or restore the lines.",
                        record=record.display_name,
                        code=doc.split_code,
                        part=doc.split_part,
                        count=doc.split_count,
                    )
                )
            service, rows, lines, amounts = notes[doc.split_code]
        else:
            ((service, rows, lines, amounts),) = notes.values()
        if not service.description:
            service.description = "; ".join(row.name for row in rows if row.name)[:2000] or None
        amounts.iss_rate = service.iss_rate
        service.amounts = amounts
        tz = self._nfse_timezone(doc.company_id)
        now = datetime.now(pytz.utc).astimezone(tz)
        if doc.move_id:
            date = doc.invoice_date or doc.move_id.invoice_date or now.date()
            origin = doc.move_id.invoice_origin or doc.move_id.name
        else:
            # date_order is UTC: the competence date is the day it was in Brazil.
            moment = doc.sale_order_id.date_order
            date = doc.invoice_date or (pytz.utc.localize(moment).astimezone(tz).date() if moment else now.date())
            origin = doc.sale_order_id.name
        if doc.split_part:
            origin = f"{origin} ({doc.split_part}/{doc.split_count})"
        currency = record.currency_id
        partner = self._nfse_party(record.partner_id, doc.company_id)
        self._nfse_check_iss_withholding(doc, record, service, amounts)
        return FiscalDocumentData(
            reference=doc.reference,
            kind=doc.document_type,
            date=date,
            due_date=doc.due_date or date,
            currency=currency.name,
            lines=lines,
            partner=partner,
            origin=origin,
            notes=None,
            reason=doc.cancel_reason or None,
            expected_total=amounts.net if doc.split_part else _d(record.amount_total, currency.decimal_places),
            send_email=doc.send_email,
            service=service,
            issued_at=now.replace(tzinfo=None),
        )

    # ------------------------------------------------------------------ amounts
    @api.model
    def _nfse_base_lines(self, record):
        """Odoo's own tax computation of the record's lines (base-lines API), rounded as Odoo rounds."""
        AccountTax = self.env["account.tax"]
        if record._name == "account.move":
            base_lines, _tax_lines = record._get_rounded_base_and_tax_lines()
            return base_lines
        base_lines = [line._prepare_base_line_for_taxes_computation() for line in record._get_priced_lines()]
        AccountTax._add_tax_details_in_base_lines(base_lines, record.company_id)
        AccountTax._round_base_lines_tax_details(base_lines, record.company_id)
        return base_lines

    @api.model
    def _nfse_unit_price(self, price_unit, quantity, discount, subtotal, digits):
        """The unit price such that quantity x price less the discount, rounded half-up to the
        cent, is Odoo's line subtotal (services carry no VAT-inclusive price): Odoo's own price
        when it does, else the shortest one that does."""
        price = _d(price_unit, UNIT_PRICE_DIGITS)
        share = quantity * (1 - discount / 100)
        if not share or _cents(price * share, digits) == subtotal:
            return price
        exact = subtotal / share
        for places in range(digits, UNIT_PRICE_DIGITS + 1):
            candidate = _cents(exact, places)
            if _cents(candidate * share, digits) == subtotal:
                return candidate
        return _cents(exact, UNIT_PRICE_DIGITS)

    @api.model
    def _nfse_lines_and_amounts(self, record, rows, currency, details, base):
        """The note's lines and amounts for ``rows`` of ``record``, from Odoo's base lines
        (``details``) of the whole record; ``base`` is the note's share of Odoo's untaxed amount."""
        digits = currency.decimal_places
        lines, problems = [], []
        services = Decimal(0)
        withheld = {}
        for row in rows:
            quantity = row.quantity if row._name == "account.move.line" else row.product_uom_qty
            price_unit = row.price_unit
            if quantity < 0 and price_unit < 0:
                quantity, price_unit = -quantity, -price_unit
            if quantity < 0 or price_unit < 0:
                raise UserError(self._negative_line_message(row, price_unit, quantity, currency))
            subtotal = _cents(_d(row.price_subtotal, digits), digits)
            quantity, discount = _d(quantity, 6), _d(row.discount, 4)
            unit_price = self._nfse_unit_price(price_unit, quantity, discount, subtotal, digits)
            gross = _cents(quantity * unit_price, digits)
            services += gross
            for tax_data in details[row]["tax_details"]["taxes_data"] if row in details else []:
                tax = tax_data["tax"]
                kind = tax.fiscal_nfse_withholding
                amount = _cents(_d(abs(tax_data["tax_amount_currency"]), digits), digits)
                if kind and tax.amount < 0 and not tax.price_include:
                    withheld[kind] = withheld.get(kind, Decimal(0)) + amount
                elif kind:
                    problems.append(
                        self.env._(
                            "tax “%(tax)s” is marked as a withholding but is not a negative tax excluded from the "
                            "price (a withholding reduces what the customer pays)",
                            tax=tax.name,
                        )
                    )
                elif tax.amount:
                    problems.append(
                        self.env._(
                            "tax “%(tax)s” on “%(line)s” is no withholding: an NFS-e price carries no added tax "
                            "(ISS and the provider's own federal taxes are inside the price). Remove it, or mark "
                            "it as a withholding (NFS-e withholding on the tax) if the customer withholds it",
                            tax=tax.name,
                            line=row.name,
                        )
                    )
            lines.append(
                FiscalLine(
                    code=(row.product_id.default_code or row.product_id.display_name or row.name or "ITEM")[:60],
                    description=(row.name or row.product_id.display_name or "").strip(),
                    quantity=quantity,
                    unit_price=unit_price,
                    discount=discount,
                )
            )
        if problems:
            raise UserError(
                self.env._("Cannot issue the NFS-e: %s. Fix the taxes, then retry.", "; ".join(dict.fromkeys(problems)))
            )
        # The base is Odoo's untaxed amount (of these rows): with taxes rounded globally it may differ by a
        # cent from the sum of the rounded lines; the unconditional discount absorbs it (never below zero).
        base = _cents(base, digits)
        discounts = services - base
        if discounts < 0:
            services, discounts = base, Decimal(0)
        return lines, brazil.NfseAmounts(services=services, discounts=discounts, iss_rate=Decimal(0), withheld=withheld)

    # ------------------------------------------------------------------ service
    @api.model
    def _nfse_service_fields(self, template, account):
        """The service codes of a product: its own, else its category's, else the account's."""
        category = template.categ_id

        def pick(name, default):
            return template[name] or category[name] or default or None

        return FiscalService(
            description=pick("fiscal_service_description", account.service_description),
            municipal_code=pick("fiscal_service_code", account.service_code),
            lc116_item=pick("fiscal_service_lc116", account.service_lc116),
            cnae=pick("fiscal_service_cnae", account.service_cnae),
            iss_rate=_d(pick("fiscal_iss_rate", account.iss_rate), 4),
            city_code=account.service_city_code or None,
            national_code=pick("fiscal_national_code", account.service_national_code),
            nbs_code=pick("fiscal_nbs_code", account.service_nbs_code),
            reform_class=pick("fiscal_reform_class", account.service_reform_class),
            operation_indicator=pick("fiscal_operation_indicator", account.service_operation_indicator),
            tax_regime=account.tax_regime or None,
        )

    @api.model
    def _nfse_service_groups(self, doc, record, rows):
        """The lines by service, ``{code: (service, rows)}`` in the order of the lines: a note declares
        one service, identified by its national code (else its municipal code and LC 116 item). The
        reform fields of a regime that needs them are checked per product, naming it."""
        account = doc.account_id
        if not account.tax_regime:
            raise UserError(
                self.env._(
                    "Cannot issue the NFS-e: the fiscal account %s has no tax regime (Simples Nacional, MEI, Lucro "
                    "Presumido or Lucro Real). Set it on the account: it decides what the note must declare.",
                    account.name,
                )
            )
        groups = {}
        missing = []
        for row in rows:
            template = row.product_id.product_tmpl_id
            service = self._nfse_service_fields(template, account)
            code = service.national_code or "/".join(filter(None, (service.municipal_code, service.lc116_item)))
            groups.setdefault(code, (service, []))[1].append(row)
            if account._nfse_requires_reform():
                lacking = brazil.missing_reform_fields(service)
                if lacking:
                    label = row.product_id.display_name or row.name
                    missing.append(
                        self.env._("product “%(product)s” lacks %(what)s", product=label, what=", ".join(lacking))
                    )
        if missing:
            raise UserError(
                self.env._(
                    "Cannot issue the NFS-e: the regime %(regime)s requires the tax-reform fields from January "
                    "2026, and %(missing)s. Set them on the product (Fiscal (NFS-e) tab), its category or the "
                    "fiscal account, then retry.",
                    regime=brazil.REGIMES[account.tax_regime],
                    missing="; ".join(dict.fromkeys(missing)),
                )
            )
        return {code: (service, self.env[rows[0]._name].concat(*group)) for code, (service, group) in groups.items()}

    @api.model
    def _nfse_refuse_several_codes(self, record, groups):
        described = "; ".join(
            self.env._(
                "%(code)s: %(products)s",
                code=code or "-",
                products=", ".join(dict.fromkeys(row.product_id.display_name or row.name for row in group_rows)),
            )
            for code, (_service, group_rows) in groups.items()
        )
        raise UserError(
            self.env._(
                "Cannot issue the NFS-e: %(record)s mixes services of %(count)s service codes (%(groups)s), and "
                "one NFS-e declares one service. Invoice each code separately (one invoice per group of "
                "products, or give the products one code), then issue; or let the fiscal account split such "
                "sales into one NFS-e per code (Sales of several service codes).",
                record=record.display_name,
                count=len(groups),
                groups=described,
            )
        )

    @api.model
    def _nfse_customer_withholds_iss(self, partner, account):
        partner = partner.commercial_partner_id
        tax_id = brazil.clean_tax_id(partner.vat)
        if brazil.person_type(tax_id) != "J":
            return False
        setting = partner.fiscal_iss_withholding or "account"
        return account.iss_withheld if setting == "account" else setting == "yes"

    @api.model
    def _nfse_check_iss_withholding(self, doc, record, service, amounts):
        """ISS is withheld exactly when the customer withholds it, for the amount of the note's ISS."""
        partner = record.partner_id.commercial_partner_id
        withholds = self._nfse_customer_withholds_iss(partner, doc.account_id)
        service.iss_withheld = withholds
        in_odoo = amounts.withheld.get("iss")
        if withholds and not in_odoo:
            raise UserError(
                self.env._(
                    "Cannot issue the NFS-e: %(customer)s withholds the ISS (%(rate)s %%), but %(record)s carries no "
                    "ISS withholding tax, so Odoo's total is not what the customer pays. Add the ISS withholding "
                    "tax to the lines (or a fiscal position that adds it), or set the customer's ISS withholding "
                    "to “Does not withhold ISS”.",
                    customer=partner.name,
                    rate=f"{service.iss_rate:f}".rstrip("0").rstrip("."),
                    record=record.display_name,
                )
            )
        if in_odoo and not withholds:
            raise UserError(
                self.env._(
                    "Cannot issue the NFS-e: %(record)s withholds ISS, but %(customer)s does not withhold it (only a "
                    "company (CNPJ) set to withhold ISS does, on the customer or the fiscal account). Remove the "
                    "ISS withholding tax, or change the customer's ISS withholding.",
                    record=record.display_name,
                    customer=partner.name,
                )
            )
        if in_odoo and in_odoo != amounts.iss:
            raise UserError(
                self.env._(
                    "Cannot issue the NFS-e: the ISS withholding tax of %(record)s (%(odoo)s) is not the note's ISS "
                    "(%(rate)s %% of %(base)s = %(iss)s). Use an ISS withholding tax of the service's ISS rate; a "
                    "difference of a cent comes from rounding per line: the municipality computes the ISS on the "
                    "total, so set the company's tax rounding to “Round Globally”.",
                    record=record.display_name,
                    odoo=in_odoo,
                    rate=f"{service.iss_rate:f}".rstrip("0").rstrip("."),
                    base=amounts.base,
                    iss=amounts.iss,
                )
            )

    # ------------------------------------------------------------------ customer
    @api.model
    def _nfse_party(self, partner, company):
        """The customer, with the street and its number apart: from Odoo's structured street fields
        (base_address_extended, which l10n_br installs) when set, else the number is taken off the
        end of the street when it repeats the street number."""
        party = self._party(partner, company)
        partner = partner.commercial_partner_id
        if "street_name" in partner._fields and partner.street_name:
            party.street = partner.street_name
            party.street_number = partner.street_number or party.street_number
            extra = [partner.street_number2, partner.street2]
            party.street2 = ", ".join(part for part in extra if part) or None
        else:
            party.street = brazil.street_without_number(party.street, party.street_number)
        return party
