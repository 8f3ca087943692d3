"""Odoo records -> provider-neutral fiscal documents. Decides *what* is sent; never talks to a
provider. (It writes once: a simplified invoice above the art. 40 CIVA limit becomes an
invoice-receipt before it is sent, said in the chatter.)

The rules are written down, with the reasons, the legal sources and the choices made where the
services' documentation is silent, in docs/mapping-rules.md. In short:
- Source: the invoice when the document has one, else the sale order; section/note lines and
  zero-quantity lines are skipped; a sale worth 0.00 is refused (Portugal).
- Amounts: Odoo's own tax engine (base lines of the record, the company's rounding method, the
  rounding delta spread over the lines); negative lines (global discounts, down-payment deductions)
  dispatched onto the lines of the same taxes. Each line carries Odoo's tax-excluded (``subtotal``)
  and VAT-inclusive (``total_included``) amounts; the providers choose prices their own arithmetic
  turns back into them (providers/amounts.py).
- Taxes: one percent tax per line, a line without tax refused naming it; named for the provider by
  ``account.tax.fiscal_tax_name``, else Odoo's Portuguese chart default, else ``IVA<rate>``; 0 %
  lines carry the tax's SAF-T exemption code (the chart's default for its 0 % taxes).
- Portugal: dated the company's day of issue (the sale's date as date of supply), checked against
  the series; invalid NIF of a company refused; exchange rate to the euro; credit note reason.
- Totals: Odoo's ``amount_total`` travels as ``expected_total`` for the totals guards.
- Credit notes never credit more than what remains of their original document.
"""

from decimal import ROUND_HALF_UP, Decimal

from stdnum import get_cc_module

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..providers import FiscalDocumentData, FiscalLine, FiscalParty, FiscalPayment
from ..providers.amounts import ix_price
from ..providers.numbers import from_float as _d
from ..providers.numbers import half_up as _cents

# Providers whose documents follow Portuguese law (dates, limits, tax ids).
PT_PROVIDERS = ("invoicexpress", "vendus")

# Most decimals a derived unit price gets (VAT-inclusive prices): the shortest price that gives
# back Odoo's line subtotal is sent, and 10 decimals do for any realistic quantity.
UNIT_PRICE_DIGITS = 10


def normalize_vat(vat, country_code):
    """Return the fiscal id without the country prefix if python-stdnum accepts it, else None."""
    if not vat:
        return None
    raw = "".join(ch for ch in vat if ch.isalnum()).upper()
    country = (country_code or "").lower()
    if len(raw) > 2 and raw[:2].isalpha():
        country, raw = raw[:2].lower(), raw[2:]
    if not country:
        return None
    module = get_cc_module(country, "vat")
    if module is None:
        return raw  # no checksum known for this country: send it as it is
    try:
        return module.validate(raw)
    except Exception:  # noqa: BLE001 - stdnum raises several ValidationError subclasses
        return None


class FiscalMapping(models.AbstractModel):
    _name = "fiscal.mapping"
    _description = "Fiscal document mapping"

    @api.model
    def _document_data(self, doc):
        if self._is_nfse(doc):
            return self._nfse_document_data(doc)  # Brazil: models/fiscal_mapping_nfse.py
        if doc.move_id:
            lines, record = self._lines_from_move(doc.move_id), doc.move_id
            # A draft invoice (policy "on invoice creation") has no date yet: today.
            sale_date = doc.move_id.invoice_date
            date = doc.invoice_date or sale_date or self._company_today(doc.company_id)
            due = doc.due_date or doc.move_id.invoice_date_due or date
            origin = doc.move_id.invoice_origin or doc.move_id.name
        elif doc.sale_order_id:
            lines, record = self._lines_from_order(doc.sale_order_id), doc.sale_order_id
            sale_date = self._company_date(doc.company_id, doc.sale_order_id.date_order)
            date = doc.invoice_date or sale_date
            due = doc.due_date or date
            origin = doc.sale_order_id.name
        else:
            raise UserError(self.env._("The fiscal document %s has no order nor invoice.", doc.display_name))
        if not lines:
            raise UserError(self.env._("%s has no line to invoice.", record.display_name))
        portuguese = doc.account_id.provider in PT_PROVIDERS
        supply_date = None
        if portuguese:
            # Art. 36 CIVA: the document is dated the day it is issued (the company's day, not UTC's); a
            # later issue (backfill, on payment, after the refund window) states the sale's date as the
            # date of supply. Only a date chosen in "Issue now" (checked there) is sent as it is.
            date = doc.invoice_date or self._company_today(doc.company_id)
            supply_date = sale_date if sale_date and sale_date != date else None
            due = max(doc.due_date or doc.move_id.invoice_date_due or date, date)
            self._check_pt_document(doc, record)
        related = doc.related_document_id
        if doc.kind == "credit_note":
            self._check_creditable(doc)
            self._match_original_rows(doc, lines)
        data = FiscalDocumentData(
            reference=doc.reference,
            kind=doc.document_type,
            date=date,
            due_date=due,
            currency=record.currency_id.name,
            lines=lines,
            partner=self._party(record.partner_id, doc.company_id),
            origin=origin,
            notes=None,
            related_remote_id=related.remote_id or None,
            related_number=related.number or None,
            reason=self._pt_credit_reason(doc)
            if portuguese and doc.kind == "credit_note"
            else doc.cancel_reason or None,
            expected_total=_d(record.amount_total, record.currency_id.decimal_places),
            send_email=doc.send_email,
            payments=self._payments(doc, record, date),
        )
        data.supply_date = supply_date
        data.exchange_rate = self._eur_rate(record, date) if portuguese else None
        return data

    @api.model
    def _company_today(self, company):
        return self._company_date(company, fields.Datetime.now())

    @api.model
    def _company_date(self, company, moment):
        """The calendar day of ``moment`` (UTC) in the company's timezone (its partner's, else Lisbon
        for a Portuguese company, else the user's)."""
        if not moment:
            return None
        return fields.Datetime.context_timestamp(self.with_context(tz=self._company_tz(company)), moment).date()

    @api.model
    def _company_tz(self, company):
        """The company's timezone: its partner's, else Lisbon for a Portuguese company, else the user's."""
        tz = company.partner_id.tz or ("Europe/Lisbon" if company.country_id.code == "PT" else None)
        return tz or self.env.user.tz or "UTC"

    @api.model
    def _eur_rate(self, record, date):
        """Euros per unit of the document currency on the document date (what InvoiceXpress's ``rate``
        converts with [?]); None for euros."""
        currency = record.currency_id
        if currency.name == "EUR":
            return None
        eur = self.env.ref("base.EUR")
        rate = currency._get_conversion_rate(currency, eur, record.company_id, date)
        return Decimal(str(rate)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP).normalize()

    @api.model
    def _check_pt_document(self, doc, record):
        """What Portuguese law and the services refuse, checked before anything is sent."""
        if doc.invoice_date:
            problem = self._pt_date_problem(doc.account_id, doc.document_type, doc.invoice_date, exclude=doc)
            if problem:
                raise UserError(problem)
        self._check_pt_tax_id(record.partner_id.commercial_partner_id)
        self._apply_simplified_invoice_limit(doc, record)
        if doc.kind != "credit_note" and record.currency_id.is_zero(record.amount_total):
            raise UserError(
                self.env._(
                    "%(record)s totals %(amount)s: a sale worth nothing needs no fiscal document, and "
                    "InvoiceXpress and Vendus refuse one. Nothing is issued; drop this document (Cancel) "
                    "unless lines are missing.",
                    record=record.display_name,
                    amount=record.amount_total,
                )
            )

    @api.model
    def _payments(self, doc, record, date):
        """Invoice-receipts and simplified invoices carry their payment: Odoo's payments of the
        invoice when there are some, else the whole amount with the account's default method."""
        if doc.document_type not in ("invoice_receipt", "simplified_invoice"):
            return []
        method = doc.account_id.default_payment_method or "TB"
        if record._name == "account.move":
            partials = record.line_ids.matched_credit_ids
            payments = [
                FiscalPayment(
                    amount=_d(p.debit_amount_currency, 2),
                    date=p.credit_move_id.move_id.date,
                    method="NU" if p.credit_move_id.move_id.journal_id.type == "cash" else "TB",
                )
                for p in partials
                if p.credit_move_id.move_id.move_type not in ("out_refund",)
            ]
            if payments:
                return payments
        return [FiscalPayment(amount=_d(record.amount_total, 2), date=date, method=method)]

    @api.model
    def _check_creditable(self, doc):
        """A credit note never credits more than what remains of its original document."""
        original = doc.related_document_id
        others = self.env["fiscal.document"].search(
            [
                ("related_document_id", "=", original.id),
                ("kind", "=", "credit_note"),
                ("state", "not in", ("cancelled", "dropped")),
                ("id", "!=", doc.id),
            ]
        )
        currency = doc.currency_id or original.currency_id
        remaining = original.amount_total - sum(others.mapped("amount_total"))
        if currency.compare_amounts(doc.move_id.amount_total, remaining) > 0:
            raise UserError(
                self.env._(
                    "Credit note %(refund)s (%(amount)s) exceeds what remains creditable on %(number)s (%(left)s): "
                    "reduce it, or cancel one of the earlier credit notes.",
                    refund=doc.move_id.name,
                    amount=doc.move_id.amount_total,
                    number=original.number or original.reference,
                    left=round(remaining, currency.decimal_places),
                )
            )

    @api.model
    def _match_original_rows(self, doc, lines):
        """Each credited line points at the row of the original invoice it credits (same
        product, then same description), as Vendus requires (reference_document per line)."""
        original = doc.related_document_id
        source = original.move_id or original.sale_order_id
        # The rows as they were sent (same filter as the lines), so that row numbers match.
        rows = self._move_rows(source) if source._name == "account.move" else self._order_rows(source)
        credited = {row.id: row for row in self._move_rows(doc.move_id)}
        for line in lines:
            odoo_line = credited[line.odoo_line_id]
            for index, row in enumerate(rows, start=1):
                if row.product_id == odoo_line.product_id and (row.name or "") == (odoo_line.name or ""):
                    line.related_row = index
                    break
            else:
                for index, row in enumerate(rows, start=1):
                    if row.product_id == odoo_line.product_id:
                        line.related_row = index
                        break

    @api.model
    def _party(self, partner, company):
        partner = partner.commercial_partner_id
        # No valid fiscal id: the provider issues to the final consumer (name kept).
        vat = normalize_vat(partner.vat, partner.country_id.code)
        if partner.country_id.code == "BR" and partner.vat:
            # CPF/CNPJ: the Brazilian rules (providers/brazil.py) validate and explain it.
            vat = partner.vat
        return FiscalParty(
            code=f"ODOO-{company.id}-{partner.id}",
            name=partner.name,
            vat=vat,
            country_code=partner.country_id.code or None,
            country_name=partner.country_id.with_context(lang="en_US").name or None,
            email=partner.email or None,
            street=partner.street or None,
            city=partner.city or None,
            zip=partner.zip or None,
            phone=partner.phone or None,
            is_company=partner.is_company,
            state_code=partner.state_id.code or None,
            street_number=getattr(partner, "street_number", None) or partner.fiscal_street_number or None,
            district=partner.fiscal_district or None,
            city_code=partner.fiscal_city_code or None,
            street2=partner.street2 or None,
            municipal_registration=partner.fiscal_municipal_registration or None,
        )

    @api.model
    def _pt_date_problem(self, account, document_type, date, exclude=None):
        """Why ``date`` cannot date a new document of this type at this account, or None: never in
        the future (the company's day), never before the last document issued in the series (a series
        is chronological, DL 28/2019 art. 9 and the services refuse it). The last date is the chosen
        date of an issued document, else the day it was last written (never earlier than the day it was
        issued: strict rather than lenient)."""
        company = account.company_id
        today = self._company_today(company)
        if date > today:
            return self.env._(
                "%(date)s is in the future: a fiscal document is dated the day it is issued (%(today)s) at the "
                "latest. Choose today's date.",
                date=date,
                today=today,
            )
        issued = (
            self.env["fiscal.document"]
            .sudo()
            .search(
                [
                    ("account_id", "=", account.id),
                    ("document_type", "=", document_type),
                    ("state", "in", ("issued", "cancelled")),
                    ("number", "!=", False),
                    ("id", "not in", exclude.ids if exclude else []),
                ],
                order="write_date desc",
                limit=200,
            )
        )
        dates = [d.invoice_date or self._company_date(company, d.write_date) for d in issued]
        last = max(dates, default=None)
        if last and date < last:
            return self.env._(
                "%(date)s is before the last document of this series at %(account)s (%(last)s): a series is "
                "chronological, and the service refuses an earlier date. Date it %(last)s or later (today is "
                "%(today)s); the sale's own date is stated as its date of supply.",
                date=date,
                account=account.display_name,
                last=last,
                today=today,
            )
        return None

    @api.model
    def _pt_credit_reason(self, doc):
        """The reason of a credit note (art. 29(1)(c) CIVA, printed on it): what was typed in Odoo's
        reversal wizard, kept in the credit note's reference ("Reversal of: INV/1, <reason>"), or the
        reference typed on it. No placeholder: without one, the note is refused with what to do."""
        refund = doc.move_id
        reference = (refund.ref or "").strip()
        origin = refund.reversed_entry_id
        bare = {"", refund.name or ""}
        if origin:
            bare |= {
                self.with_context(lang=lang).env._("Reversal of: %s", origin.name)
                for lang in {refund.partner_id.lang, self.env.lang, "en_US"}
                if lang
            }
        if reference in bare:
            raise UserError(
                self.env._(
                    "Credit note %(refund)s has no reason, and a Portuguese credit note states why it corrects "
                    "%(origin)s: type it as the credit note's Reference (the reversal wizard's “Reason”), then "
                    "retry.",
                    refund=refund.name,
                    origin=origin.name or doc.related_document_id.number or "",
                )
            )
        return reference

    @api.model
    def _check_pt_tax_id(self, partner):
        """Only an empty NIF on a private person makes a final consumer. An invalid NIF on a company, or
        on a Portuguese partner, is refused: the document would name nobody the AT can match."""
        if not partner.vat or normalize_vat(partner.vat, partner.country_id.code):
            return
        if partner.is_company or partner.country_id.code in ("PT", False, None):
            raise UserError(
                self.env._(
                    "NIF %(vat)s of %(partner)s is invalid: fix it on the contact (or empty it for a private "
                    "person buying as a final consumer), then retry.",
                    vat=partner.vat,
                    partner=partner.display_name,
                )
            )

    @api.model
    def _is_final_consumer(self, partner):
        partner = partner.commercial_partner_id
        return not normalize_vat(partner.vat, partner.country_id.code) and not partner.is_company

    @api.model
    def _apply_simplified_invoice_limit(self, doc, record):
        """Art. 40(1) CIVA: a simplified invoice (FS) only up to 1000 EUR for a sale to a final consumer,
        100 EUR otherwise. Above, the document becomes an invoice-receipt (an FS is paid on issue, and so
        is an FR), said in the chatter. Only for a document not sent yet (its type is then still open)."""
        if doc.document_type != "simplified_invoice" or doc.remote_id or doc.create_sent:
            return
        consumer = self._is_final_consumer(record.partner_id)
        limit = 1000 if consumer else 100
        eur = self.env.ref("base.EUR")
        total = record.currency_id._convert(
            record.amount_total, eur, record.company_id, self._company_today(record.company_id)
        )
        if eur.compare_amounts(total, limit) <= 0:
            return
        doc.sudo().document_type = "invoice_receipt"
        doc._post_on_sources(
            self.env._(
                "%(total)s EUR is above the %(limit)s EUR a simplified invoice allows %(whom)s (art. 40 CIVA): "
                "an invoice-receipt is issued instead.",
                total=round(total, 2),
                limit=limit,
                whom=self.env._("for a final consumer") if consumer else self.env._("for a customer with a NIF"),
            )
        )

    @api.model
    def _move_rows(self, move):
        """The invoice lines that become document lines (and rows, for credit notes)."""
        return move.invoice_line_ids.filtered(lambda line: line.display_type == "product" and line.quantity)

    @api.model
    def _order_rows(self, order):
        return order.order_line.filtered(lambda line: not line.display_type and line.product_uom_qty)

    @api.model
    def _lines_from_move(self, move):
        rows = self._move_rows(move)
        return self._lines([move._prepare_product_base_line_for_taxes_computation(row) for row in rows], move)

    @api.model
    def _lines_from_order(self, order):
        rows = self._order_rows(order)
        return self._lines([row._prepare_base_line_for_taxes_computation() for row in rows], order)

    @api.model
    def _lines(self, base_lines, record):
        """The document lines, with Odoo's own amounts from its tax engine (the base lines Odoo itself
        computes the record with): each line's tax-excluded and VAT-inclusive totals as the books have
        them, whatever the company's rounding method (per line, or globally with the delta spread over
        the lines). Negative lines (Odoo's global discount, a down-payment deduction) are dispatched
        onto the positive lines of the same taxes, as Odoo does for e-invoices; one that cannot be (no
        positive line with its taxes) is refused with what to do."""
        AccountTax = self.env["account.tax"]
        company = record.company_id
        currency = record.currency_id
        for base_line in base_lines:
            self._check_taxes(base_line["record"])
        AccountTax._add_tax_details_in_base_lines(base_lines, company)
        AccountTax._round_base_lines_tax_details(base_lines, company)
        negative = [bl for bl in base_lines if bl["tax_details"]["raw_total_excluded_currency"] < 0]
        if negative:
            for base_line in negative:
                base_line["special_type"] = "global_discount"
            base_lines = AccountTax._dispatch_global_discount_lines(base_lines, company)
            AccountTax._squash_global_discount_lines(base_lines, company)
            left = [bl for bl in base_lines if bl["special_type"] == "global_discount"]
            if left:
                raise UserError(
                    self._negative_line_message(left[0]["record"], left[0]["price_unit"], left[0]["quantity"], currency)
                )
        return [self._line(base_line, currency) for base_line in base_lines]

    @api.model
    def _check_taxes(self, line):
        taxes = line.tax_ids
        name = (line.name or line.product_id.display_name or "").strip()
        if not taxes:
            raise UserError(
                self.env._(
                    "Line “%(line)s” has no tax: a Portuguese fiscal document states the VAT of every line. Set its "
                    "VAT (for an exempt sale, a 0 %% tax with its exemption reason) and retry.",
                    line=name,
                )
            )
        if len(taxes) > 1 or taxes.filtered(lambda t: t.amount_type != "percent"):
            raise UserError(
                self.env._(
                    "Line “%(line)s” has taxes %(taxes)s: the fiscal document needs exactly one percent VAT "
                    "per line. Fix the taxes of the line.",
                    line=name,
                    taxes=", ".join(taxes.mapped("name")),
                )
            )

    @api.model
    def _line(self, base_line, currency):
        line = base_line["record"]
        product = line.product_id
        tax = base_line["tax_ids"][:1]
        rate = _d(tax.amount, 4)
        digits = currency.decimal_places
        details = base_line["tax_details"]
        # Odoo's figures for the line as booked (with a globally rounded delta, and a dispatched
        # discount or down payment): what the provider must reproduce.
        subtotal = _cents(_d(details["total_excluded_currency"] + details["delta_total_excluded_currency"], digits))
        vat = sum((_cents(_d(t["tax_amount_currency"], digits)) for t in details["taxes_data"]), Decimal(0))
        quantity = _d(base_line["quantity"], 6)
        discount = _d(base_line["discount"], 4)
        price = _d(base_line["price_unit"], UNIT_PRICE_DIGITS)
        if quantity < 0 and price < 0:
            # (-2) x (-5.00) is a positive line written upside down: the same line, positive.
            quantity, price = -quantity, -price
        if tax.price_include:
            price = _cents(price / (1 + rate / 100), UNIT_PRICE_DIGITS)
        found = ix_price(quantity, discount, subtotal, hint=price)
        unit_price, sent_discount = found or (price, discount)
        fiscal_line = FiscalLine(
            code=(product.default_code or product.display_name or line.name or "ITEM")[:60],
            description=(line.name or product.display_name or "").strip(),
            quantity=quantity,
            unit_price=unit_price,
            tax_name=tax._fiscal_tax_name(),
            tax_rate=rate,
            tax_exemption_code=tax._fiscal_exemption_code() or None if not rate else None,
            discount=sent_discount,
            unit=None,
            is_shipping=bool(getattr(line, "is_delivery", False)),
        )
        # Odoo's VAT-inclusive line total: what a provider taking VAT-inclusive prices must show;
        # and Odoo's tax-excluded one, which a provider computing VAT itself must reproduce.
        fiscal_line.total_included = subtotal + vat
        fiscal_line.subtotal = subtotal
        fiscal_line.odoo_price = price
        fiscal_line.odoo_discount = discount
        fiscal_line.tax_label = tax.name
        fiscal_line.odoo_line_id = line.id
        return fiscal_line

    @api.model
    def _negative_line_message(self, line, price_unit, quantity, currency):
        name = (line.name or line.product_id.display_name or "").strip()
        if getattr(line, "is_downpayment", False):
            return self.env._(
                "Line “%(line)s” deducts a down payment (%(amount)s). The fiscal services accept no negative "
                "line: create the final invoice without deducting the down payment (untick “Deduct down "
                "payments”), and issue a credit note for the down-payment invoice instead.",
                line=name,
                amount=round(quantity * price_unit, currency.decimal_places),
            )
        return self.env._(
            "Line “%(line)s” is negative (%(qty)s × %(price)s). The fiscal services accept positive quantities "
            "and prices only: give a discount as a percentage on the lines (Discount button, “On All Order "
            "Lines”), and issue a credit note for a return or a refund instead of a negative line.",
            line=name,
            qty=quantity,
            price=price_unit,
        )
