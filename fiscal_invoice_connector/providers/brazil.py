"""Brazilian data rules shared by the NFS-e providers (eNotas, InvoiCy).

Plain Python. The checks run *before* anything is sent, and all problems are listed
in one message so the user fixes them in one go. The rules, and the figures of the
corpus that checks them, are in docs/mapping-rules.md (Brazil).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from stdnum.br import cnpj, cpf

from .base import FiscalDocumentData, FiscalParty, ValidationError

CENT = Decimal("0.01")

# Tax regimes of the issuing company (regime tributário).
REGIMES = {
    "simples": "Simples Nacional",
    "mei": "MEI (Microempreendedor Individual)",
    "presumido": "Lucro Presumido",
    "real": "Lucro Real",
}
# From January 2026 the national repository expects the reform fields (national service code,
# NBS, IBS/CBS classification) of these regimes; Simples Nacional and MEI join later (2027).
REFORM_REGIMES = frozenset({"presumido", "real"})
REFORM_FIELDS = (
    ("national_code", "national service code (cTribNac)", 6),
    ("nbs_code", "NBS code", 9),
    ("reform_class", "IBS/CBS classification (cClassTrib)", 6),
    ("operation_indicator", "IBS/CBS operation indicator (cIndOp)", 6),
)

# LC 116/2003 art. 8-A (LC 157/2016): the ISS rate is at least 2 % and at most 5 %.
ISS_RATE_FLOOR = Decimal(2)
ISS_RATE_CEILING = Decimal(5)

CURRENCY = "BRL"

# Federal withholdings (retenções) an NFS-e declares, besides the ISS withheld.
FEDERAL_WITHHOLDINGS = ("pis", "cofins", "csll", "ir", "inss")
WITHHOLDING_LABELS = {"pis": "PIS", "cofins": "COFINS", "csll": "CSLL", "ir": "IR", "inss": "INSS", "iss": "ISS"}

# Cancellation motives of the national standard (evento de cancelamento, cMotivo) and the
# ABRASF codes InvoiCy takes (EveCodigo 1, 2, 4). Each provider says which it accepts.
CANCEL_MOTIVES = {
    "1": "Erro na emissão",
    "2": "Serviço não prestado",
    "4": "Duplicidade da nota",
    "9": "Outros",
}
DEFAULT_CANCEL_MOTIVE = "1"
MIN_JUSTIFICATION = 15  # the national standard's minimum length of the justification


def _money(value):
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


# ---------------------------------------------------------------------------
# CPF / CNPJ
# ---------------------------------------------------------------------------

_CNPJ_WEIGHTS = (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)


def _cnpj_check_digit(body):
    """Module-11 check digit of the (alphanumeric) CNPJ: each character counts ``ord(c) - 48``
    (digits their value, ``A`` 17 ... ``Z`` 42), as the Receita Federal's 2026 rule says."""
    weights = _CNPJ_WEIGHTS[-len(body) :]
    total = sum((ord(ch) - 48) * weight for ch, weight in zip(body, weights, strict=True))
    rest = total % 11
    return "0" if rest < 2 else str(11 - rest)


def alphanumeric_cnpj_is_valid(value):
    """An alphanumeric CNPJ (from July 2026): 12 characters ``0-9A-Z`` then two check digits.

    python-stdnum 2.x validates it too; Odoo 19 pins python-stdnum 1.19, which knows digits only,
    so this one rule is kept here (digit-only CNPJs still go through python-stdnum)."""
    if len(value) != 14 or not value[12:].isdigit() or not all(ch.isdigit() or "A" <= ch <= "Z" for ch in value):
        return False
    if len(set(value)) == 1:
        return False
    first = _cnpj_check_digit(value[:12])
    return value[12:] == first + _cnpj_check_digit(value[:12] + first)


def clean_tax_id(value):
    """The CPF (11 digits) or CNPJ (14 characters, digits or the new alphanumeric form, upper
    case) without punctuation, or None when it is neither."""
    raw = "".join(ch for ch in str(value or "") if ch.isalnum()).upper()
    if raw.startswith("BR") and len(raw) in (13, 16):
        raw = raw[2:]
    if raw.isdigit():
        if len(raw) == 11 and cpf.is_valid(raw):
            return raw
        if len(raw) == 14 and cnpj.is_valid(raw):
            return raw
        return None
    return raw if alphanumeric_cnpj_is_valid(raw) else None


def street_without_number(street, number):
    """The street without a trailing copy of its number (``Rua Sergipe, 1014`` with number ``1014``
    -> ``Rua Sergipe``): the note has a field for each, and municipalities print both."""
    street = (street or "").strip()
    number = (number or "").strip()
    if street and number:
        words = street.replace(",", " , ").split()
        if len(words) > 1 and words[-1] == number:
            kept = words[:-1]
            if kept and kept[-1] in (",", "nº", "n°", "no", "n."):
                kept = kept[:-1]
            if len(kept) > 1:  # "Rua 7" with number 7 is a street's name, not a repeated number
                return " ".join(kept).replace(" ,", ",")
    return street or None


def person_type(tax_id):
    """``F`` (pessoa física, CPF) or ``J`` (pessoa jurídica, CNPJ)."""
    return "J" if tax_id and len(tax_id) == 14 else "F"


# ---------------------------------------------------------------------------
# Amounts
# ---------------------------------------------------------------------------


@dataclass
class NfseAmounts:
    """The figures an NFS-e declares, all in BRL, as Odoo computed them.

    ``services`` is the gross value of the services (quantity x price), ``discounts`` the
    unconditional discounts (Odoo's line discounts), ``base`` what ISS is computed on
    (= Odoo's untaxed amount), ``withheld`` the withholdings by kind (``iss`` and the federal
    ones), ``net`` what the customer pays (= Odoo's total)."""

    services: Decimal
    discounts: Decimal
    iss_rate: Decimal  # percent
    withheld: dict = field(default_factory=dict)
    deductions: Decimal = Decimal(0)

    @property
    def base(self):
        return self.services - self.discounts - self.deductions

    @property
    def iss(self):
        return _money(self.base * self.iss_rate / 100)

    @property
    def iss_withheld(self):
        return self.withheld.get("iss", Decimal(0))

    def withholding(self, kind):
        return self.withheld.get(kind, Decimal(0))

    @property
    def total_withheld(self):
        return sum(self.withheld.values(), Decimal(0))

    @property
    def net(self):
        return self.base - self.total_withheld


def amounts(doc: FiscalDocumentData):
    """The note's amounts: those the Odoo mapping computed, else from the lines (plain use:
    ISS withheld when the service says so, no federal withholding)."""
    service = doc.service
    if service is not None and service.amounts is not None:
        return service.amounts
    services = discounts = Decimal(0)
    for line in doc.lines:
        gross = _money(Decimal(line.quantity) * Decimal(line.unit_price))
        services += gross
        discounts += _money(gross * Decimal(line.discount or 0) / 100)
    rate = Decimal(service.iss_rate or 0) if service else Decimal(0)
    result = NfseAmounts(services=services, discounts=discounts, iss_rate=rate)
    if service is not None and service.iss_withheld:
        result.withheld["iss"] = result.iss
    return result


# ---------------------------------------------------------------------------
# Checks before sending
# ---------------------------------------------------------------------------


def missing_fields(party: FiscalParty | None):
    """Human names of the customer fields an NFS-e needs and this customer lacks."""
    if party is None:
        return ["customer"]
    missing = []
    if not party.name:
        missing.append("name")
    if not clean_tax_id(party.vat):
        missing.append("valid CPF/CNPJ" if party.vat else "CPF/CNPJ")
    for attr, label in (
        ("street", "street"),
        ("street_number", "street number"),
        ("district", "district (bairro)"),
        ("city", "city"),
        ("state_code", "state (UF)"),
        ("zip", "ZIP code (CEP)"),
    ):
        if not getattr(party, attr):
            missing.append(label)
    return missing


def missing_reform_fields(service):
    """Labels of the reform fields the service lacks or gets wrong (digits of the right length)."""
    problems = []
    for attr, label, length in REFORM_FIELDS:
        value = "".join(ch for ch in str(getattr(service, attr, None) or "") if ch.isdigit())
        if not value:
            problems.append(label)
        elif len(value) != length:
            problems.append(f"{label} of {length} digits")
    return problems


def check_iss_rate(rate):
    """The problem with an ISS rate (percent), or None. 0 means "not set": the provider applies
    the company's rate."""
    rate = Decimal(rate or 0)
    if rate and not ISS_RATE_FLOOR <= rate <= ISS_RATE_CEILING:
        return (
            f"the ISS rate {rate.normalize():f} % is outside the legal range ({ISS_RATE_FLOOR:f} % to "
            f"{ISS_RATE_CEILING:f} %, LC 116/2003 art. 8-A): fix it on the product, its category or the account"
        )
    return None


def check_nfse(doc: FiscalDocumentData):
    """Raise one ValidationError listing everything an NFS-e lacks."""
    problems = []
    if doc.currency and doc.currency != CURRENCY:
        problems.append(
            f"the sale is in {doc.currency}: an NFS-e is issued in reais (BRL) only; invoice it in BRL "
            "(a BRL pricelist or journal)"
        )
    missing = missing_fields(doc.partner)
    if missing:
        name = doc.partner.name if doc.partner and doc.partner.name else "The customer"
        problems.append(f"{name} is missing: {', '.join(missing)}")
    if doc.partner and doc.partner.vat and not clean_tax_id(doc.partner.vat):
        problems.append(f"CPF/CNPJ {doc.partner.vat} is invalid (check digits)")
    service = doc.service
    if service is None or not service.description:
        problems.append("the service description is missing (product or fiscal account)")
    elif not service.municipal_code and not service.lc116_item:
        problems.append("the municipal service code is missing (product category or fiscal account)")
    if service is not None:
        rate_problem = check_iss_rate(service.iss_rate)
        if rate_problem:
            problems.append(rate_problem)
        if service.tax_regime in REFORM_REGIMES:
            lacking = missing_reform_fields(service)
            if lacking:
                problems.append(
                    f"the regime {REGIMES[service.tax_regime]} requires the tax-reform fields, and the service "
                    f"lacks: {', '.join(lacking)} (set them on the product or its category)"
                )
    if problems:
        raise ValidationError("Cannot issue the NFS-e: " + "; ".join(problems) + ". Fix the data, then retry.")


def check_cancel_reason(reason, accepted_motives, provider_label):
    """``(motive, justification)`` of a cancellation, or ValidationError saying what is wrong.

    ``reason`` is a ``str`` (a :class:`~.base.CancelReason` carries its motive code)."""
    text = " ".join(str(reason or "").split())
    motive = str(getattr(reason, "motive", None) or DEFAULT_CANCEL_MOTIVE)
    problems = []
    if len(text) < MIN_JUSTIFICATION:
        problems.append(
            f"the justification must have at least {MIN_JUSTIFICATION} characters (got {len(text)}: “{text}”)"
        )
    if motive not in accepted_motives:
        accepted = ", ".join(f"{code} {CANCEL_MOTIVES[code]}" for code in accepted_motives)
        problems.append(f"{provider_label} does not take the motive {motive}; it takes: {accepted}")
    if problems:
        raise ValidationError(f"Cannot cancel the NFS-e at {provider_label}: " + "; ".join(problems) + ".")
    return motive, text
