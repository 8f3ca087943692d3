"""A local InvoiceXpress (API v2, JSON) simulator.

Follows the public contract summarised in shared/provider-apis.md section 2: same
paths, ``api_key`` in the query string, the same JSON shapes and status codes,
and the quirks a client must survive (drafts first, 202 while the PDF is being
rendered, drafts invisible to text search, series chronology on finalize, 0 %
VAT needing an exemption code, 100 requests per minute).

Usage in tests::

    with InvoiceXpressSimulator(api_key="k") as sim:
        client = InvoiceXpressProvider(ProviderConfig(base_url=sim.base_url, credentials={"api_key": "k"}))
        ...
        assert sim.find(reference="INV/2025/0001")[0]["status"] == "final"

CLI (demo)::

    cd fiscal_invoice_connector && python -m simulators.invoicexpress --port 8765 --api-key demo-key
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import math
import re
import sys
import time
from datetime import date as date_cls
from datetime import datetime
from decimal import Decimal

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

# plural path segment -> (singular root key of responses, "type" value, ATCUD validation code).
# A validation code is what the AT returns when the series is registered (8 chars);
# each document type has its own series, hence its own code and numbering.
DOCUMENT_TYPES = {
    "invoices": ("invoice", "Invoice", "JFJ3KDSN"),
    "invoice_receipts": ("invoice_receipt", "InvoiceReceipt", "K7MB2QXP"),
    "simplified_invoices": ("simplified_invoice", "SimplifiedInvoice", "T4RW9ZCA"),
    "credit_notes": ("credit_note", "CreditNote", "N2HD6VYE"),
    "debit_notes": ("debit_note", "DebitNote", "D8PL5SGU"),
}
NOTE_TYPES = ("credit_notes", "debit_notes")
RECEIPT_VALIDATION_CODE = "R5QC8WHT"
SERIE = "A"
SEQUENCE_ID = 90_001  # the series' own id (not the per-type ids documents carry)

# Default taxes of a Portuguese mainland account: name -> (rate, SAF-T code).
DEFAULT_TAXES = {
    "IVA23": (23, "NOR"),
    "IVA13": (13, "INT"),
    "IVA6": (6, "RED"),
    "IVA0": (0, "ISE"),
    "ISENTO": (0, "ISE"),
}
DEFAULT_TAX = "IVA23"
PAYMENT_MECHANISMS = {"TB", "MB", "DIN", "CD", "CC", "CH", "MW", "CO", "OU"}
CLIENT_FIELDS = (
    "name", "code", "email", "address", "city", "postal_code", "country", "fiscal_id",
    "website", "phone", "fax", "observations", "language", "send_options",
)  # fmt: skip

CENT = Decimal("0.01")
DATE_RE = re.compile(r"\d{2}/\d{2}/\d{4}")
PT_POSTAL_CODE_RE = re.compile(r"\d{4}-\d{3}")
EXEMPTION_RE = re.compile(r"M\d{2}")
_TYPES_RE = "|".join(DOCUMENT_TYPES)

MSG_INVALID_STATE = "Invalid state"
MSG_NOT_FOUND = "Not found"


def _parse_date(value):
    if not isinstance(value, str) or not DATE_RE.fullmatch(value):
        return None
    try:
        return datetime.strptime(value, "%d/%m/%Y").date()
    except ValueError:
        return None


def _text(value):
    return str(value).strip() if value is not None else ""


class InvoiceXpressSimulator(SimulatorServer):
    label = "InvoiceXpress simulator"
    fault_messages = {401: "Invalid API key", 404: MSG_NOT_FOUND, 406: MSG_INVALID_STATE}

    routes = (
        ("POST", rf"/(?P<doc_type>{_TYPES_RE})\.json", "_create_document"),
        ("GET", rf"/(?P<doc_type>{_TYPES_RE})\.json", "_list_documents"),
        ("GET", rf"/(?P<doc_type>{_TYPES_RE})/(?P<doc_id>\d+)\.json", "_get_document"),
        ("PUT", rf"/(?P<doc_type>{_TYPES_RE})/(?P<doc_id>\d+)\.json", "_update_document"),
        ("PUT", rf"/(?P<doc_type>{_TYPES_RE})/(?P<doc_id>\d+)/change-state\.json", "_change_state"),
        ("PUT", rf"/(?P<doc_type>{_TYPES_RE})/(?P<doc_id>\d+)/email-document\.json", "_email_document"),
        ("GET", r"/api/pdf/(?P<doc_id>\d+)\.json", "_pdf"),
        ("GET", r"/simulator-files/(?P<doc_id>\d+)\.pdf", "_pdf_file"),
        ("POST", r"/documents/(?P<doc_id>\d+)/partial_payments\.json", "_partial_payment"),
        ("GET", r"/document/(?P<doc_id>\d+)/related_documents\.json", "_related_documents"),
        ("GET", r"/clients/find-by-code\.json", "_find_client_by_code"),
        ("POST", r"/clients\.json", "_create_client"),
        ("GET", r"/clients/(?P<client_id>\d+)\.json", "_get_client"),
        ("PUT", r"/clients/(?P<client_id>\d+)\.json", "_update_client"),
        ("GET", r"/taxes\.json", "_list_taxes"),
        ("GET", r"/sequences\.json", "_list_sequences"),
        ("GET", r"/sequences/(?P<sequence_id>\d+)\.json", "_get_sequence"),
        ("PUT", r"/sequences/(?P<sequence_id>\d+)/register\.json", "_register_sequence"),
        ("GET", r"/items\.json", "_list_items"),
        ("POST", r"/items\.json", "_create_item"),
        ("PUT", r"/items/(?P<item_id>\d+)\.json", "_update_item"),
    )

    def __init__(
        self,
        *,
        api_key="demo-key",
        rate_limit_per_minute=100,
        latency=0.0,
        pdf_polls_before_ready=1,
        pdf_render_seconds=0.0,
        require_exemption_for_zero_vat=True,
        series_communicated=True,
        port=0,
        host="127.0.0.1",
        timeout_seconds=15.0,
    ):
        self.api_key = api_key
        # The PDF is ready once the document has been final for ``pdf_render_seconds`` (rendering is
        # asynchronous at the real service, its duration [?]) and at least ``pdf_polls_before_ready``
        # polls have answered 202 (to test a client's polling); 202 until then.
        self.pdf_polls_before_ready = pdf_polls_before_ready
        self.pdf_render_seconds = pdf_render_seconds
        self.require_exemption_for_zero_vat = require_exemption_for_zero_vat
        self.series_communicated = series_communicated
        super().__init__(
            host=host,
            port=port,
            latency=latency,
            rate_limit_per_minute=rate_limit_per_minute,
            timeout_seconds=timeout_seconds,
        )

    # ------------------------------------------------------------------ state
    def reset_state(self):
        self.documents = {}  # id -> stored document (public fields + "_"-prefixed internals)
        self.receipts = {}  # id -> receipt created by a partial payment
        self.clients = {}  # id -> client
        self.items = {}  # name -> item (the real service matches items by name)
        self.emails = []
        self.ties = []  # line amounts that landed on a half-cent tie (see _priced)
        self.taxes = {
            name: {"id": index, "name": name, "value": rate, "region": "PT", "code": code,
                   "default_tax": 1 if name == DEFAULT_TAX else 0}
            for index, (name, (rate, code)) in enumerate(DEFAULT_TAXES.items(), start=1)
        }  # fmt: skip
        # Per series: last number, date of the last finalized document, hash for the chain.
        self._sequences = {key: {"number": 0, "last_date": None, "hash": ""} for key in [*DOCUMENT_TYPES, "receipts"]}
        # Large, distinct id ranges: a client confusing ids with numbers fails loudly.
        self._next_document_id = 1_000_001
        self._next_client_id = 5_000_001
        self._next_item_id = 7_000_001

    # ------------------------------------------------------- inspection helpers
    def find(self, **criteria):
        """Stored documents whose fields equal ``criteria`` (e.g. ``reference="INV/1"``), by id."""
        with self.lock:
            return [
                doc
                for _, doc in sorted(self.documents.items())
                if all(doc.get(key) == value for key, value in criteria.items())
            ]

    def final_documents(self, include_canceled=False):
        """Documents that exist fiscally (numbered): final and settled, optionally canceled."""
        states = ("final", "settled", "canceled") if include_canceled else ("final", "settled")
        with self.lock:
            return [doc for _, doc in sorted(self.documents.items()) if doc["status"] in states]

    # ------------------------------------------------------------- transport hooks
    def is_public(self, request):
        # Mimics a pre-signed storage URL: no api_key, not counted by the rate limit.
        return request.path.startswith("/simulator-files/")

    def authenticate(self, request):
        given = request.param("api_key") or ""
        if not hmac.compare_digest(given.encode(), str(self.api_key).encode()):
            return self.error_response(401, "Invalid API key")
        return None

    def rate_limited_response(self, retry_after):
        # Guess: Rack::Attack's default throttled answer (plain text) plus Retry-After.
        return SimResponse.text(429, "Retry later\n", headers={"Retry-After": str(retry_after)})

    # ---------------------------------------------------------------- helpers
    def _errors(self, status, *messages):
        return Reply(self.error_response(status, *messages))

    def _body(self, request, wrapper):
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            raise self._errors(400, "Invalid JSON") from None
        data = body.get(wrapper) if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise self._errors(422, f"Missing or invalid '{wrapper}' parameter")
        return data

    def _document(self, doc_id, doc_type=None):
        doc = self.documents.get(int(doc_id))
        if doc is None or (doc_type is not None and doc["_type"] != doc_type):
            raise self._errors(404, MSG_NOT_FOUND)
        return doc

    def _render(self, doc):
        return {key: copy.deepcopy(value) for key, value in doc.items() if not key.startswith("_")}

    def _document_response(self, status, doc):
        return SimResponse.json(status, {DOCUMENT_TYPES[doc["_type"]][0]: self._render(doc)})

    def _public_base(self, request):
        # The Host the client used, so pdfUrl works behind any name that reaches the simulator.
        host = request.headers.get("Host")
        return f"http://{host}" if host else self.base_url

    # ----------------------------------------------------------- validation
    def _check_postal_code(self, client, errors):
        """Portuguese postal codes must be DDDD-DDD. An absent country is the account's (Portugal)."""
        country = _text(client.get("country")).lower()
        postal_code = _text(client.get("postal_code"))
        if postal_code and country in ("", "portugal") and not PT_POSTAL_CODE_RE.fullmatch(postal_code):
            errors.append("Postal Code must have the following format DDDD-DDD")

    def _tax(self, tax):
        """The account tax named by ``tax{name}``; anything else falls back to the default tax,
        as the real service does (so ``tax: 23`` silently becomes IVA23)."""
        name = tax.get("name") if isinstance(tax, dict) else None
        return self.taxes.get(name) or self.taxes[DEFAULT_TAX]

    def _prepare(self, doc_type, data):  # noqa: C901 - one check per documented 422, in the service's order
        """Validate a create/update body; return the normalised document data or raise a 422."""
        errors = []
        doc_date = _parse_date(data.get("date"))
        if not _text(data.get("date")):
            errors.append("Date can't be blank")
        elif doc_date is None:
            errors.append("Date must have the following format dd/mm/yyyy")
        due_date = doc_date
        if _text(data.get("due_date")):
            due_date = _parse_date(data.get("due_date"))
            if due_date is None:
                errors.append("Due date must have the following format dd/mm/yyyy")
        if doc_date and due_date and due_date < doc_date:
            errors.append("Due date must be later than date")
        if doc_date and doc_date > pt_today():
            errors.append("Date can't be in the future")  # [?] wording; art. 36 CIVA

        client = data.get("client")
        if not isinstance(client, dict) or not _text(client.get("name")):
            errors.append("Client is invalid")
        else:
            self._check_postal_code(client, errors)

        lines = []
        items = data.get("items")
        if not isinstance(items, list) or not items:
            errors.append("Items can't be blank")
            items = []
        for item in items:
            if not isinstance(item, dict):
                errors.append("Item is invalid")
                continue
            quantity = json_decimal(item.get("quantity"))
            unit_price = json_decimal(item.get("unit_price"))
            discount = json_decimal(item.get("discount")) if item.get("discount") not in (None, "") else Decimal(0)
            if not _text(item.get("name")):
                errors.append("Item name can't be blank")
            if quantity is None or quantity <= 0:
                errors.append("Quantity must be a number greater than 0")
            if unit_price is None:
                errors.append("Unit price is not a number")
            if discount is None or not 0 <= discount <= 100:
                errors.append("Discount must be between 0 and 100")
            tax = self._tax(item.get("tax"))
            lines.append({"item": item, "quantity": quantity, "unit_price": unit_price, "discount": discount,
                          "tax": tax})  # fmt: skip

        # Which of tax_exemption / tax_exemption_reason wins is unconfirmed: accept both, prefer the former.
        exemption = _text(data.get("tax_exemption")) or _text(data.get("tax_exemption_reason")) or None
        if exemption and not EXEMPTION_RE.fullmatch(exemption):
            errors.append("Tax exemption is invalid")
        zero_rated = any(line["tax"]["value"] == 0 for line in lines)
        # M00 means "no exemption", so it does not justify a 0 % line.
        if self.require_exemption_for_zero_vat and zero_rated and exemption in (None, "M00"):
            errors.append("Tax exemption reason is required")

        owner_id = data.get("owner_invoice_id")
        if doc_type == "credit_notes" and owner_id in (None, ""):
            # A credit note corrects a document (art. 29(1)(c) CIVA): it must name it. [?] wording.
            errors.append("Owner invoice can't be blank")
        if doc_type == "credit_notes" and not _text(data.get("observations")):
            # The reason of the correction is part of the note (art. 36 CIVA). [?] field: observations.
            errors.append("Observations can't be blank")
        if owner_id not in (None, "") and doc_type in NOTE_TYPES:
            owner = self.documents.get(int(owner_id)) if str(owner_id).isdigit() else None
            # The corrected document must exist fiscally, and a note does not correct a note.
            if owner is None or owner["status"] not in ("final", "settled") or owner["_type"] in NOTE_TYPES:
                errors.append("Owner invoice is invalid")
        else:
            owner_id = None

        global_discount = data.get("global_discount") or {}
        global_value = Decimal(0)
        global_kind = "percentage"
        if isinstance(global_discount, dict) and global_discount.get("value") not in (None, ""):
            global_kind = global_discount.get("value_type") or "percentage"
            global_value = json_decimal(global_discount.get("value"))
            if global_kind not in ("percentage", "amount") or global_value is None or global_value < 0:
                errors.append("Global discount is invalid")

        currency_code = _text(data.get("currency_code")).upper() or "EUR"
        rate = json_decimal(data.get("rate")) if data.get("rate") not in (None, "") else None
        if currency_code != "EUR" and (rate is None or rate <= 0):
            # The euro counter-value of a foreign-currency document needs the rate. [?] whether the real
            # service would apply its own instead; strict here.
            errors.append("Rate can't be blank")
        if errors:
            raise self._errors(422, *dict.fromkeys(errors))  # unique, in order
        return {
            "date": doc_date,
            "due_date": due_date,
            "client": client,
            "lines": lines,
            "tax_exemption": exemption,
            "owner_invoice_id": int(owner_id) if owner_id is not None else None,
            "global_discount": (global_kind, global_value),
            "reference": data.get("reference"),
            "observations": data.get("observations"),
            "currency": "Euro" if currency_code == "EUR" else currency_code,
            "rate": float(rate) if rate is not None else None,
        }

    # ------------------------------------------------------------- computing
    def _match_client(self, data):
        """By ``code`` when given (the reliable way), else by name; unknown -> new client.
        Fields sent with the document update the stored client (guess)."""
        code = _text(data.get("code")) or None
        if code:
            client = next((c for c in self.clients.values() if c["code"] == code), None)
        else:
            name = _text(data.get("name"))
            client = next((c for c in self.clients.values() if c["name"] == name), None)
        if client is None:
            client = self._new_client(data)
        else:
            client.update({key: data[key] for key in CLIENT_FIELDS if data.get(key) not in (None, "")})
        return client

    def _new_client(self, data):
        client = {"id": self._next_client_id, **{key: data.get(key) for key in CLIENT_FIELDS}}
        client["name"] = _text(client["name"])
        client["code"] = _text(client["code"]) or None
        self._next_client_id += 1
        self.clients[client["id"]] = client
        return client

    def _match_item(self, line):
        """Items are matched by name: a new name creates one, a known name updates it."""
        item = line["item"]
        name = _text(item.get("name"))
        stored = self.items.get(name)
        if stored is None:
            stored = self.items[name] = {"id": self._next_item_id, "name": name}
            self._next_item_id += 1
        stored.update({
            "description": item.get("description"),
            "unit_price": float(line["unit_price"]),
            "unit": item.get("unit"),
            "tax": {"name": line["tax"]["name"], "value": line["tax"]["value"]},
        })  # fmt: skip

    def _priced(self, value):
        """A line amount the client chose (quantity x price, the discount amount), rounded. How the real
        service breaks an exact half-cent tie is unknown [?]: such values are recorded in ``ties`` so
        that tests can insist a client never sends one."""
        if (value * 100) % 1 == Decimal("0.5"):
            self.ties.append(value)
        return _money(value)

    def _totals(self, lines, global_discount):
        """Lines and document totals, Decimal half-up to cents, tax rounded per line.

        A global discount is spread over the lines before tax (a percentage per line,
        an amount pro rata, the last line taking the rounding remainder); lines keep
        showing their own subtotal. How the real service spreads it is a guess.
        """
        rendered, gross_total, subtotals = [], Decimal(0), []
        for line in lines:
            # quantity x price rounded first, then the discount amount rounded (the service's arithmetic).
            gross = self._priced(line["unit_price"] * line["quantity"])
            gross_total += gross
            subtotals.append(gross - self._priced(gross * line["discount"] / 100))
        net_total = sum(subtotals, Decimal(0))
        kind, value = global_discount
        if kind == "amount":
            global_amount = min(_money(value), net_total)
        else:
            global_amount = _money(net_total * value / 100)
        bases, remaining = [], global_amount
        for index, subtotal in enumerate(subtotals):
            if index == len(subtotals) - 1:
                share = remaining
            else:
                share = _money(global_amount * subtotal / net_total) if net_total else Decimal(0)
            remaining -= share
            bases.append(subtotal - share)
        taxes = Decimal(0)
        for line, subtotal, base in zip(lines, subtotals, bases, strict=False):
            tax_amount = _money(base * Decimal(line["tax"]["value"]) / 100)
            taxes += tax_amount
            item = line["item"]
            rendered.append({
                "name": _text(item.get("name")),
                "description": item.get("description"),
                "unit_price": float(line["unit_price"]),
                "unit": item.get("unit"),
                "quantity": float(line["quantity"]),
                "discount": float(line["discount"]),
                "tax": {"name": line["tax"]["name"], "value": line["tax"]["value"]},
                "subtotal": float(subtotal),
                "tax_amount": float(tax_amount),
                "total": float(subtotal + tax_amount),
            })  # fmt: skip
        before_taxes = net_total - global_amount
        totals = {
            "sum": float(gross_total),
            "discount": float(gross_total - before_taxes),
            "before_taxes": float(before_taxes),
            "taxes": float(taxes),
            "total": float(before_taxes + taxes),
        }
        return rendered, totals

    def _fill(self, doc, prepared):
        """Write validated data into a (new or draft) document."""
        client = self._match_client(prepared["client"])
        for line in prepared["lines"]:
            self._match_item(line)
        items, totals = self._totals(prepared["lines"], prepared["global_discount"])
        doc.update(
            date=prepared["date"].strftime("%d/%m/%Y"),
            due_date=prepared["due_date"].strftime("%d/%m/%Y"),
            reference=prepared["reference"],
            observations=prepared["observations"],
            currency=prepared["currency"],
            rate=prepared["rate"],
            tax_exemption=prepared["tax_exemption"],
            owner_invoice_id=prepared["owner_invoice_id"],
            client={key: client.get(key) for key in ("id", "name", "code", "country", "email", "fiscal_id")},
            items=items,
            **totals,
        )
        doc["_date"] = prepared["date"]

    # --------------------------------------------------------------- documents
    def _create_document(self, request, doc_type):
        prepared = self._prepare(doc_type, self._body(request, "invoice"))
        doc_id = self._next_document_id
        self._next_document_id += 1
        token = hashlib.sha1(f"{doc_type}:{doc_id}".encode()).hexdigest()[:24]
        doc = {
            "id": doc_id,
            "status": "draft",
            "archived": False,
            "type": DOCUMENT_TYPES[doc_type][1],
            "sequence_number": "rascunho",  # what the real service shows for drafts
            "inverted_sequence_number": "rascunho",
            "sequence_id": list(DOCUMENT_TYPES).index(doc_type) + 1,
            "atcud": None,
            "saft_hash": None,
            "permalink": f"{self._public_base(request)}/documents/{token}",
            "_type": doc_type,
            "_pdf_polls": 0,
            "_paid": Decimal(0),
        }
        self._fill(doc, prepared)
        self.documents[doc_id] = doc
        return self._document_response(201, doc)

    def _get_document(self, request, doc_type, doc_id):
        return self._document_response(200, self._document(doc_id, doc_type))

    def _update_document(self, request, doc_type, doc_id):
        doc = self._document(doc_id, doc_type)
        if doc["status"] != "draft":
            raise self._errors(422, MSG_INVALID_STATE)
        # PUT replaces the whole document: anything not resent (e.g. tax_exemption) is lost.
        self._fill(doc, self._prepare(doc_type, self._body(request, "invoice")))
        return self._document_response(200, doc)

    def _list_documents(self, request, doc_type):
        # /invoices.json lists every document type (filtered by type[]); the others only their own.
        docs = [d for d in self.documents.values() if doc_type == "invoices" or d["_type"] == doc_type]
        types = request.query.get("type[]", []) + request.query.get("type", [])
        if types:
            docs = [d for d in docs if d["type"] in types]
        statuses = request.query.get("status[]", []) + request.query.get("status", [])
        if statuses:
            docs = [d for d in docs if d["status"] in statuses]
        # Document date range, dd/mm/yyyy as everywhere in this API.
        date_from, date_to = _parse_date(request.param("date[from]")), _parse_date(request.param("date[to]"))
        if date_from:
            docs = [d for d in docs if _parse_date(d["date"]) >= date_from]
        if date_to:
            docs = [d for d in docs if _parse_date(d["date"]) <= date_to]
        text = _text(request.param("text")).lower()
        if text:
            # The real text search never returns drafts: a client must keep the id it got at creation.
            docs = [
                d
                for d in docs
                if d["status"] not in ("draft", "deleted")
                and any(text in _text(v).lower() for v in (d["reference"], d["sequence_number"], d["client"]["name"]))
            ]
        docs.sort(key=lambda d: d["id"], reverse=True)  # newest first
        page = positive_int(request.param("page"), 1)
        per_page = positive_int(request.param("per_page"), 30)
        start = (page - 1) * per_page
        return SimResponse.json(200, {
            "invoices": [self._render(d) for d in docs[start:start + per_page]],
            "pagination": {
                "total_entries": len(docs),
                "current_page": page,
                "total_pages": math.ceil(len(docs) / per_page),
                "per_page": per_page,
            },
        })  # fmt: skip

    # -------------------------------------------------------------- state changes
    def _change_state(self, request, doc_type, doc_id):
        doc = self._document(doc_id, doc_type)
        data = self._body(request, "invoice")
        state, message, status = data.get("state"), _text(data.get("message")), doc["status"]
        if state == "finalized" and status == "draft":
            self._finalize(doc)
        elif state == "deleted" and status == "draft":
            doc["status"] = "deleted"
        elif state == "canceled" and (status == "final" or (status == "settled" and doc_type == "invoice_receipts")):
            if not message:
                raise self._errors(422, "Cancel message can't be blank")
            doc["status"] = "canceled"
            doc["_cancel_message"] = message
        elif state == "settled" and status == "final":
            doc["status"] = "settled"
        elif state == "unsettled" and status == "settled" and doc_type in NOTE_TYPES:
            doc["status"] = "final"
        else:
            # Includes finalizing an already final document: the client must read state, not retry blindly.
            raise self._errors(422, MSG_INVALID_STATE)
        return self._document_response(200, doc)

    def _finalize(self, doc):
        sequence = self._sequences[doc["_type"]]
        if sequence["last_date"] and doc["_date"] < sequence["last_date"]:
            # AT rule: inside a series, documents are chronological.
            raise self._errors(422, "Date cannot be earlier than the last document of this sequence")
        if doc["_date"] > pt_today():
            raise self._errors(422, "Date can't be in the future")
        if doc["_type"] == "simplified_invoices":
            # Art. 40 CIVA: 1000 EUR to a final consumer (no fiscal id), 100 EUR otherwise. [?] enforcement.
            consumer = _text((doc["client"] or {}).get("fiscal_id")) in ("", "999999990")
            limit = 1000 if consumer else 100
            if Decimal(str(doc["total"])) > limit:
                raise self._errors(422, f"Simplified invoices can't exceed {limit} EUR")
        number = sequence["number"] + 1
        full_hash = saft_chain_hash(sequence["hash"], doc["date"], f"{SERIE}/{number}", doc["total"])
        sequence.update(number=number, last_date=doc["_date"], hash=full_hash)
        doc.update(
            status="settled" if doc["_type"] == "invoice_receipts" else "final",
            sequence_number=f"{number}/{SERIE}",
            inverted_sequence_number=f"{SERIE}/{number}",
            # A series not communicated to the AT has no validation code: IX answers N/D [C].
            atcud=f"{DOCUMENT_TYPES[doc['_type']][2]}-{number}" if self.series_communicated else "N/D",
            saft_hash=saft_printed_hash(full_hash),
            _final_at=time.monotonic(),
        )
        if doc["_type"] == "invoice_receipts":
            doc["_paid"] = Decimal(str(doc["total"]))

    def _email_document(self, request, doc_type, doc_id):
        doc = self._document(doc_id, doc_type)
        data = self._body(request, "message")
        if doc["status"] in ("draft", "deleted"):
            raise self._errors(406, MSG_INVALID_STATE)
        client = data.get("client") if isinstance(data.get("client"), dict) else {}
        email = _text(client.get("email"))
        if not email:
            raise self._errors(422, "Email can't be blank")
        self.emails.append({
            "document_id": doc["id"], "type": doc["type"], "email": email,
            "subject": data.get("subject"), "body": data.get("body"),
            "cc": data.get("cc"), "bcc": data.get("bcc"),
        })  # fmt: skip
        # Guess: the real service answers 200 with an empty body.
        return SimResponse(200)

    def _partial_payment(self, request, doc_id):
        doc = self._document(doc_id)
        data = self._body(request, "partial_payment")
        if doc["status"] == "settled":
            raise self._errors(422, "Invoice has been settled so can't be changed anymore")
        if doc["status"] != "final" or doc["_type"] == "credit_notes":
            raise self._errors(422, MSG_INVALID_STATE)
        amount = json_decimal(data.get("amount"))
        remaining = Decimal(str(doc["total"])) - doc["_paid"]
        errors = []
        if amount is None or amount <= 0:
            errors.append("Amount must be greater than 0")
        elif _money(amount) > remaining:
            errors.append("Amount can't be greater than the amount due")
        if data.get("payment_mechanism") not in PAYMENT_MECHANISMS:
            errors.append("Payment mechanism is invalid")
        payment_date = _parse_date(data.get("payment_date")) if data.get("payment_date") else date_cls.today()
        if payment_date is None:
            errors.append("Payment date must have the following format dd/mm/yyyy")
        if errors:
            raise self._errors(422, *errors)
        amount = _money(amount)
        sequence = self._sequences["receipts"]
        number = sequence["number"] + 1
        sequence["number"] = number
        receipt = {
            "id": self._next_document_id,
            "status": "final",
            "type": "Receipt",
            "sequence_number": f"{number}/{SERIE}",
            "inverted_sequence_number": f"{SERIE}/{number}",
            "atcud": f"{RECEIPT_VALIDATION_CODE}-{number}",
            "date": payment_date.strftime("%d/%m/%Y"),
            "total": float(amount),
            "currency": doc["currency"],
            "payment_mechanism": data.get("payment_mechanism"),
            "note": data.get("note"),
            "owner_invoice_id": doc["id"],
            "client": copy.deepcopy(doc["client"]),
        }
        self._next_document_id += 1
        self.receipts[receipt["id"]] = receipt
        doc["_paid"] += amount
        if doc["_paid"] >= Decimal(str(doc["total"])):
            doc["status"] = "settled"
        return SimResponse.json(201, {"receipt": copy.deepcopy(receipt)})

    def _related_documents(self, request, doc_id):
        """GET /document/:id/related_documents.json (§2.2): the documents linked to one, the
        receipts of its payments and the notes correcting it (or, for those, their invoice),
        under ``documents`` as other clients read it [?]. Receipts keep the ``note`` sent with
        the payment [?]. Drafts are not related to anything yet."""
        doc_id = int(doc_id)
        doc = self.documents.get(doc_id) or self.receipts.get(doc_id)
        if doc is None:
            raise self._errors(404, MSG_NOT_FOUND)
        owner = doc.get("owner_invoice_id")
        related = [
            self._render(d)
            for d in self.documents.values()
            if (d.get("owner_invoice_id") == doc_id and d["status"] not in ("draft", "deleted")) or d["id"] == owner
        ]
        related += [copy.deepcopy(r) for r in self.receipts.values() if r["owner_invoice_id"] == doc_id]
        related.sort(key=lambda d: d["id"])
        return SimResponse.json(200, {"documents": related})

    # -------------------------------------------------------------------- PDF
    def _pdf(self, request, doc_id):
        doc = self._document(doc_id)
        if doc["status"] in ("draft", "deleted"):
            raise self._errors(406, MSG_INVALID_STATE)
        doc["_pdf_polls"] += 1
        rendering = time.monotonic() - doc.get("_final_at", 0.0) < self.pdf_render_seconds
        if doc["_pdf_polls"] <= self.pdf_polls_before_ready or rendering:
            # Rendering is asynchronous: 202 and an empty body until it is ready.
            return SimResponse(202)
        url = f"{self._public_base(request)}/simulator-files/{doc['id']}.pdf"
        return SimResponse.json(200, {"output": {"pdfUrl": url}})

    def _pdf_file(self, request, doc_id):
        doc = self.documents.get(int(doc_id))
        if doc is None or doc["status"] in ("draft", "deleted"):
            return SimResponse.text(404, "NoSuchKey")  # what a storage bucket says
        pdf = build_pdf([
            "InvoiceXpress simulator - NOT A FISCAL DOCUMENT",
            f"{doc['type']} {doc['sequence_number']}",
            f"ATCUD: {doc['atcud']}",
            f"Date: {doc['date']}    Status: {doc['status']}",
            f"Client: {doc['client']['name']}",
            f"Reference: {doc['reference'] or ''}",
            f"Total: {doc['total']:.2f} {doc['currency']}",
        ])  # fmt: skip
        return SimResponse(200, pdf, {"Content-Type": "application/pdf"})

    # ----------------------------------------------------------------- clients
    def _find_client_by_code(self, request):
        code = _text(request.param("client_code"))
        client = next((c for c in self.clients.values() if code and c["code"] == code), None)
        if client is None:
            raise self._errors(404, MSG_NOT_FOUND)
        return SimResponse.json(200, {"client": dict(client)})

    def _create_client(self, request):
        data = self._body(request, "client")
        errors = []
        if not _text(data.get("name")):
            errors.append("Name can't be blank")
        code = _text(data.get("code"))
        if code and any(c["code"] == code for c in self.clients.values()):
            errors.append("Code has already been taken")
        self._check_postal_code(data, errors)
        if errors:
            raise self._errors(422, *errors)
        return SimResponse.json(201, {"client": dict(self._new_client(data))})

    def _get_client(self, request, client_id):
        client = self.clients.get(int(client_id))
        if client is None:
            raise self._errors(404, MSG_NOT_FOUND)
        return SimResponse.json(200, {"client": dict(client)})

    def _update_client(self, request, client_id):
        client = self.clients.get(int(client_id))
        if client is None:
            raise self._errors(404, MSG_NOT_FOUND)
        data = self._body(request, "client")
        errors = []
        if "name" in data and not _text(data.get("name")):
            errors.append("Name can't be blank")
        code = _text(data.get("code"))
        if code and any(c["code"] == code and c["id"] != client["id"] for c in self.clients.values()):
            errors.append("Code has already been taken")
        self._check_postal_code(data, errors)
        if errors:
            raise self._errors(422, *errors)
        client.update({key: data[key] for key in CLIENT_FIELDS if key in data})
        return SimResponse.json(200, {"client": dict(client)})

    # ------------------------------------------------------------------ items
    def _list_items(self, request):
        items = sorted(self.items.values(), key=lambda i: i["id"])
        page = positive_int(request.param("page"), 1)
        per_page = positive_int(request.param("per_page"), 30)
        start = (page - 1) * per_page
        return SimResponse.json(200, {
            "items": [copy.deepcopy(i) for i in items[start:start + per_page]],
            "pagination": {"total_entries": len(items), "current_page": page,
                           "total_pages": math.ceil(len(items) / per_page), "per_page": per_page},
        })  # fmt: skip

    def _item_values(self, data):
        name = _text(data.get("name"))
        if not name:
            raise self._errors(422, "Name can't be blank")
        unit_price = json_decimal(data.get("unit_price", 0))
        if unit_price is None:
            raise self._errors(422, "Unit price is not a number")
        tax = self._tax((data.get("tax") or {}).get("name"))
        return {"name": name, "description": data.get("description"), "unit_price": float(unit_price),
                "unit": data.get("unit"), "tax": {"name": tax["name"], "value": tax["value"]}}  # fmt: skip

    def _create_item(self, request):
        values = self._item_values(self._body(request, "item"))
        if values["name"] in self.items:
            # Names are unique: the real service matches items by name.
            raise self._errors(422, "Name has already been taken")
        item = self.items[values["name"]] = {"id": self._next_item_id, **values}
        self._next_item_id += 1
        return SimResponse.json(201, {"item": copy.deepcopy(item)})

    def _update_item(self, request, item_id):
        item = next((i for i in self.items.values() if i["id"] == int(item_id)), None)
        if item is None:
            raise self._errors(404, MSG_NOT_FOUND)
        values = self._item_values({**item, **self._body(request, "item")})
        if values["name"] != item["name"]:
            if values["name"] in self.items:
                raise self._errors(422, "Name has already been taken")
            self.items[values["name"]] = self.items.pop(item["name"])
        item.update(values)
        return SimResponse.json(200, {"item": copy.deepcopy(item)})

    def _list_taxes(self, request):
        return SimResponse.json(200, {"taxes": [dict(tax) for tax in self.taxes.values()]})

    # --------------------------------------------------------------- sequences (series)
    def _sequence(self):
        """The account's one series ("A"), as §2.5 describes a sequence: per document type its current
        number, its per-type sequence id (what documents carry as sequence_id) and its validation code:
        the AT's code once the series is communicated, ``N/D`` before [C]."""
        sequence = {"id": SEQUENCE_ID, "serie": SERIE, "default_sequence": 1}
        for index, (plural, (singular, _type, code)) in enumerate(DOCUMENT_TYPES.items(), start=1):
            sequence[f"current_{singular}_number"] = self._sequences[plural]["number"]
            sequence[f"current_{singular}_sequence_id"] = index
            sequence[f"current_{singular}_validation_code"] = code if self.series_communicated else "N/D"
        return sequence

    def _sequence_or_404(self, sequence_id):
        if int(sequence_id) != SEQUENCE_ID:
            raise self._errors(404, MSG_NOT_FOUND)
        return self._sequence()

    def _list_sequences(self, request):
        # The list's root key is not documented [?]: "sequences", like the other collections.
        return SimResponse.json(200, {"sequences": [self._sequence()]})

    def _get_sequence(self, request, sequence_id):
        return SimResponse.json(200, {"sequence": self._sequence_or_404(sequence_id)})

    def _register_sequence(self, request, sequence_id):
        """Communicate the series to the AT [C]: documents finalized from now on carry an ATCUD. Those
        finalized before keep what they were finalized with (the ATCUD is part of the final document)."""
        self._sequence_or_404(sequence_id)
        self.series_communicated = True
        return SimResponse.json(200, {"sequence": self._sequence()})


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m simulators.invoicexpress", description="Local InvoiceXpress API v2 simulator (demo, tests)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 = a free port")
    parser.add_argument("--api-key", default="demo-key")
    parser.add_argument("--rate-limit", type=int, default=100, help="requests per minute, 0 = unlimited")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--pdf-polls", type=int, default=1, help="202 answers before a PDF is ready")
    parser.add_argument("--pdf-render-seconds", type=float, default=0.0, help="seconds to render a final PDF")
    parser.add_argument(
        "--allow-zero-vat-without-exemption", action="store_true", help="accept 0%% lines without tax_exemption"
    )
    args = parser.parse_args(argv)
    simulator = InvoiceXpressSimulator(
        api_key=args.api_key,
        rate_limit_per_minute=args.rate_limit or None,
        latency=args.latency,
        pdf_polls_before_ready=args.pdf_polls,
        pdf_render_seconds=args.pdf_render_seconds,
        require_exemption_for_zero_vat=not args.allow_zero_vat_without_exemption,
        port=args.port,
        host=args.host,
    )
    return serve_until_signal(simulator)


if __name__ == "__main__":
    sys.exit(main())
