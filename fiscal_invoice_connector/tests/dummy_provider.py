"""A service that exists only in the tests, plugged in the way a separate addon plugs one in:

- the client (what that addon's ``providers/<service>.py`` holds): a subclass of
  providers.base.FiscalProvider; this one keeps its documents in memory (``DummyService``)
  instead of calling anything over HTTP;
- the model extension (that addon's ``models/fiscal_provider_account.py``): the service's code
  added to the account's ``provider`` selection and its class to ``_get_provider_classes``.

``_module = None``: Odoo does not load this extension with the addon; test_provider_plugin.py
adds it to the registry for its own tests only (``add_to_registry``, as Odoo's test_orm does).
"""

from decimal import Decimal

from odoo import api, fields, models

from ..providers.base import FiscalProvider, NotFoundError, RemoteDocument


class DummyService:
    """The other side: what the service holds, numbered in one series."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.documents = {}  # remote id -> {"data": FiscalDocumentData, "number", "state", "total"}
        self.calls = []  # (operation, remote id or reference)

    def issue(self, data):
        remote_id = str(len(self.documents) + 1)
        net = [line.quantity * line.unit_price * (1 - line.discount / 100) for line in data.lines]
        taxed = [amount * (1 + line.tax_rate / 100) for amount, line in zip(net, data.lines, strict=True)]
        total = sum(taxed, Decimal(0)).quantize(Decimal("0.01"))
        self.documents[remote_id] = {"data": data, "number": f"DUMMY {remote_id}", "state": "final", "total": total}
        return remote_id


class DummyProvider(FiscalProvider):
    code = "dummy"
    label = "Dummy service"
    default_base_url = "memory://dummy"
    credential_fields = ("api_key",)
    capabilities = frozenset({"pdf", "cancel", "find_by_reference"})
    service = DummyService()

    def _remote(self, remote_id):
        document = self.service.documents.get(remote_id)
        if document is None:
            raise NotFoundError(f"{self.label}: no document {remote_id}")
        return RemoteDocument(
            remote_id=remote_id,
            kind=document["data"].kind,
            state=document["state"],
            number=document["number"],
            total=document["total"],
            reference=document["data"].reference,
        )

    def test_connection(self):
        self.service.calls.append(("test_connection", None))
        return f"{self.label}: connected."

    def create(self, doc):
        self.calls += 1
        self.service.calls.append(("create", doc.reference))
        return self._remote(self.service.issue(doc))

    def finalize(self, kind, remote_id):
        self.service.calls.append(("finalize", remote_id))
        return self._remote(remote_id)

    def fetch_status(self, kind, remote_id):
        self.service.calls.append(("fetch_status", remote_id))
        return self._remote(remote_id)

    def find_by_reference(self, doc):
        self.service.calls.append(("find_by_reference", doc.reference))
        found = [rid for rid, d in self.service.documents.items() if d["data"].reference == doc.reference]
        return self._remote(found[0]) if found else None

    def cancel(self, kind, remote_id, reason):
        self.service.calls.append(("cancel", remote_id))
        self._remote(remote_id)
        self.service.documents[remote_id]["state"] = "canceled"
        return self._remote(remote_id)

    def fetch_pdf(self, kind, remote_id):
        self.service.calls.append(("fetch_pdf", remote_id))
        return b"%PDF-1.4\n% " + self._remote(remote_id).number.encode() + b"\n%%EOF\n"


class FiscalProviderAccount(models.Model):
    _module = None
    _name = "fiscal.provider.account"
    _inherit = ["fiscal.provider.account"]

    provider = fields.Selection(
        selection_add=[(DummyProvider.code, DummyProvider.label)], ondelete={DummyProvider.code: "cascade"}
    )

    @api.model
    def _get_provider_classes(self):
        return super()._get_provider_classes() | {DummyProvider.code: DummyProvider}
