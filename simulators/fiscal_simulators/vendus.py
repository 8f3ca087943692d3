"""A local Vendus (API v1.1, JSON) simulator.

Follows the public contract summarised in shared/provider-apis.md section 3: the same
paths (served at the root and under ``/ws/v1.1``), HTTP Basic authentication with the
API key as the user name, JSON bodies only, Portuguese error messages in
``{"errors":[{"code","message"}]}``, and the quirks a client must survive:

* documents are final on creation, numbered per type, register, mode and year:
  ``FT 01P2026/1`` in normal mode, ``FT T01P2026/1`` in test mode, each with an ATCUD;
* test-mode and normal-mode documents live apart: reading a test document needs ``mode=tests``,
  and a create without ``mode`` takes the register's mode (``tests`` for a new account);
* prices are VAT-inclusive (``gross_price``) with a tax class (``tax_id``); ``ISE`` needs an
  exemption code; FR and FS need payments covering the total;
* invoices are credited (``NC`` lines pointing at an original row, never more than what is
  left on that row), not cancelled; only receipts (``RG``) take ``PATCH {"status": "A"}``;
* dates may not go backwards inside a series;
* every answer carries the request budget (``Rate-Limit-Limit/-Remaining/-Used/-Reset``),
  100 credits per 60 s window by default, 429 once it is used up.

Totals: a line's VAT-inclusive total is ``gross_price * qty * (1 - discount/100)`` rounded half-up
to cents; its net total is that gross total divided by ``1 + rate/100``, rounded half-up to cents;
the document's ``amount_gross``/``amount_net`` are the sums of the line totals (a guess at how
Vendus rounds). Amounts are answered as strings with two decimals.

Usage in tests::

    with VendusSimulator(api_key="k") as sim:
        client = VendusProvider(ProviderConfig(base_url=sim.base_url, credentials={"api_key": "k"},
                                               options={"register_id": 1}))
        ...
        assert sim.find(external_reference="INV/2026/0001")[0]["number"] == "FT T01P2026/1"

CLI (demo)::

    cd fiscal_invoice_connector && python -m simulators.vendus --port 8767 --api-key demo-key --register-id 1
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import hmac
import math
import re
import sys
import time
from datetime import date as date_cls
from datetime import datetime
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

from ._server import (
    Reply,
    SimResponse,
    SimulatorServer,
    build_pdf,
    json_decimal,
    positive_int,
    pt_today,
    saft_chain_hash,
    saft_printed_hash,
    serve_until_signal,
)
from ._server import cents as _money
from ._server import plain as _plain

PREFIX = r"(?:/ws/v1\.1)?"
DOCUMENT_TYPES = {
    "FT": "Fatura",
    "FR": "Fatura Recibo",
    "FS": "Fatura Simplificada",
    "NC": "Nota de Crédito",
    "RG": "Recibo",
}
INVOICE_TYPES = ("FT", "FR", "FS")
PAID_ON_ISSUE = ("FR", "FS")
MODES = ("normal", "tests")
# Mainland Portugal: tax class -> rate.
TAXES = {"NOR": 23, "INT": 13, "RED": 6, "ISE": 0}
DEFAULT_TAX_ID = "NOR"  # the store's default tax when an item names none [?]
DEFAULT_REGISTERS = (
    {"id": 1, "store_id": 1, "title": "Caixa API", "type": "api", "status": "on", "mode": "tests", "serie": "01"},
)
DEFAULT_PAYMENT_METHODS = (
    {"id": 1, "title": "Transferência Bancária", "type": "TB"},
    {"id": 2, "title": "Numerário", "type": "NU"},
    {"id": 3, "title": "Cartão de Crédito", "type": "CC"},
    {"id": 4, "title": "Multibanco", "type": "MB"},
    {"id": 5, "title": "Cheque", "type": "CH"},
)
DEFAULT_ACCOUNT = {
    "id": 1,
    "company": "Empresa Demonstração, Lda",
    "fiscal_id": "500000000",
    "country": "PT",
    "email": "geral@empresa-demo.pt",
}

CENT = Decimal("0.01")
EXEMPTION_RE = re.compile(r"M\d{2}")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
FINAL_CONSUMER_NIF = "999999990"
ERROR_CODE = "A001"  # the only code seen in the wild, for every kind of error [?]

MSG_AUTH = "AUTH"
MSG_NOT_FOUND = "Registo não encontrado"
MSG_JSON_ONLY = "Formato não suportado: o pedido tem de ser JSON (Content-Type: application/json)"
MSG_BAD_JSON = "JSON inválido"
MSG_RATE = "Excedeu o limite de pedidos. Tente novamente mais tarde."


def _fmt(value):
    return str(_money(Decimal(value)))


def _text(value):
    return str(value).strip() if value is not None else ""


def _parse_date(value):
    if not isinstance(value, str) or not DATE_RE.fullmatch(value.strip()):
        return None
    try:
        return datetime.strptime(value.strip(), "%Y-%m-%d").date()
    except ValueError:
        return None


def valid_nif(nif):
    """Portuguese NIF: 9 digits, the last a mod-11 check digit."""
    if not re.fullmatch(r"\d{9}", nif or ""):
        return False
    total = sum(int(digit) * (9 - index) for index, digit in enumerate(nif[:8]))
    check = 11 - total % 11
    return (0 if check >= 10 else check) == int(nif[8])


class VendusSimulator(SimulatorServer):
    label = "Vendus simulator"
    fault_messages = {401: MSG_AUTH, 404: MSG_NOT_FOUND, 415: MSG_JSON_ONLY}

    routes = (
        ("GET", rf"{PREFIX}/account/?", "_account"),
        ("GET", rf"{PREFIX}/registers/?", "_list_registers"),
        ("GET", rf"{PREFIX}/registers/(?P<register_id>\d+)/?", "_get_register"),
        ("GET", rf"{PREFIX}/taxes/?", "_list_taxes"),
        ("GET", rf"{PREFIX}/documents/paymentmethods/?", "_list_payment_methods"),
        ("GET", rf"{PREFIX}/documents/?", "_list_documents"),
        ("POST", rf"{PREFIX}/documents/?", "_create_document"),
        ("GET", rf"{PREFIX}/documents/(?P<doc_id>\d+)/?", "_get_document"),
        ("PATCH", rf"{PREFIX}/documents/(?P<doc_id>\d+)/?", "_update_document"),
        ("GET", rf"{PREFIX}/products/?", "_list_products"),
        ("POST", rf"{PREFIX}/products/?", "_create_product"),
        ("PATCH", rf"{PREFIX}/products/(?P<product_id>\d+)/?", "_update_product"),
    )

    # Types that PATCH {"status": "A"} may cancel: the official example only shows receipts. [?]
    cancellable_types = frozenset({"RG"})
    # Item discount field (the SDK's name; another client says discount_percent). [?]
    discount_field = "discount_percentage"
    # Status of GET /documents/ when nothing matches (some Vendus list endpoints are said to 404). [?]
    empty_list_status = 200
    # Whether list items carry external_reference (else a client must read each document). [?]
    list_includes_external_reference = True
    # Credits one request costs.
    credit_cost = 1
    # How an exact half-cent line total is rounded: unknown [?] ("half_up" or "half_even"). A client
    # never sends a price landing on a tie, but a credit note credits the original row's price for a
    # part of its quantity: the one amount the client does not choose.
    tie_rounding = "half_up"

    def __init__(
        self,
        *,
        api_key="demo-key",
        registers=DEFAULT_REGISTERS,
        payment_methods=DEFAULT_PAYMENT_METHODS,
        account=None,
        rate_limit=100,
        rate_window=60.0,
        latency=0.0,
        port=0,
        host="127.0.0.1",
        timeout_seconds=15.0,
    ):
        self.api_key = api_key
        self.registers = [self._register_config(r, index) for index, r in enumerate(registers, start=1)]
        self.payment_methods = {str(m["id"]): dict(m) for m in payment_methods}
        self.account = dict(account or DEFAULT_ACCOUNT)
        self.rate_window = rate_window
        super().__init__(
            host=host, port=port, latency=latency, rate_limit_per_minute=rate_limit, timeout_seconds=timeout_seconds
        )

    @staticmethod
    def _register_config(register, index):
        """A register from a dict, or from a bare id (a test-mode API register)."""
        if not isinstance(register, dict):
            register = {"id": int(register)}
        defaults = {"store_id": 1, "title": f"Caixa {index}", "type": "api", "status": "on", "mode": "tests"}
        config = {**defaults, **register}
        config.setdefault("serie", f"{index:02d}")
        return config

    # The credit budget per window (None = unlimited); the base class calls it rate_limit_per_minute.
    @property
    def rate_limit(self):
        return self.rate_limit_per_minute

    @rate_limit.setter
    def rate_limit(self, value):
        self.rate_limit_per_minute = value

    # ------------------------------------------------------------------ state
    def reset_state(self):
        self.products = {}  # id -> product (matched by reference)
        self._next_product_id = 9_000_001
        self.documents = {}  # id -> stored document (public fields + "_"-prefixed internals)
        self.clients = {}  # fiscal_id -> client
        self.ties = []  # VAT-inclusive line totals that landed on a half-cent tie (see _line_amounts)
        self._series = {}  # (type, mode, serie, year) -> {"number", "last_date", "hash"}
        # Test and normal documents are numbered apart, ids included (the SDK shows small test ids).
        self._next_id = {"normal": 18_000_001, "tests": 90_001}
        self._next_client_id = 7_100_001
        self._window_started = None
        self._credits_used = 0

    # ------------------------------------------------------- inspection helpers
    def find(self, **criteria):
        """Stored documents whose fields equal ``criteria`` (``status`` compares the status id), by id."""

        def value(doc, key):
            return doc["status"]["id"] if key == "status" else doc.get(key)

        with self.lock:
            return [
                doc
                for _, doc in sorted(self.documents.items())
                if all(value(doc, key) == wanted for key, wanted in criteria.items())
            ]

    def final_documents(self, include_canceled=False):
        """Documents that exist fiscally (status N), optionally the cancelled ones (A) too."""
        states = ("N", "A") if include_canceled else ("N",)
        with self.lock:
            return [doc for _, doc in sorted(self.documents.items()) if doc["status"]["id"] in states]

    def by_number(self, number, mode=None):
        with self.lock:
            return next(
                (d for d in self.documents.values() if d["number"] == number and mode in (None, d["mode"])), None
            )

    # ------------------------------------------------------------- transport hooks
    def authenticate(self, request):
        scheme, _, value = (request.headers.get("Authorization") or "").partition(" ")
        user = None
        if scheme.lower() == "basic":
            try:
                user = base64.b64decode(value.strip(), validate=True).decode("utf-8").split(":", 1)[0]
            except (ValueError, UnicodeDecodeError):
                user = None
        if user is None or not hmac.compare_digest(user.encode(), str(self.api_key).encode()):
            return self.error_response(401, MSG_AUTH)
        return None

    def error_response(self, status, *messages):
        errors = [
            {"code": m[0], "message": m[1]} if isinstance(m, tuple) else {"code": ERROR_CODE, "message": m}
            for m in messages
        ]
        return SimResponse.json(status, {"errors": errors})

    def rate_limited_response(self, retry_after):
        return SimResponse.json(
            429,
            {"errors": [{"code": ERROR_CODE, "message": MSG_RATE}]},
            headers={"Rate-Limit-Remaining": "0", "Rate-Limit-Reset": str(retry_after)},
        )

    def not_found(self, request):
        return self.error_response(404, MSG_NOT_FOUND)

    def fault_response(self, status, retry_after=1):
        return self._stamp(super().fault_response(status, retry_after))

    def _respond(self, request):
        return self._stamp(super()._respond(request))

    def _take_rate_slot(self):
        """A credit budget per fixed window (Rate-Limit-Reset counts down to its end)."""
        limit = self.rate_limit
        if not limit:
            return None
        with self.lock:
            now = time.monotonic()
            if self._window_started is None or now >= self._window_started + self.rate_window:
                self._window_started, self._credits_used = now, 0
            if self._credits_used + self.credit_cost > limit:
                # Refused requests cost nothing: waiting Rate-Limit-Reset is then enough.
                return max(1, math.ceil(self._window_started + self.rate_window - now))
            self._credits_used += self.credit_cost
            return None

    def rate_headers(self):
        limit = self.rate_limit
        if not limit:
            return {}
        with self.lock:
            now = time.monotonic()
            if self._window_started is None or now >= self._window_started + self.rate_window:
                used, reset = 0, math.ceil(self.rate_window)
            else:
                used, reset = self._credits_used, max(0, math.ceil(self._window_started + self.rate_window - now))
        return {
            "Rate-Limit-Limit": str(limit),
            "Rate-Limit-Remaining": str(max(0, limit - used)),
            "Rate-Limit-Used": str(used),
            "Rate-Limit-Reset": str(reset),
        }

    def _stamp(self, response):
        for name, value in self.rate_headers().items():
            response.headers.setdefault(name, value)
        return response

    # ---------------------------------------------------------------- products
    def _list_products(self, request):
        products = sorted(self.products.values(), key=lambda p: p["id"])
        reference = request.param("reference")
        if reference:
            products = [p for p in products if p.get("reference") == reference]
        return SimResponse.json(200, [dict(p) for p in products])

    def _product_values(self, data, errors):
        if not _text(data.get("title")):
            errors.append("O campo title é obrigatório")
        if data.get("tax_id") not in (None, *TAXES):
            errors.append("tax_id inválido")
        return {k: data.get(k) for k in ("reference", "title", "gross_price", "tax_id", "tax_exemption", "status")}

    def _create_product(self, request):
        data, errors = self._body(request), []
        values = self._product_values(data, errors)
        if values["reference"] and any(p.get("reference") == values["reference"] for p in self.products.values()):
            errors.append("Já existe um produto com esta referência")
        if errors:
            raise self._errors(422, *errors)
        product = {"id": self._next_product_id, **values}
        self._next_product_id += 1
        self.products[product["id"]] = product
        return SimResponse.json(201, dict(product))

    def _update_product(self, request, product_id):
        product = self.products.get(int(product_id))
        if product is None:
            raise self._errors(404, MSG_NOT_FOUND)
        errors = []
        values = self._product_values({**product, **self._body(request)}, errors)
        if errors:
            raise self._errors(422, *errors)
        product.update(values)
        return SimResponse.json(200, dict(product))

    # ---------------------------------------------------------------- helpers
    def _errors(self, status, *messages):
        return Reply(self.error_response(status, *messages))

    def _body(self, request):
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise self._errors(415, MSG_JSON_ONLY)
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            raise self._errors(400, MSG_BAD_JSON) from None
        if not isinstance(body, dict):
            raise self._errors(400, MSG_BAD_JSON)
        return body

    def _document(self, doc_id, mode):
        doc = self.documents.get(int(doc_id))
        if doc is None or doc["mode"] != mode:
            raise self._errors(404, MSG_NOT_FOUND)
        return doc

    def _mode_param(self, request):
        mode = request.param("mode") or "normal"
        if mode not in MODES:
            raise self._errors(422, f"Modo inválido: {mode}")
        return mode

    def _register(self, register_id):
        if register_id in (None, ""):
            return self.registers[0]
        register = next((r for r in self.registers if str(r["id"]) == str(register_id)), None)
        if register is None or register["status"] != "on":
            raise self._errors(422, f"Caixa inexistente ou inativa (register_id {register_id})")
        return register

    @staticmethod
    def _public(data):
        return {key: copy.deepcopy(value) for key, value in data.items() if not key.startswith("_")}

    # ----------------------------------------------------------- validation
    def _client(self, data, errors):
        """Validate the document's client; return the data to store (None = final consumer)."""
        if data in (None, "", {}):
            return None
        if not isinstance(data, dict):
            errors.append("Cliente inválido")
            return None
        if data.get("id") not in (None, ""):
            known = next((c for c in self.clients.values() if str(c["id"]) == str(data["id"])), None)
            if known is None:
                errors.append(f"Cliente inexistente (id {data['id']})")
            return known
        fiscal_id = _text(data.get("fiscal_id"))
        country = _text(data.get("country")).upper() or "PT"
        if fiscal_id == FINAL_CONSUMER_NIF:
            errors.append("Não indique o NIF 999999990: para consumidor final omita o cliente")
        elif fiscal_id and country == "PT" and not valid_nif(fiscal_id):
            errors.append(f"NIF inválido: {fiscal_id}")
        elif not fiscal_id and not _text(data.get("name")):
            errors.append("Indique o NIF (fiscal_id) ou o nome do cliente")
        elif fiscal_id not in self.clients and not _text(data.get("name")):
            errors.append("O nome do cliente é obrigatório para criar um cliente novo")
        return {**data, "fiscal_id": fiscal_id or None, "country": country}

    def _store_client(self, data):
        if data is None:
            return None
        if any(data is client for client in self.clients.values()):  # referenced by id
            return data
        fiscal_id = data.get("fiscal_id")
        if fiscal_id and fiscal_id in self.clients:
            return self.clients[fiscal_id]  # referenced by fiscal_id: the stored client wins
        client = {"id": self._next_client_id}
        for key in ("fiscal_id", "name", "address", "postalcode", "city", "country", "email", "phone"):
            client[key] = data.get(key)
        self._next_client_id += 1
        self.clients[fiscal_id or f"_noid_{client['id']}"] = client
        return client

    def _sale_lines(self, items, errors):
        if not isinstance(items, list) or not items:
            errors.append("O documento tem de ter pelo menos um item")
            return []
        lines = []
        for row, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                errors.append(f"Item {row}: inválido")
                continue
            title = _text(item.get("title"))
            qty = json_decimal(item.get("qty"))
            gross = json_decimal(item.get("gross_price"))
            raw_discount = item.get(self.discount_field)
            discount = Decimal(0) if raw_discount in (None, "") else json_decimal(raw_discount)
            tax_id = _text(item.get("tax_id")).upper() or DEFAULT_TAX_ID
            if not title:
                errors.append(f"Item {row}: o título (title) é obrigatório")
            if qty is None or qty <= 0:
                errors.append(f"Item {row}: a quantidade (qty) tem de ser superior a 0")
            if gross is None or gross < 0:
                errors.append(f"Item {row}: o preço (gross_price) é obrigatório e não pode ser negativo")
            if discount is None or not 0 <= discount <= 100:
                errors.append(f"Item {row}: o desconto tem de estar entre 0 e 100")
            if tax_id not in TAXES:
                errors.append(f"Item {row}: taxa de IVA (tax_id) inválida: {tax_id}")
            exemption = law = None
            if tax_id == "ISE":
                exemption = _text(item.get("tax_exemption")).upper() or None
                law = _text(item.get("tax_exemption_law")) or None
                if exemption is None or not EXEMPTION_RE.fullmatch(exemption):
                    errors.append(f"Item {row}: o motivo de isenção (tax_exemption) é obrigatório na taxa ISE")
            lines.append({
                "reference": _text(item.get("reference")) or None, "title": title, "qty": qty,
                "gross_unit": gross, "discount": discount, "tax_id": tax_id, "exemption": exemption, "law": law,
            })  # fmt: skip
        return lines

    def _payments(self, payments, errors, required, doc_type):
        if payments in (None, "", []):
            if required:
                errors.append(f"Os pagamentos (payments) são obrigatórios num documento {doc_type}")
            return []
        if not isinstance(payments, list):
            errors.append("Pagamentos (payments) inválidos")
            return []
        out = []
        for payment in payments:
            payment = payment if isinstance(payment, dict) else {}
            method = self.payment_methods.get(_text(payment.get("id")))
            amount = json_decimal(payment.get("amount"))
            if method is None:
                errors.append(f"Método de pagamento inexistente: {payment.get('id')}")
            if amount is None or amount <= 0:
                errors.append("O valor de cada pagamento tem de ser superior a 0")
            if method is not None and amount is not None and amount > 0:
                out.append({"id": method["id"], "title": method["title"], "amount": _money(amount)})
        return out

    def _line_amounts(self, line):
        """VAT-inclusive total half-up to cents; net total = gross / (1 + rate), half-up to cents.
        How the real service breaks an exact half-cent tie of the gross total is unknown [?]: such
        totals are recorded in ``ties`` so that tests can insist a client never sends one."""
        divisor = 1 + Decimal(TAXES[line["tax_id"]]) / 100
        exact = line["gross_unit"] * line["qty"] * (1 - line["discount"] / 100)
        if (exact * 100) % 1 == Decimal("0.5") and exact not in self.ties:
            self.ties.append(exact)
        gross_total = exact.quantize(
            CENT, rounding=ROUND_HALF_EVEN if self.tie_rounding == "half_even" else ROUND_HALF_UP
        )
        return gross_total, _money(gross_total / divisor), _money(line["gross_unit"] / divisor)

    def _prepare_sale(self, data, doc_type, doc_date, errors):
        client = self._client(data.get("client"), errors)
        lines = self._sale_lines(data.get("items"), errors)
        due = None
        raw_due = data.get("due_date") or data.get("date_due")  # both names are in use [?]
        if raw_due and doc_type == "FT":
            due = _parse_date(raw_due)
            if due is None:
                errors.append("Data de vencimento inválida (AAAA-MM-DD)")
            elif due < doc_date:
                errors.append("A data de vencimento não pode ser anterior à data do documento")
        payments = self._payments(data.get("payments"), errors, doc_type in PAID_ON_ISSUE, doc_type)
        if errors:
            return None
        gross = sum((self._line_amounts(line)[0] for line in lines), Decimal(0))
        paid = sum((p["amount"] for p in payments), Decimal(0))
        if doc_type in PAID_ON_ISSUE and paid < gross:
            errors.append(f"O valor pago ({_fmt(paid)}) é inferior ao total do documento ({_fmt(gross)})")
        return {"client": client, "lines": lines, "payments": payments, "due": due}

    def _check_fs_limit(self, data, prepared, errors):
        """Art. 40 CIVA: a simplified invoice up to 1000 EUR for a final consumer (no client fiscal id),
        100 EUR otherwise. [?] whether and how Vendus enforces it (the AT does)."""
        client = data.get("client") if isinstance(data.get("client"), dict) else {}
        consumer = _text(client.get("fiscal_id")) in ("", FINAL_CONSUMER_NIF)
        limit = Decimal(1000 if consumer else 100)
        total = sum((self._line_amounts(line)[0] for line in prepared["lines"]), Decimal(0))
        if total > limit:
            errors.append(
                f"Uma fatura simplificada não pode exceder {_fmt(limit)} € "
                f"({'consumidor final' if consumer else 'cliente com NIF'}); total {_fmt(total)} €"
            )

    def _prepare_credit(self, data, mode, errors):
        if not _text(data.get("notes")):
            errors.append("O motivo (notes) é obrigatório numa nota de crédito")
        items = data.get("items")
        if not isinstance(items, list) or not items:
            errors.append("O documento tem de ter pelo menos um item")
            return None
        lines, originals, pending = [], [], {}
        for index, item in enumerate(items, start=1):
            item = item if isinstance(item, dict) else {}
            ref = item.get("reference_document") if isinstance(item.get("reference_document"), dict) else {}
            number = _text(ref.get("document_number"))
            row = positive_int(ref.get("document_row"), None)
            qty = json_decimal(item.get("qty"))
            if not number or row is None:
                errors.append(f"Item {index}: indique o documento de origem (document_number e document_row)")
                continue
            original = self.by_number(number, mode)
            if original is None or original["type"] not in INVOICE_TYPES:
                errors.append(f"Item {index}: documento de origem inexistente: {number}")
                continue
            if original["status"]["id"] != "N":
                errors.append(f"Item {index}: o documento {number} está anulado")
                continue
            if row > len(original["_lines"]):
                errors.append(f"Item {index}: a linha {row} não existe no documento {number}")
                continue
            if qty is None or qty <= 0:
                errors.append(f"Item {index}: a quantidade (qty) tem de ser superior a 0")
                continue
            source = original["_lines"][row - 1]
            key = (original["id"], row)
            remaining = source["qty"] - original["_credited"].get(row, Decimal(0)) - pending.get(key, Decimal(0))
            if qty > remaining:
                errors.append(
                    f"Item {index}: a quantidade a creditar ({_plain(qty)}) excede a quantidade disponível "
                    f"({_plain(remaining)}) na linha {row} do documento {number}"
                )
                continue
            pending[key] = pending.get(key, Decimal(0)) + qty
            lines.append({**source, "qty": qty, "_source": key})
            if original not in originals:
                originals.append(original)
        if errors:
            return None
        clients = {(o["client"] or {}).get("fiscal_id") for o in originals}
        if len(clients) > 1:
            errors.append("Uma nota de crédito só pode creditar documentos do mesmo cliente")
            return None
        client = copy.deepcopy(originals[0]["client"])
        sent = data.get("client") if isinstance(data.get("client"), dict) else None
        if sent and _text(sent.get("fiscal_id")) != ((client or {}).get("fiscal_id") or ""):
            errors.append("O cliente da nota de crédito tem de ser o do documento de origem")
            return None
        return {"client": client, "lines": lines, "payments": [], "due": None, "originals": originals}

    def _prepare_receipt(self, data, mode, errors):
        invoices = data.get("invoices")
        if not isinstance(invoices, list) or not invoices:
            errors.append("Indique as faturas (invoices) a liquidar")
            return None
        originals = []
        for entry in invoices:
            number = _text(entry.get("document_number")) if isinstance(entry, dict) else ""
            original = self.by_number(number, mode) if number else None
            if original is None:
                errors.append(f"Fatura inexistente: {number or '?'}")
            elif original["type"] != "FT":
                errors.append(f"O documento {number} não é uma fatura (FT) por liquidar")
            elif original["status"]["id"] != "N":
                errors.append(f"O documento {number} está anulado")
            elif self._unpaid(original) <= 0:
                errors.append(f"A fatura {number} já está liquidada")
            elif original not in originals:
                originals.append(original)
        payments = self._payments(data.get("payments"), errors, True, "RG")
        if errors:
            return None
        paid = sum((p["amount"] for p in payments), Decimal(0))
        due = sum((self._unpaid(o) for o in originals), Decimal(0))
        if paid > due:
            errors.append(f"O valor recebido ({_fmt(paid)}) excede o valor em dívida ({_fmt(due)})")
            return None
        if len({(o["client"] or {}).get("fiscal_id") for o in originals}) > 1:
            errors.append("Um recibo só pode liquidar faturas do mesmo cliente")
            return None
        return {
            "client": copy.deepcopy(originals[0]["client"]),
            "lines": [],
            "payments": payments,
            "due": None,
            "originals": originals,
        }

    @staticmethod
    def _unpaid(doc):
        return max(Decimal(0), doc["_gross"] - doc["_credited_gross"] - doc["_paid"])

    # --------------------------------------------------------------- documents
    def _create_document(self, request):
        data = self._body(request)
        doc_type = _text(data.get("type")).upper() or "FT"
        if doc_type not in DOCUMENT_TYPES:
            raise self._errors(422, f"Tipo de documento inválido: {doc_type}")
        register = self._register(data.get("register_id"))
        # Without mode, the register's mode applies (and new accounts are in test mode).
        mode = _text(data.get("mode")) or register["mode"]
        if mode not in MODES:
            raise self._errors(422, f"Modo inválido: {mode}")
        errors = []
        doc_date = date_cls.today()
        if _text(data.get("date")):
            doc_date = _parse_date(data.get("date"))
            if doc_date is None:
                errors.append("Data do documento inválida (AAAA-MM-DD)")
                doc_date = date_cls.today()
        date_supply = None
        if _text(data.get("date_supply")):
            date_supply = _parse_date(data.get("date_supply"))
            if date_supply is None:
                errors.append("Data de fornecimento inválida (AAAA-MM-DD)")
        if doc_date > pt_today():
            # [?] wording; a fiscal document cannot be dated in the future (art. 36 CIVA, DL 28/2019).
            errors.append(f"A data do documento ({doc_date.isoformat()}) não pode ser posterior à data atual")
        if doc_type in INVOICE_TYPES:
            prepared = self._prepare_sale(data, doc_type, doc_date, errors)
            if doc_type == "FS" and prepared:
                self._check_fs_limit(data, prepared, errors)
        elif doc_type == "NC":
            prepared = self._prepare_credit(data, mode, errors)
        else:
            prepared = self._prepare_receipt(data, mode, errors)
        if errors:
            raise self._errors(422, *dict.fromkeys(errors))  # unique, in order
        serie = f"{'T' if mode == 'tests' else ''}{register['serie']}P{doc_date.year}"
        series = self._series.setdefault((doc_type, mode, serie), {"number": 0, "last_date": None, "hash": ""})
        if series["last_date"] and doc_date < series["last_date"]:
            # AT rule: documents of a series are chronological.
            raise self._errors(
                422,
                (
                    ERROR_CODE,
                    f"A data do documento ({doc_date.isoformat()}) não pode ser anterior à do último documento "
                    f"da série {doc_type} {serie} ({series['last_date'].isoformat()})",
                ),
            )
        doc = self._issue(doc_type, mode, register, serie, series, doc_date, date_supply, prepared, data)
        answer = {key: doc[key] for key in (
            "id", "type", "number", "date", "date_supply", "system_time", "local_time", "amount_gross",
            "amount_net", "hash", "atcud", "qrcode", "qrcode_data", "tax_authority_id",
        )}  # fmt: skip
        if data.get("output"):
            answer["output"] = self._output(doc, data.get("output"))
        return SimResponse.json(201, answer)

    def _issue(self, doc_type, mode, register, serie, series, doc_date, date_supply, prepared, data):
        client = self._store_client(prepared["client"]) if doc_type in INVOICE_TYPES else prepared["client"]
        items, gross, net, taxes = [], Decimal(0), Decimal(0), {}
        for line in prepared["lines"]:
            line_gross, line_net, net_unit = self._line_amounts(line)
            gross += line_gross
            net += line_net
            rate = TAXES[line["tax_id"]]
            zero = Decimal(0)
            group = taxes.setdefault(rate, {"rate": rate, "base": zero, "amount": zero, "total": zero})
            group["base"] += line_net
            group["amount"] += line_gross - line_net
            group["total"] += line_gross
            items.append({
                "qty": _plain(line["qty"]), "title": line["title"], "reference": line["reference"],
                self.discount_field: _plain(line["discount"]),
                "amounts": {"net_unit": _fmt(net_unit), "net_total": _fmt(line_net),
                            "gross_unit": _plain(line["gross_unit"]), "gross_total": _fmt(line_gross)},
                "tax": {"id": line["tax_id"], "country": "PT", "rate": rate,
                        "exemption": line["exemption"], "exemption_law": line["law"]},
            })  # fmt: skip
        allocations = []
        if doc_type == "RG":
            remaining = sum((p["amount"] for p in prepared["payments"]), Decimal(0))
            for original in prepared["originals"]:
                share = min(remaining, self._unpaid(original))
                if share > 0:
                    allocations.append((original["id"], share))
                    ratio = original["_net"] / original["_gross"] if original["_gross"] else Decimal(1)
                    net += _money(share * ratio)
                    gross += share
                    remaining -= share
        number = series["number"] + 1
        full_number = f"{doc_type} {serie}/{number}"
        full_hash = saft_chain_hash(series["hash"], doc_date.isoformat(), full_number, gross)
        series.update(number=number, last_date=doc_date, hash=full_hash)
        atcud = f"{_validation_code(doc_type, serie)}-{number}"
        now = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        doc_id = self._next_id[mode]
        self._next_id[mode] += 1
        printed_hash = saft_printed_hash(full_hash)
        qrcode_data = "*".join([
            f"A:{self.account['fiscal_id']}", f"B:{(client or {}).get('fiscal_id') or FINAL_CONSUMER_NIF}",
            f"C:{(client or {}).get('country') or 'PT'}", f"D:{doc_type}", "E:N", f"F:{doc_date:%Y%m%d}",
            f"G:{full_number}", f"H:{atcud}", f"O:{_fmt(gross)}", f"Q:{printed_hash}", "R:0000",
        ])  # fmt: skip
        paid = sum((p["amount"] for p in prepared["payments"]), Decimal(0)) if doc_type != "RG" else Decimal(0)
        doc = {
            "id": doc_id,
            "type": doc_type,
            "number": full_number,
            "date": doc_date.isoformat(),
            "date_supply": (date_supply or doc_date).isoformat(),
            "date_due": prepared["due"].isoformat() if prepared["due"] else None,
            "system_time": now,
            "local_time": now,
            "amount_gross": _fmt(gross),
            "amount_net": _fmt(net),
            "hash": printed_hash,
            "atcud": atcud,
            "qrcode": base64.b64encode(qrcode_data.encode()).decode(),
            "qrcode_data": qrcode_data,
            "tax_authority_id": None if mode == "tests" else f"AT{doc_id}",
            "mode": mode,
            "store_id": register["store_id"],
            "register_id": register["id"],
            "external_reference": data.get("external_reference"),
            "notes": data.get("notes"),
            "client": copy.deepcopy(client),
            "items": items,
            "taxes": [{k: _fmt(v) if isinstance(v, Decimal) else v for k, v in t.items()} for t in taxes.values()],
            "payments": [{**p, "amount": _fmt(p["amount"])} for p in prepared["payments"]],
            "status": {"id": "N", "date": now},
            "related_docs": [],
            "invoices": [{"document_number": self.documents[i]["number"], "amount": _fmt(a)} for i, a in allocations],
            "_lines": prepared["lines"],
            "_credited": {},
            "_gross": gross,
            "_net": net,
            "_credited_gross": Decimal(0),
            "_paid": min(paid, gross),
            "_allocations": allocations,
        }
        self.documents[doc_id] = doc
        link = {"id": doc_id, "type": doc_type, "number": full_number, "amount": _fmt(gross)}
        for line in prepared["lines"]:
            if "_source" in line:
                original_id, row = line["_source"]
                original = self.documents[original_id]
                original["_credited"][row] = original["_credited"].get(row, Decimal(0)) + line["qty"]
                original["_credited_gross"] += self._line_amounts(line)[0]
        for original in prepared.get("originals", []):
            original["related_docs"].append(dict(link))
        for original_id, share in allocations:
            self.documents[original_id]["_paid"] += share
        return doc

    def _render(self, doc):
        body = self._public(doc)
        total = doc["_gross"] - doc["_credited_gross"]
        body["debt"] = {"total": _fmt(total), "paid": _fmt(doc["_paid"]), "unpaid": _fmt(self._unpaid(doc))}
        return body

    def _summary(self, doc):
        keys = ["id", "type", "number", "date", "system_time", "amount_gross", "amount_net", "atcud"]
        if self.list_includes_external_reference:
            keys.append("external_reference")
        return {key: doc[key] for key in keys}

    def _get_document(self, request, doc_id):
        doc = self._document(doc_id, self._mode_param(request))
        body = self._render(doc)
        if request.param("output"):
            body["output"] = self._output(doc, request.param("output"))
        return SimResponse.json(200, body)

    def _output(self, doc, output):
        lines = [
            "Vendus simulator - NOT A FISCAL DOCUMENT" + (" (modo de testes)" if doc["mode"] == "tests" else ""),
            f"{DOCUMENT_TYPES[doc['type']]} {doc['number']}",
            f"ATCUD: {doc['atcud']}",
            f"Data: {doc['date']}    Estado: {doc['status']['id']}",
            f"Cliente: {(doc['client'] or {}).get('name') or 'Consumidor final'}",
            f"NIF: {(doc['client'] or {}).get('fiscal_id') or FINAL_CONSUMER_NIF}",
            f"Total: {doc['amount_gross']} EUR",
        ]
        if output == "pdf":
            return base64.b64encode(build_pdf(lines)).decode()
        if output == "html":
            html = "<html><body>" + "".join(f"<p>{line}</p>" for line in lines) + "</body></html>"
            return base64.b64encode(html.encode()).decode()
        raise self._errors(422, f"Formato de saída inválido: {output}")

    def _list_documents(self, request):
        mode = self._mode_param(request)
        docs = [d for d in self.documents.values() if d["mode"] == mode]
        reference = request.param("external_reference")
        if reference:
            # Matches substrings, like the text filters of the service [?]: a client must compare exactly.
            docs = [d for d in docs if reference in (d["external_reference"] or "")]
        filters = {
            "type": lambda d, v: d["type"] == v.upper(),
            "status": lambda d, v: d["status"]["id"] == v.upper(),
            "register_id": lambda d, v: str(d["register_id"]) == v,
            "store_id": lambda d, v: str(d["store_id"]) == v,
            "client_fiscal_id": lambda d, v: (d["client"] or {}).get("fiscal_id") == v,
            "q": lambda d, v: v.lower() in d["number"].lower(),
        }
        for name, keep in filters.items():
            value = _text(request.param(name))
            if value:
                docs = [d for d in docs if keep(d, value)]
        for name, keep in (("since", lambda d, v: d["date"] >= v), ("until", lambda d, v: d["date"] <= v)):
            value = _text(request.param(name))
            if value:
                if _parse_date(value) is None:
                    raise self._errors(422, f"Data inválida em {name} (AAAA-MM-DD)")
                docs = [d for d in docs if keep(d, value)]
        docs.sort(key=lambda d: d["id"], reverse=True)  # newest first
        page = positive_int(request.param("page"), 1)
        per_page = min(positive_int(request.param("per_page"), 20), 1000)
        start = (page - 1) * per_page
        headers = {"X-Paginator-Items": str(len(docs)), "X-Paginator-Pages": str(math.ceil(len(docs) / per_page))}
        if not docs and self.empty_list_status == 404:
            response = self.error_response(404, MSG_NOT_FOUND)
            response.headers.update(headers)
            return response
        return SimResponse.json(200, [self._summary(d) for d in docs[start : start + per_page]], headers=headers)

    def _update_document(self, request, doc_id):
        data = self._body(request)
        mode = _text(data.get("mode")) or self._mode_param(request)
        if mode not in MODES:
            raise self._errors(422, f"Modo inválido: {mode}")
        doc = self._document(doc_id, mode)
        status = _text(data.get("status")).upper()
        if status != "A":
            raise self._errors(422, "Só é possível alterar o estado para A (anulado)")
        if doc["type"] not in self.cancellable_types:
            raise self._errors(422, f"O documento {doc['number']} não pode ser anulado: emita uma nota de crédito (NC)")
        if doc["status"]["id"] == "A":
            raise self._errors(422, f"O documento {doc['number']} já se encontra anulado")
        doc["status"] = {"id": "A", "date": datetime.now().strftime("%Y-%m-%d %H:%M:%S")}
        for original_id, share in doc["_allocations"]:
            self.documents[original_id]["_paid"] -= share
        return SimResponse.json(200, self._render(doc))

    # ----------------------------------------------------------------- account
    def _account(self, request):
        return SimResponse.json(200, dict(self.account))

    def _list_registers(self, request):
        registers = self.registers
        for name in ("store_id", "type"):
            value = _text(request.param(name))
            if value:
                registers = [r for r in registers if str(r[name]) == value]
        return SimResponse.json(200, [self._register_answer(r) for r in registers])

    def _get_register(self, request, register_id):
        register = next((r for r in self.registers if str(r["id"]) == register_id), None)
        if register is None:
            raise self._errors(404, MSG_NOT_FOUND)
        return SimResponse.json(200, self._register_answer(register))

    @staticmethod
    def _register_answer(register):
        return {key: register[key] for key in ("id", "store_id", "title", "type", "status", "mode")}

    def _list_taxes(self, request):
        return SimResponse.json(200, [{"id": tax_id, "rate": rate, "country": "PT"} for tax_id, rate in TAXES.items()])

    def _list_payment_methods(self, request):
        return SimResponse.json(200, [dict(m) for m in self.payment_methods.values()])


def _validation_code(doc_type, serie):
    """The 8-character code the AT gives a registered series (the ATCUD prefix): stable per series."""
    digest = hashlib.sha256(f"{doc_type}:{serie}".encode()).digest()
    return base64.b32encode(digest).decode()[:8]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m simulators.vendus", description="Local Vendus API v1.1 simulator (demo, tests)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8767, help="0 = a free port")
    parser.add_argument("--api-key", default="demo-key")
    parser.add_argument("--register-id", type=int, default=1)
    parser.add_argument("--register-mode", choices=MODES, default="tests", help="mode of a create without mode")
    parser.add_argument("--rate-limit", type=int, default=100, help="credits per window, 0 = unlimited")
    parser.add_argument("--rate-window", type=float, default=60.0, help="seconds")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    args = parser.parse_args(argv)
    register = {"id": args.register_id, "store_id": 1, "title": "Caixa API", "type": "api", "mode": args.register_mode}
    simulator = VendusSimulator(
        api_key=args.api_key,
        registers=[register],
        rate_limit=args.rate_limit or None,
        rate_window=args.rate_window,
        latency=args.latency,
        port=args.port,
        host=args.host,
    )
    return serve_until_signal(simulator)


if __name__ == "__main__":
    sys.exit(main())
