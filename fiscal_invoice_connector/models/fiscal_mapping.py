"""Odoo records -> provider-neutral fiscal documents. Decides *what* is sent; never
talks to a provider, never writes.

The rules are written down, with the reasons and the choices made where the services'
documentation is silent, in docs/mapping-rules.md. In short:
- Source: the invoice when the document has one, else the sale order; section/note lines and
  zero-quantity lines are skipped.
- Prices: tax-excluded unit prices in the document currency, Odoo's discount percent. The unit
  price is Odoo's own when it gives back Odoo's line subtotal to the cent (quantity x price less
  discount, rounded as the services do), else the shortest one (up to 10 decimals) that does:
  VAT-inclusive prices, and float ties. Each line also carries Odoo's VAT-inclusive line total
  (``total_included``), which providers taking VAT-inclusive prices (Vendus) reproduce.
- Negative lines (global discount lines, down-payment deductions) are refused: the services
  take positive quantities and prices only; the message says what to do instead.
- Taxes: one percent tax per line, named for the provider by ``account.tax.fiscal_tax_name``
  (default ``IVA<rate>``); 0 % lines carry the tax's SAF-T exemption code.
- Totals: Odoo's ``amount_total`` travels as ``expected_total`` for the totals guards.
- Credit notes never credit more than what remains of their original document.
- Customer: the commercial partner; a NIF that python-stdnum rejects is not sent, and the
  document goes to the final consumer as the Portuguese services expect.
"""

from decimal import Decimal

from stdnum import get_cc_module

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..providers import FiscalDocumentData, FiscalLine, FiscalParty, FiscalPayment
from ..providers.numbers import from_float as _d
from ..providers.numbers import half_up as _cents
from ..providers.numbers import vat_tax_name

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
            date = doc.invoice_date or doc.move_id.invoice_date or fields.Date.context_today(doc)
            due = doc.due_date or doc.move_id.invoice_date_due or date
            origin = doc.move_id.invoice_origin or doc.move_id.name
        elif doc.sale_order_id:
            lines, record = self._lines_from_order(doc.sale_order_id), doc.sale_order_id
            date = doc.invoice_date or (doc.sale_order_id.date_order and doc.sale_order_id.date_order.date())
            due = doc.due_date or date
            origin = doc.sale_order_id.name
        else:
            raise UserError(self.env._("The fiscal document %s has no order nor invoice.", doc.display_name))
        if not lines:
            raise UserError(self.env._("%s has no line to invoice.", record.display_name))
        related = doc.related_document_id
        if doc.kind == "credit_note":
            self._check_creditable(doc)
            self._match_original_rows(doc, lines)
        return FiscalDocumentData(
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
            reason=doc.cancel_reason or None,
            expected_total=_d(record.amount_total, record.currency_id.decimal_places),
            send_email=doc.send_email,
            payments=self._payments(doc, record, date),
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
        credited = self._move_rows(doc.move_id)
        for line, odoo_line in zip(lines, credited, strict=True):
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
    def _move_rows(self, move):
        """The invoice lines that become document lines (and rows, for credit notes)."""
        return move.invoice_line_ids.filtered(lambda line: line.display_type == "product" and line.quantity)

    @api.model
    def _order_rows(self, order):
        return order.order_line.filtered(lambda line: not line.display_type and line.product_uom_qty)

    @api.model
    def _lines_from_move(self, move):
        return [
            self._line(ln, ln.price_unit, ln.quantity, ln.discount, ln.tax_ids, move.currency_id)
            for ln in self._move_rows(move)
        ]

    @api.model
    def _lines_from_order(self, order):
        return [
            self._line(ln, ln.price_unit, ln.product_uom_qty, ln.discount, ln.tax_ids, order.currency_id)
            for ln in self._order_rows(order)
        ]

    @api.model
    def _line(self, line, price_unit, quantity, discount, taxes, currency):
        product = line.product_id
        if quantity < 0 and price_unit < 0:
            # (-2) x (-5.00) is a positive line written upside down: the same line, positive.
            quantity, price_unit = -quantity, -price_unit
        if quantity < 0 or price_unit < 0:
            raise UserError(self._negative_line_message(line, price_unit, quantity, currency))
        percent_taxes = taxes.filtered(lambda t: t.amount_type == "percent")
        if len(taxes) > 1 or taxes != percent_taxes:
            raise UserError(
                self.env._(
                    "Line “%(line)s” has taxes %(taxes)s: the fiscal document needs exactly one percent VAT "
                    "per line. Fix the taxes of the line.",
                    line=line.name,
                    taxes=", ".join(taxes.mapped("name")) or "-",
                )
            )
        tax = taxes[:1]
        rate = _d(tax.amount, 4) if tax else Decimal("0")
        digits = currency.decimal_places
        quantity = _d(quantity, 6)
        discount = _d(discount, 4)
        # Odoo's figures for the line, which the provider must reproduce.
        subtotal = _cents(_d(line.price_subtotal, digits), digits)
        total = _cents(_d(line.price_total, digits), digits)
        fiscal_line = FiscalLine(
            code=(product.default_code or product.display_name or line.name or "ITEM")[:60],
            description=(line.name or product.display_name or "").strip(),
            quantity=quantity,
            unit_price=self._unit_price(price_unit, quantity, discount, subtotal, tax, rate, digits),
            tax_name=tax.fiscal_tax_name or (vat_tax_name(tax.amount) if tax else None),
            tax_rate=rate,
            tax_exemption_code=tax.fiscal_exemption_code or None if not rate else None,
            discount=discount,
            unit=None,
            is_shipping=bool(getattr(line, "is_delivery", False)),
        )
        # Odoo's VAT-inclusive line total: what a provider taking VAT-inclusive prices must show.
        fiscal_line.total_included = total
        return fiscal_line

    @api.model
    def _unit_price(self, price_unit, quantity, discount, subtotal, tax, rate, digits):
        """The tax-excluded unit price to send, such that quantity x price less discount, rounded
        half-up to the cent (what InvoiceXpress and the others compute), is Odoo's line subtotal.

        Odoo's own price when it does (tax-excluded prices); otherwise (VAT-inclusive prices, a
        float tie) the shortest price, up to ``UNIT_PRICE_DIGITS`` decimals, that does."""
        price = _d(price_unit, UNIT_PRICE_DIGITS)
        share = quantity * (1 - discount / 100)
        if not tax.price_include and _cents(price * share, digits) == subtotal:
            return price
        if not share:
            # 100 % discount: the line is worth nothing whatever the price; keep Odoo's, tax excluded.
            return _cents(price / (1 + rate / 100), UNIT_PRICE_DIGITS) if tax.price_include else price
        exact = subtotal / share
        for places in range(digits, UNIT_PRICE_DIGITS + 1):
            candidate = _cents(exact, places)
            if _cents(candidate * share, digits) == subtotal:
                return candidate
        return _cents(exact, UNIT_PRICE_DIGITS)

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
