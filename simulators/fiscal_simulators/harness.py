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

    def hold(self):
        self.sim.authorization_delay = 3600

    def release(self):
        self.sim.authorize_pending()
        self.sim.authorization_delay = 0
