"""The test harness shared by the addon's Odoo tests (fiscal_invoice_connector/tests/common.py)
and the benchmark (scripts/benchmark.py): one place for the test keys, the customers and NFS-e
settings the services require, and the neutral view of each simulator's documents.

Plain Python (no Odoo import): the functions that build Odoo values take the caller's ``env``.
The pytest fixtures are in :mod:`fiscal_simulators.pytest_fixtures`.
"""

API_KEY = "ix-test-key-4f9c2a7d1e"
ENOTAS_COMPANY = "5b0c7d1e-2f3a-4b5c-8d9e-0f1a2b3c4d5e"
INVOICY_COMPANY_CNPJ = "11222333000181"


def pt_customer_vals(env):
    """A Portuguese company customer with a valid NIF and a full address (``res.partner`` values)."""
    return {
        "name": "Tasca do Bairro, Lda",
        "is_company": True,
        "vat": "PT508000009",
        "street": "Rua Augusta 120",
        "city": "Lisboa",
        "zip": "1100-053",
        "country_id": env.ref("base.pt").id,
        "email": "contabilidade@tasca.example",
    }


def br_customer_vals(env):
    """A Brazilian customer (CPF) with everything an NFS-e needs (``res.partner`` values)."""
    return {
        "name": "Ana Souza",
        "vat": "386.186.997-72",
        "street": "Rua Sergipe",
        "fiscal_street_number": "1014",
        "fiscal_district": "Savassi",
        "city": "Belo Horizonte",
        "fiscal_city_code": "3106200",
        "state_id": env.ref("base.state_br_mg").id,
        "zip": "30130-174",
        "country_id": env.ref("base.br").id,
        "email": "ana@example.com.br",
    }


def br_service_vals():
    """NFS-e service defaults of a Brazilian account (``fiscal.provider.account`` values)."""
    return {
        "service_description": "Consultoria em sistemas",
        "service_code": "1.07",
        "service_lc116": "1.07",
        "iss_rate": 2.0,
        "service_city_code": "3106200",
        "tax_regime": "simples",
        "poll_interval": 1,
    }


class SimulatorAdapter:
    """What a test needs to know of one provider's simulator, in neutral words:
    the documents at the provider carrying our reference, and their state."""

    def __init__(self, sim):
        self.sim = sim

    def docs_for(self, reference):
        raise NotImplementedError

    def status(self, remote):  # final | draft | pending | rejected | canceled
        raise NotImplementedError

    def all_docs(self):
        raise NotImplementedError


class InvoiceXpressAdapter(SimulatorAdapter):
    def receipts(self):
        return list(self.sim.receipts.values())

    def is_credit_note(self, remote):
        return remote["type"] == "CreditNote"

    def credited_original(self, remote):
        return str(remote.get("owner_invoice_id"))

    def docs_for(self, reference):
        return [d for d in self.sim.documents.values() if reference in (d.get("reference") or "")]

    def all_docs(self):
        return list(self.sim.documents.values())

    def status(self, remote):
        return {"settled": "final"}.get(remote["status"], remote["status"])


class VendusAdapter(SimulatorAdapter):
    def receipts(self):
        return [d for d in self.sim.documents.values() if d["type"] == "RG"]

    def is_credit_note(self, remote):
        return remote["type"] == "NC"

    def credited_original(self, remote):
        numbers = {self.sim.documents[line["_source"][0]]["number"] for line in remote["_lines"] if "_source" in line}
        return next(iter(numbers)) if len(numbers) == 1 else numbers

    def docs_for(self, reference):
        return [d for d in self.sim.documents.values() if d.get("external_reference") == reference]

    def all_docs(self):
        return list(self.sim.documents.values())

    def status(self, remote):
        return {"N": "final", "A": "canceled"}.get(remote["status"]["id"], remote["status"]["id"])


class EnotasAdapter(SimulatorAdapter):
    def docs_for(self, reference):
        return self.sim.find(idExterno=reference)

    def all_docs(self):
        return self.sim.find()

    def status(self, remote):
        return {"Autorizada": "final", "Cancelada": "canceled", "Negada": "rejected"}.get(remote["status"], "pending")

    def nfse_figures(self, remote):
        """What the note declares: service value, discounts, ISS withheld, each federal withholding
        and the net value (computed by the simulator from what was sent)."""
        service = remote.get("servico") or {}
        figures = {
            "services": remote["valorTotal"],
            "discounts": remote.get("descontos", 0.0),
            "iss_withheld": remote.get("valorIssRetido", 0.0),
            "net": remote.get("valorLiquido"),
        }
        for kind, key in (("pis", "valorPis"), ("cofins", "valorCofins"), ("csll", "valorCsll")):
            figures[kind] = service.get(key, 0.0)
        figures.update(ir=service.get("valorIr", 0.0), inss=service.get("valorInss", 0.0))
        return {key: round(float(value or 0), 2) for key, value in figures.items()}

    def nfse_fields(self, remote):
        service = remote.get("servico") or {}
        reform = service.get("ibsCbs") or {}
        return {
            "national_code": service.get("codigoTributacaoNacional"),
            "nbs_code": service.get("codigoNBS"),
            "reform_class": reform.get("classificacaoTributaria"),
            "competence": remote.get("dataCompetencia"),
            "street": (remote.get("cliente") or {}).get("endereco", {}).get("logradouro"),
            "number": (remote.get("cliente") or {}).get("endereco", {}).get("numero"),
            "tax_id": (remote.get("cliente") or {}).get("cpfCnpj"),
            "cancel_motive": remote.get("motivoCancelamento"),
            "cancel_justification": remote.get("justificativaCancelamento"),
        }

    def set_regime(self, regime):
        """The company's regime as the provider knows it (eNotas keeps it on the company)."""
        names = {"simples": "SimplesNacional", "mei": "MEI", "presumido": "LucroPresumido", "real": "LucroReal"}
        for company in self.sim.companies.values():
            company["regimeTributario"] = names[regime]

    def hold(self):
        """The municipality takes its time: nothing is decided until release()."""
        self.sim.authorization_delay = None

    def release(self):
        self.sim.authorization_delay = 0
        for note in self.sim.find():
            if self.status(note) == "pending":
                self.sim.complete(note["id"])


class InvoicyAdapter(SimulatorAdapter):
    def docs_for(self, reference):
        remote = self.sim.find(reference)
        return [remote] if remote else []

    def all_docs(self):
        return [self.sim.find(key) for key in list(self.sim.documents)]

    def status(self, remote):
        return {"authorized": "final"}.get(remote["status"], remote["status"])

    def nfse_figures(self, remote):
        values = remote.get("values") or {}

        def value(tag):
            return round(float(values.get(tag) or 0), 2)

        return {
            "services": value("ValServicos"),
            "discounts": value("ValDescIncond"),
            "iss_withheld": value("ValISSRetido"),
            "net": value("ValLiquido"),
            "pis": value("ValPIS"),
            "cofins": value("ValCOFINS"),
            "csll": value("ValCSLL"),
            "ir": value("ValIR"),
            "inss": value("ValINSS"),
        }

    def nfse_fields(self, remote):
        from lxml import etree

        rps = etree.fromstring(remote["envio"].encode()).find("RPS")
        return {
            "national_code": rps.findtext("Servico/codTributNacional"),
            "nbs_code": rps.findtext("Servico/cNBS"),
            "reform_class": rps.findtext("Servico/IBSCBS/cClassTrib"),
            "competence": (rps.findtext("dCompetencia") or "")[:10],
            "street": rps.findtext("Tomador/TomaEndereco"),
            "number": rps.findtext("Tomador/TomaNumero"),
            "tax_id": rps.findtext("Tomador/TomaCNPJ") or rps.findtext("Tomador/TomaCPF"),
            "cancel_motive": remote.get("cancel_code"),
            "cancel_justification": remote.get("cancel_reason"),
        }

    def set_regime(self, regime):
        """InvoiCy reads the regime from each RPS (OptSN): nothing to set at the provider."""

    def hold(self):
        self.sim.authorization_delay = 3600

    def release(self):
        self.sim.authorize_pending()
        self.sim.authorization_delay = 0
