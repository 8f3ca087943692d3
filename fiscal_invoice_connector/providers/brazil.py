"""Brazilian data rules shared by the NFS-e providers (eNotas, InvoiCy).

Plain Python. The checks run *before* anything is sent, and all problems are listed
in one message so the user fixes them in one go.
"""

from __future__ import annotations

from stdnum.br import cnpj, cpf

from .base import FiscalDocumentData, FiscalParty, ValidationError


def clean_tax_id(value):
    """Digits only, or None when python-stdnum rejects it as a CPF and as a CNPJ."""
    digits = "".join(ch for ch in (value or "") if ch.isdigit())
    if len(digits) == 11 and cpf.is_valid(digits):
        return digits
    if len(digits) == 14 and cnpj.is_valid(digits):
        return digits
    return None


def person_type(tax_id):
    """``F`` (pessoa física, CPF) or ``J`` (pessoa jurídica, CNPJ)."""
    return "J" if tax_id and len(tax_id) == 14 else "F"


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


def check_nfse(doc: FiscalDocumentData):
    """Raise one ValidationError listing everything an NFS-e lacks."""
    problems = []
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
    if problems:
        raise ValidationError("Cannot issue the NFS-e: " + "; ".join(problems) + ". Fix the data, then retry.")
