"""CPF / CNPJ as the Brazilian services check them, for the eNotas and InvoiCy simulators.

From July 2026 new CNPJs are alphanumeric (12 characters 0-9/A-Z, then two check digits, each
character counting ``ord(c) - 48`` in the module-11 sums). python-stdnum 1.19 (Odoo 19's pin)
knows digit-only CNPJs, so the alphanumeric rule is written out here, independently of the client.
"""

from stdnum.br import cnpj, cpf

_WEIGHTS = (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)


def _digit(body):
    total = sum((ord(ch) - 48) * weight for ch, weight in zip(body, _WEIGHTS[-len(body) :], strict=True))
    return "0" if total % 11 < 2 else str(11 - total % 11)


def cnpj_is_valid(value):
    value = value or ""
    if value.isdigit():
        return len(value) == 14 and cnpj.is_valid(value)
    if len(value) != 14 or not value[12:].isdigit() or not all(c.isdigit() or "A" <= c <= "Z" for c in value):
        return False
    first = _digit(value[:12])
    return value[12:] == first + _digit(value[:12] + first)


def cpf_is_valid(value):
    return bool(value) and value.isdigit() and len(value) == 11 and cpf.is_valid(value)
