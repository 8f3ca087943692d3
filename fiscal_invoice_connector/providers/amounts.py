"""Line arithmetic of the Portuguese services, and the prices that make it give Odoo's amounts back.

The services compute a line from what they receive, and round it their own way
(docs/mapping-rules.md §2, shared/provider-apis.md §2 and §3):

* InvoiceXpress (tax-excluded): ``gross = round(quantity x unit_price)``, then
  ``subtotal = gross - round(gross x discount %)``, then ``VAT = round(subtotal x rate)`` per line.
* Vendus (VAT-inclusive): ``total = round(gross_price x quantity x (1 - discount %))``.

Rounding is half-up to the cent, but how a service breaks an exact half-cent tie (floats, banker's
rounding) is not documented **[?]**: the prices chosen here never put a value on a tie, so the answer
is the same whatever the service does with ties.
"""

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
# Most decimals a unit price gets: the fewest that reproduce the amount are sent.
MAX_PRICE_DIGITS = 10
# A product this close to a half-cent is "on a tie": its rounding depends on the service's arithmetic.
TIE_MARGIN = Decimal("0.0001")


def half_up(value, quantum=CENT):
    return Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP)


def near_tie(value):
    """True when ``value`` is within TIE_MARGIN of a half-cent (x.xx5)."""
    fraction = (Decimal(value) * 100) % 1
    return abs(fraction - Decimal("0.5")) * CENT < TIE_MARGIN


def ix_subtotal(quantity, unit_price, discount):
    """InvoiceXpress's line subtotal: quantity x price rounded, then the discount rounded."""
    gross = half_up(Decimal(quantity) * Decimal(unit_price))
    return gross - half_up(gross * Decimal(discount or 0) / 100)


def _shortest_price(quantity, target, hint=None):
    """The shortest price p (2 to MAX_PRICE_DIGITS decimals) with round(quantity x p) == target and
    quantity x p off any half-cent tie; ``hint`` (Odoo's own price) first when it does. None if none."""
    quantity = Decimal(quantity)

    def fits(price):
        product = quantity * price
        return price >= 0 and half_up(product) == target and not near_tie(product)

    if hint is not None and fits(Decimal(hint)):
        return Decimal(hint)
    exact = target / quantity
    for places in range(2, MAX_PRICE_DIGITS + 1):
        step = Decimal(1).scaleb(-places)
        center = half_up(exact, step)
        for candidate in (center, center - step, center + step):
            if fits(candidate):
                return candidate
    return None


def ix_price(quantity, discount, subtotal, hint=None):
    """(unit_price, discount) such that InvoiceXpress computes ``subtotal`` for the line, with no
    value on a half-cent tie: Odoo's price and discount when they do; else the shortest price with
    Odoo's discount; else (the discount amount would land on a tie) the discount folded into a net
    price. None when no price with MAX_PRICE_DIGITS decimals reaches the subtotal."""
    quantity, discount, subtotal = Decimal(quantity), Decimal(discount or 0), Decimal(subtotal)
    if quantity <= 0:
        return None
    if discount >= 100:
        # The line is worth nothing whatever the price: keep Odoo's (positive) price, shown fully discounted.
        if subtotal:
            return None
        price = Decimal(hint or 0)
        return (_shortest_price(quantity, half_up(quantity * price), price) or price), discount
    if discount:
        if hint is not None:
            hinted = _shortest_price(quantity, half_up(quantity * Decimal(hint)), hint)
            if hinted is not None and _discount_ok(hinted * quantity, discount, subtotal):
                return hinted, discount
        # The gross amounts (cents) whose discounted value is the subtotal, nearest first.
        center = half_up(subtotal / (1 - discount / 100))
        for offset in (0, 1, -1, 2, -2, 3, -3):
            gross = center + offset * CENT
            if gross > 0 and _discount_ok(gross, discount, subtotal):
                price = _shortest_price(quantity, gross)
                if price is not None:
                    return price, discount
    price = _shortest_price(quantity, subtotal, hint)
    return (price, Decimal(0)) if price is not None else None


def _discount_ok(gross, discount, subtotal):
    gross = half_up(gross)
    amount = gross * discount / 100
    return not near_tie(amount) and gross - half_up(amount) == subtotal


def vendus_gross_price(quantity, discount, total, digits):
    """The shortest VAT-inclusive price (at most ``digits`` decimals) whose line total, once Vendus
    multiplies and rounds it, is ``total``, with the product off any half-cent tie. None if none."""
    share = Decimal(quantity) * (1 - Decimal(discount or 0) / 100)
    if share <= 0:
        return None
    total = Decimal(total)
    exact = total / share
    for places in range(2, digits + 1):
        step = Decimal(1).scaleb(-places)
        center = half_up(exact, step)
        for candidate in (center, center - step, center + step):
            product = candidate * share
            if candidate >= 0 and half_up(product) == total and not near_tie(product):
                return candidate
    return None
