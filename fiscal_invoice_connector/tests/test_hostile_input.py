"""Hostile and unusual input: fuzzed webhooks over real HTTP, a matrix of odd partner and
order data for every provider, and credentials probed through the RPC a normal user has.

Never a server error, never a state change from a refused notification, never a crash
("Unexpected error") nor a blocked order from odd data: a correct document or a clear
error on the document (docs/fault-suite.md).
"""

import json
import logging
import random
import xmlrpc.client

from odoo import Command
from odoo.tests import HttpCase, tagged
from odoo.tests.common import JsonRpcException

from .common import API_KEY, FiscalTestCommon

_logger = logging.getLogger(__name__)

WEBHOOK = "/fiscal_invoice_connector/webhook"
FUZZ_SEED = 20261121
FUZZ_COUNT = 100


# ---------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------


class WebhookFuzzCases:
    """eNotas and InvoiCy notifications: the URL secret is the only credential, a notification
    only wakes a waiting document up, the provider is always read again."""

    def _post(self, path, body, content_type="application/json", method="POST"):
        headers = {"Content-Type": content_type} if content_type else {}
        if method == "POST":
            return self.url_open(path, data=body, headers=headers, timeout=20)
        return self.url_open(path, headers=headers, timeout=20)

    def _path(self, secret=None, account_id=None):
        return f"{WEBHOOK}/{account_id or self.account.id}/{secret or self.account.webhook_secret}"

    def _pending_doc(self):
        self.account.poll_interval = 600  # only a notification can bring it forward
        self.adapter.hold()
        order = self.confirm(self.make_order(qty=1))
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual((doc.state, doc.remote_state), ("sending", "pending"), doc.last_error)
        return doc

    def _snapshot(self):
        """Everything a notification could change."""
        self.env.invalidate_all()
        docs = self.env["fiscal.document"].sudo().search([], order="id")
        return {
            "docs": [
                (d.id, d.state, d.remote_state, d.next_attempt, d.number, d.last_error, d.attempt_count) for d in docs
            ],
            "attempts": self.env["fiscal.document.attempt"].sudo().search_count([]),
            "accounts": [(a.id, a.state) for a in self.env["fiscal.provider.account"].sudo().search([])],
            "triggers": self.env["ir.cron.trigger"].sudo().search_count([]),
            "provider_calls": len(self.sim.requests),
        }

    def valid_payload(self, doc):
        raise NotImplementedError

    def payload_variants(self, doc):
        """Well-formed notifications about nothing of ours (unknown ids, wrong types)."""
        raise NotImplementedError

    def _fuzz_bodies(self, doc, rng):
        bodies = [
            (b"", "application/json"),
            (b"{", "application/json"),
            (b"null", "application/json"),
            (b"[]", "application/json"),
            (b'"just a string"', "application/json"),
            (b"\xff\xfe\x00{\x00}", "application/json"),  # UTF-16 with BOM
            (b"\xc3\x28\xa0\xa1", "application/json"),  # invalid UTF-8
            (b"[" * 5_000 + b"]" * 5_000, "application/json"),  # deep JSON (recursion), under the size limit
            (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "application/json"),
            (b'{"documento":' * 5_000 + b"1" + b"}" * 5_000, "application/json"),
            (b"1" * 60_000, "application/json"),  # a huge integer
            (json.dumps({"nfeId": 1e308 * 10, "nfeIdExterno": 10**400}).encode(), "application/json"),
            (b"x" * (70 * 1024), "text/plain"),  # oversized
            (b"{" + b" " * (2 * 1024 * 1024) + b"}", "application/json"),  # 2 MB
            (b"nfeId=1&nfeIdExterno=2", "application/x-www-form-urlencoded"),
            (b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\ny\r\n--b--\r\n", "multipart/form-data; boundary=b"),
            (
                b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><documento>&x;</documento>',
                "application/xml",
            ),
            (
                b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                + b"".join(
                    b'<!ENTITY %s "%s">' % (b"a" + bytes([97 + i]), (b"&a" + bytes([96 + i]) + b";") * 10)
                    for i in range(1, 9)
                )
                + b"]><documento><DocIDUnico>&ai;</DocIDUnico></documento>",
                "application/xml",
            ),
            (b"<documento>" * 5000 + b"</documento>" * 5000, "text/xml"),
            ('{"nfeId": "\U0001f4a5\u202e\u0000", "nfeIdExterno": "日本語"}'.encode(), "application/json"),
            (json.dumps({"documento": {"DocIDUnico": "\U0001f4a5" * 300}}).encode(), "application/json"),
            (json.dumps({"documento": {"DocIDUnico": {"#text": "x", "@attr": [1, 2]}}}).encode(), "application/json"),
        ]
        bodies += [(json.dumps(p).encode(), "application/json") for p in self.payload_variants(doc)]
        while len(bodies) < FUZZ_COUNT:
            if rng.randrange(2):
                body = rng.randbytes(rng.randrange(1, 4096))
            else:  # random JSON values under the names the services use
                value = rng.choice([rng.random(), -(10 ** rng.randrange(400)), True, None, "é" * 50, [], {}])
                body = json.dumps({rng.choice(["nfeId", "nfeIdExterno", "documento", "id"]): value}).encode()
            bodies.append((body, rng.choice(["application/json", "text/plain", "application/octet-stream"])))
        return bodies[:FUZZ_COUNT]

    def _mutations(self, valid, rng, count=30):
        """Our real notification, damaged: flipped bytes, cut short, other content types."""
        mutations = [(valid, "text/plain"), (valid, "application/x-www-form-urlencoded"), (valid, None)]
        while len(mutations) < count:
            if rng.randrange(2):
                body = bytearray(valid)
                for _ in range(rng.randrange(1, 6)):
                    body[rng.randrange(len(body))] = rng.randrange(256)
                mutations.append((bytes(body), "application/json"))
            else:
                mutations.append((valid[: rng.randrange(len(valid))], "application/json"))
        return mutations

    def test_fuzzed_notifications_never_500_and_change_nothing(self):
        doc = self._pending_doc()
        rng = random.Random(FUZZ_SEED)
        before = self._snapshot()
        statuses = {}
        secret = self.account.webhook_secret
        forged = [
            "forged-" + "x" * 20,
            secret[:-1],
            secret + "x",
            secret.upper() if secret.upper() != secret else secret.lower(),
            secret[:8],
            "%2e%2e%2f" + secret,
            "\u00e9" + secret,
            "a" * 5000,
        ]
        bodies = self._fuzz_bodies(doc, rng)
        checks = []
        for index, (body, content_type) in enumerate(bodies):
            checks.append((f"body {index} ({len(body)} bytes, {content_type})", self._path(), body, content_type))
        valid = self.valid_payload(doc)
        for token in forged:
            checks.append((f"forged secret {token[:12]!r}", self._path(secret=token), valid, "application/json"))
        for account_id in ("0", "99999", "9" * 30, "-1", "1.5", "0x10"):
            checks.append((f"account id {account_id}", self._path(account_id=account_id), valid, "application/json"))
        checks.append(("no secret", f"{WEBHOOK}/{self.account.id}", valid, "application/json"))
        checks.append(("no secret, slash", f"{WEBHOOK}/{self.account.id}/", valid, "application/json"))
        for label, path, body, content_type in checks:
            response = self._post(path, body, content_type)
            statuses.setdefault(response.status_code, []).append(label)
            self.assertLess(response.status_code, 500, f"{label}: {response.status_code} {response.text[:300]}")
            self.assertNotIn(secret, response.text)
        # Wrong method.
        response = self._post(self._path(), valid, method="GET")
        self.assertLess(response.status_code, 500)
        self.assertEqual(self._snapshot(), before, "no refused notification changed anything")
        # Our own notification damaged: at most it wakes the document up (it is read again from
        # the provider); nothing else moves.
        relaxed = {**before, "docs": [d[:3] + d[4:] for d in before["docs"]]}
        relaxed.pop("triggers")
        for index, (body, content_type) in enumerate(self._mutations(valid, rng)):
            response = self._post(self._path(), body, content_type)
            statuses.setdefault(response.status_code, []).append(f"mutation {index}")
            self.assertLess(response.status_code, 500, f"mutation {index}: {body[:80]!r}")
        after = self._snapshot()
        after = {**after, "docs": [d[:3] + d[4:] for d in after["docs"]]}
        after.pop("triggers")
        self.assertEqual(after, relaxed)
        summary = ", ".join(f"{status}: {len(labels)}" for status, labels in sorted(statuses.items()))
        total = sum(len(labels) for labels in statuses.values())
        print(f"\nWebhook fuzz ({self.provider}): {total} requests, answers {summary}", flush=True)  # noqa: T201
        _logger.warning("Webhook fuzz (%s): %s requests, answers %s", self.provider, total, summary)

    def test_replayed_and_late_notifications_change_nothing(self):
        doc = self._pending_doc()
        # The valid one wakes the document up, once; replays do nothing more.
        response = self._post(self._path(), self.valid_payload(doc))
        self.assertIn(response.status_code, (200, 202))
        self.adapter.release()
        self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        before = self._snapshot()
        for _ in range(5):
            response = self._post(self._path(), self.valid_payload(doc))
            self.assertLess(response.status_code, 500)
        self.run_queue()
        self.assertEqual(self._snapshot(), before, "a replayed notification about an issued document changes nothing")


@tagged("post_install", "-at_install")
class TestHostileWebhooksEnotas(WebhookFuzzCases, FiscalTestCommon, HttpCase):
    provider = "enotas"

    def valid_payload(self, doc):
        return json.dumps({"nfeId": doc.remote_id, "nfeIdExterno": doc.reference, "nfeStatus": "Autorizada"}).encode()

    def payload_variants(self, doc):
        return [
            {"nfeId": "00000000-dead-beef-0000-000000000000"},
            {"nfeIdExterno": "ODOO-nope-1"},
            {"nfeId": 12, "nfeIdExterno": doc.reference},
            {"nfeId": [doc.remote_id]},
            {"nfeId": {"$ne": None}},
            {"nfeIdExterno": doc.reference + "' OR '1'='1"},
            {"nfeIdExterno": "%"},
            {"nfeIdExterno": "x" * 10_000},
            {"nfeIdExterno": "ODOO-\n-1"},
            {"nfeStatus": "Autorizada"},
        ]


@tagged("post_install", "-at_install")
class TestHostileWebhooksInvoicy(WebhookFuzzCases, FiscalTestCommon, HttpCase):
    provider = "invoicy"

    def valid_payload(self, doc):
        return json.dumps({"documento": {"DocIDUnico": doc.reference, "DocSitCodigo": "100"}}).encode()

    def payload_variants(self, doc):
        return [
            {"documento": {"DocIDUnico": "ODOO-nope-1"}},
            {"documento": {"DocIDUnico": 12}},
            {"documento": {"DocIDUnico": True}},
            {"documento": {"DocIDUnico": [doc.reference]}},
            {"documento": {"DocIDUnico": doc.reference + "' OR '1'='1"}},
            {"documento": {"DocIDUnico": "%"}},
            {"documento": {"DocIDUnico": "x" * 10_000}},
            {"documento": {"DocIDUnico": "ODOO-\u0007-1"}},
            {"documento": []},
            {"Documento": {"DocIDUnico": None}},
        ]


# ---------------------------------------------------------------------------
# Odd partner and order data
# ---------------------------------------------------------------------------

CHINESE = "北京贸易有限公司"
ARABIC_EMOJI = "شركة التجارة 🚀"
DESCRIPTION = "عسل طبيعي 🍯 — 蜂蜜 ✓"


class DataMatrixCases:
    """Each case: a correct document, or a clear error on the document. Never a crash
    ("Unexpected error"), never a blocked order, never a paused account."""

    def odd_partner(self, **vals):
        return self.customer.copy({"name": vals.pop("name", self.customer.name + " (copy)"), **vals})

    def order(self, partner=None, lines=((1, 100.0, 0.0),), product=None, **vals):
        """``lines``: (quantity, unit price, discount %) each."""
        if self.pricelist and "pricelist_id" not in vals:
            vals["pricelist_id"] = self.pricelist.id
        product = product or self.product
        order = self.env["sale.order"].create(
            {
                "partner_id": (partner or self.customer).id,
                "order_line": [
                    Command.create({"product_id": product.id, "product_uom_qty": q, "price_unit": p, "discount": d})
                    for q, p, d in lines
                ],
                **vals,
            }
        )
        return order

    def currency_pricelist(self, code):
        currency = self.setup_other_currency(code, rates=[("1900-01-01", 1.5)])
        return self.env["product.pricelist"].create({"name": code, "currency_id": currency.id})

    def common_cases(self):
        non_latin = self.product.copy({"name": DESCRIPTION, "default_code": "MEL-1"})
        return {
            "chinese name": lambda: self.order(self.odd_partner(name=CHINESE)),
            "arabic + emoji name, non-Latin description": lambda: self.order(
                self.odd_partner(name=ARABIC_EMOJI), product=non_latin
            ),
            "zero total": lambda: self.order(lines=((1, 0.0, 0.0),)),
            "zero-price line": lambda: self.order(lines=((1, 100.0, 0.0), (1, 0.0, 0.0))),
            "negative line": lambda: self.order(lines=((1, 100.0, 0.0), (1, -20.0, 0.0))),
            "100 % discount": lambda: self.order(lines=((1, 100.0, 100.0),)),
            "100 % discount on one line": lambda: self.order(lines=((1, 100.0, 0.0), (2, 50.0, 100.0))),
            "rounding": lambda: self.order(lines=((3, 0.335, 0.0), (7, 19.99, 12.5), (0.333, 9.99, 0.0))),
            "long texts": lambda: self.order(self.odd_partner(name="Cliente " + "muito " * 60 + "longo")),
            "foreign currency": lambda: self.order(pricelist_id=self.currency_pricelist(self.foreign_currency).id),
        }

    def cases(self):
        raise NotImplementedError

    foreign_currency = "GBP"
    # The document's total at the provider is Odoo's (VAT included). Not for the NFS-e, whose
    # value is the service's (the fixture's VAT line tax is no Brazilian tax).
    check_totals = True

    def _case_outcome(self, order):
        account = self.account
        doc = order.fiscal_document_id
        if not doc:
            return "no document", ["no fiscal document queued"]
        self.run_until(doc, ("issued", "error", "failed"), runs=4)
        self.env.invalidate_all()
        problems = []
        if order.state != "sale":
            problems.append(f"order {order.state}")
        if account.state != "active":
            problems.append(f"account {account.state}: {account.paused_reason}")
        if doc.state == "issued":
            finals = self.final_at_provider(doc)
            if len(finals) != 1:
                problems.append(f"{len(finals)} final documents at the provider")
            if self.check_totals and doc.remote_total and abs(doc.remote_total - doc.amount_total) > 0.01:
                problems.append(f"provider total {doc.remote_total} != Odoo {doc.amount_total}")
            return f"issued {doc.number}", problems
        if doc.state == "error":
            if not doc.last_error:
                problems.append("error without a message")
            elif "Unexpected error" in doc.last_error:
                problems.append(f"crash: {doc.last_error}")
            return f"error: {(doc.last_error or '')[:110]}", problems
        problems.append(f"state {doc.state}: {doc.last_error}")
        return doc.state, problems

    def test_odd_data_gives_a_document_or_a_clear_error(self):
        results, failures = [], []
        for name, build in self.cases().items():
            try:
                with self.env.cr.savepoint():
                    order = build()
                    self.confirm(order)
            except Exception as e:  # noqa: BLE001 - the matrix reports every case
                results.append((name, f"order not confirmed: {type(e).__name__}: {e}"))
                failures.append(f"{name}: the order could not be confirmed ({e})")
                continue
            outcome, problems = self._case_outcome(order)
            results.append((name, outcome))
            failures += [f"{name}: {p}" for p in problems]
            if self.account.state != "active":  # keep the next cases meaningful
                self.account.action_resume()
        text = "\n".join(f"  {name:<45} {outcome}" for name, outcome in results)
        print(f"\nData matrix ({self.provider}):\n{text}", flush=True)  # noqa: T201
        _logger.warning("Data matrix (%s):\n%s", self.provider, text)
        self.assertFalse(failures, "\n".join(failures))


class PortugueseData(DataMatrixCases):
    def cases(self):
        return {
            "no NIF": lambda: self.order(self.odd_partner(vat=False)),
            "invalid NIF": lambda: self.order(self.odd_partner(vat="PT123456780")),
            "foreign NIF (ES)": lambda: self.order(
                self.odd_partner(vat="ESA12345674", country_id=self.env.ref("base.es").id)
            ),
            "missing address": lambda: self.order(self.odd_partner(street=False, city=False, zip=False)),
            "no country": lambda: self.order(self.odd_partner(country_id=False, vat=False)),
            **self.common_cases(),
        }


class BrazilianData(DataMatrixCases):
    foreign_currency = "EUR"
    check_totals = False

    def cases(self):
        return {
            "invalid CPF": lambda: self.order(self.odd_partner(vat="123.456.789-00")),
            "invalid CNPJ": lambda: self.order(self.odd_partner(vat="11.222.333/0001-00", is_company=True)),
            "no CPF/CNPJ": lambda: self.order(self.odd_partner(vat=False)),
            "missing address": lambda: self.order(
                self.odd_partner(street=False, fiscal_street_number=False, fiscal_district=False, zip=False)
            ),
            "accented e-mail": lambda: self.order(self.odd_partner(email="joão.conceição@exemplo.com.br")),
            **self.common_cases(),
        }


@tagged("post_install", "-at_install")
class TestDataMatrixInvoiceXpress(PortugueseData, FiscalTestCommon):
    provider = "invoicexpress"


@tagged("post_install", "-at_install")
class TestDataMatrixVendus(PortugueseData, FiscalTestCommon):
    provider = "vendus"
    foreign_currency = "USD"


@tagged("post_install", "-at_install")
class TestDataMatrixEnotas(BrazilianData, FiscalTestCommon):
    provider = "enotas"


@tagged("post_install", "-at_install")
class TestDataMatrixInvoicy(BrazilianData, FiscalTestCommon):
    provider = "invoicy"


# ---------------------------------------------------------------------------
# Credentials through the RPC a normal user has
# ---------------------------------------------------------------------------

SALESMAN_PASSWORD = "salesman-Pa55word-19"
SECRET_FIELDS = ["api_key", "access_key", "webhook_secret", "webhook_url"]


@tagged("post_install", "-at_install")
class TestCredentialsOverRpc(FiscalTestCommon, HttpCase):
    provider = "invoicy"  # the account with the most secrets (partner key, access key)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.salesman = cls.env["res.users"].create(
            {
                "name": "RPC Salesman",
                "login": "fiscal_rpc_salesman",
                "password": SALESMAN_PASSWORD,
                "group_ids": [Command.set(cls.quick_ref("sales_team.group_sale_salesman").ids)],
                "company_ids": [Command.set(cls.company.ids)],
                "company_id": cls.company.id,
            }
        )

    def _secrets(self):
        account = self.account.sudo()
        return [s for s in (account.api_key, account.access_key, account.webhook_secret, API_KEY) if s]

    def _call(self, model, method, args, kwargs=None):
        return self.make_jsonrpc_request(
            "/web/dataset/call_kw",
            {"model": model, "method": method, "args": args, "kwargs": kwargs or {}},
        )

    def test_salesman_cannot_read_nor_search_nor_export_credentials(self):
        self.authenticate("fiscal_rpc_salesman", SALESMAN_PASSWORD)
        account_id = self.account.id
        # What a salesman may see: the account exists, its name.
        names = self._call("fiscal.provider.account", "read", [[account_id], ["name"]])
        self.assertEqual(names[0]["name"], self.account.name)
        spec = {name: {} for name in SECRET_FIELDS}
        refused = [
            ("read", [[account_id], SECRET_FIELDS]),
            ("search_read", [[("id", "=", account_id)], ["api_key"]]),
            ("web_search_read", [[("id", "=", account_id)], spec]),
            ("web_read", [[account_id], spec]),
            ("search_count", [[("api_key", "=", "pk-" + API_KEY)]]),  # an oracle, one guess at a time
            ("search_count", [[("access_key", "=like", "ak-%")]]),
            ("read_group", [[], ["api_key"], ["api_key"]]),
            ("export_data", [[account_id], ["api_key", "access_key"]]),
            ("write", [[account_id], {"api_key": "stolen"}]),
            ("copy", [[account_id]]),
        ]
        for method, args in refused:
            with self.subTest(method=method), self.assertRaises(JsonRpcException, msg=method) as caught:
                self._call("fiscal.provider.account", method, args)
            # AccessError; export_data says "not allowed to export" (UserError): refused all the same.
            self.assertRegex(str(caught.exception), "AccessError|UserError", method)
        fields = self._call("fiscal.provider.account", "fields_get", [], {"attributes": ["string"]})
        for name in SECRET_FIELDS:
            self.assertNotIn(name, fields)
        # The same over XML-RPC (through url_open: the test server only serves the test's cookie).
        for method, args in (("read", [[account_id], ["api_key"]]), ("search_read", [[], ["access_key"]])):
            call = (self.env.cr.dbname, self.salesman.id, SALESMAN_PASSWORD, "fiscal.provider.account", method, args)
            body = xmlrpc.client.dumps(call, methodname="execute_kw", allow_none=True)
            response = self.url_open("/xmlrpc/2/object", data=body.encode(), headers={"Content-Type": "text/xml"})
            self.assertLess(response.status_code, 500)
            with self.assertRaises(xmlrpc.client.Fault, msg=method) as caught:
                xmlrpc.client.loads(response.content)
            self.assertIn("not have enough rights", caught.exception.faultString)
            for secret in self._secrets():
                self.assertNotIn(secret, response.text)
        self.account.sudo().invalidate_recordset()
        self.assertEqual(self.account.sudo().api_key, "pk-" + API_KEY, "nothing was written")

    def test_salesman_sees_no_secret_in_documents_chatter_or_attempts(self):
        order = self.confirm(self.make_order(qty=1))
        self.sim.inject("reset", when="after")
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        self.authenticate("fiscal_rpc_salesman", SALESMAN_PASSWORD)
        texts = []
        for model, ids in (("sale.order", [order.id]), ("fiscal.document", [doc.id])):
            try:
                texts.append(json.dumps(self._call(model, "read", [ids])))
            except JsonRpcException:
                pass  # not readable at all: nothing leaks either
        try:
            texts.append(json.dumps(self._call("fiscal.document.attempt", "search_read", [[], []])))
        except JsonRpcException:
            pass
        messages = self._call(
            "mail.message", "search_read", [[("model", "=", "sale.order"), ("res_id", "=", order.id)], ["body"]]
        )
        texts.append(json.dumps(messages))
        self.assertTrue(texts)
        for text in texts:
            for secret in self._secrets():
                self.assertNotIn(secret, text)
