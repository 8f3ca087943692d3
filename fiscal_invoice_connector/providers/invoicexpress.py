"""InvoiceXpress (Portugal), API v2, JSON.

Contract: ../shared/provider-apis.md §2. Facts marked [?] there are kept in the
class attributes below so they are easy to change when checked on a live account.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from decimal import Decimal

from .amounts import CENT, MAX_PRICE_DIGITS, half_up, ix_price
from .base import (
    FiscalDocumentData,
    FiscalParty,
    FiscalProvider,
    InvalidStateError,
    NotFoundError,
    NotReadyError,
    RemoteDocument,
    TransientError,
    ValidationError,
    _error_text,
)
from .numbers import plain as _money

# Our document kinds -> the API's :type path segment, response root key and `type` value.
TYPES = {
    "invoice": ("invoices", "invoice", "Invoice"),
    "invoice_receipt": ("invoice_receipts", "invoice_receipt", "InvoiceReceipt"),
    "simplified_invoice": ("simplified_invoices", "simplified_invoice", "SimplifiedInvoice"),
    "credit_note": ("credit_notes", "credit_note", "CreditNote"),
}

# SAF-T (PT) document type codes: printed before the number, so that an invoice and its
# credit note ("FT A/1", "NC A/1") are never confused (each type has its own series).
SAFT_CODES = {
    "invoice": "FT",
    "invoice_receipt": "FR",
    "simplified_invoice": "FS",
    "credit_note": "NC",
    "receipt": "RG",
}

STATES = {
    "draft": "draft",
    "sent": "final",  # some clients report "sent" for finalized documents
    "final": "final",
    "settled": "settled",
    "canceled": "canceled",
    "cancelled": "canceled",
    "deleted": "deleted",
}


# The account's taxes by (base URL, key), shared by the client objects of a process for a few minutes:
# one GET /taxes.json per account and batch, not per document (100 requests a minute). A document a
# cached list refuses is checked again against a fresh one before being refused.
_TAXES_CACHE = {}
TAXES_CACHE_SECONDS = 300


def _shift_cents(bases, indexes, rate, target, max_moves=4):
    """Move cents of tax-excluded amount between the lines ``indexes`` (same rate) until the VAT
    InvoiceXpress computes, rounded per line, is ``target``; the sum of the bases never changes, and
    no line moves by more than two cents. Updates ``bases`` in place; False when impossible."""
    original = {i: bases[i] for i in indexes}

    def vat():
        return sum(half_up(bases[i] * rate / 100) for i in indexes)

    def movable(i, j):
        return (
            i != j
            and abs(bases[i] + CENT - original[i]) <= 2 * CENT
            and abs(bases[j] - CENT - original[j]) <= 2 * CENT
            and bases[j] - CENT >= 0
        )

    for _move in range(max_moves):
        gap = abs(target - vat())
        if not gap:
            return True
        best = None
        for i, j in itertools.product(indexes, indexes):
            if not movable(i, j):
                continue
            bases[i] += CENT
            bases[j] -= CENT
            remaining = abs(target - vat())
            bases[i] -= CENT
            bases[j] += CENT
            if remaining < gap and (best is None or remaining < best[0]):
                best = (remaining, i, j)
        if best is None:
            break
        bases[best[1]] += CENT
        bases[best[2]] -= CENT
    if target == vat():
        return True
    for i in indexes:
        bases[i] = original[i]
    return 1 < len(indexes) <= 6 and _shift_cents_all(bases, indexes, rate, target)


def _shift_cents_all(bases, indexes, rate, target):
    """The greedy walk can miss moves that only help together: try them all (5^(n-1) at most, the
    smallest total move first)."""
    combos = sorted(itertools.product(range(-2, 3), repeat=len(indexes) - 1), key=lambda c: sum(map(abs, c)))
    for combo in combos:
        moves = [*combo, -sum(combo)]
        candidate = [bases[i] + m * CENT for i, m in zip(indexes, moves, strict=True)]
        if abs(moves[-1]) > 2 or min(candidate) < 0:
            continue
        if sum(half_up(base * rate / 100) for base in candidate) == target:
            for i, base in zip(indexes, candidate, strict=True):
                bases[i] = base
            return True
    return False


class InvoiceXpressProvider(FiscalProvider):
    code = "invoicexpress"
    label = "InvoiceXpress"
    # The account name is the sub-domain of the customer's InvoiceXpress account.
    default_base_url = "https://{account_name}.app.invoicexpress.com"
    credential_fields = ("api_key",)
    # Published budget per account and minute (provider-apis.md §2.1 [C]).
    default_rate_limit = 100
    capabilities = frozenset(
        {
            "draft",
            "email",
            "pdf",
            "cancel",
            "credit_note",
            "receipt",
            "settle",
            "find_by_reference",
            "find_receipt",
            "product_sync",
        }
    )
    # Neutral payment codes -> InvoiceXpress payment mechanisms [1] (go-invoicexpress types.go).
    payment_mechanisms = {"TB": "TB", "MB": "MB", "NU": "DIN", "CC": "CC", "CD": "CD", "CH": "CH", "OU": "OU"}

    # Name of the final consumer when the customer has no valid NIF. IX reports the
    # document to the AT with NIF 999999990 when no fiscal_id is sent [?].
    final_consumer_name = "Consumidor final"
    final_consumer_code = "CONSUMIDOR-FINAL"
    # PDF: 202 while it is being generated; poll this often, at most this many times
    # within one attempt, then leave it to a later attempt (each poll costs budget).
    pdf_poll_interval = 2.0
    pdf_max_polls = 5
    # Seconds InvoiceXpress takes to render a final document's PDF [?]: the engine asks for it that
    # long after finalizing, so that the first poll answers 200 (each 202 costs budget). The
    # account's pdf_ready_after option overrides it.
    pdf_ready_after = 2.0
    # related_documents (§2.2): the list's key in the answer ("documents" in the .NET client
    # filipetoscano/invoice-express) [?], a receipt's type [?], and where the note sent with a
    # partial payment (our payment reference) comes back [?]: the answer is not documented.
    related_documents_keys = ("documents", "related_documents")
    receipt_type = "Receipt"
    receipt_reference_fields = ("note", "observations")
    # ATCUD (DL 28/2019 art. 7(3)): "N/D" = the series is not communicated to the AT, "N/A" = not
    # relevant [C] (§2.3, §2.5); a finalized invoice or note always needs one, so both are "none".
    atcud_required = True
    atcud_missing_values = ("N/A", "N/D", "")
    # GET /sequences.json: the list's key in the answer [?], and the document types whose validation
    # code (current_<type>_validation_code [C]) must be set for the account's documents to get an ATCUD.
    sequences_key = "sequences"
    sequence_types = ("invoice", "invoice_receipt", "simplified_invoice", "credit_note")
    # Where a person communicates a series in InvoiceXpress's own screens [?] (the API's is
    # PUT /sequences/:id/register.json [C]).
    series_settings_path = "Settings > Series (Definições > Séries)"

    def __init__(self, config, session=None, services=None):
        super().__init__(config, session, services)
        self.pdf_poll_interval = float(config.options.get("pdf_poll_interval", self.pdf_poll_interval))
        self.pdf_max_polls = int(config.options.get("pdf_max_polls", self.pdf_max_polls))
        self.pdf_ready_after = float(config.options.get("pdf_ready_after", self.pdf_ready_after))
        # Remote clients by our code: (client id, digest of the payload InvoiceXpress holds). Seeded by
        # the Odoo layer with what earlier runs sent (ClientServices.shared["clients"]), kept up to date
        # here, and stored back after the run: an unchanged customer costs no request at all.
        self.clients = self.shared.setdefault("clients", {})
        self._items = None  # the catalogue by name (= SKU), read once by sync_product
        self._taxes = None  # the account's taxes by name (see _TAXES_CACHE)
        self._taxes_cached = False

    # -- transport ------------------------------------------------------------
    def _auth(self, kwargs):
        # The key goes in the query string (documented); Redactor masks it everywhere.
        kwargs["params"]["api_key"] = self.config.credentials.get("api_key", "")
        return kwargs

    def _raise_for_status(self, response):
        if response.status_code == 406:
            raise InvalidStateError(
                f"InvoiceXpress: the document is not in a state allowing this ({self._error(response)})",
                status=406,
            )
        if response.status_code == 422:
            raise ValidationError(f"InvoiceXpress refused the document: {self._error(response)}", status=422)
        super()._raise_for_status(response)

    def _error(self, response):
        return self.redact(_error_text(response)) or f"HTTP {response.status_code}"

    def _document(self, kind, data):
        root = TYPES[kind][1]
        body = data.get(root) if isinstance(data, dict) else None
        if not isinstance(body, dict) or "id" not in body:
            # Tolerate a root key of another type (e.g. a finalize of an invoice_receipt).
            body = next((v for v in (data or {}).values() if isinstance(v, dict) and "id" in v), None)
        if body is None:
            raise NotReadyError("InvoiceXpress: unexpected answer (no document in the body)")
        number = body.get("sequence_number")
        if number in (None, "", "rascunho"):  # "rascunho" = draft, no number yet
            number = None
        else:
            number = f"{SAFT_CODES[kind]} {body.get('inverted_sequence_number') or number}"
        atcud = body.get("atcud")
        if atcud in self.atcud_missing_values:
            atcud = None
        total = body.get("total")
        return RemoteDocument(
            remote_id=str(body["id"]),
            kind=kind,
            state=STATES.get(str(body.get("status", "")).lower(), str(body.get("status", ""))),
            number=number,
            atcud=atcud,
            total=Decimal(str(total)) if total is not None else None,
            reference=body.get("reference"),
            raw=body,
        )

    # -- clients ------------------------------------------------------------
    def _client_payload(self, party: FiscalParty | None):
        if party is None:
            return {"name": self.final_consumer_name, "code": self.final_consumer_code}
        # A customer without a valid NIF is sent by name (and address) without fiscal_id: the AT records
        # the document as a final consumer's (999999990) [?], and above 1000 EUR the law wants the name
        # and address anyway (art. 36(15) CIVA).
        client = {
            "name": party.name,
            "code": party.code,
            "email": party.email,
            "address": " ".join(filter(None, [party.street, party.street2])) or None,
            "city": party.city,
            "postal_code": party.zip,
            "country": party.country_name,
            "fiscal_id": party.vat,
            "phone": party.phone,
        }
        return {k: v for k, v in client.items() if v not in (None, "")}

    @staticmethod
    def client_digest(payload):
        """What identifies the client data InvoiceXpress holds for a customer (no request)."""
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def ensure_client(self, party: FiscalParty | None):
        """The customer's client id at InvoiceXpress, with what we hold about the customer.

        Known and unchanged since it was last sent: no request. Known and changed (name, NIF,
        address, e-mail...): one update. Unknown: found by our stable code, created when missing.
        IX matches clients by *name* inside a document, so a renamed customer would become a
        second client; the code keeps one client per Odoo partner.
        """
        payload = self._client_payload(party)
        code, digest = payload["code"], self.client_digest(payload)
        known = self.clients.get(code)
        if known and known[1] == digest:
            return known[0]
        if known and known[0] and party is not None:
            try:
                self._request(
                    "PUT", f"/clients/{known[0]}.json", json_body={"client": payload}, expected=(200, 201, 204)
                )
                self.clients[code] = (known[0], digest)
                return known[0]
            except NotFoundError:
                pass  # deleted at InvoiceXpress since: found by code or created below
        found = self._find_client(code)
        if found.get("id"):
            drift = {k: v for k, v in payload.items() if str(found.get(k) or "") != str(v)}
            if drift and party is not None:
                self._request(
                    "PUT", f"/clients/{found['id']}.json", json_body={"client": payload}, expected=(200, 201, 204)
                )
            client_id = found["id"]
        else:
            try:
                response = self._request("POST", "/clients.json", json_body={"client": payload})
                client_id = (self._json(response).get("client") or {}).get("id")
            except ValidationError:
                # Another worker created this customer since we looked ("Code has already been
                # taken", in whatever language): the code is ours, so that client is ours. Any
                # other refusal leaves no client under our code, and stands.
                client_id = self._find_client(code).get("id")
                if not client_id:
                    raise
                # What that worker sent is not known: the next document checks it again.
                digest = None
        self.clients[code] = (client_id, digest)
        return client_id

    def _find_client(self, code):
        try:
            response = self._request("GET", "/clients/find-by-code.json", params={"client_code": code})
            return self._json(response).get("client") or {}
        except NotFoundError:  # no match [?]
            return {}

    # -- documents ------------------------------------------------------------
    def _payload(self, doc: FiscalDocumentData):
        exemptions = sorted(
            {line.tax_exemption_code for line in doc.lines if line.tax_exemption_code and not line.tax_rate}
        )
        if len(exemptions) > 1:
            raise ValidationError(
                "InvoiceXpress accepts one VAT exemption reason per document, but the 0 % lines use "
                f"{', '.join(exemptions)}: give them the same exemption reason or split the invoice."
            )
        missing = [line for line in doc.lines if not line.tax_rate and not line.tax_exemption_code]
        if missing:
            taxes = ", ".join(
                dict.fromkeys(getattr(line, "tax_label", None) or line.tax_name or "0 %" for line in missing)
            )
            raise ValidationError(
                f"A VAT exemption reason (M-code) is required for 0 % lines: tax {taxes} has none (lines "
                + ", ".join(line.description for line in missing[:5])
                + "). Set it on the tax (VAT exemption reason) and retry."
            )
        invoice = {
            "date": doc.date.strftime("%d/%m/%Y"),
            "due_date": (doc.due_date or doc.date).strftime("%d/%m/%Y"),
            # Shown on the document; also what text search finds our reference by.
            "reference": f"{doc.origin} {doc.reference}" if doc.origin else doc.reference,
            "observations": doc.notes or "",
            "client": self._client_payload(doc.partner),
            "items": [
                self._item(line, price, discount)
                for line, (price, discount) in zip(doc.lines, self._prices(doc), strict=True)
            ],
        }
        if exemptions:
            invoice["tax_exemption"] = exemptions[0]
        supply = getattr(doc, "supply_date", None)
        if supply:
            # Art. 36(5)(f) CIVA: the date of supply when it is not the issue date. InvoiceXpress's
            # document has no field for it [?]: it is printed in the observations.
            note = f"Data de fornecimento: {supply.strftime('%d/%m/%Y')}"
            invoice["observations"] = (invoice["observations"] + "\n" + note).strip()
        if doc.currency and doc.currency.upper() != "EUR":
            invoice["currency_code"] = doc.currency.upper()
            # Euros per unit of the currency on the document date, from Odoo's rates (the account's
            # currency_rate option overrides it). What InvoiceXpress does without it is undocumented [?].
            rate = self.config.options.get("currency_rate") or getattr(doc, "exchange_rate", None)
            if not rate:
                raise ValidationError(
                    f"InvoiceXpress needs the exchange rate of {doc.currency} to the euro on the document date: "
                    "set a rate for this currency in Odoo (Accounting > Currencies) and retry."
                )
            invoice["rate"] = _money(Decimal(str(rate)))
        if doc.kind == "credit_note" and doc.related_remote_id:
            invoice["owner_invoice_id"] = doc.related_remote_id
            if doc.reason:
                invoice["observations"] = (doc.reason + "\n" + invoice["observations"]).strip()
        if self.config.options.get("sequence_id"):
            invoice["sequence_id"] = self.config.options["sequence_id"]
        return {"invoice": invoice}

    def _prices(self, doc: FiscalDocumentData):
        """(unit_price, discount) per line such that InvoiceXpress's own arithmetic (quantity x price
        rounded, then the discount, then VAT rounded per line) gives Odoo's document to the cent.

        Lines carrying Odoo's booked amounts (``subtotal``/``total_included``, set by the mapping) get
        a price reproducing their tax-excluded amount. When Odoo's VAT for a rate is not the sum of the
        per-line roundings InvoiceXpress makes (a company rounding globally; VAT-inclusive prices),
        a cent of tax-excluded amount is moved between lines of that rate so that the rate's base, its
        VAT and the total are Odoo's [choice]; a rate where no such move exists is refused, naming the
        tax and both figures, before anything is sent."""
        bases = [getattr(line, "subtotal", None) for line in doc.lines]
        if any(base is None for base in bases):
            return [(line.unit_price, line.discount) for line in doc.lines]
        bases = [Decimal(base) for base in bases]
        groups = {}
        for index, line in enumerate(doc.lines):
            if Decimal(getattr(line, "odoo_discount", line.discount) or 0) >= 100:
                continue  # worth nothing whatever happens: never given a cent
            groups.setdefault((line.tax_name, Decimal(line.tax_rate)), []).append(index)
        for (tax_name, rate), indexes in groups.items():
            target = sum(Decimal(doc.lines[i].total_included) - bases[i] for i in indexes)
            if not _shift_cents(bases, indexes, rate, target):
                line = doc.lines[indexes[0]]
                computed = sum(half_up(bases[i] * rate / 100) for i in indexes)
                raise ValidationError(
                    f"InvoiceXpress computes VAT line by line: tax {getattr(line, 'tax_label', None) or tax_name} "
                    f"({format(rate.normalize(), 'f')} %) would come to {computed} there but to {target} in Odoo. "
                    "Set Accounting > Settings > Taxes > Rounding to “Round per Line” (and tax-excluded prices), or "
                    "move a price by one cent, then retry."
                )
        prices = []
        for line, base in zip(doc.lines, bases, strict=True):
            hint = getattr(line, "odoo_price", None)
            found = ix_price(line.quantity, getattr(line, "odoo_discount", line.discount), base, hint=hint)
            if found is None:
                raise ValidationError(
                    f"InvoiceXpress: no unit price with {MAX_PRICE_DIGITS} decimals gives the line "
                    f"“{line.description or line.code}” its amount {base} for quantity {line.quantity}: "
                    "split the line or change its quantity."
                )
            prices.append(found)
        return prices

    def _item(self, line, unit_price=None, discount=None):
        unit_price = line.unit_price if unit_price is None else unit_price
        discount = line.discount if discount is None else discount
        item = {
            "name": line.code,
            "description": line.description,
            "unit_price": _money(unit_price),
            "quantity": _money(line.quantity),
        }
        if line.unit:
            item["unit"] = line.unit
        if discount:
            item["discount"] = _money(discount)
        if line.tax_name:
            # Always a named tax: a bare number is treated as unknown and falls back to the
            # account default (ix-proxy README).
            item["tax"] = {"name": line.tax_name}
        return item

    def prepare(self, doc: FiscalDocumentData) -> None:
        self._payload(doc)  # validates before any network call
        self._check_tax_names(doc)
        self.ensure_client(doc.partner)

    def _check_tax_names(self, doc: FiscalDocumentData):
        """InvoiceXpress silently applies its default tax to a tax name it does not know [C]: every
        line's tax must exist there, at the line's rate, or the document is refused before sending."""
        problems = self._tax_problems(doc, fresh=False)
        if problems and self._taxes_cached:
            problems = self._tax_problems(doc, fresh=True)  # fixed at InvoiceXpress meanwhile?
        if problems:
            known = ", ".join(f"{n} ({t.get('value')} %)" for n, t in sorted(self._taxes.items())) or "none"
            raise ValidationError(
                "; ".join(dict.fromkeys(problems))
                + f". Set the tax's “Tax name at the provider” to one of the account's taxes ({known}), "
                "or create that tax at InvoiceXpress, then retry."
            )

    def _tax_problems(self, doc, fresh):
        key = (self.config.base_url, self.config.credentials.get("api_key"))
        cached = _TAXES_CACHE.get(key)
        if fresh or cached is None or time.monotonic() - cached[0] > TAXES_CACHE_SECONDS:
            taxes = self._json(self._request("GET", "/taxes.json")).get("taxes") or []
            cached = _TAXES_CACHE[key] = (
                time.monotonic(),
                {str(t.get("name")): t for t in taxes if isinstance(t, dict)},
            )
            self._taxes_cached = False
        else:
            self._taxes_cached = True
        self._taxes = cached[1]
        problems = []
        for line in doc.lines:
            rate = Decimal(line.tax_rate).normalize()
            label = getattr(line, "tax_label", None) or line.tax_name
            known = self._taxes.get(str(line.tax_name))
            if known is None:
                problems.append(
                    f"tax {label} ({format(rate, 'f')} %) has no name at InvoiceXpress "
                    f"(“{line.tax_name}” is not one of its taxes)"
                )
            elif Decimal(str(known.get("value") or 0)).normalize() != rate:
                problems.append(
                    f"tax {label} ({format(rate, 'f')} %) is named “{line.tax_name}”, which is "
                    f"{known.get('value')} % at InvoiceXpress"
                )
        return problems

    def create(self, doc: FiscalDocumentData) -> RemoteDocument:
        payload = self._payload(doc)
        response = self._request("POST", f"/{TYPES[doc.kind][0]}.json", json_body=payload)
        return self._document(doc.kind, self._json(response))

    def fetch_status(self, kind, remote_id) -> RemoteDocument:
        response = self._request("GET", f"/{TYPES[kind][0]}/{remote_id}.json")
        return self._document(kind, self._json(response))

    def _change_state(self, kind, remote_id, state, message=None):
        body = {"invoice": {"state": state}}
        if message:
            body["invoice"]["message"] = message
        response = self._request("PUT", f"/{TYPES[kind][0]}/{remote_id}/change-state.json", json_body=body)
        return self._document(kind, self._json(response))

    def finalize(self, kind, remote_id) -> RemoteDocument:
        try:
            return self._change_state(kind, remote_id, "finalized")
        except ValidationError:
            # "Already finalized" comes back as a 422 in English or Portuguese; the state
            # is the truth, not the wording (SuesteCreative ix-finalize.ts).
            current = self.fetch_status(kind, remote_id)
            if current.is_final:
                return current
            raise

    def settle(self, kind, remote_id) -> RemoteDocument:
        current = self.fetch_status(kind, remote_id)
        if current.state == "settled":
            return current
        return self._change_state(kind, remote_id, "settled")

    def cancel(self, kind, remote_id, reason) -> RemoteDocument:
        current = self.fetch_status(kind, remote_id)
        if current.state in ("canceled", "deleted"):
            return current
        if current.state == "draft":
            return self._change_state(kind, remote_id, "deleted")
        if not reason:
            raise ValidationError("InvoiceXpress needs a reason to cancel a finalized document.")
        return self._change_state(kind, remote_id, "canceled", reason)

    def fetch_pdf(self, kind, remote_id) -> bytes:
        polls = self.pdf_polls_per_call()
        for poll in range(polls):
            response = self._request(
                "GET", f"/api/pdf/{remote_id}.json", params={"second_copy": "false"}, expected=(200, 202)
            )
            if response.status_code == 200:
                output = self._json(response).get("output") or {}
                url = output.get("pdfUrl") or output.get("pdf_url")
                if not url:
                    raise NotReadyError("InvoiceXpress: the PDF answer has no pdfUrl")
                content = self._download(url, "PDF")
                if not content.startswith(b"%PDF"):
                    raise TransientError("InvoiceXpress: the PDF download is not a PDF")
                return content
            if poll + 1 < polls:
                time.sleep(self.pdf_poll_interval)
        raise NotReadyError("InvoiceXpress is still generating the PDF", retry_after=30)

    def send_email(self, kind, remote_id, email, subject, body):
        payload = {
            "message": {
                "client": {"email": email, "save": "0"},
                "subject": subject,
                "body": body,
                "cc": "",
                "bcc": "",
                "logo": "0",
            }
        }
        self._request(
            "PUT", f"/{TYPES[kind][0]}/{remote_id}/email-document.json", json_body=payload, expected=(200, 201, 204)
        )

    def register_payment(self, kind, remote_id, payment) -> RemoteDocument:
        """A receipt for (part of) a final invoice: POST /documents/:id/partial_payments.json.
        When the payments reach the total, InvoiceXpress marks the invoice settled."""
        body = {
            "partial_payment": {
                "payment_mechanism": self.payment_mechanisms.get(payment.method, "OU"),
                "amount": _money(payment.amount),
                "payment_date": payment.date.strftime("%d/%m/%Y"),
                "note": payment.reference or "",
                "serie": "",
            }
        }
        response = self._request("POST", f"/documents/{remote_id}/partial_payments.json", json_body=body)
        receipt = self._json(response).get("receipt") or {}
        if not receipt.get("id"):
            raise NotReadyError("InvoiceXpress: the payment answer has no receipt")
        return self._receipt(receipt, payment.reference)

    def _receipt(self, receipt, reference):
        status = str(receipt.get("status") or "final").lower()
        return RemoteDocument(
            remote_id=str(receipt["id"]),
            kind="receipt",
            state=STATES.get(status, status),
            number=f"RG {receipt.get('inverted_sequence_number') or receipt.get('sequence_number')}",
            atcud=receipt.get("atcud"),
            total=Decimal(str(receipt.get("total"))) if receipt.get("total") is not None else None,
            reference=reference,
            raw=receipt,
        )

    def find_receipt(self, reference, invoice_remote_id=None):
        """The receipt an earlier ``register_payment`` with this payment reference created on the
        invoice ``invoice_remote_id``, or None: the probe before a payment is sent again after a
        timeout or a crash (a second POST would issue a second legal receipt).
        GET /document/:id/related_documents.json (§2.2), matched on the note we sent."""
        if not invoice_remote_id:
            # Receipts are only found through their invoice: without it, "none" would be a guess.
            raise ValueError("InvoiceXpress finds a receipt through its invoice: give the invoice's remote id.")
        response = self._request("GET", f"/document/{invoice_remote_id}/related_documents.json")
        body = self._json(response)
        items = body if isinstance(body, list) else next(
            (body.get(key) for key in self.related_documents_keys if isinstance(body.get(key), list)), []
        )  # fmt: skip
        for item in items:
            if not isinstance(item, dict) or item.get("type") != self.receipt_type or not item.get("id"):
                continue
            if any(str(item.get(field) or "").strip() == reference for field in self.receipt_reference_fields):
                return self._receipt(item, reference)
        return None

    def sync_product(self, product) -> str:
        """InvoiceXpress items are keyed by name: our name is the SKU. The catalogue is read once
        per client object (one sync run), then kept up to date locally."""
        if not product.code:
            raise ValidationError(f"“{product.description}” has no internal reference (SKU): set one to sync it.")
        if self._items is None:
            self._items, page = {}, 1
            while True:
                body = self._json(self._request("GET", "/items.json", params={"per_page": 100, "page": page}))
                for item in body.get("items") or []:
                    self._items[str(item.get("name"))] = item
                pages = (body.get("pagination") or {}).get("total_pages") or 1
                if page >= pages or page >= 200:
                    break
                page += 1
        values = {"name": product.code, "description": product.description, "unit_price": _money(product.unit_price)}
        if product.unit:
            values["unit"] = product.unit
        if product.tax_name:
            values["tax"] = {"name": product.tax_name}
        known = self._items.get(product.code)
        if known:
            same = (
                str(known.get("description") or "") == product.description
                and Decimal(str(known.get("unit_price") or 0)) == Decimal(product.unit_price)
                and (not product.tax_name or (known.get("tax") or {}).get("name") == product.tax_name)
            )
            if not same:
                answer = self._json(self._request("PUT", f"/items/{known['id']}.json", json_body={"item": values}))
                known = answer.get("item") or known
        else:
            known = self._json(self._request("POST", "/items.json", json_body={"item": values})).get("item") or {}
        self._items[product.code] = known
        return str(known.get("id"))

    def list_documents(self, date_from, date_to):
        """Numbered documents of the period (drafts are not fiscal documents), every type."""
        kinds = {type_name: kind for kind, (_path, _root, type_name) in TYPES.items()}
        result, page = [], 1
        while True:
            params = {
                "date[from]": date_from.strftime("%d/%m/%Y"),
                "date[to]": date_to.strftime("%d/%m/%Y"),
                "status[]": ["final", "settled", "canceled"],
                "per_page": 100,
                "page": page,
            }
            body = self._json(self._request("GET", "/invoices.json", params=params))
            for item in body.get("invoices") or []:
                kind = kinds.get(item.get("type"))
                if kind:
                    result.append(self._document(kind, {TYPES[kind][1]: item}))
            pages = (body.get("pagination") or {}).get("total_pages") or 1
            if page >= pages or page >= 100:
                return result
            page += 1

    def find_by_reference(self, doc: FiscalDocumentData):
        """Probe for a document we may have created before a crash or timeout.

        Text search does not return drafts [C], so only finalized documents are
        found; an orphan draft is harmless (not a legal document).
        """
        params = {"text": doc.reference, "type[]": TYPES[doc.kind][2], "per_page": 30}
        response = self._request("GET", "/invoices.json", params=params)
        for body in self._json(response).get("invoices") or []:
            # Text search matches substrings: INV/1 would find INV/10. We send the reference
            # alone or after the origin and a space (see _payload): match that exactly.
            remote_reference = str(body.get("reference") or "")
            ours = remote_reference == doc.reference or remote_reference.endswith(" " + doc.reference)
            if ours and body.get("id"):
                return self._document(doc.kind, {TYPES[doc.kind][1]: body})
        return None

    def missing_atcud_advice(self, remote):
        number = remote.number or remote.remote_id
        raw = remote.raw or {}
        inverted = str(raw.get("inverted_sequence_number") or "")
        series = inverted.rsplit("/", 1)[0] if "/" in inverted else "of this document"
        return (
            f"InvoiceXpress finalized {number} without ATCUD ({raw.get('atcud') or 'none'}): the series {series} is "
            f"not communicated to the Tax Authority. Communicate it in InvoiceXpress ({self.series_settings_path}); "
            "documents finalized afterwards carry their ATCUD. This one is final there and is never issued twice: "
            "click Retry to read its ATCUD again; if it still has none, credit it (reverse the invoice) and "
            "invoice again."
        )

    def series_problems(self):
        """The account's series whose validation code is missing (not communicated to the AT), as
        ``(series, [document types])``: the series of the account's sequence_id option, else the
        default one. Empty when every document type the connector issues there has its code."""
        body = self._json(self._request("GET", "/sequences.json"))
        sequences = body if isinstance(body, list) else (body or {}).get(self.sequences_key) or []
        sequences = [s for s in sequences if isinstance(s, dict)]
        wanted = str(self.config.options.get("sequence_id") or "")
        if wanted:  # the sequence's own id, or one of its per-type ids (what documents carry)
            ours = [
                s
                for s in sequences
                if wanted in {str(s.get("id")), *(str(s.get(f"current_{t}_sequence_id")) for t in self.sequence_types)}
            ]
        else:
            ours = [s for s in sequences if str(s.get("default_sequence")).lower() in ("1", "true")]
        if not ours:
            raise ValidationError(
                "InvoiceXpress: the account's series was not found in its sequences "
                f"({', '.join(str(s.get('serie')) for s in sequences) or 'none'}): check the sequence id."
            )
        problems = []
        for sequence in ours:
            missing = [
                kind
                for kind in self.sequence_types
                if str(sequence.get(f"current_{kind}_validation_code") or "") in self.atcud_missing_values
            ]
            if missing:
                problems.append((str(sequence.get("serie") or sequence.get("id")), missing))
        return problems

    def test_connection(self):
        response = self._request("GET", "/taxes.json")
        taxes = self._json(response).get("taxes") or []
        message = f"Connected to InvoiceXpress ({len(taxes)} taxes configured on the account)."
        problems = self.series_problems()
        if problems:
            text = "; ".join(
                f"series {serie} is not communicated to the Tax Authority for "
                + ", ".join(kind.replace("_", " ") for kind in kinds)
                for serie, kinds in problems
            )
            advice = (
                f"InvoiceXpress: {text}. Documents finalized there would have no ATCUD. Communicate the series in "
                f"InvoiceXpress ({self.series_settings_path}), then test again."
            )
            if self.config.environment == "production":
                raise ValidationError(advice)
            return f"{message} Before production: {advice}"
        return message + " Its series are communicated to the Tax Authority (ATCUD)."
