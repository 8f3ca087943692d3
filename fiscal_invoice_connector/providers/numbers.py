"""Numbers as the services want them: the one home of the conversions that the four clients
and the Odoo mapping share (Decimal all the way; a float is only ever read, never computed with).

The simulators (package ``fiscal_simulators``) keep their own copies in ``_server.py`` on
purpose: they play the other side of the contract, and an arithmetic bug shared by a client and
its simulator would make both agree and hide it.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")


def from_float(value, digits=6):
    """An Odoo float (``False``/``None``: 0) as the Decimal it stands for, rounded to ``digits``."""
    return Decimal(str(round(value or 0.0, digits)))


def half_up(value, digits=2):
    """Rounded half-up to ``digits`` decimals, as the services (and Odoo) round amounts."""
    return Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def half_up_text(value, places=CENT):
    """Rounded half-up to the exponent of ``places`` (a Decimal such as ``0.0001``), as text
    with exactly that many decimals (``"10.50"``)."""
    return str(Decimal(value).quantize(places, rounding=ROUND_HALF_UP))


def plain(value):
    """A Decimal as a plain numeric string: never a float, never an exponent, no trailing zeros
    (``Decimal("1.50")`` -> ``"1.5"``, ``Decimal("1E+1")`` -> ``"10"``); ``None`` stays None."""
    if value is None:
        return None
    text = format(Decimal(value).normalize(), "f")
    return "0" if text in ("-0", "") else text


def to_decimal(value):
    """A number read from a service (int, float or numeric text) as a finite Decimal, else None
    (``None``, ``""``, booleans, text that is not a number, NaN and infinities)."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def to_int(value):
    """An integer read from a service (``" 12 "``), else None."""
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def digits_only(value):
    """The digits of a tax id, a postcode, a phone number (``"123.456.789-09"`` -> ``"12345678909"``)."""
    return "".join(ch for ch in str(value or "") if ch.isdigit())


def vat_tax_name(rate):
    """The default name of a VAT rate at the Portuguese services (``23.0`` -> ``"IVA23"``, ``13.5`` ->
    ``"IVA13.5"``), for a tax without ``fiscal_tax_name``."""
    return f"IVA{format(float(rate), 'g')}"
