"""Exactly-once under faults: a storm of network and provider failures over batches of
documents, for each provider, then the queue is run until drained and the provider's
documents are counted (docs/fault-suite.md says what is injected and why).

The faults are injected by the real local simulators (HTTP status codes, connection
resets, late answers, malformed and truncated bodies, SOAP faults), *before* the
provider processed the request (nothing happened) or *after* it (the provider did the
work, the answer was lost), at every step of each provider's flow. A step is targeted
by arming the fault (on the requests of that step) just before the client method of the step runs.
"""

import logging
import os
import re
from collections import Counter
from urllib.parse import urlsplit

from odoo import SUPERUSER_ID, api, fields
from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tests.common import _super_send

from .common import API_KEY, FiscalTestCommon

_logger = logging.getLogger(__name__)

# A client with a short read timeout (Odoo's test HTTP guard would raise it to 10 s), and a
# simulator answering "timeout" faults later than that: a real read timeout costs 1.5 s.
CLIENT_TIMEOUT = 1.5
LATE_ANSWER = 2.5
# Client methods that are one step of the flow; a fault armed for a step hits its first request.
STEPS = ("create", "finalize", "fetch_xml", "fetch_pdf", "send_email")
# Loggers whose DEBUG output is searched for secrets (the root handler sees the rest from WARNING).
DEBUG_LOGGERS = ("odoo.addons.fiscal_invoice_connector", "urllib3", "requests", "zeep")
PENDING = ("to_send", "sending")

# provider -> figures, printed as one table when the module's tests end.
RESULTS = {}
HEADER = f"{'provider':<14} {'faults':>6} {'expected':>8} {'at provider':>11} {'duplicates':>10} {'lost':>4}  {'notes'}"


def _table(rows):
    lines = ["Fault suite (in-process): faults injected, documents expected / final at the provider", HEADER]
    for provider, row in rows.items():
        lines.append(
            f"{provider:<14} {row['faults']:>6} {row['expected']:>8} {row['at_provider']:>11} "
            f"{row['duplicates']:>10} {row['lost']:>4}  {row['notes']}"
        )
    for provider, row in rows.items():
        if row.get("kinds"):
            lines.append(f"  {provider}: {row['kinds']}")
    return "\n".join(lines)


def tearDownModule():
    if RESULTS:
        text = _table(RESULTS)
        print("\n" + text, flush=True)  # noqa: T201 - the figures are the point of this suite
        _logger.warning("\n%s", text)


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is not ours to judge
            self.lines.append(str(record.msg))


class FaultStormCases:
    """The storm, shared by the four provider classes below."""

    # (fault, when) armed at every step of the provider's flow.
    step_faults = (("reset", "after"), ("timeout", "after"), (500, "before"), ("truncated", "after"))
    # (step, fault, when) on top of that.
    extra_faults = (
        ("create", "reset", "before"),
        ("create", 502, "before"),
        ("finalize", 503, "before"),
        ("create", "malformed", "after"),
        ("create", "timeout", "before"),
    )
    batch = 2

    # -- plumbing -----------------------------------------------------------------
    @classmethod
    def _request_handler(cls, s, r, /, **kw):
        # Loopback only (the simulators): a short read timeout, as a client configured so would have.
        if urlsplit(r.url).hostname in ("127.0.0.1", "localhost"):
            kw["timeout"] = CLIENT_TIMEOUT
            return _super_send(s, r, **kw)
        return super()._request_handler(s, r, **kw)

    def setUp(self):
        super().setUp()
        if os.environ.get("FIC_FAULT_CONCURRENCY"):
            # Run the storm with another number of concurrent provider calls (1: one by one).
            self.env["ir.config_parameter"].sudo().set_param(
                "fiscal_invoice_connector.concurrency", os.environ["FIC_FAULT_CONCURRENCY"]
            )
        self.sim.timeout_seconds = LATE_ANSWER
        self.addCleanup(setattr, self.sim, "timeout_seconds", 15.0)
        self.hooks = []  # callables(step) -> True when done (removed)
        self.hook_errors = []  # a hook must not raise inside the worker: failures are kept here
        self.claimed = []  # one set per running queue worker (nested: see _second_worker)
        self.overlaps = []  # a document claimed by a worker while another one holds it
        self.refused_connections = 0
        self.refused_keys = 0
        self.docs = self.env["fiscal.document"]
        test = self
        # Steps are hooked on the provider class: whatever path runs the calls (one by one, or
        # the concurrent pipeline in its threads), the hook runs just before the step's requests.
        cls = self.account._get_provider_class()
        for step in STEPS:
            if hasattr(cls, step):
                self.patch(cls, step, self._hooked(step, getattr(cls, step)))
        Doc = self.registry["fiscal.document"]
        real_queue, real_claim = Doc._cron_process_queue, Doc._claim

        def _cron_process_queue(model, *args, **kwargs):
            test.claimed.append(set())
            try:
                return real_queue(model, *args, **kwargs)
            finally:
                test.claimed.pop()

        def _claim(docs):
            taken = real_claim(docs)  # the documents claimed, in one transaction
            for doc in taken:
                if any(doc.id in ids for ids in test.claimed[:-1]):
                    test.overlaps.append(doc.id)
                if test.claimed:
                    test.claimed[-1].add(doc.id)
            return taken

        self.patch(Doc, "_cron_process_queue", _cron_process_queue)
        self.patch(Doc, "_claim", _claim)

    def _hooked(self, step, real):
        def call(client, *args, **kwargs):
            for hook in list(self.hooks):
                if hook not in self.hooks:
                    continue  # a nested worker (see _second_worker) ran it already
                try:
                    done = hook(step)
                except Exception as e:  # noqa: BLE001
                    self.hook_errors.append(f"{step}: {type(e).__name__}: {e}")
                    done = True
                if done and hook in self.hooks:
                    self.hooks.remove(hook)
            return real(client, *args, **kwargs)

        return call

    # Requests of each step, so that a fault armed for a step hits one of them even when
    # several documents are in flight at once (the concurrent pipeline).
    step_filters = {}

    def arm(self, step, fault, when, **kwargs):
        """Inject ``fault`` into the next request of ``step`` once it starts (any document)."""

        def hook(current):
            if current != step:
                return False
            self.sim.inject(fault, when=when, **{**self.step_filters.get(step, {}), **kwargs})
            return True

        self.hooks.append(hook)

    def new_docs(self, count):
        orders = self.env["sale.order"]
        for _ in range(count):
            orders |= self.confirm(self.make_order(qty=1, price=100.0))
        docs = orders.fiscal_document_id
        self.assertEqual(len(docs), count)
        self.docs |= docs
        return docs

    def concurrency(self):
        """How many provider calls the queue makes at once (1: one document at a time)."""
        if not hasattr(self.env["fiscal.document"], "_process_batch"):
            return 1
        param = self.env["ir.config_parameter"].sudo().get_param("fiscal_invoice_connector.concurrency", 8)
        return max(1, int(param))

    def provider_steps(self):
        capabilities = self.account._capabilities()
        steps = ["create"]
        if capabilities & {"draft", "async"}:
            steps.append("finalize")  # otherwise final on creation (Vendus): no finalize call
        if "xml" in capabilities:
            steps.append("fetch_xml")
        if "pdf" in capabilities:
            steps.append("fetch_pdf")
        if self.account.send_email and "email" in capabilities:
            steps.append("send_email")
        return steps

    def pending(self, docs=None):
        docs = (docs or self.docs).sudo()
        docs.invalidate_recordset()
        return docs.filtered(
            lambda d: d.state in PENDING
            or (
                d.state == "issued"
                and "pending" in (d.pdf_state, d.email_state, d.settle_state)
                and d.account_id.state == "active"
            )
        )

    def drain(self, rounds=20):
        for _ in range(rounds):
            todo = self.pending()
            if not todo:
                return 0
            self.make_due(todo)
            self.run_queue()
        return len(self.pending())

    # -- counting -------------------------------------------------------------------
    def remote_reference(self, remote):
        raise NotImplementedError

    def remote_key(self, remote):
        return str(remote["id"])

    def count(self):
        """Documents expected (one per sale), final at the provider, duplicates, lost."""
        finals = Counter()
        keys = {}
        others = Counter()
        for remote in self.adapter.all_docs():
            reference = self.remote_reference(remote)
            status = self.adapter.status(remote)
            if status == "final":
                finals[reference] += 1
                keys.setdefault(reference, set()).add(self.remote_key(remote))
            else:
                others[status] += 1
        expected = set(self.docs.mapped("reference"))
        return {
            "expected": len(expected),
            "at_provider": sum(finals[ref] for ref in expected),
            "duplicates": sorted(ref for ref in expected if finals[ref] > 1),
            "lost": sorted(ref for ref in expected if not finals[ref]),
            "keys": keys,
            "others": others,
            "strangers": sorted(set(finals) - expected),
        }

    # -- the storm --------------------------------------------------------------------
    def test_fault_storm_exactly_once(self):
        capture = _Capture()
        capture.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(capture)
        levels = {name: logging.getLogger(name).level for name in DEBUG_LOGGERS}
        for name in DEBUG_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
        try:
            self._storm()
        finally:
            root.removeHandler(capture)
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
        self._check_and_report(capture.lines)

    def _storm(self):
        steps = self.provider_steps()
        plan = [(step, fault, when) for step in steps for fault, when in self.step_faults]
        plan += [item for item in self.extra_faults if item[0] in steps]
        # 1. Every fault at every step, each on a fresh batch.
        for step, fault, when in plan:
            self.new_docs(self.batch)
            self.arm(step, fault, when)
            self.run_queue()
        # 2. The service is down (connection refused), then stops in the middle of a batch.
        self._connection_refused()
        # 3. The key is refused in the middle of a batch: the account pauses, nothing fails.
        self._auth_refused_mid_batch()
        # 4. A 429 storm: Retry-After honoured, and not counted as failed attempts.
        self._rate_limit_storm()
        # 5. A user clicks while a worker is on the document; a second worker runs meanwhile.
        self._clicks_while_processing()
        # 6. Run the queue until nothing is left.
        left = self.drain()
        self.assertFalse(left, "the queue drains once the provider behaves")

    def _connection_refused(self):
        docs = self.new_docs(3)
        self.sim.stop()
        try:
            before = self.env["fiscal.document.attempt"].sudo().search_count([])
            self.run_queue()
            attempts = self.env["fiscal.document.attempt"].sudo().search([("document_id", "in", docs.ids)], order="id")
            self.assertEqual(set(attempts.mapped("outcome")), {"transient"})
            self.refused_connections += self.env["fiscal.document.attempt"].sudo().search_count([]) - before
        finally:
            self.sim.start()
        for doc in docs:
            self.assertIn(doc.state, PENDING, "a provider down never fails a document")
        # Down in the middle of a batch: stopped once the second document reaches finalize.
        docs = self.new_docs(3)
        seen = []

        def stop_on_second(step):
            if step != "finalize":
                return False
            seen.append(step)
            if len(seen) < 2:
                return False
            self.sim.stop()
            return True

        self.hooks.append(stop_on_second)
        before = self.env["fiscal.document.attempt"].sudo().search_count([("outcome", "=", "transient")])
        try:
            self.run_queue()
        finally:
            self.sim.start()
        self.refused_connections += (
            self.env["fiscal.document.attempt"].sudo().search_count([("outcome", "=", "transient")]) - before
        )
        self.assertEqual(len(docs.filtered(lambda d: d.state in ("error", "failed"))), 0)

    def _auth_refused_mid_batch(self):
        docs = self.new_docs(5)
        creates = []

        def refuse_on_third(step):
            if step != "create":
                return False
            creates.append(step)
            if len(creates) < 3:
                return False
            self.refuse_key()
            return True

        self.hooks.append(refuse_on_third)
        self.run_queue()
        self.assertEqual(self.account.state, "paused", "a refused key pauses the account")
        refused = self.refused_calls()
        self.refused_keys = refused
        if self.concurrency() == 1:
            self.assertEqual(refused, 1, "one refused call pauses the queue; the rest of the batch is not attempted")
        else:  # the calls already in flight at once are refused too, never more
            self.assertLessEqual(refused, min(len(docs), self.concurrency()))
        self.assertFalse(docs.filtered(lambda d: d.state in ("error", "failed")), "documents wait, they do not fail")
        self.assertTrue(self.pending(docs) or docs.filtered(lambda d: d.state in PENDING))
        # While paused nothing is sent, whatever the schedule says.
        calls = len(self.sim.requests)
        self.make_due(self.pending(docs) | docs.filtered(lambda d: d.state in PENDING))
        self.run_queue()
        self.assertEqual(len(self.sim.requests), calls)
        self.sim.clear_faults()
        self.accept_key()
        self.account.action_resume()
        self.drain()
        self.assertEqual(set(docs.mapped("state")), {"issued"}, docs.mapped("last_error"))

    def refuse_key(self):
        self.sim.inject(401, count=None)

    def accept_key(self):
        self.sim.clear_faults()

    key_refusal_is_a_fault = True  # counted with the simulator's faults (HTTP 401)

    def refused_calls(self):
        """Calls the provider refused the key of (HTTP 401)."""
        return len([r for r in self.sim.requests if r.get("fault") == 401])

    def _rate_limit_storm(self):
        self.drain()  # nothing else due meanwhile: every request of this phase is the storm's
        docs = self.new_docs(4)
        retry_after = 7
        self.sim.inject(429, count=None, retry_after=retry_after)
        # More 429s per document than the account allows failed attempts.
        max_attempts, self.account.max_attempts = self.account.max_attempts, 3
        rounds = self.account.max_attempts + 2
        for index in range(rounds):
            started = fields.Datetime.now()
            self.run_queue()
            self.assertFalse(
                docs.filtered(lambda d: d.state == "failed"),
                f"a rate limit is the provider's budget, not a failed attempt: 429 number {index + 1} failed documents",
            )
            limited = docs.filtered(lambda d: d.error_kind == "rate_limited")
            self.assertEqual(limited, docs, "every document of the storm is told to wait")
            wanted = self.rate_limit_wait(retry_after)
            for doc in limited:
                wait = (doc.next_attempt - started).total_seconds()
                self.assertGreaterEqual(wait, wanted - 1, "Retry-After is honoured")
            if index == 0:
                # Nothing is due before Retry-After: the next run sends nothing.
                calls = len(self.sim.requests)
                self.run_queue()
                self.assertEqual(len(self.sim.requests), calls, "no request before Retry-After")
            self.make_due(docs)
        self.account.max_attempts = max_attempts
        self.sim.clear_faults()
        self.drain()

    def rate_limit_wait(self, retry_after):
        return retry_after

    def _clicks_while_processing(self):
        # a) Between create and finalize: the issue wizard, Retry and "Issue now" all refuse or
        #    only wake the cron; a second worker finds nothing due.
        doc = self.new_docs(1)
        order_id, doc_id = doc.sale_order_id.id, doc.id
        second_worker = []
        after_create = self.provider_steps()[1]  # the create is committed, the rest is to come

        def click_and_second_worker(step):
            if step != after_create:
                return False
            self._user_clicks(order_id, doc_id, expect_refusal=True)
            second_worker.append(self._second_worker())
            return True

        self.hooks.append(click_and_second_worker)
        self.run_queue()
        self.assertEqual(second_worker, [0], "the second worker leaves a leased document alone")
        self.drain()
        self.assertEqual(doc.state, "issued", doc.last_error)
        # b) An issued document whose follow-up failed shows Retry; the user clicks it while a
        #    worker is fetching the PDF, and a second worker runs meanwhile.
        follow_up = "fetch_xml" if "xml" in self.account._capabilities() else "fetch_pdf"
        doc = self.new_docs(1)
        self.arm(follow_up, 503, "before")
        self.run_queue()
        self.assertEqual((doc.state, doc.pdf_state), ("issued", "pending"))
        self.assertTrue(doc.last_error)
        order_id, doc_id = doc.sale_order_id.id, doc.id
        second_worker = []

        def retry_and_second_worker(step):
            if step != follow_up:
                return False
            self._user_clicks(order_id, doc_id, expect_refusal=False)
            second_worker.append(self._second_worker())
            return True

        self.hooks.append(retry_and_second_worker)
        self.make_due(doc)
        self.run_queue()
        self.drain()
        self.assertEqual(second_worker, [0], "Retry does not hand a document in a worker's hands to another one")
        self.assertEqual((doc.state, doc.pdf_state), ("issued", "done"), doc.last_error)
        pdfs = (
            self.env["ir.attachment"]
            .sudo()
            .search_count(
                [
                    ("res_model", "=", "sale.order"),
                    ("res_id", "=", order_id),
                    ("mimetype", "=", "application/pdf"),
                ]
            )
        )
        self.assertEqual(pdfs, 1, "one PDF attached")
        self.assertEqual(self.emails_for(doc), 1 if doc.send_email else 0, "one email")
        if "async" in self.account._capabilities():
            self._webhook_while_polling()

    def _webhook_while_polling(self):
        # c) The provider's notification arrives while a worker is reading the status.
        self.adapter.hold()
        doc = self.new_docs(1)
        self.run_queue()
        self.assertEqual((doc.state, doc.remote_state), ("sending", "pending"), doc.last_error)
        doc_id, order_id = doc.id, doc.sale_order_id.id
        second_worker = []

        def notify_and_second_worker(step):
            if step != "finalize":
                return False
            self.adapter.release()
            with self.registry.cursor() as cr:  # what the webhook controller does (sudo)
                env = api.Environment(cr, SUPERUSER_ID, {})
                env["fiscal.document"].browse(doc_id)._wake_up_from_webhook()
                cr.commit()
            second_worker.append(self._second_worker())
            return True

        self.hooks.append(notify_and_second_worker)
        self.make_due(doc)
        self.run_queue()
        self.drain()
        self.assertEqual(second_worker, [0], "a notification does not hand a leased document to another worker")
        self.assertEqual(doc.state, "issued", doc.last_error)
        pdfs = (
            self.env["ir.attachment"]
            .sudo()
            .search_count(
                [("res_model", "=", "sale.order"), ("res_id", "=", order_id), ("mimetype", "=", "application/pdf")]
            )
        )
        self.assertEqual(pdfs, 1, "one PDF attached")

    def emails_for(self, doc):
        return 0

    def _user_clicks(self, order_id, doc_id, expect_refusal):
        """What a user's request does meanwhile (its own cursor, the user's rights)."""
        with self.registry.cursor() as cr:
            env = api.Environment(cr, self.env.uid, {})
            order = env["sale.order"].browse(order_id)
            doc = env["fiscal.document"].browse(doc_id)
            action = order.action_issue_fiscal_now()
            wizard = env[action["res_model"]].with_context(action["context"]).create({})
            try:
                wizard.action_issue()
                if expect_refusal:
                    self.hook_errors.append("the issue wizard accepted a document being sent")
            except UserError:
                pass
            try:
                doc.action_retry()
                if expect_refusal:
                    self.hook_errors.append("Retry accepted a document being sent")
            except UserError:
                if not expect_refusal:
                    self.hook_errors.append("Retry refused an issued document whose follow-up failed")
            doc.action_process_now()
            cr.commit()

    def _second_worker(self):
        """Another cron worker (its own cursor) running the queue right now: what it processes."""
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            processed = env["fiscal.document"]._cron_process_queue()
            cr.commit()
        return processed

    # -- the verdict -----------------------------------------------------------------------
    def _check_and_report(self, log_lines):
        self.env.invalidate_all()
        docs = self.docs.sudo()
        figures = self.count()
        injected = [self.fault_name(r["fault"]) for r in self.sim.requests if r.get("fault") is not None]
        kinds = Counter(injected)
        kinds["connection refused"] += self.refused_connections
        if not self.key_refusal_is_a_fault:
            kinds["key refused"] += self.refused_keys
        faults = sum(kinds.values())
        notes = [f"calls at once {self.concurrency()}"]
        if self.refused_keys > 1:
            notes.append(f"refused key calls in the paused batch {self.refused_keys}")
        if figures["others"]:
            notes.append("not final: " + ", ".join(f"{n} {status}" for status, n in sorted(figures["others"].items())))
        extra = self.extra_notes()
        if extra:
            notes.append(extra)
        RESULTS[self.provider] = {
            "faults": faults,
            "expected": figures["expected"],
            "at_provider": figures["at_provider"],
            "duplicates": len(figures["duplicates"]),
            "lost": len(figures["lost"]),
            "notes": "; ".join(notes) or "-",
        }
        text = _table({self.provider: RESULTS[self.provider]})
        kinds_text = ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items()))
        RESULTS[self.provider]["kinds"] = kinds_text
        print(f"\n{text}\n  injected: {kinds_text}", flush=True)  # noqa: T201
        _logger.warning("\n%s\n  injected: %s", text, kinds_text)

        self.assertFalse(self.hook_errors, self.hook_errors)
        self.assertFalse(self.overlaps, "no document is processed by two workers at once")
        self.assertEqual(figures["duplicates"], [], "no sale has two final documents")
        self.assertEqual(figures["lost"], [], "every sale has its final document")
        self.assertEqual(figures["strangers"], [], "no final document that Odoo does not know")
        self.assertGreater(faults, 3 * len(self.provider_steps()), "the storm really happened")
        unexpected = docs.filtered(lambda d: d.state != "issued")
        self.assertFalse(unexpected, [(d.reference, d.state, d.last_error) for d in unexpected])
        for doc in docs:
            self.assertIn(doc.remote_id, figures["keys"][doc.reference], "Odoo points at the final document")
            self.assertTrue(doc.number, doc.reference)
            self.assertEqual(doc.sale_order_id.state, "sale")
        self.assertFalse(docs.filtered(lambda d: d.pdf_state == "pending"), "every PDF arrived")
        # Secrets: nowhere in the logs of the whole storm, the attempt log, errors or chatter.
        texts = [
            "\n".join(log_lines),
            "\n".join(docs.attempt_ids.mapped(lambda a: f"{a.summary} {a.message}")),
            "\n".join(docs.mapped(lambda d: f"{d.last_error} {d.remote_message}")),
            "\n".join(docs.message_ids.mapped("body")),
        ]
        self.assertIn("transient", "\n".join(docs.attempt_ids.mapped("outcome")))
        for secret in self.secrets():
            for text in texts:
                self.assertNotIn(secret, text)
        derived = self.derived_secrets()
        if derived:  # many per-request keys: look for every 32-hex token instead of each key
            found = {token for text in texts for token in re.findall(r"[0-9a-f]{32}", text)}
            self.assertFalse(found & derived, "a communication key was logged")

    def secrets(self):
        return [API_KEY, self.account.sudo().webhook_secret]

    def fault_name(self, fault):
        return str(fault)

    def derived_secrets(self):
        return set()

    def extra_notes(self):
        return ""


@tagged("post_install", "-at_install")
class TestFaultSuiteInvoiceXpress(FaultStormCases, FiscalTestCommon):
    provider = "invoicexpress"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.account.send_email = True

    step_filters = {
        "create": {"path_contains": "/invoices.json", "method": "POST"},
        "finalize": {"path_contains": "/change-state", "method": "PUT"},
        "fetch_pdf": {"path_contains": "/api/pdf/", "method": "GET"},
        "send_email": {"path_contains": "/email-document", "method": "PUT"},
    }

    def remote_reference(self, remote):
        # Sent as "<order name> <our reference>" (text search finds it there).
        return (remote.get("reference") or "").split(" ")[-1]

    def emails_for(self, doc):
        return len([e for e in self.sim.emails if str(e.get("document_id")) == doc.remote_id])

    def extra_notes(self):
        # Not legal documents: drafts left when a create's answer was lost (text search does not
        # return drafts, docs/exactly-once.md), and emails sent twice when their answer was lost.
        emails = Counter(str(e.get("document_id")) for e in self.sim.emails)
        twice = len([n for n in emails.values() if n > 1])
        return f"drafts are orphans (not legal documents); documents emailed twice {twice}"

    def test_client_created_twice_is_not_possible(self):
        """The answer to the customer's creation is lost: the next attempt finds it by code."""
        partner = self._pt_customer().copy({"name": "Novo Cliente, Lda", "vat": "PT503504564"})
        order = self.confirm(self.make_order(partner=partner))
        self.sim.inject("reset", path_contains="/clients.json", method="POST", when="after")
        self.run_queue()
        doc = self.docs = order.fiscal_document_id
        self.assertEqual(doc.error_kind, "transient")
        self.assertEqual(self.drain(), 0)
        self.assertEqual(doc.state, "issued", doc.last_error)
        clients = [c for c in self.sim.clients.values() if c.get("code", "").endswith(f"-{partner.id}")]
        self.assertEqual(len(clients), 1, "one customer at the provider")


@tagged("post_install", "-at_install")
class TestFaultSuiteVendus(FaultStormCases, FiscalTestCommon):
    provider = "vendus"
    step_filters = {
        "create": {"path_contains": "/documents/", "method": "POST"},
        "finalize": {"path_contains": "/documents/", "method": "GET"},
        "fetch_pdf": {"path_contains": "output=pdf", "method": "GET"},
    }

    def remote_reference(self, remote):
        return remote.get("external_reference")


@tagged("post_install", "-at_install")
class TestFaultSuiteEnotas(FaultStormCases, FiscalTestCommon):
    provider = "enotas"
    step_filters = {
        "create": {"path_contains": "/nfes", "method": "POST"},
        "finalize": {"path_contains": "/nfes/", "method": "GET"},
        # Through the download links of the note's status answer (storage: /simulator-files/nfse/<token>.xml).
        "fetch_xml": {"path_contains": ".xml", "method": "GET"},
        "fetch_pdf": {"path_contains": ".pdf", "method": "GET"},
    }

    def remote_reference(self, remote):
        return remote.get("idExterno")


@tagged("post_install", "-at_install")
class TestFaultSuiteInvoicy(FaultStormCases, FiscalTestCommon):
    provider = "invoicy"
    # The service's own failures: a SOAP Fault (HTTP 500), an envelope cut short (HTTP 200).
    step_faults = FaultStormCases.step_faults + (("soap_fault", "after"), ("bad_envelope", "after"))
    extra_faults = FaultStormCases.extra_faults + (
        ("create", "soap_fault", "before"),
        ("finalize", "malformed", "after"),
    )

    def setUp(self):
        super().setUp()
        # Every communication key (MD5 of the access key and the document) the client computes.
        from ..providers import invoicy

        real, self.communication_keys = invoicy.communication_key, set()

        def recording(access_key, xml_text):
            key = real(access_key, xml_text)
            self.communication_keys.add(key)
            return key

        self.patch(invoicy, "communication_key", recording)

    def derived_secrets(self):
        self.assertTrue(self.communication_keys)
        return self.communication_keys

    def remote_reference(self, remote):
        return remote.get("id_unico")

    def remote_key(self, remote):
        return remote["id_unico"]  # the remote id is our reference (IDUnico)

    def refuse_key(self):
        # InvoiCy refuses a key with a return code (172 partner key, 173 communication key)
        # in a normal answer, not with HTTP 401.
        self.sim.partner_key = "revoked-" + API_KEY
        self.revoked_at = len(self.sim.requests)

    key_refusal_is_a_fault = False

    def accept_key(self):
        self.sim.partner_key = "pk-" + API_KEY

    def refused_calls(self):
        # Every call after the revocation carries the old key (answered with code 172).
        return len(self.sim.requests) - self.revoked_at

    def fault_name(self, fault):
        from fiscal_simulators.invoicy import NAMED_SOAP_FAULTS

        return {status: name for name, status in NAMED_SOAP_FAULTS.items()}.get(fault, str(fault))

    def rate_limit_wait(self, retry_after):
        # InvoiCy answers no HTTP 429 but code 179 (identical requests blocked): its own wait.
        from ..providers.invoicy import RATE_LIMIT_RETRY_AFTER

        return RATE_LIMIT_RETRY_AFTER

    def secrets(self):
        return [*super().secrets(), "pk-" + API_KEY, "ak-" + API_KEY]

    def extra_notes(self):
        resent = sum(d.get("duplicate_sends", 0) for d in self.sim.documents.values())
        return f"RPS re-sent and refused as duplicates {resent}"
