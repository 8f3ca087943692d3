"""Brazil 2026 rules (providers/brazil.py) and what the eNotas and InvoiCy simulators refuse, as
strictly as the national standard: reform fields per regime, the ISS rate floor, the net value with
withholdings, cancellations without a justification, alphanumeric CNPJs."""

from datetime import date
from decimal import Decimal

import pytest
import requests
from fiscal_simulators.enotas import EnotasSimulator
from fiscal_simulators.invoicy import InvoicySimulator

from odoo.addons.fiscal_invoice_connector.providers import brazil
from odoo.addons.fiscal_invoice_connector.providers.base import (
    CancelReason,
    FiscalDocumentData,
    FiscalLine,
    FiscalParty,
    FiscalService,
    ProviderConfig,
    ValidationError,
)
from odoo.addons.fiscal_invoice_connector.providers.enotas import EnotasProvider
from odoo.addons.fiscal_invoice_connector.providers.invoicy import InvoicyProvider

KEY = "enotas-key-7c1d9e2f"
COMPANY = "3d1c8b2a-5e6f-4a7b-9c0d-1e2f3a4b5c6d"
PARTNER_KEY = "PK-partner-2b8d5f1a9c"
ACCESS_KEY = "AK-access-6e4c2a0b8d"
CNPJ = "99999999000191"
REFORM = {"national_code": "010701", "nbs_code": "115021000", "reform_class": "000001", "operation_indicator": "100301"}


def party(**overrides):
    values = {
        "code": "ODOO-1",
        "name": "Padaria Mineira Ltda",
        "vat": "11.222.333/0001-81",
        "street": "Rua Sergipe",
        "street_number": "1014",
        "district": "Savassi",
        "city": "Belo Horizonte",
        "state_code": "MG",
        "zip": "30130-174",
        "city_code": "3106200",
        "is_company": True,
    }
    values.update(overrides)
    return FiscalParty(**values)


def document(reference="NFSE-1", withheld=None, regime="simples", currency="BRL", **service_values):
    service = FiscalService(
        description="Consultoria em sistemas",
        municipal_code="1.07",
        lc116_item="1.07",
        iss_rate=Decimal("2"),
        city_code="3106200",
        tax_regime=regime,
        **service_values,
    )
    service.amounts = brazil.NfseAmounts(
        services=Decimal("1000.00"), discounts=Decimal("100.00"), iss_rate=Decimal("2"), withheld=withheld or {}
    )
    service.iss_withheld = bool((withheld or {}).get("iss"))
    return FiscalDocumentData(
        reference=reference,
        kind="invoice",
        date=date(2026, 1, 31),
        due_date=None,
        currency=currency,
        lines=[FiscalLine("C", "Horas", quantity=Decimal(4), unit_price=Decimal(250), discount=Decimal(10))],
        partner=party(),
        service=service,
    )


WITHHELD = {"iss": Decimal("18.00"), "pis": Decimal("5.85"), "cofins": Decimal("27.00"), "ir": Decimal("13.50")}


# ---------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------


def test_alphanumeric_cnpj_is_validated_by_its_check_digits():
    assert brazil.clean_tax_id("12.ABC.345/01DE-35") == "12ABC34501DE35"
    assert brazil.clean_tax_id("12.abc.345/01de-35") == "12ABC34501DE35"
    assert brazil.clean_tax_id("12.ABC.345/01DE-36") is None
    assert brazil.clean_tax_id("11.222.333/0001-81") == "11222333000181"
    assert brazil.clean_tax_id("386.186.997-72") == "38618699772"
    assert brazil.clean_tax_id("AAAAAAAAAAAA00") is None
    assert brazil.person_type("12ABC34501DE35") == "J"


@pytest.mark.parametrize(
    ("street", "number", "expected"),
    [
        ("Avenida Paulista 107", "107", "Avenida Paulista"),
        ("Rua Sergipe, 1014", "1014", "Rua Sergipe"),
        ("Rua 25 de Março nº 10", "10", "Rua 25 de Março"),
        ("Rua Sergipe", "1014", "Rua Sergipe"),
        ("Rua 7", "7", "Rua 7"),  # the street's name, not a repeated number
    ],
)
def test_the_street_number_is_taken_off_the_street_once(street, number, expected):
    assert brazil.street_without_number(street, number) == expected


def test_amounts_net_value_is_the_base_less_every_withholding():
    amounts = document(withheld=WITHHELD).service.amounts
    assert (amounts.base, amounts.iss, amounts.total_withheld, amounts.net) == (
        Decimal("900.00"),
        Decimal("18.00"),
        Decimal("64.35"),
        Decimal("835.65"),
    )


def test_reform_regime_lists_every_missing_field_and_currency_in_one_message():
    with pytest.raises(ValidationError) as info:
        brazil.check_nfse(document(regime="presumido", currency="USD", nbs_code="1150"))
    message = str(info.value)
    assert "Lucro Presumido" in message and "national service code (cTribNac)" in message
    assert "NBS code of 9 digits" in message and "cIndOp" in message
    assert "reais (BRL) only" in message
    brazil.check_nfse(document(regime="presumido", **REFORM))  # complete: no error
    brazil.check_nfse(document(regime="simples"))  # Simples Nacional: not yet required


def test_cancel_reason_needs_15_characters_and_a_motive_the_provider_takes():
    assert brazil.check_cancel_reason(CancelReason("Serviço não prestado", "2"), ("1", "2"), "X") == (
        "2",
        "Serviço não prestado",
    )
    assert brazil.check_cancel_reason("Erro na emissão da nota", ("1",), "X") == ("1", "Erro na emissão da nota")
    with pytest.raises(ValidationError, match="at least 15"):
        brazil.check_cancel_reason("  Erro   ", ("1",), "X")
    with pytest.raises(ValidationError, match="does not take the motive 9"):
        brazil.check_cancel_reason(CancelReason("Erro na emissão da nota", "9"), ("1", "2", "4"), "InvoiCy")


# ---------------------------------------------------------------------------
# eNotas: client and simulator
# ---------------------------------------------------------------------------


@pytest.fixture
def enotas():
    with EnotasSimulator(api_key=KEY, company_id=COMPANY, authorization_delay=None) as simulator:
        yield simulator


def enotas_client(sim):
    config = ProviderConfig(base_url=sim.base_url, credentials={"api_key": KEY}, options={"company_id": COMPANY})
    return EnotasProvider(config)


def test_enotas_declares_service_value_discount_withholdings_and_reform_fields(enotas):
    enotas.companies[COMPANY]["regimeTributario"] = "LucroReal"
    note = enotas_client(enotas).create(document(withheld=WITHHELD, regime="real", **REFORM))
    stored = enotas.notes[note.remote_id]
    assert (stored["valorTotal"], stored["descontos"], stored["valorIssRetido"]) == (1000.0, 100.0, 18.0)
    assert stored["valorLiquido"] == 835.65  # 900 - 18 - 5.85 - 27 - 13.50
    service = stored["servico"]
    assert (service["valorPis"], service["valorCofins"], service["valorIr"]) == (5.85, 27.0, 13.5)
    assert "valorCsll" not in service and service["issRetidoFonte"] is True
    assert service["codigoTributacaoNacional"] == "010701" and service["codigoNBS"] == "115021000"
    assert service["ibsCbs"] == {"classificacaoTributaria": "000001", "codigoIndicadorOperacao": "100301"}


def raw(sim, method, path, body=None):
    url = f"{sim.base_url}/empresas/{COMPANY}{path}"
    return requests.request(method, url, json=body, headers={"Authorization": f"Basic {KEY}"}, timeout=5)


def test_enotas_simulator_refuses_lucro_notes_without_reform_fields_and_rates_under_2(enotas):
    enotas.companies[COMPANY]["regimeTributario"] = "LucroPresumido"
    body = enotas_client(enotas)._payload(document())
    body["servico"]["aliquotaIss"] = 1.5
    response = raw(enotas, "POST", "/nfes", body)
    texts = [item["mensagem"] for item in response.json()]
    assert response.status_code == 400
    assert any("codigoTributacaoNacional é obrigatório para o regime LucroPresumido" in t for t in texts)
    assert any("ibsCbs.classificacaoTributaria" in t for t in texts)
    assert any("aliquotaIss deve estar entre 2 e 5" in t for t in texts)
    assert enotas.notes == {}


def test_enotas_simulator_refuses_withholdings_above_the_note(enotas):
    body = enotas_client(enotas)._payload(document())
    body["servico"]["valorIr"] = 950.0
    response = raw(enotas, "POST", "/nfes", body)
    assert response.status_code == 400 and "retenções não podem ser maiores" in response.text


def test_enotas_cancellation_needs_a_justification(enotas):
    client = enotas_client(enotas)
    note = client.create(document())
    enotas.complete(note.remote_id)
    assert raw(enotas, "DELETE", f"/nfes/{note.remote_id}").status_code == 400  # no body at all
    reason = {"codigoMotivoCancelamento": "1", "justificativaCancelamento": "Erro"}
    short = raw(enotas, "DELETE", f"/nfes/{note.remote_id}", reason)
    assert short.status_code == 400 and "ao menos 15 caracteres" in short.text
    with pytest.raises(ValidationError, match="at least 15"):
        client.cancel("invoice", note.remote_id, "Erro")  # refused before any request
    assert client.cancel("invoice", note.remote_id, CancelReason("Serviço não foi prestado", "2")).state == (
        "cancel_pending"
    )
    stored = enotas.notes[note.remote_id]
    assert (stored["motivoCancelamento"], stored["justificativaCancelamento"]) == ("2", "Serviço não foi prestado")


def test_enotas_simulator_takes_an_alphanumeric_cnpj(enotas):
    doc = document()
    doc.partner = party(vat="12.ABC.345/01DE-35")
    note = enotas_client(enotas).create(doc)
    assert enotas.notes[note.remote_id]["cliente"]["cpfCnpj"] == "12ABC34501DE35"
    body = enotas_client(enotas)._payload(doc)
    body["idExterno"], body["cliente"]["cpfCnpj"] = "OTHER", "12ABC34501DE36"
    assert "cpfCnpj inválido" in raw(enotas, "POST", "/nfes", body).text


# ---------------------------------------------------------------------------
# InvoiCy: client and simulator
# ---------------------------------------------------------------------------


@pytest.fixture
def invoicy():
    with InvoicySimulator(partner_key=PARTNER_KEY, access_key=ACCESS_KEY, company_code=CNPJ) as simulator:
        yield simulator


def invoicy_client(sim):
    config = ProviderConfig(
        base_url=sim.endpoint_url,
        credentials={"partner_key": PARTNER_KEY, "access_key": ACCESS_KEY},
        options={"company_code": CNPJ},
    )
    return InvoicyProvider(config)


def test_invoicy_declares_the_same_figures_and_the_reform_group(invoicy):
    client = invoicy_client(invoicy)
    remote = client.create(document(withheld=WITHHELD, regime="presumido", **REFORM))
    values = invoicy.find(remote.remote_id)["values"]
    assert {tag: values[tag] for tag in ("ValServicos", "ValDescIncond", "ValBaseCalculo", "ValISSRetido")} == {
        "ValServicos": "1000.00",
        "ValDescIncond": "100.00",
        "ValBaseCalculo": "900.00",
        "ValISSRetido": "18.00",
    }
    assert (values["ValPIS"], values["ValCOFINS"], values["ValIR"], values["ValLiquido"]) == (
        "5.85",
        "27.00",
        "13.50",
        "835.65",
    )
    envio = client.build_envio(document(regime="presumido", **REFORM))
    for element in ("<OptSN>2</OptSN>", "<codTributNacional>010701<", "<cNBS>115021000<", "<cClassTrib>000001<"):
        assert element in envio
    assert "<OptSN>1</OptSN>" in client.build_envio(document(regime="mei")) and "<RegEspTrib>5<" in client.build_envio(
        document(regime="mei")
    )


def test_invoicy_simulator_rejects_what_the_mapping_gets_wrong(invoicy):
    client = invoicy_client(invoicy)
    # Out of the Simples Nacional without the reform fields (our pre-flight bypassed).
    (answer,) = client._execute(client.build_envio(document(reference="R1", regime="real")))
    assert "codTributNacional obrigatório" in answer["Situacao"]["SitDescricao"]
    # A net value that forgets a withholding.
    envio = client.build_envio(document(reference="R2", withheld=WITHHELD)).replace(
        "<ValLiquido>835.65<", "<ValLiquido>849.15<"
    )
    (answer,) = client._execute(envio)
    assert "ValLiquido deve ser 835.65" in answer["Situacao"]["SitDescricao"]
    # An ISS rate under the 2 % floor.
    envio = client.build_envio(document(reference="R3")).replace("<ValAliqISS>0.0200<", "<ValAliqISS>0.0150<")
    (answer,) = client._execute(envio)
    assert "ValAliqISS fora dos limites" in answer["Situacao"]["SitDescricao"]


def test_invoicy_cancellation_carries_the_motive_and_refuses_a_short_justification(invoicy):
    invoicy.authorization_delay = 0
    client = invoicy_client(invoicy)
    remote = client.create(document(reference="C1"))
    final = client.fetch_status("invoice", remote.remote_id)
    assert final.state == "final"
    event = client.build_cancelamento(final, "Erro", "1")
    (answer,) = client._execute(event)
    assert "EveMotivo deve ter de 15 a 100" in answer["Situacao"]["SitDescricao"]
    canceled = client.cancel("invoice", remote.remote_id, CancelReason("Nota emitida em duplicidade", "4"))
    assert canceled.state == "canceled"
    record = invoicy.find(remote.remote_id)
    assert (record["cancel_code"], record["cancel_reason"]) == ("4", "Nota emitida em duplicidade")
