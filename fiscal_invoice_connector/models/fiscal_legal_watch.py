"""Two watches over Portuguese sales (issue 13, docs/mapping-rules.md §14 and §19):

- **The legal deadline** (art. 36(1)(a) CIVA): an invoice is issued at the latest on the fifth working
  day after the supply. A scheduled action (``_cron_watch_deadline``, bounded queries) gives the
  account's responsible one activity per sale that reaches that day without an issued document; the
  activity is closed when the document is issued.
- **Order vs books**: a document issued for an order (policy "on order confirmation", Issue now on an
  order, backfill of orders) stands for its invoices. When the invoices later posted for that order
  differ from it (quantities delivered, prices edited, lines added or removed, total), the invoice
  shows it, the responsible gets an activity and the reconciliation report lists it. Nothing legal is
  issued automatically for the difference: a person decides (credit note or complementary invoice).
"""

from datetime import datetime, time, timedelta

import pytz

from odoo import api, fields, models
from odoo.tools import float_compare

from .fiscal_mapping import PT_PROVIDERS

DEADLINE_WORKING_DAYS = 5  # art. 36(1)(a) CIVA
WATCH_BATCH = 200  # sales looked at per account and per model in one run (the rest: next run)
ISSUED_STATES = ("issued", "to_cancel")  # a legal document exists (a cancellation may be under way)
DEADLINE_ACTIVITY = "fiscal_invoice_connector.mail_activity_type_fiscal_deadline"
BOOKS_ACTIVITY = "fiscal_invoice_connector.mail_activity_type_fiscal_books"


def _figure(currency, amount):
    """An amount as the documents print it: the currency's decimals, no symbol."""
    return f"{currency.round(amount):.{currency.decimal_places}f}"


class FiscalDocument(models.Model):
    _inherit = "fiscal.document"

    books_reviewed = fields.Text(
        "Difference handled",
        readonly=True,
        copy=False,
        help="Order vs books: the differences with the order's invoices a user marked as handled (corrected "
        "at the provider, or accepted). A new difference shows again.",
    )

    # ------------------------------------------------------------------ legal deadline
    @api.model
    def _working_days(self, company, start, end):
        """The company's working days from ``start`` to ``end`` (dates, both included): its working
        calendar (Odoo's resource module: attendances, and public holidays entered as global time
        off), in the company's timezone; Monday to Friday when it has none (or a flexible one)."""
        calendar = company.resource_calendar_id
        if calendar and not calendar.flexible_hours and calendar.attendance_ids:
            tz = pytz.timezone(self.env["fiscal.mapping"]._company_tz(company))
            start_dt = tz.localize(datetime.combine(start, time.min))
            end_dt = tz.localize(datetime.combine(end + timedelta(days=1), time.min))
            domain = [("company_id", "in", (company.id, False)), ("time_type", "=", "leave")]
            intervals = calendar._work_intervals_batch(start_dt, end_dt, domain=domain, tz=tz)[False]
            return {begin.astimezone(tz).date() for begin, _stop, _meta in intervals}
        days = (start + timedelta(n) for n in range((end - start).days + 1))
        return {day for day in days if day.weekday() < 5}

    @api.model
    def _legal_deadline(self, sale_day, working_days):
        """The last day a document for a sale of ``sale_day`` may be issued: the fifth working day after
        it (``working_days``: a set of the company's working days covering the period)."""
        later = sorted(day for day in working_days if day > sale_day)
        return later[DEADLINE_WORKING_DAYS - 1] if len(later) >= DEADLINE_WORKING_DAYS else None

    @api.model
    def _cron_watch_deadline(self, limit=WATCH_BATCH):
        """Portuguese sales that reach their legal deadline without an issued fiscal document: one
        activity each for the account's responsible (never repeated: the sale is marked checked). Bounded:
        per account, sales since the account exists, at least five days old, not yet marked, not
        issued, ``limit`` per run in date order (the next run takes the rest)."""
        Mapping = self.env["fiscal.mapping"]
        accounts = (
            self.env["fiscal.provider.account"]
            .sudo()
            .search([("provider", "in", PT_PROVIDERS), ("mode", "!=", "data_only")])
        )
        not_issued = ["|", ("fiscal_state", "=", False), ("fiscal_state", "not in", ISSUED_STATES)]
        warned = 0
        for account in accounts:
            company = account.company_id
            today = Mapping._company_today(company)
            # Five working days are at least five calendar days: newer sales cannot be late (a day
            # more in UTC covers the timezone; the exact day is decided below).
            horizon = today - timedelta(days=DEADLINE_WORKING_DAYS)
            floor = account.create_date
            orders = (
                self.env["sale.order"]
                .sudo()
                .search(
                    [
                        ("fiscal_account_id", "=", account.id),
                        ("state", "=", "sale"),
                        ("fiscal_deadline_checked", "=", False),
                        ("date_order", ">=", floor),
                        ("date_order", "<", fields.Datetime.to_datetime(horizon + timedelta(days=2))),
                        *not_issued,
                    ],
                    order="date_order, id",
                    limit=limit,
                )
            )
            invoices = (
                self.env["account.move"]
                .sudo()
                .search(
                    [
                        ("fiscal_account_id", "=", account.id),
                        ("move_type", "=", "out_invoice"),
                        ("state", "=", "posted"),
                        ("fiscal_deadline_checked", "=", False),
                        ("create_date", ">=", floor),
                        ("invoice_date", "<=", horizon),
                        # An order's invoice is not the sale: its order is.
                        ("invoice_line_ids", "not any", [("sale_line_ids", "!=", False)]),
                        *not_issued,
                    ],
                    order="invoice_date, id",
                    limit=limit,
                )
            )
            sales = [(order, Mapping._company_date(company, order.date_order)) for order in orders]
            sales += [(move, move.invoice_date) for move in invoices]
            if not sales:
                continue
            working_days = self._working_days(company, min(day for _r, day in sales), today + timedelta(days=1))
            live = {
                "sale.order": self._live_sale_documents(orders),
                "account.move": self._live_sale_documents(invoices),
            }
            for record, sale_day in sales:
                deadline = self._legal_deadline(sale_day, working_days)
                if not deadline or today < deadline:
                    continue
                docs = live[record._name][record.id]
                if docs.filtered(lambda d: d.state in ISSUED_STATES):
                    # Issued through another record (an invoice of several orders): never looked at again.
                    record.sudo().fiscal_deadline_checked = True
                    continue
                record._fiscal_warn_deadline(account, sale_day, deadline, docs[:1])
                warned += 1
        return warned

    def _deadline_advice(self, account):
        """What to do about a sale not issued yet, from where its document stands."""
        if not self:
            return self.env._(
                "No fiscal document was queued (policy: %(trigger)s): issue it now with “Issue fiscal document now”.",
                trigger=dict(account._fields["trigger"].selection)[account.trigger],
            )
        if self.state in ("error", "failed", "check"):
            return self.env._("Its fiscal document needs attention: %s Fix it, then Retry.", self.last_error or "")
        if self.state == "draft":
            return self.env._("Its document is a draft at %s: finalize it there.", account.name)
        return self.env._(
            "Its fiscal document is still waiting in the queue (%(state)s, next attempt %(next)s): check the "
            "account's queue, or issue it now.",
            state=dict(self._fields["state"].selection)[self.state],
            next=self.next_attempt or "-",
        )

    def _apply_done(self, job):
        was_issued = self.state == "issued"
        super()._apply_done(job)
        if self.state == "issued" and not was_issued:
            # The deadline activity of its sale has no object any more.
            for source in [*self.sale_order_id, *self.move_id]:
                if not source.fiscal_deadline_checked:
                    continue
                source.sudo().activity_feedback(
                    [DEADLINE_ACTIVITY], feedback=self.env._("Fiscal document %s issued.", self.number or "")
                )
            if not self.move_id and self.kind == "invoice" and self.sale_order_id:
                self.sale_order_id._fiscal_posted_invoices()._fiscal_check_books()

    # ------------------------------------------------------------------ order vs books
    def _books_differences(self):
        """What the posted invoices of this order-level document's order say differently from it, as
        ``(lines, fiscal_total, books_total, invoices)``; ``lines`` is empty when they agree. Only for
        an issued invoice-kind document of an order (``move_id`` empty) with posted invoices."""
        self.ensure_one()
        order = self.sale_order_id
        empty = ([], 0.0, 0.0, self.env["account.move"])
        if self.move_id or self.kind != "invoice" or self.state not in ISSUED_STATES or not order:
            return empty
        moves = order._fiscal_posted_invoices()
        invoices = moves.filtered(lambda m: m.move_type == "out_invoice")
        billed_rows = invoices.invoice_line_ids.filtered(lambda ln: ln.display_type == "product").sale_line_ids
        if not invoices or (billed_rows and all(billed_rows.mapped("is_downpayment"))):
            return empty  # nothing invoiced yet but down payments: the final invoice deducts them
        refunds = moves - invoices
        currency = self.currency_id or order.currency_id
        notes = self.sudo().search(
            [("related_document_id", "=", self.id), ("kind", "=", "credit_note"), ("state", "in", ISSUED_STATES)]
        )
        fiscal_total = (self.remote_total or self.amount_total) - sum(notes.mapped("amount_total"))
        books_total = sum(invoices.mapped("amount_total")) - sum(refunds.mapped("amount_total"))
        lines = []
        if not refunds and not notes:
            # Line by line against the order's lines the document was made of.
            rows = self.env["fiscal.mapping"]._order_rows(order).filtered(lambda ln: not ln.is_downpayment)
            invoiced = invoices.invoice_line_ids.filtered(lambda ln: ln.display_type == "product")
            for row in rows:
                billed = invoiced.filtered(lambda ln, row=row: row in ln.sale_line_ids)
                uom = row.product_uom_id
                qty = sum(ln.product_uom_id._compute_quantity(ln.quantity, uom) for ln in billed)
                if not billed:
                    lines.append(self.env._("“%(line)s”: on the document, not invoiced", line=row.name))
                elif uom.compare(qty, row.product_uom_qty):
                    lines.append(
                        self.env._(
                            "“%(line)s”: quantity %(doc)s on the document, %(inv)s invoiced",
                            line=row.name,
                            doc=row.product_uom_qty,
                            inv=qty,
                        )
                    )
                for line in billed:
                    if currency.compare_amounts(line.price_unit, row.price_unit) or float_compare(
                        line.discount, row.discount, precision_digits=6
                    ):
                        lines.append(
                            self.env._(
                                "“%(line)s”: price %(doc)s (discount %(ddisc)s %%) on the document, %(inv)s "
                                "(discount %(idisc)s %%) on %(move)s",
                                line=row.name,
                                doc=row.price_unit,
                                ddisc=row.discount,
                                inv=line.price_unit,
                                idisc=line.discount,
                                move=line.move_id.name,
                            )
                        )
            extra = invoiced.filtered(lambda ln: not ln.sale_line_ids)
            for line in extra:
                lines.append(
                    self.env._(
                        "“%(line)s”: on %(move)s (%(amount)s), not on the document",
                        line=line.name,
                        move=line.move_id.name,
                        amount=line.price_total,
                    )
                )
        if currency.compare_amounts(fiscal_total, books_total):
            lines.insert(
                0,
                self.env._(
                    "total %(doc)s on the fiscal document, %(books)s on the invoices",
                    doc=_figure(currency, fiscal_total),
                    books=_figure(currency, books_total),
                ),
            )
        if lines and "; ".join(lines) == self.books_reviewed:
            lines = []  # marked as handled, and nothing changed since
        return lines, fiscal_total, books_total, invoices

    def _books_message(self):
        """The banner and the activity: what differs, and what to do (never done automatically)."""
        lines, fiscal_total, books_total, invoices = self._books_differences()
        if not lines:
            return False
        currency = self.currency_id or self.sale_order_id.currency_id
        difference = currency.round(fiscal_total - books_total)
        if difference > 0:
            remedy = self.env._(
                "If the invoices are right, issue at %(account)s a credit note against %(number)s for %(diff)s",
                account=self.account_id.name,
                number=self.number,
                diff=_figure(currency, difference),
            )
        elif difference < 0:
            remedy = self.env._(
                "If the invoices are right, issue at %(account)s a complementary invoice for %(diff)s",
                account=self.account_id.name,
                diff=_figure(currency, -difference),
            )
        else:
            remedy = self.env._(
                "If the invoices are right, issue at %(account)s a credit note against %(number)s and a new "
                "invoice with the invoiced lines",
                account=self.account_id.name,
                number=self.number,
            )
        return self.env._(
            "Fiscal document %(number)s (total %(doc)s, issued for the order %(order)s) differs from the "
            "invoices %(invoices)s (total %(books)s): %(lines)s. Nothing is issued automatically for the "
            "difference. %(remedy)s; if the document is right, correct the invoice.",
            number=self.number or self.reference,
            doc=_figure(currency, fiscal_total),
            order=self.sale_order_id.name,
            invoices=", ".join(invoices.mapped("name")),
            books=_figure(currency, books_total),
            lines="; ".join(lines),
            remedy=remedy,
        )


class FiscalSourceMixin(models.AbstractModel):
    _inherit = "fiscal.source.mixin"

    def _fiscal_warn_deadline(self, account, sale_day, deadline, doc):
        """One activity for the account's responsible on the sale, and the mark that it was given."""
        self.ensure_one()
        user = account.responsible_user_id or self.env.ref("base.user_admin", raise_if_not_found=False)
        note = self.env._(
            "%(sale)s (sale of %(day)s) has no issued fiscal document. Portuguese law wants it issued within "
            "%(n)s working days of the sale (art. 36(1)(a) CIVA): by %(deadline)s. %(advice)s",
            sale=self.display_name,
            day=sale_day,
            n=DEADLINE_WORKING_DAYS,
            deadline=deadline,
            advice=doc._deadline_advice(account),
        )
        record = self.sudo().with_context(tracking_disable=True, mail_notrack=True)
        if user:
            record.activity_schedule(
                DEADLINE_ACTIVITY,
                date_deadline=deadline,
                user_id=user.id,
                summary=self.env._("Fiscal document due by %s", deadline),
                note=note,
            )
        record.fiscal_deadline_checked = True


class SaleOrder(models.Model):
    _inherit = "sale.order"

    def _fiscal_posted_invoices(self):
        """The order's posted customer invoices and credit notes."""
        return self.sudo().invoice_ids.filtered(lambda m: m.state == "posted")


class AccountMove(models.Model):
    _inherit = "account.move"

    fiscal_books_warning = fields.Text(
        "Fiscal document differs",
        compute="_compute_fiscal_books_warning",
        compute_sudo=True,
        help="The order's fiscal document, issued at confirmation, and this order's posted invoices differ.",
    )

    @api.depends("state", "fiscal_document_id", "fiscal_state", "amount_total", "invoice_line_ids")
    def _compute_fiscal_books_warning(self):
        for move in self:
            doc = move.fiscal_document_id
            warning = False
            if move.move_type == "out_invoice" and move.state == "posted" and doc and not doc.move_id:
                warning = doc._books_message()
            move.fiscal_books_warning = warning

    def _fiscal_check_books(self):
        """Posted invoices of an order whose document was issued for the order: when they differ from it,
        a note on each invoice and one activity for the account's responsible (on the invoice)."""
        for move in self.filtered(lambda m: m.move_type == "out_invoice" and m.state == "posted"):
            # The stored fiscal document: no search for the many invoices that have their own or none.
            doc = move.sudo().fiscal_document_id
            if not doc or doc.move_id or doc.state not in ISSUED_STATES:
                continue
            message = doc._books_message()
            if not message:
                continue
            record = move.sudo()
            # Looked up only here (a query each time): most documents' invoices agree, or there are none.
            if self.env.ref(BOOKS_ACTIVITY) in record.activity_ids.activity_type_id:
                continue  # already said (the invoice and its document were compared before)
            user = doc.account_id.responsible_user_id or self.env.ref("base.user_admin", raise_if_not_found=False)
            record.message_post(body=message, subtype_xmlid="mail.mt_note")
            if user:
                record.activity_schedule(
                    BOOKS_ACTIVITY,
                    user_id=user.id,
                    summary=self.env._("Invoice differs from fiscal document %s", doc.number or doc.reference),
                    note=message,
                )

    def _post(self, soft=True):
        posted = super()._post(soft=soft)
        posted._fiscal_check_books()
        return posted

    def action_fiscal_books_handled(self):
        """The banner's button: the difference was corrected at the provider (or is accepted). Recorded
        on the document (as superuser, after the user's rights on this invoice are checked) with who
        said so; the banner and the reconciliation stop showing it until the invoices change again."""
        self.ensure_one()
        self._check_fiscal_action()
        doc = self.sudo()._fiscal_main_candidates().filtered(lambda d: not d.move_id and d.state in ISSUED_STATES)
        differences = doc[:1]._books_differences()[0] if doc else []
        if not differences:
            return True
        doc = doc[:1].sudo()
        doc.books_reviewed = "; ".join(differences)
        body = self.env._(
            "Difference with fiscal document %(number)s marked as handled by %(user)s: %(lines)s.",
            number=doc.number or doc.reference,
            user=self.env.user.name,
            lines=doc.books_reviewed,
        )
        doc.message_post(body=body)
        for move in doc.sale_order_id._fiscal_posted_invoices().filtered(lambda m: m.move_type == "out_invoice"):
            move.sudo().message_post(body=body, subtype_xmlid="mail.mt_note")
            move.sudo().activity_feedback([BOOKS_ACTIVITY], feedback=body)
        return True
