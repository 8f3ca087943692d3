#!/usr/bin/env python3
"""Exactly-once with real processes: Odoo workers killed, cut off and doubled.

What the in-process suite (fiscal_invoice_connector/tests/test_fault_suite.py) cannot do:
real worker processes (``odoo shell`` running the queue, as a cron thread would) that are
SIGKILLed between the provider's success and Odoo's commit, whose database connection is
terminated in the middle of a batch, and that run two at once on the same queue. The
provider simulators run in this process, on 127.0.0.1, so the provider's side is counted
exactly: documents expected, final documents at the provider, duplicates, lost.

    python scripts/fault_suite.py                 # a fresh database fic_fault_suite
    python scripts/fault_suite.py --orders 30 --db fic_h5_fault --reuse

Exits 1 on a duplicate or a lost document (or a queue that does not drain), 2 when the
set-up fails. Bounded: every wait has a timeout; about two minutes in all.
docs/fault-suite.md says what is injected and why.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import xmlrpc.client
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ADDON = REPO / "fiscal_invoice_connector"

if "ODOO_BIN" not in os.environ:
    # Standalone run: get the project's Python, Odoo and PostgreSQL settings first.
    command = f'. "{REPO}/scripts/bootstrap.sh" >/dev/null 2>&1 && exec "$PY" "{Path(__file__).resolve()}" "$@"'
    os.execvp("bash", ["bash", "-c", command, "fault_suite", *sys.argv[1:]])

import psycopg2  # noqa: E402 - after the environment check above
from fiscal_simulators.enotas import EnotasSimulator  # noqa: E402
from fiscal_simulators.invoicexpress import InvoiceXpressSimulator  # noqa: E402
from fiscal_simulators.invoicy import InvoicySimulator  # noqa: E402
from fiscal_simulators.vendus import VendusSimulator  # noqa: E402

PY = os.environ["PY"]
ODOO_BIN = os.environ["ODOO_BIN"]
ADDONS_PATH = os.environ["ADDONS_PATH"]
IX_KEY = "fault-suite-ix-key-7c1e"
ENOTAS_KEY = "fault-suite-enotas-key-3b9d"
ENOTAS_COMPANY = "9d2b1c4e-5f6a-4b7c-8d9e-0a1b2c3d4e5f"
APP_NAME = "fic-fault-{pid}"  # application_name of each worker's connections (pg_stat_activity)
HELD = 120.0  # seconds a simulator holds an answer ("timeout" fault after processing)
VENDUS_KEY = "fault-suite-vendus-key-5e2a"
INVOICY_PARTNER = "fault-suite-invoicy-pk-8d4f"
INVOICY_ACCESS = "fault-suite-invoicy-ak-1c7b"
INVOICY_CNPJ = "11222333000181"
PREFORK_ACCOUNT = "Prefork %"  # name pattern of the prefork run's accounts


def say(message):
    print(f"[fault-suite] {message}", flush=True)


# ---------------------------------------------------------------------------
# Odoo processes
# ---------------------------------------------------------------------------


class OdooDb:
    def __init__(self, name, workdir):
        self.name = name
        self.workdir = Path(workdir)
        self.workers = 0

    def command(self, *args, sub=None):
        base = [PY, ODOO_BIN] + ([sub] if sub else [])
        return base + [
            f"--addons-path={ADDONS_PATH}",
            f"--db_host={os.environ.get('PGHOST', '127.0.0.1')}",
            f"--db_port={os.environ.get('PGPORT', '5432')}",
            f"--db_user={os.environ.get('PGUSER', '')}",
            *([] if sub == "db" else ["--log-level=warn"]),
            *args,
        ]

    def run(self, *args, sub=None, timeout=300):
        return subprocess.run(
            self.command(*args, sub=sub), capture_output=True, text=True, timeout=timeout, check=False
        )

    def shell(self, code, timeout=120, env=None):
        """Run ``code`` in ``odoo shell`` (``env`` is Odoo's); its stdout is the answer."""
        result = subprocess.run(
            self.command("-d", self.name, "--no-http", sub="shell"),
            input=code,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
        if result.returncode:
            raise RuntimeError(f"odoo shell failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def spawn_worker(self, label, seconds=60, until_idle=True):
        """A queue worker: ``_cron_process_queue`` in a loop, committing, as a cron thread does."""
        self.workers += 1
        log = open(self.workdir / f"worker-{self.workers}-{label}.log", "w")  # noqa: SIM115 - closed in Worker
        process = subprocess.Popen(
            self.command("-d", self.name, "--no-http", f"--db_app_name={APP_NAME}", sub="shell"),
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "FIC_WORKER_SECONDS": str(seconds), "FIC_UNTIL_IDLE": "1" if until_idle else ""},
        )
        process.stdin.write(WORKER_CODE)
        process.stdin.close()
        return Worker(label, process, log)


WORKER_CODE = textwrap.dedent(
    """
    import faulthandler, os, sys, time
    faulthandler.dump_traceback_later(25, repeat=True, file=sys.stdout)  # where a stuck worker waits
    Doc = env["fiscal.document"]
    deadline = time.time() + float(os.environ["FIC_WORKER_SECONDS"])
    env.cr.execute("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
    print("worker ready", os.getpid(), env.cr.fetchone()[0], flush=True)
    env.cr.rollback()
    while time.time() < deadline:
        processed = Doc._cron_process_queue()
        env.cr.commit()
        print("processed", processed, flush=True)
        if processed:
            continue
        pending = Doc.search_count(
            ["|", ("state", "in", ("to_send", "sending", "to_cancel")),
             "&", ("state", "=", "issued"), "|", ("pdf_state", "=", "pending"), ("email_state", "=", "pending")]
        )
        if os.environ.get("FIC_UNTIL_IDLE") and not pending:
            print("drained", flush=True)
            break
        env.cr.rollback()
        time.sleep(0.2)
    """
)


class Worker:
    def __init__(self, label, process, log):
        self.label, self.process, self.log = label, process, log

    @property
    def pid(self):
        return self.process.pid

    def kill(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout):
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.log.close()
        return self.process.returncode

    def output(self):
        return Path(self.log.name).read_text(errors="replace")


# ---------------------------------------------------------------------------
# The database
# ---------------------------------------------------------------------------


def sql(db, query, params=()):
    with psycopg2.connect(dbname=db) as connection, connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else cursor.rowcount


def template_db():
    """The cached template of scripts/run_tests.sh (sale_management, account, mail), if any."""
    key = subprocess.run(
        [
            "bash",
            "-c",
            'grep version_info "$ODOO_SRC/odoo/release.py"; echo sale_management,account,mail; "$PY" --version',
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    import hashlib

    name = "fic_template_" + hashlib.sha256(key.encode()).hexdigest()[:8]
    rows = sql("postgres", "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,))
    return name if rows and rows[0][0] == "complete" else None


def prepare_database(odoo, reuse):
    exists = sql("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (odoo.name,))
    if exists and reuse:
        say(f"updating the connector in {odoo.name}...")
        result = odoo.run("-d", odoo.name, "-u", "fiscal_invoice_connector", "--stop-after-init", "--http-port=0")
    else:
        if exists:
            odoo.run("drop", odoo.name, sub="db")
        template = template_db()
        if template:
            say(f"database {odoo.name}: a copy of {template}, then the connector...")
            result = odoo.run("duplicate", template, odoo.name, sub="db", timeout=300)
            if result.returncode:
                return result
            modules = "fiscal_invoice_connector"
        else:
            say(f"database {odoo.name} from scratch (no template yet; about a minute)...")
            modules = "sale_management,account,mail,fiscal_invoice_connector"
        result = odoo.run("-d", odoo.name, "-i", modules, "--stop-after-init", "--http-port=0", timeout=600)
    return result


SETUP_CODE = textwrap.dedent(
    """
    import json, os
    from odoo import Command
    company = env.company
    params = env["ir.config_parameter"]
    params.set_param("fiscal_invoice_connector.pdf_poll_interval", "0.05")
    # These simulators render a PDF after one 202, not after a time: no render delay to wait for.
    params.set_param("fiscal_invoice_connector.pdf_ready_after", "0")
    if os.environ.get("FIC_CONCURRENCY"):
        params.set_param("fiscal_invoice_connector.concurrency", os.environ["FIC_CONCURRENCY"])
    Account = env["fiscal.provider.account"].with_context(tracking_disable=True)
    # Earlier runs (--reuse): their accounts point at simulators that are gone.
    Account.search([("name", "like", "Fault suite %")]).write({"active": False})
    Tax = env["account.tax"]
    tax = Tax.search([("name", "=", "IVA 23% (fault suite)"), ("company_id", "=", company.id)]) or Tax.create({
        "name": "IVA 23% (fault suite)", "amount": 23.0, "amount_type": "percent", "type_tax_use": "sale",
        "company_id": company.id, "fiscal_tax_name": "IVA23",
    })
    product = env["product.product"].create({
        "name": "Vinho do Porto", "default_code": "PORTO-FS", "list_price": 100.0, "type": "consu",
        "invoice_policy": "order", "taxes_id": [Command.set(tax.ids)],
    })
    pt = env["res.partner"].create({
        "name": "Tasca do Bairro, Lda", "is_company": True, "vat": "PT508000009", "street": "Rua Augusta 120",
        "city": "Lisboa", "zip": "1100-053", "country_id": env.ref("base.pt").id,
        "email": "contabilidade@tasca.example",
    })
    br = env["res.partner"].create({
        "name": "Ana Souza", "vat": "386.186.997-72", "street": "Rua Sergipe", "fiscal_street_number": "1014",
        "fiscal_district": "Savassi", "city": "Belo Horizonte", "fiscal_city_code": "3106200",
        "state_id": env.ref("base.state_br_mg").id, "zip": "30130-174", "country_id": env.ref("base.br").id,
        "email": "ana@example.com.br",
    })
    # An NFS-e is issued in reais, for a service whose price carries no added tax.
    brl = env.ref("base.BRL")
    brl.active = True
    brl_pricelist = env["product.pricelist"].create({"name": "BRL (fault suite)", "currency_id": brl.id})
    service = env["product.product"].create({
        "name": "Consultoria em sistemas", "default_code": "CONS-FS", "list_price": 100.0, "type": "service",
        "invoice_policy": "order", "taxes_id": [Command.clear()],
    })
    out = {"references": {}}
    plan = json.loads(os.environ["FIC_PLAN"])
    # The simulators have no budget: no pacing of the calls (where the queue paces them).
    unpaced = {"rate_limit_per_minute": 0} if "rate_limit_per_minute" in Account._fields else {}
    for provider, count in plan.items():
        if provider == "invoicexpress":
            account = Account.create({
                "name": "Fault suite InvoiceXpress", "company_id": company.id, "provider": "invoicexpress",
                "account_name": "fault", "base_url": os.environ["FIC_IX_URL"], "api_key": os.environ["FIC_IX_KEY"],
                "trigger": "order_confirm", "mode": "finalize", "document_type": "invoice", "send_email": True,
                **unpaced,
            })
            customer = pt
        else:
            account = Account.create({
                "name": "Fault suite eNotas", "company_id": company.id, "provider": "enotas",
                "base_url": os.environ["FIC_ENOTAS_URL"], "api_key": os.environ["FIC_ENOTAS_KEY"],
                "company_ref": os.environ["FIC_ENOTAS_COMPANY"], "trigger": "order_confirm",
                "service_description": "Consultoria em sistemas", "service_code": "1.07", "service_lc116": "1.07",
                "iss_rate": 2.0, "service_city_code": "3106200", "tax_regime": "simples", "poll_interval": 1,
                **unpaced,
            })
            customer = br
        company.fiscal_default_account_id = account
        refs = []
        for index in range(count):
            nfse = provider != "invoicexpress"
            order = env["sale.order"].create({
                "partner_id": customer.id,
                "fiscal_account_id": account.id,
                **({"pricelist_id": brl_pricelist.id} if nfse else {}),
                "order_line": [Command.create({"product_id": (service if nfse else product).id,
                                               "product_uom_qty": 1 + index % 3, "price_unit": 100.0})],
            })
            order.action_confirm()
            doc = order.fiscal_document_id
            assert doc and doc.account_id == account, (order.name, doc, doc.account_id)
            refs.append(doc.reference)
        out["references"][provider] = refs
    # The prefork run: one account per provider, paced at its budget, its own orders.
    prefork = json.loads(os.environ.get("FIC_PREFORK_PLAN") or "{}")
    out["prefork"] = {}
    if prefork:
        Account.search([("name", "like", "Prefork %")]).write({"active": False, "state": "paused"})
        eur = env.ref("base.EUR")
        eur.active = True
        eur_pricelist = env["product.pricelist"].create({"name": "EUR (prefork)", "currency_id": eur.id})
        br_service = {"service_description": "Consultoria em sistemas", "service_code": "1.07",
                      "service_lc116": "1.07", "iss_rate": 2.0, "service_city_code": "3106200", "poll_interval": 1,
                      "tax_regime": "simples"}
    for provider, spec in prefork.items():
        common = {"name": f"Prefork {provider}", "company_id": company.id, "provider": provider,
                  "base_url": spec["url"], "trigger": "order_confirm", "cancel_on_refund": True,
                  "rate_limit_per_minute": spec["budget"]}
        extra = {
            "invoicexpress": {"account_name": "prefork", "api_key": spec["key"], "mode": "finalize",
                              "document_type": "invoice", "send_email": True, "issue_receipts": False},
            "vendus": {"api_key": spec["key"], "register_id": "1", "document_type": "invoice",
                       "issue_receipts": True},
            "enotas": {"api_key": spec["key"], "company_ref": spec.get("company"), **br_service},
            "invoicy": {"api_key": spec["key"], "access_key": spec.get("access"), "company_ref": spec.get("company"),
                        "issuer_municipal_registration": "12345", **br_service},
        }[provider]
        account = Account.create({**common, **extra})
        customer = pt if provider in ("invoicexpress", "vendus") else br
        sales = []
        for index in range(spec["count"]):
            vals = {"partner_id": customer.id, "fiscal_account_id": account.id,
                    "order_line": [Command.create({"product_id": (product if customer == pt else service).id,
                                                   "product_uom_qty": 1 + index % 2, "price_unit": 100.0})]}
            if provider == "vendus":
                vals["pricelist_id"] = eur_pricelist.id  # Vendus issues in euros only
            elif customer == br:
                vals["pricelist_id"] = brl_pricelist.id  # an NFS-e: in reais, a service without added tax
            order = env["sale.order"].create(vals)
            order.action_confirm()
            doc = order.fiscal_document_id
            assert doc and doc.account_id == account, (order.name, doc, doc.account_id)
            sales.append([order.id, doc.reference])
        out["prefork"][provider] = sales
    env.cr.commit()
    print("RESULT " + json.dumps(out))
    """
)


# ---------------------------------------------------------------------------
# The prefork run: a real Odoo server, its cron killed at its time limit, users over XML-RPC
# ---------------------------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RpcUser:
    """A user in another process: pays, refunds and cancels through the server's HTTP workers."""

    def __init__(self, port, db):
        self.db = db
        url = f"http://127.0.0.1:{port}/xmlrpc/2"
        self.uid = xmlrpc.client.ServerProxy(f"{url}/common").authenticate(db, "admin", "admin", {})
        self.models = xmlrpc.client.ServerProxy(f"{url}/object", allow_none=True)

    def call(self, model, method, args, context=None):
        try:
            kwargs = {"context": context} if context else {}
            return self.models.execute_kw(self.db, self.uid, "admin", model, method, args, kwargs)
        except xmlrpc.client.Fault as e:
            if "cannot marshal None" in e.faultString:  # done and committed; the answer is None
                return None
            raise

    def invoice(self, order_id):
        context = {"active_model": "sale.order", "active_ids": [order_id], "active_id": order_id}
        wizard = self.call("sale.advance.payment.inv", "create", [{"advance_payment_method": "delivered"}], context)
        self.call("sale.advance.payment.inv", "create_invoices", [[wizard]], context)
        (order,) = self.call("sale.order", "read", [[order_id], ["invoice_ids"]])
        invoice = max(order["invoice_ids"])
        self.call("account.move", "action_post", [[invoice]])
        return invoice

    def pay(self, order_id):
        invoice = self.invoice(order_id)
        context = {"active_model": "account.move", "active_ids": [invoice]}
        wizard = self.call("account.payment.register", "create", [{}], context)
        self.call("account.payment.register", "action_create_payments", [[wizard]], context)

    def refund(self, order_id):
        invoice = self.invoice(order_id)
        (move,) = self.call("account.move", "read", [[invoice], ["journal_id"]])
        context = {"active_model": "account.move", "active_ids": [invoice]}
        vals = {"reason": "Devolvido (fault suite)", "journal_id": move["journal_id"][0]}
        wizard = self.call("account.move.reversal", "create", [vals], context)
        action = self.call("account.move.reversal", "refund_moves", [[wizard]], context)
        self.call("account.move", "action_post", [[action["res_id"]]])

    def cancel(self, order_id):
        docs = self.call("fiscal.document", "search", [[("sale_order_id", "=", order_id), ("kind", "=", "invoice")]])
        vals = {"document_ids": [(6, 0, docs)], "reason": "Pedido anulado (fault suite)"}
        wizard = self.call("fiscal.cancel.wizard", "create", [vals])
        self.call("fiscal.cancel.wizard", "action_cancel", [[wizard]])


class PreforkRun:
    """``odoo --workers 2 --max-cron-threads 1 --limit-time-real-cron N``: the queue is run by
    Odoo's own cron worker, SIGKILLed by the master when a run passes its time limit, on a
    backlog that needs several runs at the providers' budgets (simulators with latency and the
    same budget), while a user pays, refunds and cancels documents in flight over XML-RPC."""

    # Per provider: what a user may do to a sale (Vendus invoices cannot be cancelled: refund).
    ACTIONS = {
        "invoicexpress": ("pay", "refund", "cancel"),
        "vendus": ("pay", "refund"),
        "enotas": ("pay", "refund", "cancel"),
        "invoicy": ("pay", "refund", "cancel"),
    }

    def __init__(self, run, args):
        self.run, self.args = run, args
        self.rng = random.Random(args.seed)
        budget, latency = args.prefork_budget, args.prefork_latency
        self.sims = {
            "invoicexpress": InvoiceXpressSimulator(
                api_key=IX_KEY, rate_limit_per_minute=budget, latency=latency, pdf_polls_before_ready=1
            ),
            "vendus": VendusSimulator(api_key=VENDUS_KEY, rate_limit=budget, latency=latency),
            "enotas": EnotasSimulator(
                api_key=ENOTAS_KEY,
                company_id=ENOTAS_COMPANY,
                authorization_delay=0.5,
                rate_limit_per_minute=budget,
                latency=latency,
            ),
            "invoicy": InvoicySimulator(
                partner_key=INVOICY_PARTNER,
                access_key=INVOICY_ACCESS,
                company_code=INVOICY_CNPJ,
                authorization_delay=0.5,
                rate_limit_per_minute=budget,
                latency=latency,
            ),
        }
        self.sales = {}  # provider -> [(order id, reference of its fiscal invoice)]
        self.done = Counter()  # (provider, action) -> done
        self.refused = []  # (provider, action, order, error)
        self.sending = {}  # provider -> documents left in "sending" at the end of the window
        self.kills = 0
        self.server = None
        self.stopping = threading.Event()

    def plan(self):
        keys = {
            "invoicexpress": {"key": IX_KEY},
            "vendus": {"key": VENDUS_KEY},
            "enotas": {"key": ENOTAS_KEY, "company": ENOTAS_COMPANY},
            "invoicy": {"key": INVOICY_PARTNER, "access": INVOICY_ACCESS, "company": INVOICY_CNPJ},
        }
        return {
            provider: {"count": self.args.prefork_orders, "url": sim.base_url, "budget": self.args.prefork_budget,
                       **keys[provider]}
            for provider, sim in self.sims.items()
        }  # fmt: skip

    def start_simulators(self):
        for sim in self.sims.values():
            sim.start()

    def stop_simulators(self):
        for sim in self.sims.values():
            sim.stop()

    # -- the server ------------------------------------------------------------------------
    def start_server(self):
        self.port, gevent_port = free_port(), free_port()
        self.log_path = self.run.odoo.workdir / "prefork-server.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop_server
        command = self.run.odoo.command(
            "-d", self.run.odoo.name, f"--db-filter=^{self.run.odoo.name}$", "--workers=2", "--max-cron-threads=1",
            f"--limit-time-real-cron={self.args.cron_limit}", "--limit-time-real=120", f"--http-port={self.port}",
            f"--gevent-port={gevent_port}", "--http-interface=127.0.0.1",
        )  # fmt: skip
        # A session of its own: the master and its workers are stopped together, by this group's id.
        self.server = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                if self.server.poll() is not None:
                    break
                time.sleep(0.5)
        return False

    def stop_server(self):
        if self.server is None or self.log.closed:
            return
        if self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait(timeout=10)
        self.log.close()
        lines = Path(self.log_path).read_text(errors="replace").splitlines()
        # The master's words when it SIGKILLs a cron worker past --limit-time-real-cron.
        self.kills = len([line for line in lines if "WorkerCron" in line and "timeout after" in line])

    def trigger_cron(self):
        """What a hook's ``_trigger`` does: a trigger row and a NOTIFY to the cron worker."""
        connection = psycopg2.connect(dbname=self.run.odoo.name)
        with connection, connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ir_cron_trigger (cron_id, call_at) SELECT res_id, now() at time zone 'UTC' "
                "FROM ir_model_data WHERE module = 'fiscal_invoice_connector' "
                "AND name = 'ir_cron_process_fiscal_documents'"
            )
            cursor.execute("SELECT pg_notify('cron_trigger', %s)", (self.run.odoo.name,))
        connection.close()

    def keep_triggering(self):
        """Users keep confirming and paying elsewhere: each commit wakes the cron (its NOTIFY).
        Without it, Odoo's cron worker sleeps up to 60 s between polls, and the master counts that
        sleep against --limit-time-real-cron: below about 70 s, an idle cron worker is killed."""
        while not self.stopping.wait(2.0):
            try:
                self.trigger_cron()
            except psycopg2.Error:
                pass

    def accounts_sql(self):
        return "account_id IN (SELECT id FROM fiscal_provider_account WHERE name LIKE %s AND active)"

    def pending(self):
        return sql(
            self.run.odoo.name,
            "SELECT reference, state FROM fiscal_document WHERE " + self.accounts_sql() + " AND "
            "(state IN ('to_send', 'sending', 'to_cancel') OR (state = 'issued' AND "
            "(pdf_state = 'pending' OR email_state = 'pending' OR settle_state = 'pending')))",
            (PREFORK_ACCOUNT,),
        )

    # -- the user ---------------------------------------------------------------------------
    def user_actions(self, user):
        """Seeded: which sales, what, in which order and after which pause."""
        plan = []
        for provider, sales in self.sales.items():
            chosen = self.rng.sample(sales, k=min(len(sales), self.args.prefork_actions))
            plan += [(provider, self.rng.choice(self.ACTIONS[provider]), order_id) for order_id, _ref in chosen]
        self.rng.shuffle(plan)
        for provider, action, order_id in plan:
            time.sleep(self.rng.uniform(0.2, 1.5))
            try:
                getattr(user, action)(order_id)
                self.done[(provider, action)] += 1
            except (xmlrpc.client.Fault, OSError) as e:
                text = getattr(e, "faultString", str(e)).strip().splitlines()
                self.refused.append((provider, action, order_id, text[-1][:160] if text else "?"))

    # -- the phase ---------------------------------------------------------------------------
    def main(self):
        say(f"5. Real prefork server: --workers 2 --max-cron-threads 1 --limit-time-real-cron {self.args.cron_limit}")
        # A live server runs its other scheduled actions on their schedules; a fresh database has
        # them all overdue, and they would eat the cron worker's first runs: not what is measured.
        sql(
            self.run.odoo.name,
            "UPDATE ir_cron SET nextcall = (now() at time zone 'UTC') + interval '1 day' WHERE id NOT IN "
            "(SELECT res_id FROM ir_model_data WHERE module = 'fiscal_invoice_connector' AND model = 'ir.cron')",
        )
        if not self.start_server():
            self.run.problems.append("prefork: the Odoo server did not start")
            return
        try:
            refs = [ref for sales in self.sales.values() for _order, ref in sales]
            sql(
                self.run.odoo.name,
                "UPDATE fiscal_document SET next_attempt = (now() at time zone 'UTC') - interval '1 second' "
                "WHERE reference = ANY(%s)",
                (refs,),
            )
            ticker = threading.Thread(target=self.keep_triggering, daemon=True)
            ticker.start()
            say(f"  {len(refs)} documents due at budget {self.args.prefork_budget} calls/minute per account; "
                f"a user acts on {self.args.prefork_actions} sales per provider over XML-RPC")  # fmt: skip
            user = threading.Thread(target=self.user_actions, args=(RpcUser(self.port, self.run.odoo.name),))
            user.start()
            time.sleep(self.args.prefork_window)
            user.join(timeout=60)
            say(f"  after {self.args.prefork_window} s: {len(self.pending())} documents still queued; draining "
                "(leases made to expire, as time passing would)")  # fmt: skip
            deadline = time.monotonic() + self.args.prefork_drain
            while self.pending() and time.monotonic() < deadline:
                self.run.expire_leases()
                time.sleep(min(self.args.cron_limit, 10))
            self.stopping.set()
            rows = sql(
                self.run.odoo.name,
                "SELECT p.provider, count(*) FROM fiscal_document d JOIN fiscal_provider_account p "
                "ON p.id = d.account_id WHERE p.name LIKE %s AND p.active AND d.state = 'sending' GROUP BY p.provider",
                (PREFORK_ACCOUNT,),
            )
            self.sending = dict(rows)
            left = self.pending()
            if left:
                say(f"  not drained: {len(left)} documents still queued {left[:5]}")
        finally:
            self.stopping.set()
            self.stop_server()
        say(f"  cron worker killed at its time limit {self.kills} times; user actions done "
            f"{sum(self.done.values())}, refused {len(self.refused)}")  # fmt: skip

    # -- counting -----------------------------------------------------------------------------
    def remote(self, provider):
        """{reference: [status of each numbered document]}, and the drafts, at the provider."""
        sim, numbered, drafts = self.sims[provider], {}, 0

        def add(ref, status):
            numbered.setdefault(ref, []).append(status)

        if provider == "invoicexpress":
            for doc in sim.documents.values():
                if doc["status"] == "draft":
                    drafts += 1
                elif doc["status"] in ("final", "settled", "canceled"):
                    add((doc.get("reference") or "").split(" ")[-1], doc["status"])
            for receipt in sim.receipts.values():
                add(receipt.get("note") or "", receipt["status"])
        elif provider == "vendus":
            for doc in sim.documents.values():
                add(doc.get("external_reference") or "", {"N": "final", "A": "canceled"}.get(doc["status"]["id"]))
        elif provider == "enotas":
            for doc in sim.find():
                status = {"Autorizada": "final", "Cancelada": "canceled"}.get(doc["status"])
                if status:
                    add(doc.get("idExterno"), status)
        else:
            for key in list(sim.documents):
                doc = sim.find(key)
                status = {"authorized": "final", "canceled": "canceled"}.get(doc["status"])
                if status:
                    add(key, status)
        return numbered, drafts

    def count(self):
        rows = []
        for provider, sim in self.sims.items():
            odoo = sql(
                self.run.odoo.name,
                "SELECT d.reference, d.kind, d.state FROM fiscal_document d JOIN fiscal_provider_account p "
                "ON p.id = d.account_id WHERE p.name = %s AND p.active",
                (f"Prefork {provider}",),
            )
            numbered, drafts = self.remote(provider)
            duplicates = [ref for ref, _kind, _state in odoo if len(numbered.get(ref, ())) > 1]
            # Dropped before sending, or cancelled as a draft (deleted, never legal): nothing to find.
            lost = [
                ref for ref, _kind, state in odoo if state not in ("dropped", "cancelled") and not numbered.get(ref)
            ]
            expected_remote = {"issued": ("final", "settled"), "cancelled": ("canceled",), "dropped": ()}
            differs = [
                ref
                for ref, _kind, state in odoo
                if state in expected_remote
                and numbered.get(ref)
                and not set(numbered[ref]) & set(expected_remote[state])
                or (state == "dropped" and numbered.get(ref))
            ]
            emailed_twice = None
            if provider == "invoicexpress":
                emailed_twice = len([n for n in Counter(e["document_id"] for e in sim.emails).values() if n > 1])
            row = {
                "provider": provider,
                "documents": len(odoo),
                "issued": len([1 for _ref, _kind, state in odoo if state == "issued"]),
                "calls": len(sim.requests),
                "duplicates": len(duplicates),
                "lost": len(lost),
                "emailed twice": emailed_twice,
                "orphan drafts": drafts if provider == "invoicexpress" else None,
                "left in sending": self.sending.get(provider, 0),
                "Odoo != provider": len(set(differs)),
            }
            rows.append(row)
            bad = {k: v for k, v in row.items() if k not in ("provider", "documents", "issued", "calls") and v}
            if bad:
                self.run.problems.append(f"prefork {provider}: {bad} (lost {lost[:3]}, duplicates {duplicates[:3]})")
        return rows


def print_prefork_table(rows, prefork):
    columns = ["documents", "issued", "calls", "duplicates", "lost", "emailed twice", "orphan drafts",
               "left in sending", "Odoo != provider"]  # fmt: skip
    print()
    print(
        f"Prefork run (--workers 2, cron killed after {prefork.args.cron_limit} s: {prefork.kills} kills; "
        f"seed {prefork.args.seed}): per provider; from duplicates on, all must be 0 ('-': no such step there)"
    )
    print(f"{'provider':<14} " + " ".join(f"{c:>{max(len(c), 6)}}" for c in columns))
    for row in rows:
        cells = ["-" if row[c] is None else str(row[c]) for c in columns]
        print(
            f"{row['provider']:<14} " + " ".join(f"{v:>{max(len(c), 6)}}" for c, v in zip(columns, cells, strict=True))
        )
    done = ", ".join(f"{p} {a} x{n}" for (p, a), n in sorted(prefork.done.items()))
    print(f"  user actions over XML-RPC: {done or 'none'}")
    for provider, action, order_id, error in prefork.refused:
        print(f"  refused: {provider} {action} (order {order_id}): {error}")


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


class Run:
    def __init__(self, args, workdir):
        self.args = args
        self.odoo = OdooDb(args.db, workdir)
        self.ix = InvoiceXpressSimulator(api_key=IX_KEY, rate_limit_per_minute=None, pdf_polls_before_ready=1)
        self.enotas = EnotasSimulator(api_key=ENOTAS_KEY, company_id=ENOTAS_COMPANY, authorization_delay=0)
        self.sims = {"invoicexpress": self.ix, "enotas": self.enotas}
        self.prefork = PreforkRun(self, args) if args.prefork_orders else None
        self.injected = Counter()  # (provider, what) -> count
        self.problems = []
        self.references = {}
        self.waiting = {}  # provider -> references not released yet
        self.kinds = {}  # provider -> Counter of what was injected

    # -- helpers ----------------------------------------------------------------------
    def expire_leases(self):
        """Time passes: leases of dead workers (5 minutes in real life) and short backoffs end.
        Documents held back for a later wave (a day ahead) stay where they are."""
        return sql(
            self.odoo.name,
            "UPDATE fiscal_document SET next_attempt = (now() at time zone 'UTC') - interval '1 second' "
            "WHERE next_attempt > (now() at time zone 'UTC') "
            "AND next_attempt < (now() at time zone 'UTC') + interval '12 hours'",
        )

    def hold_back_all(self):
        sql(self.odoo.name, "UPDATE fiscal_document SET next_attempt = (now() at time zone 'UTC') + interval '1 day'")

    def release(self, provider, count):
        """The next wave of fresh documents becomes due."""
        wave, self.waiting[provider] = self.waiting[provider][:count], self.waiting[provider][count:]
        if wave:
            sql(
                self.odoo.name,
                "UPDATE fiscal_document SET next_attempt = (now() at time zone 'UTC') - interval '1 second' "
                "WHERE reference = ANY(%s)",
                (wave,),
            )
        return len(wave)

    def release_all(self):
        for provider in self.waiting:
            self.release(provider, len(self.waiting[provider]))

    def resume_accounts(self):
        sql(self.odoo.name, "UPDATE fiscal_provider_account SET state = 'active' WHERE name LIKE 'Fault suite %%'")

    def wait_for_held(self, sim, path, seen, timeout=20):
        """Until the simulator processed a matching request and holds its answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with sim.lock:
                held = [r for r in sim.requests[seen:] if r.get("fault") == "timeout" and path in r["path"]]
            if held:
                return True
            time.sleep(0.05)
        return False

    def backend_pids(self, worker):
        return [
            row[0]
            for row in sql(
                "postgres",
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                (self.odoo.name, APP_NAME.format(pid=worker.pid)),
            )
        ]

    # -- phases ---------------------------------------------------------------------------
    def kill_after_success(self, provider, step, method, path):
        """The provider processed the request; the worker is SIGKILLed before it reads the answer."""
        self.release(provider, 3)
        sim = self.sims[provider]
        sim.timeout_seconds = HELD
        seen = len(sim.requests)
        sim.inject("timeout", when="after", path_contains=path, method=method)
        worker = self.odoo.spawn_worker(f"kill-{provider}-{step}", seconds=60)
        if self.wait_for_held(sim, path, seen):
            worker.kill()
            self.injected[(provider, f"SIGKILL after {step}")] += 1
            say(f"  {provider} {step}: provider done, worker {worker.pid} killed before its commit")
        else:
            # Nothing reached this step (e.g. everything is past it): not an error of the connector.
            worker.kill()
            say(f"  {provider} {step}: no request reached this step; worker stopped")
        sim.clear_faults()
        self.expire_leases()

    def drop_connection_mid_call(self, provider, step, method, path):
        """The database connection of a worker is terminated while the provider holds its answer."""
        self.release(provider, 3)
        sim = self.sims[provider]
        sim.timeout_seconds = 2.0
        seen = len(sim.requests)
        sim.inject("timeout", when="after", path_contains=path, method=method)
        worker = self.odoo.spawn_worker(f"dbdrop-{provider}-{step}", seconds=60)
        if self.wait_for_held(sim, path, seen):
            pids = self.backend_pids(worker)
            for pid in pids:
                sql("postgres", "SELECT pg_terminate_backend(%s)", (pid,))
            self.injected[(provider, "DB connection terminated mid-call")] += len(pids)
            say(f"  {provider} {step}: {len(pids)} connection(s) of worker {worker.pid} terminated mid-call")
        code = worker.wait(40)
        say(f"  worker {worker.pid} ended with {code}")
        sim.clear_faults()
        sim.timeout_seconds = HELD
        self.expire_leases()

    def drop_connection_mid_batch(self):
        """Terminated at a random moment of a busy batch (no answer held)."""
        for provider in self.waiting:
            self.release(provider, 4)
        seen = sum(len(s.requests) for s in self.sims.values())
        worker = self.odoo.spawn_worker("dbdrop-batch", seconds=60)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and sum(len(s.requests) for s in self.sims.values()) < seen + 6:
            if worker.process.poll() is not None:
                break
            time.sleep(0.02)
        pids = self.backend_pids(worker)
        for pid in pids:
            sql("postgres", "SELECT pg_terminate_backend(%s)", (pid,))
        self.injected[("all", "DB connection terminated mid-batch")] += len(pids)
        say(f"  busy batch: {len(pids)} connection(s) of worker {worker.pid} terminated")
        say(f"  worker {worker.pid} ended with {worker.wait(40)}")
        self.expire_leases()

    def two_workers(self, faults=True):
        if faults:
            for sim in self.sims.values():
                for fault, when in ((503, "before"), ("reset", "after"), ("reset", "before"), (502, "before")):
                    sim.inject(fault, when=when, count=2)
        self.release_all()
        fired_before = self.transient_fired()
        workers = [self.odoo.spawn_worker(f"pair-{index}", seconds=45) for index in range(2)]
        codes = [worker.wait(60) for worker in workers]
        for sim in self.sims.values():
            sim.clear_faults()
        fired = self.transient_fired() - fired_before
        say(f"  two workers at once ended with {codes} ({fired} transient faults fired)")

    def transient_fired(self):
        return sum(
            len([r for r in sim.requests if r.get("fault") in (503, 502, "reset")]) for sim in self.sims.values()
        )

    def recover(self, rounds=6):
        for sim in self.sims.values():
            sim.clear_faults()
        self.release_all()
        for _ in range(rounds):
            self.resume_accounts()
            self.expire_leases()
            workers = [self.odoo.spawn_worker("recovery", seconds=40) for _ in range(2)]
            for worker in workers:
                worker.wait(60)
            if not self.pending():
                return True
        return False

    def pending(self):
        return sql(
            self.odoo.name,
            "SELECT reference, state, pdf_state, email_state, last_error FROM fiscal_document "
            "WHERE (state IN ('to_send', 'sending', 'to_cancel') OR (state = 'issued' AND "
            "(pdf_state = 'pending' OR email_state = 'pending'))) AND account_id NOT IN "
            "(SELECT id FROM fiscal_provider_account WHERE name LIKE %s) ORDER BY id",
            (PREFORK_ACCOUNT,),
        )

    # -- counting ------------------------------------------------------------------------
    def count(self):
        rows = []
        remote_refs = {
            "invoicexpress": lambda d: (d.get("reference") or "").split(" ")[-1],
            "enotas": lambda d: d.get("idExterno"),
        }
        final_states = {
            "invoicexpress": lambda d: d["status"] in ("final", "settled"),
            "enotas": lambda d: d["status"] == "Autorizada",
        }
        odoo_states = dict(
            sql(self.odoo.name, "SELECT reference, state FROM fiscal_document WHERE reference IS NOT NULL")
        )
        for provider, expected in self.references.items():
            sim = self.sims[provider]
            docs = list(sim.documents.values()) if provider == "invoicexpress" else sim.find()
            finals = Counter(remote_refs[provider](d) for d in docs if final_states[provider](d))
            duplicates = [ref for ref in expected if finals[ref] > 1]
            lost = [ref for ref in expected if not finals[ref]]
            not_issued = [ref for ref in expected if odoo_states.get(ref) != "issued"]
            # Kills and terminated connections, plus the transient faults that fired (the "timeout"
            # faults only hold an answer for a kill: counted as the kill).
            kinds = Counter({what: n for (p, what), n in self.injected.items() if p in (provider, "all")})
            kinds.update(f"{r['fault']}" for r in sim.requests if r.get("fault") not in (None, "timeout"))
            faults = sum(kinds.values())
            self.kinds[provider] = kinds
            notes = []
            if not_issued:
                notes.append(f"{len(not_issued)} not issued in Odoo")
            if provider == "invoicexpress":
                drafts = len([d for d in docs if d["status"] == "draft"])
                twice = len([n for n in Counter(str(e["document_id"]) for e in sim.emails).values() if n > 1])
                notes.append(f"orphan drafts {drafts} (not legal documents), emailed twice {twice}")
            rows.append((provider, faults, len(expected), sum(finals[r] for r in expected), duplicates, lost, notes))
            if duplicates:
                self.problems.append(f"{provider}: duplicates {duplicates}")
            if lost:
                self.problems.append(f"{provider}: lost {lost}")
            if not_issued:
                self.problems.append(f"{provider}: not issued in Odoo {not_issued}")
        return rows

    def fault_phases(self):
        """Phases 1-4: killed and cut-off workers, two at once, recovery."""
        say("1. SIGKILL between the provider's success and Odoo's commit, at each step")
        steps = [
            ("invoicexpress", "customer", "POST", "/clients.json"),
            ("invoicexpress", "create", "POST", "/invoices.json"),
            ("invoicexpress", "finalize", "PUT", "/change-state"),
            ("invoicexpress", "PDF", "GET", "/api/pdf/"),
            ("invoicexpress", "email", "PUT", "/email-document"),
            ("enotas", "create", "POST", "/nfes"),
            ("enotas", "status", "GET", "/nfes/"),
            ("enotas", "PDF", "GET", "/simulator-files/nfse/"),  # the file links (storage)
        ]
        for provider, step, method, path in steps:
            if provider not in self.references:
                continue
            self.kill_after_success(provider, step, method, path)
        say("2. The database connection dropped in the middle of a call, then of a busy batch")
        self.drop_connection_mid_call("invoicexpress", "finalize", "PUT", "/change-state")
        self.drop_connection_mid_batch()
        say("3. Two workers at once on the same queue, with transient faults")
        self.expire_leases()
        self.two_workers()
        say("4. Recovery: leases expire, two workers run until the queue is drained")
        drained = self.recover()
        if not drained:
            self.problems.append(f"the queue did not drain: {self.pending()[:10]}")
        return self.count()

    # -- main -----------------------------------------------------------------------------
    def main(self):
        started = time.monotonic()
        result = prepare_database(self.odoo, self.args.reuse)
        if result.returncode:
            say(f"database set-up failed:\n{result.stderr[-3000:]}")
            return 2
        for sim in self.sims.values():
            sim.start()
        if self.prefork:
            self.prefork.start_simulators()
        rows = prefork_rows = None
        try:
            plan = {"invoicexpress": self.args.orders}
            if self.args.enotas_orders:
                plan["enotas"] = self.args.enotas_orders
            if self.args.prefork_only:
                plan = {}
            output = self.odoo.shell(
                SETUP_CODE,
                env={
                    "FIC_PLAN": json.dumps(plan),
                    "FIC_IX_URL": self.ix.base_url,
                    "FIC_IX_KEY": IX_KEY,
                    "FIC_ENOTAS_URL": self.enotas.base_url,
                    "FIC_ENOTAS_KEY": ENOTAS_KEY,
                    "FIC_ENOTAS_COMPANY": ENOTAS_COMPANY,
                    "FIC_CONCURRENCY": str(self.args.concurrency or ""),
                    "FIC_PREFORK_PLAN": json.dumps(self.prefork.plan() if self.prefork else {}),
                },
            )
            line = next(line for line in output.splitlines() if line.startswith("RESULT "))
            result = json.loads(line[len("RESULT ") :])
            self.references = result["references"]
            if self.prefork:
                self.prefork.sales = result["prefork"]
            self.waiting = {provider: list(refs) for provider, refs in self.references.items()}
            self.hold_back_all()  # released in waves: every step meets fresh documents
            confirmed = ", ".join(f"{len(refs)} {provider}" for provider, refs in self.references.items())
            say(f"{confirmed} orders confirmed; the queue is run by real worker processes")
            if not self.args.prefork_only:
                rows = self.fault_phases()
            if self.prefork:
                self.prefork.main()
                prefork_rows = self.prefork.count()
        finally:
            for sim in self.sims.values():
                sim.stop()
            if self.prefork:
                self.prefork.stop_server()
                self.prefork.stop_simulators()
        if rows is not None:
            print_table(rows, time.monotonic() - started)
        if prefork_rows:
            print_prefork_table(prefork_rows, self.prefork)
        for provider, kinds in self.kinds.items():
            print(f"  {provider}: " + ", ".join(f"{what} x{n}" for what, n in sorted(kinds.items())))
        for problem in self.problems:
            say(f"PROBLEM: {problem}")
        if self.problems:
            say(f"worker logs kept in {self.odoo.workdir}")
        return 1 if self.problems else 0


def print_table(rows, elapsed):
    print()
    print("Fault suite (real processes): faults injected, documents expected / final at the provider")
    print(f"{'provider':<14} {'faults':>6} {'expected':>8} {'at provider':>11} {'duplicates':>10} {'lost':>4}  notes")
    for provider, faults, expected, at_provider, duplicates, lost, notes in rows:
        print(
            f"{provider:<14} {faults:>6} {expected:>8} {at_provider:>11} {len(duplicates):>10} {len(lost):>4}  "
            f"{'; '.join(notes) or '-'}"
        )
    print(f"({elapsed:.0f} s)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=os.environ.get("FIC_FAULT_DB", "fic_fault_suite"))
    parser.add_argument("--orders", type=int, default=30, help="InvoiceXpress orders (default 30)")
    parser.add_argument("--enotas-orders", type=int, default=10, help="eNotas orders (0: none)")
    parser.add_argument(
        "--concurrency", type=int, help="provider calls at once in the queue (default: the database's setting)"
    )
    parser.add_argument(
        "--prefork-orders", type=int, default=10, help="orders per provider for the prefork run (0: no prefork run)"
    )
    parser.add_argument("--prefork-budget", type=int, default=120, help="calls per minute per account (and simulator)")
    parser.add_argument("--prefork-latency", type=float, default=0.1, help="seconds the simulators add per answer")
    parser.add_argument("--prefork-actions", type=int, default=4, help="sales per provider a user acts on")
    parser.add_argument("--prefork-window", type=int, default=40, help="seconds the server runs before counting")
    parser.add_argument("--prefork-drain", type=int, default=50, help="at most this long to drain afterwards")
    parser.add_argument("--cron-limit", type=int, default=20, help="--limit-time-real-cron of the prefork server")
    parser.add_argument("--prefork-only", action="store_true", help="only the prefork run (phase 5)")
    parser.add_argument("--seed", type=int, default=7, help="the user's choices and pauses (reproducible runs)")
    parser.add_argument("--reuse", action="store_true", help="keep the database if it exists (update the addon)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="fic-fault-suite-")
    code = Run(args, workdir).main()
    if code == 0 and not args.keep_logs:
        for path in Path(workdir).iterdir():
            path.unlink()
        Path(workdir).rmdir()
    return code


if __name__ == "__main__":
    sys.exit(main())
