#!/usr/bin/env python3
"""Throughput benchmark of the fiscal queue (issue 6). Not part of the tests.

    python3 scripts/benchmark.py                       # sizes 100 and 1,000 (about 10 minutes on 2 cores)
    python3 scripts/benchmark.py --sizes 100,1000,10000  # adds 10,000 documents (about 45 minutes more)
    python3 scripts/benchmark.py --quick               # smoke run, tiny sizes (2 minutes), writes nothing

One Python process uses Odoo as a library (``Registry(db)``, real commits, the cron method
``_cron_process_queue`` called in a loop until the queue is empty) on a fresh database cloned
from the test template (created as scripts/run_tests.sh does when missing), with the provider
simulators running in-process (threads, free ports). It prints, and writes to docs/benchmark.md:

* user path: confirming an order / posting an invoice with the account's trigger on (the
  document is enqueued) against the same operation with the trigger "manual" (plain Odoo plus
  the addon's routing), same data, interleaved, one transaction per operation;
* lists: queries the web client runs to open a list of 80 invoices and of 80 orders, without
  fiscal documents and with one per record (the same count is the target);
* the queue at ``--latency`` (150 ms) without rate limit, concurrent (``--concurrency``, 8) for
  each size, and sequential (concurrency 1, the one-by-one path) as the baseline: documents per
  second, calls per document from the simulator's request log, SQL queries per document (the
  thread's query counter over the whole processing), peak memory (maxrss);
* the budget: the same queue against a simulator refusing more than 100 requests per minute,
  the minute shortened to ``--budget-window`` seconds (6 s: 10 requests per sliding 6 s window);
  the account's ``rate_limit_per_minute`` stays 100: share of the budget used, number of 429;
* calls per document for Vendus, eNotas and InvoiCy (no latency). eNotas notifies: Odoo's WSGI
  application is served in this process on ``--http-port`` (the webhook controller), the simulator
  POSTs each decision to the account's webhook URL after ``--enotas-authorization-delay``; one
  warm-up note (not counted) lets the account learn that notifications arrive, as a real account
  does with its first note; webhooks are inbound, counted apart from the API calls;
* the backfill: ``--backfill`` (10,000) confirmed orders without documents queued by the
  "Issue for past sales" wizard (``_enqueue_many``), timed.

docs/benchmark.md explains each measure; the part between its markers is rewritten by each run.
InvoiceXpress's PDF: the simulator renders for ``--pdf-render-seconds`` (1 s) after finalizing and
answers 202 until then; the connector asks for it after its shipped ``pdf_ready_after`` (not
overridden; ``--pdf-ready-after`` sets the parameter). ``--old-pdf`` reproduces the setting of the
runs before 2026-12-06 (one 202 per document whatever the time, no waiting in the connector). The
20 customers recur: the first run pays a lookup and a create for each new one, the account then
remembers them (fiscal.partner.binding) in the later runs.

Databases: ``--db`` (``fic_bench``), dropped at the end unless ``--keep-db``; HTTP port 8190 for the
installation and for the webhooks (the simulators take free ports).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEMPLATE_MODULES = "sale_management,account,mail"


# ---------------------------------------------------------------------------------- set-up
def ensure_environment():
    """Run under scripts/bootstrap.sh (Odoo sources, virtualenv, PostgreSQL) when not already."""
    if os.environ.get("ODOO_BIN") and os.environ.get("ADDONS_PATH") and os.environ.get("PY"):
        return
    script = f'. "{REPO}/scripts/bootstrap.sh" && exec "$PY" "{Path(__file__).resolve()}" "$@"'
    os.execvp("bash", ["bash", "-c", script, "benchmark", *sys.argv[1:]])


def odoo_cli(*args, log=None):
    """The ``odoo`` shell function of scripts/bootstrap.sh."""
    sub = [args[0]] if args and args[0] in ("db", "shell") else []
    rest = list(args[len(sub) :])
    env = os.environ
    command = [
        env["PY"],
        env["ODOO_BIN"],
        *sub,
        f"--addons-path={env['ADDONS_PATH']}",
        f"--db_host={env['PGHOST']}",
        f"--db_port={env['PGPORT']}",
        f"--db_user={env['PGUSER']}",
        *rest,
    ]
    with open(log or os.devnull, "w") as out:
        return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def psql(sql):
    result = subprocess.run(["psql", "-X", "-Atq", "-d", "postgres", "-c", sql], capture_output=True, text=True)
    return result.stdout.strip()


def template_name():
    """Same key as scripts/run_tests.sh: Odoo's version line, the modules, the Python version."""
    release = Path(os.environ["ODOO_SRC"], "odoo", "release.py").read_text()
    lines = "".join(line + "\n" for line in release.splitlines() if "version_info" in line)
    python = subprocess.run([os.environ["PY"], "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256((lines + TEMPLATE_MODULES + "\n" + python).encode()).hexdigest()[:8]
    return f"fic_template_{key}"


def prepare_database(db, http_port):
    cache = Path(os.environ.get("FIC_CACHE", Path.home() / ".cache/fiscal_invoice_connector"))
    template = template_name()
    if psql(f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{template}'") != (
        "complete"
    ):
        say(f"creating the template database {template} ({TEMPLATE_MODULES}, once; about a minute)...")
        odoo_cli("db", "drop", template)
        log = cache / "template-install.log"
        if odoo_cli(
            "-d", template, "-i", TEMPLATE_MODULES, "--stop-after-init", "--log-level=warn", "--http-port=0", log=log
        ):
            sys.exit(f"installing {TEMPLATE_MODULES} failed: see {log}")
        psql(f"COMMENT ON DATABASE \"{template}\" IS 'complete'")
    say(f"fresh database {db} from {template}, with the addon installed...")
    odoo_cli("db", "drop", db)
    if odoo_cli("db", "duplicate", template, db):
        sys.exit(f"could not copy {template} to {db}")
    log = cache / "benchmark-install.log"
    if odoo_cli(
        "-d",
        db,
        "-i",
        "fiscal_invoice_connector",
        "--stop-after-init",
        "--log-level=warn",
        f"--http-port={http_port}",
        log=log,
    ):
        sys.exit(f"installing fiscal_invoice_connector failed: see {log}")


STARTED = time.monotonic()
LOAD_AT_START = os.getloadavg()[1]
BEGIN, END = "<!-- benchmark:results -->", "<!-- /benchmark:results -->"
METHOD = """## How it is measured

See the docstring of scripts/benchmark.py.
"""


def say(message):
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- measures
def queries():
    """SQL queries run by this thread so far (Odoo's cursor counts them per thread)."""
    return getattr(threading.current_thread(), "query_count", 0)


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


STORAGE = "(storage)"  # the label's suffix of a download outside the API and its budget


def is_storage(entry):
    """A request the simulator serves without key or rate-limit slot (a pre-signed storage link,
    a download link): recorded by the benchmark's simulators (``public_paths``), else by path."""
    return bool(entry.get("public")) or entry["path"].startswith("/simulator-files/")


def classify(entry):
    method, path = entry["method"], entry["path"].split("?")[0]
    if is_storage(entry):
        low = entry["path"].lower()
        kind = "PDF" if "pdf" in low else "XML" if "xml" in low else "file"
        return f"{kind} download {STORAGE}"
    if "/nfes" in path:  # eNotas
        tail = path.split("/nfes", 1)[1].strip("/")
        if method == "POST":
            return "create"
        if tail.endswith("/pdf"):
            return "PDF"
        if tail.endswith("/xml"):
            return "XML"
        return "status read" if tail else f"{method} nfes"
    if path.endswith("/arecepcao.aspx"):  # InvoiCy: one SOAP endpoint, the operation is in the body
        return f"SOAP {method}"
    if path.rstrip("/").startswith(("/ws/v1.1/documents", "/documents")):  # Vendus
        if method == "POST":
            return "create"
        return "PDF" if "output=pdf" in entry["path"] else f"{method} document"
    if "/api/pdf/" in path:
        return f"PDF poll {entry['status']}"
    if "find-by-code" in path:
        return "customer lookup"
    if path.startswith("/clients"):
        return "customer create" if method == "POST" else "customer update"
    if "change-state" in path:
        return "finalize"
    if method == "POST" and path.endswith(".json") and path.count("/") == 1:
        return "create"
    if method == "GET" and path in ("/invoices.json",):
        return "probe by reference"
    return f"{method} {path.rsplit('/', 1)[-1] if path.rstrip('/').count('/') > 2 else path}"


# The reference run before issue 15 (docs/benchmark.md of 2026-11-21), shown beside each new figure.
OLD_RUN = "2026-11-21"
OLD = {
    "confirm": "2.47×",
    "post": "1.15×",
    "sql_100": "67",
    "sql_1000": "66",
    "list_invoices": "not measured",
    "list_orders": "not measured",
    "invoicexpress": "4.60 (PDF polls 2.00)",
    "vendus": "2.00",
    "enotas": "4.00",
    "invoicy": "not measured",
    "budget": "97.4 %",
    "429": "0",
    "drain": "16.9 documents/min",
}


def mark(met):
    return "—" if met is None else ("met" if met else "**missed**")


def machine():
    mem = next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(int(mem) / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def clone_orders(cr, seed_ids, count):
    """``count`` more confirmed orders, copies of ``seed_ids`` (rows of sale_order, their lines and
    the lines' taxes) made in SQL: 10,000 orders through the ORM would take minutes on 2 cores."""

    def columns(table):
        cr.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND column_name != 'id'",
            [table],
        )
        return [row[0] for row in cr.fetchall()]

    order_cols = columns("sale_order")
    line_cols = [c for c in columns("sale_order_line") if c != "order_id"]
    tax_rel = "account_tax_sale_order_line_rel"  # sale.order.line.tax_ids
    o_list = ", ".join(f'"{c}"' for c in order_cols)
    l_list = ", ".join(f'"{c}"' for c in line_cols)
    for n in range(count):
        seed = seed_ids[n % len(seed_ids)]
        cr.execute(
            f"INSERT INTO sale_order ({o_list}) SELECT {o_list} FROM sale_order WHERE id = %s RETURNING id", [seed]
        )
        order_id = cr.fetchone()[0]
        cr.execute("UPDATE sale_order SET name = 'SB' || lpad(id::text, 6, '0') WHERE id = %s", [order_id])
        cr.execute("SELECT id FROM sale_order_line WHERE order_id = %s ORDER BY id", [seed])
        for (line_id,) in cr.fetchall():
            cr.execute(
                f"INSERT INTO sale_order_line (order_id, {l_list}) SELECT %s, {l_list} FROM sale_order_line "
                "WHERE id = %s RETURNING id",
                [order_id, line_id],
            )
            new_line = cr.fetchone()[0]
            cr.execute(
                f"INSERT INTO {tax_rel} (sale_order_line_id, account_tax_id) "
                f"SELECT %s, account_tax_id FROM {tax_rel} WHERE sale_order_line_id = %s",
                [new_line, line_id],
            )


class Profile:
    """Time and SQL queries spent in each step of the queue (wrapped methods, this process only)."""

    def __init__(self):
        self.seconds, self.sql, self.calls = Counter(), Counter(), Counter()

    def wrap(self, owner, name, label):
        original = getattr(owner, name)
        profile = self

        def wrapper(*args, **kwargs):
            started, before = time.perf_counter(), queries()
            try:
                return original(*args, **kwargs)
            finally:
                profile.seconds[label] += time.perf_counter() - started
                profile.sql[label] += queries() - before
                profile.calls[label] += 1

        setattr(owner, name, wrapper)

    def reset(self):
        self.seconds.clear()
        self.sql.clear()
        self.calls.clear()

    def snapshot(self):
        return {"seconds": dict(self.seconds), "sql": dict(self.sql), "calls": dict(self.calls)}


# ---------------------------------------------------------------------------------- the benchmark
class Bench:
    def __init__(self, args):
        self.args = args
        self.results = {}
        self.notes = []

    # -- Odoo as a library ---------------------------------------------------------------
    def start_odoo(self):
        import odoo  # noqa: F401 - the package first (monkeypatches)
        from odoo.tools import config

        env = os.environ
        config.parse_config(
            [
                f"--addons-path={env['ADDONS_PATH']}",
                f"--db_host={env['PGHOST']}",
                f"--db_port={env['PGPORT']}",
                f"--db_user={env['PGUSER']}",
                f"--database={self.args.db}",
                "--log-level=warn",
                f"--http-port={self.args.http_port}",
            ],
            setup_logging=True,
        )
        from odoo.modules.registry import Registry

        threading.current_thread().dbname = self.args.db
        threading.current_thread().query_count = 0  # Odoo counts this thread's queries from now on
        self.registry = Registry(self.args.db)
        from odoo.addons.fiscal_invoice_connector.models.fiscal_document import FiscalDocument
        from odoo.addons.fiscal_invoice_connector.providers.pipeline import Pipeline

        self.profile = Profile()
        for name, label in (
            ("_claim", "claim (lock, lease, commit)"),
            ("_plan_job", "plan (mapping, intent)"),
            ("_apply_job", "apply (results, PDF, chatter)"),
            ("_checkpoint_job", "checkpoint (facts per stage)"),
            ("_enqueue", "enqueue (_enqueue)"),
            ("_post_on_sources", "chatter (_post_on_sources)"),
            ("_trigger_processing", "cron trigger"),
        ):
            self.profile.wrap(FiscalDocument, name, label)
        self.profile.wrap(Pipeline, "run", "provider calls (pipeline)")

    def cursor(self):
        return self.registry.cursor()

    def env(self, cr, uid=None):
        from odoo import SUPERUSER_ID, api

        env = api.Environment(cr, SUPERUSER_ID, {})
        context = env["res.users"].context_get()
        if uid is None:
            return api.Environment(cr, SUPERUSER_ID, context)
        return api.Environment(cr, uid, context)

    # -- simulators -------------------------------------------------------------------------
    def simulator(self, provider, **kwargs):
        """A simulator whose request log also keeps the arrival time of each request."""
        if provider == "invoicexpress":
            from fiscal_simulators.invoicexpress import InvoiceXpressSimulator as cls
        elif provider == "vendus":
            from fiscal_simulators.vendus import VendusSimulator as cls
        elif provider == "invoicy":
            from fiscal_simulators.invoicy import InvoicySimulator as cls
        else:
            from fiscal_simulators.enotas import EnotasSimulator as cls

        class Timed(cls):
            def _log(self, entry):
                entry["t"] = time.monotonic()
                super()._log(entry)

            def is_public(self, request):
                # Served without key or rate-limit slot: a storage download, whatever its label.
                public = super().is_public(request)
                if public and request.method == "GET":
                    with self.lock:
                        for entry in reversed(self.requests):
                            if entry["path"].split("?")[0] == request.path and "public" not in entry:
                                entry["public"] = True
                                break
                return public

        return Timed(**kwargs).start()

    def pdf_model(self):
        """InvoiceXpress simulator's PDF: rendered ``--pdf-render-seconds`` after finalizing (202
        until then), after ``--pdf-polls`` forced 202 answers (0; the old setting: 1)."""
        return {"pdf_polls_before_ready": self.args.pdf_polls, "pdf_render_seconds": self.args.pdf_render_seconds}

    def pdf_ready_after(self, env):
        """When the connector asks for a PDF after finalizing (the parameter, else the provider's default)."""
        from odoo.addons.fiscal_invoice_connector.providers.invoicexpress import InvoiceXpressProvider

        value = env["ir.config_parameter"].sudo().get_param("fiscal_invoice_connector.pdf_ready_after")
        return float(value) if value else InvoiceXpressProvider.pdf_ready_after

    # -- Odoo's HTTP server (webhooks) ----------------------------------------------------
    def start_http(self):
        """Odoo's WSGI application in this process, for the providers' notifications."""
        if getattr(self, "http_server", None):
            return
        from werkzeug.serving import make_server

        import odoo.http

        self.http_server = make_server("127.0.0.1", self.args.http_port, odoo.http.root, threaded=True)
        threading.Thread(target=self.http_server.serve_forever, name="odoo http", daemon=True).start()
        say(f"Odoo's HTTP server on 127.0.0.1:{self.args.http_port} (webhooks)")

    def stop_http(self):
        server, self.http_server = getattr(self, "http_server", None), None
        if server:
            server.shutdown()

    # -- data -------------------------------------------------------------------------------------
    def setup_data(self):
        from odoo import Command

        with self.cursor() as cr:
            env = self.env(cr)
            company = env.company
            eur = env.ref("base.EUR")
            eur.active = True
            if company.currency_id != eur:
                company.currency_id = eur  # a Portuguese company (Vendus issues in euros only)
            env["product.pricelist"].with_context(active_test=False).search([]).currency_id = eur
            company.country_id = env.ref("base.pt")
            params = env["ir.config_parameter"].sudo()
            params.set_param("fiscal_invoice_connector.pdf_poll_interval", str(self.args.pdf_poll_interval))
            if self.args.pdf_ready_after is not None:
                params.set_param("fiscal_invoice_connector.pdf_ready_after", str(self.args.pdf_ready_after))
            # Webhook URLs (account.webhook_url) point at the server this process runs (start_http).
            params.set_param("web.base.url", f"http://127.0.0.1:{self.args.http_port}")
            tax = env["account.tax"].create(
                {
                    "name": "IVA 23% (benchmark)",
                    "amount": 23.0,
                    "amount_type": "percent",
                    "type_tax_use": "sale",
                    "company_id": company.id,
                    "fiscal_tax_name": "IVA23",
                }
            )
            products = env["product.product"].create(
                [
                    {
                        "name": f"Vinho do Porto {n}",
                        "default_code": f"PORTO-{n}",
                        "list_price": 10.0 * n,
                        "type": "consu",
                        "invoice_policy": "order",
                        "taxes_id": [Command.set(tax.ids)],
                    }
                    for n in (1, 2, 3)
                ]
            )
            pt = env.ref("base.pt")
            customers = env["res.partner"].create(
                [
                    {
                        "name": f"Cliente {n:03d}, Lda",
                        "is_company": True,
                        "vat": "PT508000009" if n % 2 else "PT509442013",
                        "street": f"Rua Augusta {n}",
                        "city": "Lisboa",
                        "zip": "1100-053",
                        "country_id": pt.id,
                        "email": f"cliente{n}@example.pt",
                    }
                    for n in range(self.args.customers)
                ]
            )
            account = env["fiscal.provider.account"].create(
                {
                    "name": "InvoiceXpress (benchmark)",
                    "company_id": company.id,
                    "provider": "invoicexpress",
                    "account_name": "bench",
                    "base_url": "http://127.0.0.1:9",  # set per phase to that phase's simulator
                    "api_key": "bench-key",
                    "trigger": "manual",
                    "mode": "finalize",
                    "document_type": "invoice",
                }
            )
            company.fiscal_default_account_id = account
            # The queue runs only when this script calls it: no cron worker interferes.
            env.ref("fiscal_invoice_connector.ir_cron_process_fiscal_documents").active = False
            cr.commit()
            self.company_id, self.tax_id, self.account_id = company.id, tax.id, account.id
            self.product_ids, self.customer_ids = products.ids, customers.ids
            self.results["rate_limit_per_minute"] = account.rate_limit_per_minute
            self.results["pdf_ready_after"] = self.pdf_ready_after(env)

    def order_vals(self, count, offset=0):
        from odoo import Command

        return [
            {
                "partner_id": self.customer_ids[(offset + n) % len(self.customer_ids)],
                "order_line": [
                    Command.create({"product_id": self.product_ids[k], "product_uom_qty": 1 + (offset + n) % 3})
                    for k in range(1 + (offset + n) % 2)
                ],
            }
            for n in range(count)
        ]

    def create_orders(self, env, count, confirm=True, chunk=500):
        """Orders in chunks (committed), confirmed with the account's trigger "manual": no document."""
        Order = env["sale.order"].with_context(tracking_disable=True, mail_create_nolog=True, mail_notrack=True)
        ids = []
        for start in range(0, count, chunk):
            orders = Order.create(self.order_vals(min(chunk, count - start), offset=start))
            if confirm:
                orders.action_confirm()
            env.cr.commit()
            ids += orders.ids
            env.invalidate_all()
        return env["sale.order"].browse(ids)

    def make_orders(self, env, count):
        """Up to 1,000 orders through the ORM; beyond, 500 through the ORM and SQL copies of them."""
        if count <= 1000:
            return self.create_orders(env, count)
        seed = self.create_orders(env, 500)
        before = env["sale.order"].search([], order="id desc", limit=1).id
        clone_orders(env.cr, seed.ids, count - len(seed))
        env.cr.commit()
        return seed | env["sale.order"].search([("id", ">", before)], order="id")

    def set_account(self, env, **vals):
        account = env["fiscal.provider.account"].browse(self.account_id)
        account.write(vals)
        env.cr.commit()
        return account

    # -- 1. user path ------------------------------------------------------------------------
    def user_path(self):
        count, rounds = self.args.user_orders, 5
        say(f"user path: {count} order confirmations and {count} invoice postings per mode...")
        with self.cursor() as cr:
            env = self.env(cr)
            self.set_account(env, trigger="manual")
            orders = env["sale.order"].create(self.order_vals(2 * count))
            moves = env["account.move"].create(
                [
                    {
                        "move_type": "out_invoice",
                        "partner_id": self.customer_ids[n % len(self.customer_ids)],
                        "invoice_line_ids": [
                            (0, 0, {"product_id": self.product_ids[n % 3], "quantity": 1 + n % 3, "price_unit": 25.0})
                        ],
                    }
                    for n in range(2 * count)
                ]
            )
            cr.commit()
            order_ids, move_ids = orders.ids, moves.ids
        results = {}
        for what, ids, trigger in (
            ("Confirm a sale order", order_ids, "order_confirm"),
            ("Post an invoice", move_ids, "invoice_post"),
        ):
            timings = {"on": [], "off": []}
            sql = {"on": 0, "off": 0}
            self.profile.reset()
            per_round = max(1, count // rounds)
            queue = list(ids)
            for round_ in range(rounds):
                # Interleaved, each mode first in turn: both see the same database and machine state.
                for mode in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                    batch, queue = queue[:per_round], queue[per_round:]
                    with self.cursor() as cr:
                        env = self.env(cr)
                        self.set_account(env, trigger=trigger if mode == "on" else "manual")
                        user_env = self.env(cr, uid=env.ref("base.user_admin").id)
                        model = "sale.order" if trigger == "order_confirm" else "account.move"
                        for record_id in batch:
                            record = user_env[model].browse(record_id)
                            before_q = queries()
                            started = time.perf_counter()
                            if model == "sale.order":
                                record.action_confirm()
                            else:
                                record.action_post()
                            user_env.flush_all()
                            cr.commit()
                            timings[mode].append(time.perf_counter() - started)
                            sql[mode] += queries() - before_q
                            user_env.invalidate_all()
            with self.cursor() as cr:
                env = self.env(cr)
                docs = env["fiscal.document"].search([("state", "=", "to_send")])
                enqueued = len(docs)
                # These documents are not part of the queue measures below.
                docs.unlink()
                self.set_account(env, trigger="manual")
            n_on, n_off = len(timings["on"]), len(timings["off"])
            results[what] = {
                "n": n_on,
                "enqueued": enqueued,
                "mean_on_ms": 1000 * statistics.fmean(timings["on"]),
                "mean_off_ms": 1000 * statistics.fmean(timings["off"]),
                "median_on_ms": 1000 * statistics.median(timings["on"]),
                "median_off_ms": 1000 * statistics.median(timings["off"]),
                "ratio_mean": statistics.fmean(timings["on"]) / statistics.fmean(timings["off"]),
                "ratio_median": statistics.median(timings["on"]) / statistics.median(timings["off"]),
                "sql_on": sql["on"] / n_on,
                "sql_off": sql["off"] / n_off,
                "profile": self.profile.snapshot(),
            }
            say(
                f"  {what}: {results[what]['mean_on_ms']:.1f} ms vs {results[what]['mean_off_ms']:.1f} ms "
                f"(x{results[what]['ratio_mean']:.3f}), {enqueued} enqueued; SQL {results[what]['sql_on']:.0f} vs "
                f"{results[what]['sql_off']:.0f}; in the addon per enqueue: "
                + ", ".join(
                    f"{k} {1000 * v / max(enqueued, 1):.1f} ms / {self.profile.sql[k] / max(enqueued, 1):.0f} SQL"
                    for k, v in self.profile.seconds.items()
                )
            )
        self.results["user_path"] = results

    # -- 1b. lists ----------------------------------------------------------------------------
    def lists(self, size=80):
        """Queries the web client runs to open a list of 80 invoices (and 80 orders): the list
        view's own fields through ``web_search_read``, as the admin, once without any fiscal
        document and once with one per record in mixed states (issued with numbers, waiting,
        errors). The fiscal status and number are stored: both counts must be equal."""
        from lxml import etree

        say(f"lists: queries to open a list of {size} invoices and {size} orders...")
        with self.cursor() as cr:
            env = self.env(cr)
            self.set_account(env, trigger="manual")
            orders = self.create_orders(env, size)
            moves = env["account.move"].create(
                [
                    {
                        "move_type": "out_invoice",
                        "partner_id": self.customer_ids[n % len(self.customer_ids)],
                        "invoice_line_ids": [(0, 0, {"product_id": self.product_ids[n % 3], "price_unit": 25.0})],
                    }
                    for n in range(size)
                ]
            )
            moves.action_post()
            cr.commit()
            sources = {"invoices": ("account.move", moves.ids), "orders": ("sale.order", orders.ids)}

        def open_list(model, ids):
            with self.cursor() as cr:
                env = self.env(cr, uid=self.env(cr).ref("base.user_admin").id)
                Model = env[model].with_context(default_move_type="out_invoice")
                arch = etree.fromstring(Model.get_views([(False, "list")])["views"]["list"]["arch"])
                types = {name: f["type"] for name, f in Model.fields_get().items()}
                spec = {
                    n.get("name"): {"fields": {"display_name": {}}}
                    if types[n.get("name")] in ("many2one", "one2many", "many2many")
                    else {}
                    for n in arch.xpath("/list/field")
                }
                counts = []
                for _ in range(3):  # the first warms the caches (views, rules, translations)
                    env.invalidate_all()
                    before = queries()
                    Model.web_search_read([("id", "in", ids)], spec, limit=size)
                    counts.append(queries() - before)
                return min(counts[1:])

        result = {name: {"without": open_list(model, ids)} for name, (model, ids) in sources.items()}
        with self.cursor() as cr:
            env = self.env(cr)
            account = env["fiscal.provider.account"].browse(self.account_id)
            for model, ids in sources.values():
                docs = env["fiscal.document"]._enqueue_many(account, env[model].browse(ids), per_minute=10**6)
                for n, doc in enumerate(docs):
                    state = ("issued", "to_send", "error", "cancelled")[n % 4]
                    doc.write({"state": state, "number": f"FT B/{doc.id}" if state == "issued" else False})
            cr.commit()
        for name, (model, ids) in sources.items():
            result[name]["with"] = open_list(model, ids)
            say(f"  list of {size} {name}: {result[name]['without']} queries without fiscal documents, "
                f"{result[name]['with']} with")  # fmt: skip
        with self.cursor() as cr:
            env = self.env(cr)
            env["fiscal.document"].search([("account_id", "=", self.account_id)]).unlink()  # not part of the queue runs
            cr.commit()
        self.results["lists"] = {"size": size, **result}

    # -- 2. the queue ------------------------------------------------------------------------
    def queue_run(
        self, label, size, concurrency, sim, provider="invoicexpress", account_id=None, orders=None, rate_limit=0
    ):
        """``size`` new confirmed orders queued (due now) and the queue processed until empty."""
        from datetime import timedelta

        from odoo import fields

        with self.cursor() as cr:
            env = self.env(cr)
            account = env["fiscal.provider.account"].browse(account_id or self.account_id)
            account.write({"base_url": sim.base_url, "trigger": "manual", "rate_limit_per_minute": rate_limit})
            env["ir.config_parameter"].sudo().set_param("fiscal_invoice_connector.concurrency", str(concurrency))
            cr.commit()
            created = time.perf_counter()
            if orders is None:
                orders = self.make_orders(env, size)
            else:
                orders = env["sale.order"].browse(orders)
            docs = env["fiscal.document"]._enqueue_many(account, orders, per_minute=10**9)
            cr.commit()
            doc_ids = docs.ids
            setup_s = time.perf_counter() - created
        say(f"{label}: {len(doc_ids)} documents queued ({setup_s:.0f} s to create), processing...")
        gc.collect()
        sim.requests.clear()
        if hasattr(sim, "webhooks_sent"):
            with sim.lock:
                sim.webhooks_sent.clear()
        self.profile.reset()
        rss_before, q_before = rss_mb(), queries()
        started = time.perf_counter()
        runs = 0
        with self.cursor() as cr:
            env = self.env(cr)
            Doc = env["fiscal.document"]
            deadline = time.monotonic() + 120
            while True:
                processed = Doc._cron_process_queue()
                runs += 1
                env.invalidate_all()
                if processed:
                    continue
                # Nothing due now: documents due within a few seconds (a PDF, a retry) are waited for, and
                # so are those waiting for the provider's decision (its webhook wakes them up, or the poll).
                soon = Doc.search_count(
                    Doc._due_domain()[1:]
                    + [("id", "in", doc_ids), ("next_attempt", "<=", fields.Datetime.now() + timedelta(seconds=10))]
                ) or Doc.search_count(
                    [
                        ("id", "in", doc_ids),
                        ("state", "in", ("sending", "to_cancel")),
                        ("remote_state", "in", ("pending", "cancel_pending")),
                    ]
                )
                cr.commit()
                if not soon or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        elapsed = time.perf_counter() - started
        sql = queries() - q_before
        with self.cursor() as cr:
            env = self.env(cr)
            docs = env["fiscal.document"].browse(doc_ids)
            states = Counter(docs.mapped("state"))
            pdfs = Counter(docs.mapped("pdf_state"))
            errors = Counter(d.last_error.splitlines()[0][:80] for d in docs if d.last_error)
        log = list(sim.requests)
        kinds = Counter(classify(r) for r in log)
        hooks = list(getattr(sim, "webhooks_sent", []))
        storage = sum(1 for r in log if classify(r).endswith(STORAGE))
        api = [r for r in log if not classify(r).endswith(STORAGE)]
        issued = states.get("issued", 0) or len(doc_ids)
        result = {
            "label": label,
            "provider": provider,
            "docs": len(doc_ids),
            "concurrency": concurrency,
            "seconds": elapsed,
            "docs_per_s": len(doc_ids) / elapsed,
            "api_calls_per_doc": len(api) / issued,
            "requests_per_doc": len(log) / issued,
            "storage_per_doc": storage / issued,
            "sql_per_doc": sql / len(doc_ids),
            "rss_before_mb": rss_before,
            "maxrss_mb": maxrss_mb(),
            "states": dict(states),
            "pdf": dict(pdfs),
            "errors": dict(errors.most_common(3)),
            "kinds": dict(kinds),
            "status_429": sum(1 for r in log if r["status"] == 429),
            "webhooks": sum(1 for h in hooks if h["http_status"] and 200 <= h["http_status"] < 300),
            "webhook_attempts": len(hooks),
            "webhook_answers": dict(Counter(str(h["http_status"] or h["error"]) for h in hooks)),
            "cron_runs": runs,
            "profile": self.profile.snapshot(),
        }
        if len(api) > 1:
            # Sending rate while sending (first to last request), and over the whole run (ORM included).
            span = api[-1]["t"] - api[0]["t"]
            result["calls_per_min_sending"] = (len(api) - 1) / span * 60 if span else 0
            result["calls_per_min_overall"] = len(api) / elapsed * 60
        say(
            f"  {len(doc_ids)} docs in {elapsed:.1f} s = {result['docs_per_s']:.2f} docs/s; "
            f"{result['api_calls_per_doc']:.2f} API calls/doc (+{result['storage_per_doc']:.2f} storage); "
            f"{result['sql_per_doc']:.0f} SQL/doc; states {dict(states)}; pdf {dict(pdfs)}; 429: {result['status_429']}"
            + (f"; webhooks {result['webhook_answers']} (inbound)" if hooks else "")
        )
        if errors:
            say(f"  errors: {dict(errors)}")
        prof = result["profile"]
        say(
            "  time: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in prof["seconds"].items())
            + "; SQL/doc: "
            + ", ".join(f"{k} {v / len(doc_ids):.1f}" for k, v in prof["sql"].items())
        )
        return result

    def throughput(self):
        args = self.args
        runs = []
        for size in args.sizes:
            sim = self.simulator(
                "invoicexpress",
                api_key="bench-key",
                rate_limit_per_minute=None,
                latency=args.latency,
                **self.pdf_model(),
            )
            try:
                runs.append(self.queue_run(f"concurrent x{args.concurrency}, {size}", size, args.concurrency, sim))
            finally:
                sim.stop()
        sim = self.simulator(
            "invoicexpress",
            api_key="bench-key",
            rate_limit_per_minute=None,
            latency=args.latency,
            **self.pdf_model(),
        )
        try:
            runs.append(self.queue_run(f"sequential, {args.sequential_docs}", args.sequential_docs, 1, sim))
        finally:
            sim.stop()
        self.results["throughput"] = runs

    def budget(self):
        """100 requests per minute, the minute shortened to ``budget_window`` seconds."""
        args = self.args
        window = args.budget_window
        limit = round(100 * window / 60)
        # The minute is shortened to ``window`` seconds; the service's PDF render time and the
        # connector's wait for it are waits of the same clock, so they shrink with it (a 2 s wait
        # is 3 % of a real minute, a third of a 6 s one).
        scale = 60.0 / window
        pdf = dict(self.pdf_model(), pdf_render_seconds=args.pdf_render_seconds / scale)
        sim = self.simulator(
            "invoicexpress", api_key="bench-key", rate_limit_per_minute=limit, latency=args.latency, **pdf
        )
        sim.rate_window = float(window)
        # The account keeps its 100 per minute: the same budget as the simulator's.
        key = "fiscal_invoice_connector.pdf_ready_after"
        with self.cursor() as cr:
            params = self.env(cr)["ir.config_parameter"].sudo()
            saved = params.get_param(key)
            ready_after = self.pdf_ready_after(self.env(cr))
            params.set_param(key, str(ready_after / scale))
            cr.commit()
        try:
            result = self.queue_run(
                f"budget 100/min ({limit} per {window:g} s)", args.budget_docs, args.concurrency, sim, rate_limit=100
            )
        finally:
            sim.stop()
            with self.cursor() as cr:
                self.env(cr)["ir.config_parameter"].sudo().set_param(key, saved or False)
                cr.commit()
        result["pdf_scaled"] = (args.pdf_render_seconds / scale, ready_after / scale)
        # Calls per (real) minute -> per simulated minute of ``window`` seconds.
        result["budget_window"] = window
        result["budget_limit"] = limit
        result["rate_limit"] = 100
        result["budget_used_sending"] = result.get("calls_per_min_sending", 0) / scale / limit
        result["budget_used_overall"] = result.get("calls_per_min_overall", 0) / scale / limit
        self.results["budget"] = result
        say(
            f"  budget used while sending {100 * result['budget_used_sending']:.1f} %, "
            f"overall {100 * result['budget_used_overall']:.1f} %, 429s: {result['status_429']}"
        )

    def other_providers(self):
        """Calls per document for Vendus (final on creation), eNotas and InvoiCy (asynchronous
        NFS-e), no latency."""
        from fiscal_simulators.harness import ENOTAS_COMPANY, INVOICY_COMPANY_CNPJ, br_customer_vals, br_service_vals

        args = self.args
        count = args.other_docs
        out = []
        from odoo import Command

        with self.cursor() as cr:
            env = self.env(cr)
            vendus = env["fiscal.provider.account"].create(
                {
                    "name": "Vendus (benchmark)",
                    "company_id": self.company_id,
                    "provider": "vendus",
                    "base_url": "http://127.0.0.1:9",
                    "api_key": "bench-key",
                    "register_id": "1",
                    "trigger": "manual",
                    "document_type": "invoice",
                }
            )
            br = env["res.partner"].create(br_customer_vals(env))
            enotas = env["fiscal.provider.account"].create(
                {
                    "name": "eNotas (benchmark)",
                    "company_id": self.company_id,
                    "provider": "enotas",
                    "base_url": "http://127.0.0.1:9",
                    "api_key": "bench-key",
                    "company_ref": ENOTAS_COMPANY,
                    "trigger": "manual",
                    **br_service_vals(),
                }
            )
            invoicy = env["fiscal.provider.account"].create(
                {
                    "name": "InvoiCy (benchmark)",
                    "company_id": self.company_id,
                    "provider": "invoicy",
                    "base_url": "http://127.0.0.1:9",
                    "api_key": "pk-bench-key",
                    "access_key": "ak-bench-key",
                    "company_ref": INVOICY_COMPANY_CNPJ,
                    "issuer_municipal_registration": "12345",
                    "trigger": "manual",
                    **br_service_vals(),
                }
            )
            # An NFS-e is issued in reais, for a service whose price carries no added tax.
            brl = env.ref("base.BRL")
            brl.active = True
            brl_pricelist = env["product.pricelist"].create({"name": "BRL (benchmark)", "currency_id": brl.id})
            service = env["product.product"].create(
                {"name": "Consultoria em sistemas", "type": "service", "list_price": 100.0, "taxes_id": False}
            )
            cr.commit()
            vendus_id, enotas_id, invoicy_id, br_id = vendus.id, enotas.id, invoicy.id, br.id
            Order = env["sale.order"].with_context(tracking_disable=True)
            br_orders = Order.create(
                [
                    {
                        "partner_id": br_id,
                        "pricelist_id": brl_pricelist.id,
                        "order_line": [Command.create({"product_id": service.id, "product_uom_qty": 1 + n % 3})],
                    }
                    for n in range(2 * count + 1)  # eNotas's warm-up, eNotas's, then InvoiCy's
                ]
            )
            br_orders.action_confirm()
            cr.commit()
            br_order_ids = br_orders.ids
        sim = self.simulator("vendus", api_key="bench-key", rate_limit=None)
        try:
            out.append(self.queue_run(f"Vendus, {count}", count, args.concurrency, sim, "vendus", vendus_id))
        finally:
            sim.stop()
        # eNotas decides a note a little after its creation and notifies the account's webhook URL.
        self.start_http()
        with self.cursor() as cr:
            webhook_url = self.env(cr)["fiscal.provider.account"].browse(enotas_id).webhook_url
        sim = self.simulator(
            "enotas",
            api_key="bench-key",
            company_id=ENOTAS_COMPANY,
            authorization_delay=args.enotas_authorization_delay,
            webhook_url=webhook_url,
        )
        try:
            # One note first (not counted): the account learns that notifications arrive, as a real
            # account does with its first note; from then on a note just sent is not read back at once.
            warm = self.queue_run("eNotas warm-up", 1, args.concurrency, sim, "enotas", enotas_id,
                                  orders=br_order_ids[:1])  # fmt: skip
            with self.cursor() as cr:
                received = self.env(cr)["fiscal.provider.account"].browse(enotas_id).webhook_received_at
            if not received:
                sys.exit(f"eNotas: the warm-up note's webhook did not reach {webhook_url.rsplit('/', 1)[0]}/...")
            say(f"  warm-up: {warm['api_calls_per_doc']:.0f} API calls; the account's first webhook at {received}")
            out.append(
                self.queue_run(
                    f"eNotas, {count}",
                    count,
                    args.concurrency,
                    sim,
                    "enotas",
                    enotas_id,
                    orders=br_order_ids[1 : count + 1],
                )
            )
        finally:
            sim.stop()
        sim = self.simulator(
            "invoicy",
            partner_key="pk-bench-key",
            access_key="ak-bench-key",
            company_code=INVOICY_COMPANY_CNPJ,
            authorization_delay=0,
        )
        try:
            out.append(
                self.queue_run(
                    f"InvoiCy, {count}",
                    count,
                    args.concurrency,
                    sim,
                    "invoicy",
                    invoicy_id,
                    orders=br_order_ids[count + 1 :],
                )
            )
        finally:
            sim.stop()
        self.results["other_providers"] = out

    # -- 3. backfill -------------------------------------------------------------------------------
    def backfill(self):
        count = self.args.backfill
        say(f"backfill: creating {count} confirmed orders without documents...")
        with self.cursor() as cr:
            env = self.env(cr)
            self.set_account(env, trigger="manual")  # confirmed without documents
            started = time.perf_counter()
            self.make_orders(env, count)
            created_s = time.perf_counter() - started
            say(f"  {count} orders in {created_s:.0f} s; the wizard...")
            today = datetime.date.today()
            q_before = queries()
            started = time.perf_counter()
            wizard = env["fiscal.backfill.wizard"].create(
                {"account_id": self.account_id, "date_from": today - datetime.timedelta(days=1), "date_to": today}
            )
            action = wizard.action_enqueue()
            cr.commit()
            elapsed = time.perf_counter() - started
            sql = queries() - q_before
            queued = len(action["domain"][0][2])
        self.results["backfill"] = {
            "orders": count,
            "queued": queued,
            "seconds": elapsed,
            "sql": sql,
            "create_orders_s": created_s,
        }
        say(f"  {queued} documents queued by the backfill wizard in {elapsed:.1f} s ({sql} queries)")

    # -- report ------------------------------------------------------------------------------------
    def targets(self):
        """Issue 15's targets, each with the old figure, the new one and met / missed."""
        r = self.results
        rows = [f"| Target | Goal | Old ({OLD_RUN}) | Now | |", "|---|---|---|---|---|"]

        def add(what, goal, old, now, met):
            rows.append(f"| {what} | {goal} | {old} | **{now}** | {mark(met)} |")

        for key, what in (("confirm", "Confirm a sale order"), ("post", "Post an invoice")):
            x = r.get("user_path", {}).get({"confirm": "Confirm a sale order", "post": "Post an invoice"}[key])
            if x:
                add(
                    f"{what}, with the connector / plain Odoo (interleaved, mean)",
                    "≤ 1.05×",
                    OLD[key],
                    f"{x['ratio_mean']:.2f}× ({x['mean_on_ms']:.1f} / {x['mean_off_ms']:.1f} ms; SQL "
                    f"{x['sql_on']:.0f} / {x['sql_off']:.0f})",
                    x["ratio_mean"] <= 1.05,
                )
        concurrent = [x for x in r.get("throughput", []) if x["concurrency"] > 1]
        for x in concurrent:
            key = f"sql_{x['docs']}"
            add(
                f"SQL queries per document in the queue, {x['docs']:,} documents",
                "≤ 20",
                OLD.get(key, "-"),
                f"{x['sql_per_doc']:.0f}",
                x["sql_per_doc"] <= 20,
            )
        if len(concurrent) > 1:
            low, high = concurrent[0]["sql_per_doc"], concurrent[-1]["sql_per_doc"]
            add(
                f"SQL per document flat from {concurrent[0]['docs']:,} to {concurrent[-1]['docs']:,} documents",
                "flat (± 10 %)",
                "67 → 66",
                f"{low:.0f} → {high:.0f}",
                high <= low * 1.1,
            )
        lists = r.get("lists")
        for name in ("invoices", "orders") if lists else ():
            x = lists[name]
            add(
                f"Queries to open a list of {lists['size']} {name}, without / with fiscal documents",
                "same",
                OLD[f"list_{name}"],
                f"{x['without']} / {x['with']}",
                x["without"] == x["with"],
            )
        runs = {x["provider"]: x for x in concurrent[:1] + r.get("other_providers", [])}
        x = runs.get("invoicexpress")
        if x:
            polls = sum(v for k, v in x["kinds"].items() if k.startswith("PDF poll")) / x["docs"]
            calls = x["api_calls_per_doc"]
            add(
                f"InvoiceXpress API calls per document ({x['docs']:,} documents, {self.args.customers} customers)",
                "≤ 3 + at most 1 PDF poll",
                OLD["invoicexpress"],
                f"{calls:.2f} (PDF polls {polls:.2f}; +{x['storage_per_doc']:.2f} storage download)",
                calls - polls <= 3 and polls <= 1,
            )
        for provider, goal, limit in (("vendus", "1 + the PDF", 2), ("enotas", "≤ 2 + the webhook", 2),
                                      ("invoicy", "(no target)", None)):  # fmt: skip
            x = runs.get(provider)
            if x:
                hooks = f"; +{x['webhooks'] / x['docs']:.2f} webhook received" if x.get("webhook_attempts") else ""
                add(
                    f"{x['label'].split(',')[0]} API calls per document",
                    goal,
                    OLD[provider],
                    f"{x['api_calls_per_doc']:.2f} (+{x['storage_per_doc']:.2f} storage download{hooks})",
                    None if limit is None else x["api_calls_per_doc"] <= limit,
                )
        b = r.get("budget")
        if b:
            add(
                f"Budget used against 100 calls/minute ({b['docs']} documents)",
                "≥ 95 %",
                OLD["budget"],
                f"{100 * b['budget_used_sending']:.1f} %",
                b["budget_used_sending"] >= 0.95,
            )
            add("429 answers in that run", "0", OLD["429"], str(b["status_429"]), b["status_429"] == 0)
            add(
                "SQL queries per document in that run (paced: documents end their stages one by one)",
                "≤ 20",
                "not measured",
                f"{b['sql_per_doc']:.0f}",
                b["sql_per_doc"] <= 20,
            )
            add(
                "Drain rate at that budget",
                "(budget / calls per document)",
                OLD["drain"],
                f"{60 * b['docs'] / b['seconds']:.1f} documents/min ({b['api_calls_per_doc']:.2f} calls each)",
                None,
            )
        return "\n".join(rows)

    def report(self):
        """The results table, the time breakdown of each queue run, and what each run left behind."""
        args, r = self.args, self.results
        rows = ["| Measure | Target | Result |", "|---|---|---|"]
        add = rows.append
        runs = r.get("throughput", [])
        concurrent = [x for x in runs if x["concurrency"] > 1]
        sequential = next((x for x in runs if x["concurrency"] == 1), None)
        for what, x in r.get("user_path", {}).items():
            add(
                f"| {what}: trigger on (enqueues) / trigger manual (plain), mean of {x['n']} each | ≤ 1.05× | "
                f"**{x['ratio_mean']:.2f}×** ({x['mean_on_ms']:.1f} / {x['mean_off_ms']:.1f} ms; median "
                f"{x['ratio_median']:.2f}×; SQL queries {x['sql_on']:.0f} / {x['sql_off']:.0f}) |"
            )
        lists = r.get("lists")
        for name in ("invoices", "orders") if lists else ():
            x = lists[name]
            add(
                f"| Queries to open a list of {lists['size']} {name}, without / with fiscal documents | same | "
                f"**{x['without']} / {x['with']}** |"
            )
        for x in concurrent:
            add(
                f"| Documents per second, {x['docs']:,} documents, concurrency {x['concurrency']}, "
                f"{1000 * args.latency:.0f} ms latency, no rate limit | | **{x['docs_per_s']:.2f}** "
                f"({x['seconds']:.0f} s) |"
            )
        if sequential:
            add(
                f"| Documents per second, sequential path (concurrency 1), {sequential['docs']} documents | "
                f"(baseline) | **{sequential['docs_per_s']:.2f}** ({sequential['seconds']:.0f} s) |"
            )
            for x in concurrent:
                add(
                    f"| Speed-up, {x['docs']:,} documents, against the sequential path | ≥ 8× | "
                    f"**{x['docs_per_s'] / sequential['docs_per_s']:.1f}×** |"
                )
        b = r.get("budget")
        for x in runs + ([b] if b else []) + r.get("other_providers", []):
            target = {"invoicexpress": "≤ 3", "vendus": "1 (+PDF)", "enotas": "≤ 2 + webhooks", "invoicy": ""}[
                x["provider"]
            ]
            kinds = ", ".join(f"{k} {v / x['docs']:.2f}" for k, v in sorted(x["kinds"].items(), key=lambda kv: -kv[1]))
            if x.get("webhook_attempts"):
                kinds += (
                    f"; inbound, not API calls: webhooks received {x['webhooks'] / x['docs']:.2f} "
                    f"({x['webhook_attempts']} deliveries: {x['webhook_answers']})"
                )
            add(
                f"| Calls per document, {x['label']} | {target} | **{x['api_calls_per_doc']:.2f}** "
                f"(+{x['storage_per_doc']:.2f} storage download): {kinds} |"
            )
        for x in runs:
            add(f"| SQL queries per document, {x['label']} | flat | **{x['sql_per_doc']:.0f}** |")
        for x in runs:
            add(
                f"| Peak memory (process maxrss) after {x['label']} | | **{x['maxrss_mb']:.0f} MB** "
                f"(RSS {x['rss_before_mb']:.0f} MB before the run) |"
            )
        if b:
            add(
                f"| Budget used: 100 requests/minute (simulator {b['budget_limit']} per {b['budget_window']:g} s, "
                f"sliding; account {b['rate_limit']}/min; PDF render and wait scaled with the minute: "
                f"{b.get('pdf_scaled', (0, 0))[0]:g} s / {b.get('pdf_scaled', (0, 0))[1]:g} s), "
                f"{b['docs']} documents | ≥ 95 % | "
                f"**{100 * b['budget_used_sending']:.1f} %** from the first to the last request "
                f"({100 * b['budget_used_overall']:.1f} % of the whole run, ORM included) |"
            )
            add(f"| 429 answers in that run | 0 | **{b['status_429']}** |")
        f = r.get("backfill")
        if f:
            add(
                f"| {f['queued']:,} past orders queued by the backfill wizard | ≤ 30 s | **{f['seconds']:.1f} s** "
                f"({f['sql']} SQL queries) |"
            )
        table = "\n".join(rows)

        labels = [
            "claim (lock, lease, commit)",
            "plan (mapping, intent)",
            "provider calls (pipeline)",
            "apply (results, PDF, chatter)",
            "checkpoint (facts per stage)",
        ]
        rows = [
            "| Run | Documents | Total | " + " | ".join(labels) + " |",
            "|---|---|---|" + "---|" * len(labels),
        ]
        for x in runs + ([b] if b else []) + r.get("other_providers", []):
            prof = x["profile"]
            cells = [
                f"{prof['seconds'][k]:.1f} s, {prof['sql'][k] / x['docs']:.0f} SQL/doc" if k in prof["seconds"] else "-"
                for k in labels
            ]
            rows.append(f"| {x['label']} | {x['docs']:,} | {x['seconds']:.1f} s | " + " | ".join(cells) + " |")
        breakdown = "\n".join(rows)

        lines = []
        for what, x in r.get("user_path", {}).items():
            prof, n = x["profile"], max(x["enqueued"], 1)
            lines.append(
                f"- {what}, trigger on: {x['enqueued']} documents enqueued; per enqueue "
                + ", ".join(
                    f"{k} {1000 * prof['seconds'][k] / n:.1f} ms / {prof['sql'][k] / n:.0f} SQL"
                    for k in prof["seconds"]
                )
                + " (chatter and cron trigger are part of `_enqueue`)"
            )
        for x in runs + ([b] if b else []) + r.get("other_providers", []):
            lines.append(
                f"- {x['label']}: states {x['states']}, PDF {x['pdf']}, {x['cron_runs']} cron calls"
                + (f", errors {x['errors']}" if x["errors"] else "")
            )
        if f:
            lines.append(
                f"- backfill: {f['orders']:,} confirmed orders made in {f['create_orders_s']:.0f} s "
                f"(up to 1,000 through the ORM, beyond that SQL copies of 500 ORM orders), then the wizard"
            )
        return self.targets() + "\n\nEvery measure:\n\n" + table, breakdown, "\n".join(lines)

    def write(self, table, breakdown, outcome):
        """docs/benchmark.md: the part between the markers is replaced, the rest (analysis) is kept."""
        m = machine()
        with self.cursor() as cr:
            cr.execute("SHOW server_version")
            pg = cr.fetchone()[0]
        from odoo import release

        args, r = self.args, self.results
        command = " ".join(["python3 scripts/benchmark.py", *sys.argv[1:]])
        polls = f", and {args.pdf_polls} 202 answer(s) whatever the time" if args.pdf_polls else ""
        ready_origin = "the connector's default" if args.pdf_ready_after is None else "set by the benchmark"
        block = f"""{BEGIN}
Run on {datetime.date.today().isoformat()} with `{command}` ({time.monotonic() - STARTED:.0f} s in all).

Machine: {m["cpus"]} CPUs ({m["cpu"]}), {m["memory_gb"]} GB memory, Linux {m["kernel"]}; Python {m["python"]},
Odoo {release.version}, PostgreSQL {pg} on the same machine; simulators in the benchmark's process (threads).
Load average (5 min) {LOAD_AT_START:.1f} at the start, {os.getloadavg()[1]:.1f} at the end (other work on the machine
slows the ORM steps and makes the user-path ratios noisy).

Settings: simulators answering after {1000 * args.latency:.0f} ms (InvoiceXpress; Vendus and eNotas: none);
InvoiceXpress's PDF rendered {args.pdf_render_seconds:g} s after finalizing (202 until then{polls}), the
connector asking for it {r.get("pdf_ready_after", 0):g} s after finalizing (`pdf_ready_after`, {ready_origin}),
`pdf_poll_interval` {args.pdf_poll_interval:g} s; {args.customers} customers recurring (remembered by the account
from run to run: the first run pays a lookup and a create for each); eNotas notes decided
{args.enotas_authorization_delay:g} s after creation, notified on the account's webhook URL (Odoo's HTTP server in this
process; one warm-up note first, not counted); orders of 1-2 lines; cron batches of 50 documents
(`_cron_process_queue()`).

{table}

Where the time goes (seconds in each step over the run, and SQL queries per document; the steps do
not add up to the total: the cron's own searches and commits are outside them):

{breakdown}

{outcome}
{END}"""
        path = REPO / args.output
        old = path.read_text() if path.exists() else ""
        if BEGIN in old and END in old:
            text = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) :]
        else:
            text = f"# Benchmark: the fiscal queue\n\n{block}\n\n{METHOD}"
        path.write_text(text)
        say(f"written to {path}")

    def run(self):
        args = self.args
        prepare_database(args.db, args.http_port)
        self.start_odoo()
        self.setup_data()
        phases = [self.user_path, self.lists, self.throughput, self.budget, self.other_providers, self.backfill]
        for phase in phases:
            if phase.__name__ in args.skip:
                continue
            phase()
        self.stop_http()
        table, breakdown, outcome = self.report()
        print(f"\n{table}\n\n{breakdown}\n\n{outcome}")
        if args.output:
            self.write(table, breakdown, outcome)
        if not args.keep_db:
            from odoo.sql_db import close_all

            close_all()
            odoo_cli("db", "drop", args.db)


def main():
    ensure_environment()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="fic_bench", help="database to (re)create (name must start with fic_bench)")
    parser.add_argument("--http-port", type=int, default=8190)
    parser.add_argument("--sizes", default="100,1000", help="documents per concurrent run (comma separated)")
    parser.add_argument("--latency", type=float, default=0.15, help="seconds per request at the simulators")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sequential-docs", type=int, default=30, help="documents of the sequential baseline")
    parser.add_argument("--budget-docs", type=int, default=25, help="documents of the rate-limited run")
    parser.add_argument("--budget-window", type=float, default=6.0, help="the simulator's minute, in seconds")
    parser.add_argument("--other-docs", type=int, default=30, help="documents of the Vendus and eNotas runs")
    parser.add_argument("--backfill", type=int, default=10000, help="past orders queued by the backfill wizard")
    parser.add_argument("--user-orders", type=int, default=150, help="operations per mode in the user path")
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument(
        "--pdf-polls", type=int, default=0, help="InvoiceXpress: 202 answers before the PDF is ready, whatever the time"
    )
    parser.add_argument(
        "--pdf-render-seconds", type=float, default=1.0, help="InvoiceXpress: seconds the PDF takes after finalizing"
    )
    parser.add_argument(
        "--pdf-ready-after",
        type=float,
        default=None,
        help="set fiscal_invoice_connector.pdf_ready_after (default: the connector's shipped value)",
    )
    parser.add_argument(
        "--old-pdf",
        action="store_true",
        help="the runs before 2026-12-06: one 202 per PDF, no render time, the connector asks at once",
    )
    parser.add_argument(
        "--enotas-authorization-delay", type=float, default=0.5, help="eNotas: seconds until a note is decided"
    )
    parser.add_argument("--pdf-poll-interval", type=float, default=1.0, help="seconds between two PDF polls")
    parser.add_argument(
        "--skip", default="", help="phases to skip: user_path,lists,throughput,budget,other_providers,backfill"
    )
    parser.add_argument("--output", default="docs/benchmark.md", help="Markdown report ('' = none)")
    parser.add_argument("--keep-db", action="store_true", help="keep the database afterwards")
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny sizes")
    args = parser.parse_args()
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.old_pdf:
        args.pdf_polls, args.pdf_render_seconds, args.pdf_ready_after = 1, 0.0, 0.0
    if args.quick:
        args.sizes, args.sequential_docs, args.budget_docs, args.other_docs = [20], 5, 8, 5
        args.backfill, args.user_orders, args.latency, args.budget_window = 300, 10, 0.05, 3.0
        if args.output == "docs/benchmark.md":
            args.output = ""
    if not args.db.startswith("fic_bench"):
        parser.error("--db must start with fic_bench")
    Bench(args).run()


if __name__ == "__main__":
    main()
