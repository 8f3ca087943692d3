"""Vendus / Cegid Vendus (Portugal), API v1.1, JSON.

Contract: ../shared/provider-apis.md §3. Facts marked [?] there (and the guesses made
here) are class attributes below, so they are easy to change once checked on a live
account.

What differs from the other providers, in short:

* Documents are final on creation (no draft): ``create`` answers the number and ATCUD.
* Prices are sent VAT-inclusive (``gross_price``) with a tax class (``tax_id``), not a rate.
* There is no idempotency key: every document carries ``external_reference`` and
  :meth:`find_by_reference` looks for it before any retry.
* Invoices are never cancelled: they are credited with an ``NC`` whose lines point at
  the original rows. Only receipts (``RG``) are cancelled (status ``A``).
* ``mode`` is always sent: without it the register's mode applies, and new accounts
  default to test mode (a "production" account would silently issue test documents).
* Every answer carries a request budget (``Rate-Limit-*``), kept in :attr:`rate_limit`.
"""

from __future__ import annotations

import base64
import binascii
import time
from decimal import ROUND_HALF_UP, Decimal

from .amounts import vendus_gross_price
from .base import (
    AuthenticationError,
    FiscalDocumentData,
    FiscalParty,
    FiscalPayment,
    FiscalProvider,
    InvalidStateError,
    NotFoundError,
    RateLimitedError,
    Redactor,
    RemoteDocument,
    TotalsMismatchError,
    TransientError,
    ValidationError,
    _error_text,
)
from .numbers import plain as _plain
from .numbers import to_decimal as _decimal
from .numbers import to_int as _int

EXEMPTION_CODES = frozenset(f"M{n:02d}" for n in range(1, 100))


class VendusProvider(FiscalProvider):
    code = "vendus"
    label = "Vendus"
    default_base_url = "https://www.vendus.pt/ws/v1.1"
    credential_fields = ("api_key",)
    # No "draft" (final on creation), no "email" (the API has no send-by-email call), no "async".
    # Published budget per account and minute (Rate-Limit-Limit in the docs example [?]).
    default_rate_limit = 100
    capabilities = frozenset(
        {"pdf", "credit_note", "receipt", "find_receipt", "cancel", "find_by_reference", "product_sync"}
    )

    # Our document kinds -> Vendus document types. "receipt" is what register_payment issues.
    document_types = {
        "invoice": "FT",
        "invoice_receipt": "FR",
        "simplified_invoice": "FS",
        "credit_note": "NC",
        "receipt": "RG",
    }
    # Types that must carry their payments (the AT treats them as paid on issue). [C]
    payment_required_types = frozenset({"FR", "FS"})
    # Types Vendus lets us cancel with PATCH {"status": "A"}: the official example only shows RG. [?]
    cancellable_types = frozenset({"RG"})
    # status.id of a document -> our state. N = normal, A = anulado [C]; F (faturado) is a guess [?].
    states = {"N": "final", "A": "canceled", "F": "final"}

    # VAT rate (percent) -> Vendus tax class, mainland Portugal. Madeira/Azores accounts have other
    # rates for the same classes: set options["tax_ids"] (e.g. {"22": "NOR", "12": "INT", "5": "RED"}).
    tax_ids = {Decimal("23"): "NOR", Decimal("13"): "INT", Decimal("6"): "RED", Decimal("0"): "ISE"}
    exempt_tax_id = "ISE"
    # SAF-T PT exemption code -> the legal text Vendus prints (tax_exemption_law). The AT's wording of
    # the "menção" for each code; options["exemption_laws"] adds or overrides entries.
    exemption_laws = {
        "M01": "Artigo 16.º, n.º 6 do CIVA",
        "M02": "Artigo 6.º do Decreto-Lei n.º 198/90, de 19 de junho",
        "M04": "Artigo 13.º do CIVA",
        "M05": "Artigo 14.º do CIVA",
        "M06": "Artigo 15.º do CIVA",
        "M07": "Artigo 9.º do CIVA",
        "M09": "Artigo 62.º alínea b) do CIVA",
        "M10": "Artigo 53.º do CIVA",
        "M11": "Decreto-Lei n.º 346/85, de 23 de agosto",
        "M12": "Decreto-Lei n.º 221/85, de 3 de julho",
        "M13": "Decreto-Lei n.º 199/96, de 18 de outubro",
        "M14": "Decreto-Lei n.º 199/96, de 18 de outubro",
        "M15": "Decreto-Lei n.º 199/96, de 18 de outubro",
        "M16": "Artigo 14.º do RITI",
        "M19": "Outras isenções",
        "M20": "Artigo 59.º-D n.º 2 do CIVA",
        "M21": "Artigo 72.º n.º 4 do CIVA",
        "M25": "Artigo 38.º n.º 1 alínea a) do CIVA",
        "M30": "Artigo 2.º n.º 1 alínea i) do CIVA",
        "M31": "Artigo 2.º n.º 1 alínea j) do CIVA",
        "M32": "Artigo 2.º n.º 1 alínea l) do CIVA",
        "M33": "Artigo 2.º n.º 1 alínea m) do CIVA",
        "M40": "Artigo 6.º n.º 6 alínea a) do CIVA, a contrário",
        "M41": "Artigo 8.º n.º 3 do RITI",
        "M42": "Artigo 19.º do Decreto-Lei n.º 21/2007, de 29 de janeiro",
        "M43": "Artigo 23.º do Decreto-Lei n.º 362/99, de 16 de setembro",
        "M99": "Não sujeito ou não tributado",
    }

    # Final on creation: Vendus's amount_gross is compared with Odoo's total after every create (the
    # document is final then: a difference is recorded with both figures, never re-sent).
    compare_final_total = True
    # Production needs the series communicated to the AT (ATCUD) [C] §3.4.
    atcud_required = True
    # A credit note line credits an original row at that row's price [C] (§3.4: "the price comes from
    # the original invoice"); Vendus has no credit note by amount that we know of [?].
    credit_price_tolerance = Decimal("0.01")

    # Item discount field: the SDK says discount_percentage, csarcrr discount_percent. [?]
    discount_field = "discount_percentage"
    # Due date of an FT: the contract says due_date; a TS client and the detail answer say date_due. [?]
    due_date_field = "due_date"
    # The document date. Not in the documented header list (only date_supply is), but a typed client
    # sends it [1]; without it Vendus dates the document today. Set to None to let Vendus date it. [?]
    date_field = "date"
    date_format = "%Y-%m-%d"  # [?]
    # gross_price = unit_price * (1 + rate / 100), half-up to this many decimals: 4 keeps the VAT-inclusive
    # line total (Vendus rounds it to cents) within a cent of Odoo's tax-excluded computation. [?]
    gross_price_digits = 4
    # Vendus issues in euros; the header has no currency field. [?]
    currencies = frozenset({"EUR"})
    # find_by_reference: the external_reference filter may match substrings [?]: a small page, a few pages.
    find_per_page = 10
    find_max_pages = 3

    def __init__(self, config, session=None, services=None):
        super().__init__(config, session, services)
        api_key = str(config.credentials.get("api_key") or "")
        # The Authorization header carries base64("key:"): mask that form too, should a service echo it.
        basic = base64.b64encode(f"{api_key}:".encode()).decode() if api_key else ""
        self.redact = Redactor([*config.secrets, basic])
        # Last request budget the service announced: {"limit", "remaining", "used", "reset"} (ints) or None.
        self.rate_limit = None
        self._rate_limit_read_at = None
        options = config.options or {}
        self.tax_ids = dict(self.tax_ids)
        for rate, tax_id in (options.get("tax_ids") or {}).items():
            self.tax_ids[Decimal(str(rate))] = tax_id
        self.exemption_laws = {**self.exemption_laws, **(options.get("exemption_laws") or {})}

    # -- settings ---------------------------------------------------------------
    @property
    def mode(self):
        """Always explicit: "tests" for a test account, "normal" otherwise."""
        return "tests" if self.config.environment == "test" else "normal"

    def _register_id(self):
        value = (self.config.options or {}).get("register_id")
        if value in (None, ""):
            raise ValidationError(
                "Vendus: the account has no register (caixa) id. Every Vendus document is issued on a "
                "register: set register_id in the account options (Vendus > Caixas, or GET /registers/)."
            )
        return int(value) if str(value).isdigit() else value

    @property
    def store_id(self):
        value = (self.config.options or {}).get("store_id")
        return None if value in (None, "") else value

    def payment_method_id(self, method):
        methods = (self.config.options or {}).get("payment_methods") or {}
        if method not in methods or methods[method] in (None, ""):
            known = ", ".join(sorted(methods)) or "none"
            raise ValidationError(
                f"Vendus: no payment method is mapped for the payment code {method!r} (mapped: {known}). "
                "Add it to the account's payment_methods option with the Vendus id "
                "(GET /documents/paymentmethods/)."
            )
        value = methods[method]
        return int(value) if str(value).isdigit() else value

    @classmethod
    def cancel_requires_credit_note(cls, kind) -> bool:
        """True when a document of this kind cannot be cancelled at Vendus, only credited (NC)."""
        return cls.document_types.get(kind) not in cls.cancellable_types

    # -- transport ----------------------------------------------------------------
    def _auth(self, kwargs):
        # HTTP Basic: the key as user name, empty password [C]. Never in the URL.
        kwargs["auth"] = (str(self.config.credentials.get("api_key") or ""), "")
        return kwargs

    def _request(self, method, path, **kwargs):
        self._check_budget()
        response = super()._request(method, path, **kwargs)
        self._read_rate_limit(response)
        return response

    def _check_budget(self):
        """Do not spend a request the service already said it would refuse."""
        budget, read_at = self.rate_limit, self._rate_limit_read_at
        if not budget or budget.get("remaining") is None or budget["remaining"] > 0 or read_at is None:
            return
        wait = (budget.get("reset") or 0) - (time.monotonic() - read_at)
        if wait > 0:
            raise RateLimitedError(
                "Vendus: the request budget is used up until the window resets", status=None, retry_after=wait
            )

    def _read_rate_limit(self, response):
        values = {}
        for key in ("limit", "remaining", "used", "reset"):
            raw = response.headers.get(f"Rate-Limit-{key.capitalize()}")
            try:
                values[key] = int(float(raw)) if raw not in (None, "") else None
            except ValueError:
                values[key] = None
        if all(v is None for v in values.values()):
            return  # e.g. a gateway's error page: what the service said last still holds
        if values["reset"] is not None and values["reset"] > 10**9:  # an epoch, not seconds [?]
            values["reset"] = max(0, int(values["reset"] - time.time()))
        self.rate_limit = values
        self._rate_limit_read_at = time.monotonic()

    def _raise_for_status(self, response):
        self._read_rate_limit(response)
        status = response.status_code
        message = self.redact(_error_text(response)) or f"HTTP {status}"
        if status in (401, 403) or (400 <= status < 500 and status != 429 and _is_auth_error(response)):
            raise AuthenticationError(f"Vendus refused the API key: {message}", status=status)
        if status in (400, 415, 422):
            raise ValidationError(f"Vendus refused the request: {message}", status=status)
        super()._raise_for_status(response)

    def _get(self, path, **params):
        return self._json(self._request("GET", path, params=params))

    def _doc_params(self, **params):
        # Test-mode documents live apart: reading one needs mode=tests [C].
        if self.mode == "tests":
            params["mode"] = "tests"
        return params

    # -- answers ------------------------------------------------------------------
    def _document(self, kind, body, reference=None):
        if not isinstance(body, dict) or body.get("id") in (None, ""):
            raise TransientError("Vendus: unexpected answer (no document in the body)")
        status = body.get("status")
        status_id = status.get("id") if isinstance(status, dict) else status
        # The create and list answers carry no status: a Vendus document exists only once final.
        state = self.states.get(str(status_id), str(status_id).lower()) if status_id else "final"
        total = _decimal(body.get("amount_gross"))
        return RemoteDocument(
            remote_id=str(body["id"]),
            kind=kind,
            state=state,
            number=body.get("number") or None,
            atcud=body.get("atcud") or None,
            total=total,
            reference=body.get("external_reference") or reference,
            raw=body,
        )

    # -- payload ------------------------------------------------------------------
    def _check_document(self, doc: FiscalDocumentData):
        if not doc.lines:
            raise ValidationError("Vendus: the document has no line.")
        if doc.currency and doc.currency.upper() not in self.currencies:
            raise ValidationError(
                f"Vendus issues documents in {', '.join(sorted(self.currencies))} only, not {doc.currency}: "
                "invoice this customer in euros or through another account."
            )
        bad_qty = [line.description or line.code for line in doc.lines if line.quantity <= 0]
        if bad_qty:
            raise ValidationError(
                "Vendus accepts positive quantities only: "
                + ", ".join(bad_qty[:5])
                + ". Use a discount instead of a negative line, or a credit note for a return."
            )

    # Above this total a final consumer's document names the buyer, with an address (art. 36(15) CIVA).
    named_consumer_above = Decimal(1000)

    def _client(self, party: FiscalParty | None, total=None):
        """None for a final consumer: no client at all (never the 999999990 NIF), unless the document is
        above 1000 EUR: then the buyer's name and address, without a tax id."""
        if party is None:
            return None
        if not party.vat:
            if total is None or Decimal(total) <= self.named_consumer_above:
                return None
            if not (party.name and party.street):
                raise ValidationError(
                    f"Vendus: a document above {self.named_consumer_above} € for a final consumer names the "
                    "buyer with an address (art. 36 CIVA): give the customer a street address, then retry."
                )
        client = {
            "fiscal_id": party.vat,
            "name": party.name,
            "address": party.street,
            "postalcode": party.zip,
            "city": party.city,
            "country": (party.country_code or "").upper() or None,
            "email": party.email,
            "phone": party.phone,
        }
        return {k: v for k, v in client.items() if v not in (None, "")}

    def gross_price(self, line):
        """The VAT-inclusive unit price Vendus expects, at most ``gross_price_digits`` decimals.

        Vendus multiplies it by the quantity, applies the discount and rounds the line to cents. When
        the line carries its VAT-inclusive total in Odoo (``total_included``, set by the mapping), the
        price is the shortest one giving that total back (a shelf price stays a shelf price, and a
        decimal quantity or a discount does not move the total by a cent). Otherwise, or when no price
        at this precision can (a very large quantity), the tax-excluded price plus VAT, half-up:
        :meth:`predicted_total` then shows the difference before anything is sent."""
        quantum = Decimal(1).scaleb(-self.gross_price_digits)
        natural = (Decimal(line.unit_price) * (1 + Decimal(line.tax_rate) / 100)).quantize(
            quantum, rounding=ROUND_HALF_UP
        )
        target = getattr(line, "total_included", None)
        if target is None:
            return natural
        # Never a product on a half-cent tie (15.90 x 3 x 0.95 = 45.315): Vendus's rounding of a tie is unknown.
        found = vendus_gross_price(line.quantity, _discount(line), target, self.gross_price_digits)
        return natural if found is None else found

    def _tax(self, line):
        rate = Decimal(line.tax_rate).normalize()
        tax_id = self.tax_ids.get(rate)
        if tax_id is None:
            known = ", ".join(f"{_plain(r)} %" for r in sorted(self.tax_ids))
            raise ValidationError(
                f"Vendus: no tax class for {_plain(rate)} % VAT on “{line.description or line.code}” "
                f"(known rates: {known}). Fix the line's tax, or map the rate in the tax_ids option."
            )
        return tax_id

    def _item(self, line):
        if line.unit_price < 0:
            raise ValidationError(
                f"Vendus: negative price on “{line.description or line.code}”: use a discount or a credit note."
            )
        item = {
            "reference": line.code,
            "title": (line.description or line.code or "").strip(),
            "qty": _plain(line.quantity),
            "gross_price": _plain(self.gross_price(line)),
            "tax_id": self._tax(line),
        }
        if item["tax_id"] == self.exempt_tax_id:
            code = line.tax_exemption_code.strip().upper()  # presence checked by _check_exemptions
            item["tax_exemption"] = code
            item["tax_exemption_law"] = self.exemption_laws[code]
        if _discount(line):
            item[self.discount_field] = _plain(_discount(line))
        return item

    def _check_exemptions(self, doc):
        missing, unknown = [], []
        for line in doc.lines:
            if self.tax_ids.get(Decimal(line.tax_rate).normalize()) != self.exempt_tax_id:
                continue
            code = (line.tax_exemption_code or "").strip().upper() or None
            if code is None:
                missing.append(line)
            elif code not in EXEMPTION_CODES or code not in self.exemption_laws:
                unknown.append(code)
        if missing:
            taxes = ", ".join(dict.fromkeys(_tax_label(line) for line in missing))
            raise ValidationError(
                f"A VAT exemption reason (M-code) is required for 0 % lines: tax {taxes} has none (lines "
                + ", ".join(line.description or line.code for line in missing[:5])
                + "). Set it on the tax (VAT exemption reason) and retry."
            )
        if unknown:
            raise ValidationError(
                f"Vendus: no legal text is known for the exemption code(s) {', '.join(sorted(set(unknown)))}: "
                "use another code or add its text to the exemption_laws option."
            )

    def _payments(self, payments):
        return [
            {"id": self.payment_method_id(payment.method), "amount": _plain(Decimal(payment.amount))}
            for payment in payments
        ]

    def _header(self, doc_type, reference):
        body = {"type": doc_type, "register_id": self._register_id(), "mode": self.mode}
        if reference:
            body["external_reference"] = reference
        return body

    def missing_atcud_advice(self, remote):
        number = remote.number or remote.remote_id
        return (
            f"Vendus issued {number} without ATCUD: the series of register {self.config.options.get('register_id')} "
            "is not communicated to the Tax Authority. Communicate it in Vendus (the register's series), then click "
            "Retry to read the document again; it is final there and is never issued twice."
        )

    def _check_credit_note(self, doc: FiscalDocumentData):
        if not (doc.reason or "").strip():
            raise ValidationError("Vendus: a credit note needs its reason (it is printed as the note).")
        if not (doc.related_number or doc.related_remote_id):
            raise ValidationError("Vendus: a credit note must name the document it credits (its number).")
        if not doc.related_remote_id and any(not line.related_row for line in doc.lines):
            raise ValidationError(
                "Vendus: each credit note line must name the row of the original document it credits."
            )

    def _payload(self, doc: FiscalDocumentData, related_number=None, rows=None):
        """The POST /documents/ body; raises ValidationError before anything is sent.

        Credit notes: ``related_number``/``rows`` are what :meth:`_credit_target` found remotely.
        """
        doc_type = self.document_types[doc.kind]
        self._check_document(doc)
        body = self._header(doc_type, doc.reference)
        if self.date_field and doc.date:
            body[self.date_field] = doc.date.strftime(self.date_format)
        supply = getattr(doc, "supply_date", None)
        if supply and doc_type != "NC":
            body["date_supply"] = supply.strftime(self.date_format)  # art. 36(5)(f) CIVA [C]
        client = self._client(doc.partner, doc.expected_total)
        if client:
            body["client"] = client
        if doc_type == "NC":
            self._check_credit_note(doc)
            body["notes"] = doc.reason.strip()
            body["items"] = [
                {
                    "reference": line.code,
                    "qty": _plain(line.quantity),
                    # The price, tax and title come from the original row [C].
                    "reference_document": {
                        "document_number": related_number or doc.related_number,
                        "document_row": (rows or {}).get(index) or line.related_row,
                    },
                }
                for index, line in enumerate(doc.lines)
            ]
            return body
        self._check_exemptions(doc)
        if doc.notes:
            body["notes"] = doc.notes
        if doc_type == "FT" and doc.due_date:
            body[self.due_date_field] = doc.due_date.strftime(self.date_format)
        body["items"] = [self._item(line) for line in doc.lines]
        if doc_type in self.payment_required_types:
            if not doc.payments:
                raise ValidationError(
                    f"Vendus: an {doc_type} is paid on issue and needs its payment(s) (method and amount); "
                    "none were given. Register the payment first, or issue an invoice (FT)."
                )
            body["payments"] = self._payments(doc.payments)
        return body

    # -- credit notes: which original rows --------------------------------------------
    def _credit_target(self, doc: FiscalDocumentData):
        """The credited document's number and, for lines without ``related_row``, the row to credit.

        Rows missing on our side are matched by item reference against the original (one row
        per reference, in order); an ambiguous or missing match is a ValidationError.
        """
        number = doc.related_number
        needs_rows = any(not line.related_row for line in doc.lines)
        if not doc.related_remote_id:
            return number, {}
        # Read even when the rows are known: what Vendus will credit is what the original's rows say.
        original = self._get(f"/documents/{doc.related_remote_id}/", **self._doc_params())
        number = number or original.get("number")
        if not needs_rows:
            self._check_credit_prices(doc, number, original, {})
            return number, {}
        by_reference = {}
        for row, item in enumerate(original.get("items") or [], start=1):
            by_reference.setdefault(str(item.get("reference") or ""), []).append(row)
        rows = {}
        for index, line in enumerate(doc.lines):
            if line.related_row:
                continue
            candidates = by_reference.get(str(line.code), [])
            if len(candidates) != 1:
                raise ValidationError(
                    f"Vendus: cannot tell which row of {number} the line “{line.description or line.code}” "
                    f"credits ({len(candidates)} rows with reference {line.code}): give the row explicitly."
                )
            rows[index] = candidates[0]
        self._check_credit_prices(doc, number, original, rows)
        return number, rows

    def _check_credit_prices(self, doc, number, original, rows):
        """Vendus credits an original row at that row's price: a credit note line whose amount is not
        the row's own for that quantity (a price adjustment, a changed discount) would be issued for
        another amount than Odoo's. Refused before sending, with what to do instead."""
        items = original.get("items") or []
        problems = []
        for index, line in enumerate(doc.lines):
            row = rows.get(index) or line.related_row
            item = items[row - 1] if row and 0 < row <= len(items) and isinstance(items[row - 1], dict) else None
            amounts = (item or {}).get("amounts") or {}
            row_total, row_qty = _decimal(amounts.get("gross_total")), _decimal((item or {}).get("qty"))
            if not row_total or not row_qty:
                continue  # nothing to compare with: amount_gross is compared after the create
            quantity = Decimal(line.quantity)
            credited = (row_total * quantity / row_qty).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            if line.total_included is not None:
                ours = Decimal(line.total_included)
            else:
                ours = self.gross_price(line) * quantity * (1 - _discount(line) / 100)
            ours = ours.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            if abs(credited - ours) > self.credit_price_tolerance:
                problems.append(
                    f"“{line.description or line.code}” credits {ours} € for {_plain(quantity)}, but row {row} of "
                    f"{number} was invoiced at {_plain((row_total / row_qty).quantize(Decimal('0.01')))} € a unit "
                    f"(Vendus would credit {credited} €)"
                )
        if problems:
            raise ValidationError(
                "Vendus credits a row of the original document at its original price (a credit note line names "
                "the row and a quantity, never a price), so this credit note, a price adjustment, cannot be issued "
                "as it is: " + "; ".join(problems) + ". Credit the row's quantity at its original price and "
                "invoice the sale again at the agreed price, or correct it in Vendus's back office."
            )

    # -- operations -----------------------------------------------------------------
    def _validate(self, doc: FiscalDocumentData):
        """Every check that needs no request."""
        if doc.kind == "credit_note":
            self._register_id()  # raises when missing
            self._check_document(doc)
            self._check_credit_note(doc)
        else:
            self._payload(doc)
            self._check_totals(doc)

    def predicted_total(self, doc: FiscalDocumentData) -> Decimal:
        """The document total as Vendus will compute it: VAT-inclusive unit prices (as sent),
        times quantity and discount, rounded half-up to cents per line, then summed."""
        total = Decimal(0)
        for line in doc.lines:
            gross = self.gross_price(line) * Decimal(line.quantity) * (1 - Decimal(_discount(line)) / 100)
            total += gross.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        return total

    def _check_totals(self, doc: FiscalDocumentData):
        """Documents are final on creation at Vendus: refuse to send one whose total would not be
        Odoo's (a final document can only be credited, never edited)."""
        if doc.expected_total is None:
            return
        tolerance = Decimal(str(self.config.options.get("totals_tolerance") or 0))
        predicted = self.predicted_total(doc)
        if abs(predicted - Decimal(doc.expected_total)) > tolerance:
            raise TotalsMismatchError(
                f"Vendus would total this document {predicted} € but Odoo says {doc.expected_total} € "
                "(Vendus rounds VAT-inclusive prices per line). Adjust the prices or discounts so both agree "
                "(e.g. prices with fewer decimals), or raise the totals tolerance of the fiscal account.",
                details=[{"odoo": str(doc.expected_total), "provider": str(predicted)}],
            )

    def prepare(self, doc: FiscalDocumentData) -> None:
        """Nothing to create beforehand (the client travels inside the document): validate only."""
        self._validate(doc)

    def create(self, doc: FiscalDocumentData) -> RemoteDocument:
        if doc.kind == "credit_note":
            self._validate(doc)
            number, rows = self._credit_target(doc)
            payload = self._payload(doc, related_number=number, rows=rows)
        else:
            payload = self._payload(doc)
        response = self._request("POST", "/documents/", json_body=payload)
        return self._document(doc.kind, self._json(response), reference=doc.reference)

    def fetch_status(self, kind, remote_id) -> RemoteDocument:
        return self._document(kind, self._get(f"/documents/{remote_id}/", **self._doc_params()))

    def finalize(self, kind, remote_id) -> RemoteDocument:
        # Final on creation: nothing to do but read it back.
        return self.fetch_status(kind, remote_id)

    def fetch_pdf(self, kind, remote_id) -> bytes:
        # raw: the base64 PDF is not worth keeping in the attempt log.
        response = self._request("GET", f"/documents/{remote_id}/", params=self._doc_params(output="pdf"), raw=True)
        body = self._json(response)
        body = body if isinstance(body, dict) else {}
        try:
            pdf = base64.b64decode(body.get("output") or "", validate=True)
        except (binascii.Error, ValueError):
            pdf = b""
        if not pdf.startswith(b"%PDF"):
            raise TransientError("Vendus: the document answer has no readable PDF (output)")
        return pdf

    def cancel(self, kind, remote_id, reason) -> RemoteDocument:
        doc_type = self.document_types.get(kind)
        if doc_type not in self.cancellable_types:
            raise InvalidStateError(
                "Vendus cannot cancel an invoice: issue a credit note (NC) instead",
                details=[{"kind": kind, "type": doc_type}],
            )
        body = {"status": "A", "mode": self.mode}
        try:
            response = self._request("PATCH", f"/documents/{remote_id}/", json_body=body, params=self._doc_params())
        except ValidationError:
            # "Already cancelled" is a 422 in Portuguese: the state is the truth, not the wording.
            current = self.fetch_status(kind, remote_id)
            if current.state == "canceled":
                return current
            raise
        if response.content.strip():
            answer = self._json(response)
            if isinstance(answer, dict) and answer.get("id"):
                document = self._document(kind, answer)
                if document.state == "canceled":
                    return document
        return self.fetch_status(kind, remote_id)

    def register_payment(self, kind, remote_id, payment: FiscalPayment) -> RemoteDocument:
        """An RG receipt paying (part of) an FT. Returns the receipt (kind "receipt")."""
        self._register_id()  # fail before any request when it is missing
        method_id = self.payment_method_id(payment.method)
        if Decimal(payment.amount) <= 0:
            raise ValidationError("Vendus: a receipt needs a positive amount.")
        invoice = self.fetch_status(kind, remote_id)
        if invoice.state == "canceled" or not invoice.number:
            raise InvalidStateError(f"Vendus: {invoice.number or remote_id} cannot be paid (state {invoice.state}).")
        number = invoice.number
        body = self._header("RG", payment.reference)
        if self.date_field and payment.date:
            body[self.date_field] = payment.date.strftime(self.date_format)
        body["invoices"] = [{"document_number": number}]
        body["payments"] = [{"id": method_id, "amount": _plain(Decimal(payment.amount))}]
        response = self._request("POST", "/documents/", json_body=body)
        return self._document("receipt", self._json(response), reference=payment.reference)

    def find_by_reference(self, doc: FiscalDocumentData):
        return self.find_by_external_reference(doc.reference, doc.kind)

    def find_receipt(self, reference, invoice_remote_id=None):
        """The RG created by an earlier register_payment with this payment reference, or None
        (found by its external reference alone: the invoice is not needed)."""
        return self.find_by_external_reference(reference, "receipt")

    def find_by_external_reference(self, reference, kind):
        """The document of this kind whose external_reference is exactly ``reference``, or None."""
        doc_type = self.document_types[kind]
        params = {"external_reference": reference, "mode": self.mode, "per_page": self.find_per_page}
        if self.store_id is not None:
            params["store_id"] = self.store_id
        for page in range(1, self.find_max_pages + 1):
            try:
                response = self._request("GET", "/documents/", params={**params, "page": page})
            except NotFoundError:  # some list endpoints answer 404 for "no result" [?]
                return None
            items = self._json(response)
            if isinstance(items, dict):  # envelope=true style, tolerated
                items = items.get("data") or items.get("documents") or []
            for item in items or []:
                if not isinstance(item, dict) or item.get("type") not in (None, doc_type):
                    continue
                if "external_reference" not in item:  # a short list item: read the document [?]
                    item = self._get(f"/documents/{item['id']}/", **self._doc_params())
                if str(item.get("external_reference") or "") == reference:
                    return self._document(kind, item, reference=reference)
            pages = _int(response.headers.get("X-Paginator-Pages"))
            if not items or pages is None or page >= pages:
                break
        return None

    def sync_product(self, product) -> str:
        """Vendus products keyed by ``reference`` (the SKU), with a VAT-inclusive price."""
        if not product.code:
            raise ValidationError(f"“{product.description}” has no internal reference (SKU): set one to sync it.")
        line = type("Line", (), {"unit_price": product.unit_price, "tax_rate": product.tax_rate,
                                  "quantity": 1, "discount": 0, "total_included": None})()  # fmt: skip
        values = {
            "reference": product.code,
            "title": product.description,
            "gross_price": _plain(self.gross_price(line)),
            "tax_id": self.tax_ids.get(Decimal(product.tax_rate).normalize()) or "NOR",
            "status": "on",
        }
        if values["tax_id"] == "ISE":
            values["tax_exemption"] = product.tax_exemption_code
        found = None
        if product.remote_id:
            found = {"id": product.remote_id}
        else:
            try:
                items = self._get("/products/", reference=product.code)
            except NotFoundError:
                items = []
            found = next((i for i in items or [] if str(i.get("reference")) == product.code), None)
        if found:
            answer = self._json(self._request("PATCH", f"/products/{found['id']}/", json_body=values))
        else:
            answer = self._json(self._request("POST", "/products/", json_body=values))
        return str((answer or {}).get("id") or found["id"])

    def list_documents(self, date_from, date_to):
        """Invoices, credit notes and receipts of the period (this account's mode), for reconciliation."""
        kinds = {doc_type: kind for kind, doc_type in self.document_types.items()}
        params = {"since": date_from.isoformat(), "until": date_to.isoformat(), "mode": self.mode, "per_page": 100}
        if self.store_id is not None:
            params["store_id"] = self.store_id
        result = []
        for page in range(1, 101):
            try:
                response = self._request("GET", "/documents/", params={**params, "page": page})
            except NotFoundError:  # "no result" may be a 404 [?]
                break
            items = self._json(response)
            if isinstance(items, dict):
                items = items.get("data") or items.get("documents") or []
            for item in items or []:
                kind = kinds.get(item.get("type")) if isinstance(item, dict) else None
                if not kind:
                    continue
                if "external_reference" not in item or "amount_gross" not in item:  # a short list item [?]
                    item = self._get(f"/documents/{item['id']}/", **self._doc_params())
                result.append(self._document(kind, item, reference=item.get("external_reference")))
            pages = _int(response.headers.get("X-Paginator-Pages"))
            if not items or pages is None or page >= pages:
                break
        return result

    def list_payment_methods(self):
        """The account's payment methods ({id, title, ...}), to fill the payment_methods option."""
        methods = self._get("/documents/paymentmethods/")
        return methods if isinstance(methods, list) else []

    def test_connection(self):
        register_id = self._register_id()
        account = self._get("/account/")
        params = {"store_id": self.store_id} if self.store_id is not None else {}
        registers = self._get("/registers/", **params)
        registers = registers if isinstance(registers, list) else []
        register = next((r for r in registers if str(r.get("id")) == str(register_id)), None)
        if register is None:
            known = ", ".join(f"{r.get('id')} “{r.get('title') or '?'}”" for r in registers) or "none"
            raise ValidationError(
                f"Vendus: register {register_id} does not exist on this account (registers: {known}). "
                "Fix register_id in the account options."
            )
        company = (account or {}).get("company") or (account or {}).get("name") or "account"
        return (
            f"Connected to Vendus ({company}): register {register_id} “{register.get('title') or '?'}”, "
            f"documents issued in {self.mode} mode."
        )


def _tax_label(line):
    return getattr(line, "tax_label", None) or line.tax_name or f"{_plain(Decimal(line.tax_rate))} %"


def _discount(line):
    """Odoo's discount percent: the mapping may fold it into a net price for services computing
    tax-excluded lines (``discount``); Vendus prices VAT-inclusive and shows Odoo's own."""
    value = getattr(line, "odoo_discount", None)
    return Decimal(line.discount or 0) if value is None else Decimal(value)


def _is_auth_error(response):
    try:
        body = response.json()
    except ValueError:
        return False
    errors = body.get("errors") if isinstance(body, dict) else None
    return isinstance(errors, list) and any(
        isinstance(e, dict) and str(e.get("message") or "").strip().upper() == "AUTH" for e in errors
    )
