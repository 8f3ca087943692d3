"""Click through the demo in headless Chromium and take screenshots (README, checks).

Runs against a demo started by ``scripts/demo.sh``::

    python scripts/browser_demo.py --url http://localhost:8069 --out docs/screenshots

It logs in as admin, opens a demo quotation, clicks Confirm, waits until the fiscal
number and the PDF appear on the order, and saves screenshots of the order, the
fiscal documents (list and kanban), the provider account and the connector's block of
the Invoicing settings. Exits non-zero when a step fails.
Plain Chromium over its DevTools protocol (websocket-client), no test framework.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket


class Browser:
    def __init__(self, width=1400, height=1000):
        binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if not binary:
            sys.exit("chromium is not installed (Debian: apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="fic-chromium-")
        port = 9300 + os.getpid() % 500
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                f"--remote-debugging-port={port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as r:
                    pages = [p for p in json.load(r) if p.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            self.close()
            sys.exit("chromium did not start its DevTools endpoint")
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)
        self.msg_id = 0
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method, **params):
        self.msg_id += 1
        self.ws.send(json.dumps({"id": self.msg_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.msg_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression):
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error in {expression[:80]}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def goto(self, url):
        self.send("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'")

    def wait(self, condition, timeout=30, what=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.js(f"!!({condition})"):
                    return
            except RuntimeError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"waited {timeout}s for {what or condition}")

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print(f"screenshot: {path}")

    def close(self):
        try:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def rpc(url, session, model, method, args, kwargs=None):
    body = json.dumps({"jsonrpc": "2.0", "method": "call", "params": {
        "model": model, "method": method, "args": args, "kwargs": kwargs or {}}}).encode()  # fmt: skip
    request = urllib.request.Request(
        f"{url}/web/dataset/call_kw", data=body, headers={"Content-Type": "application/json", "Cookie": session}
    )
    with urllib.request.urlopen(request) as r:
        answer = json.load(r)
    if answer.get("error"):
        raise RuntimeError(answer["error"]["data"]["message"])
    return answer["result"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://localhost:8069")
    parser.add_argument("--login", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--out", default="docs/screenshots")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    shot = lambda name: os.path.join(args.out, name)  # noqa: E731

    browser = Browser()
    try:
        browser.goto(f"{args.url}/web/login")
        # The first load of a new database builds the asset bundles: be patient.
        browser.wait("document.querySelector('input[name=login]')", timeout=180, what="the login form")
        browser.js(f"""(() => {{
            document.querySelector('input[name=login]').value = {json.dumps(args.login)};
            document.querySelector('input[name=password]').value = {json.dumps(args.password)};
            document.querySelector('form.oe_login_form, form[action="/web/login"]').submit();
        }})()""")
        time.sleep(1)
        browser.wait("document.querySelector('.o_main_navbar')", timeout=60, what="the web client after login")
        cookie = browser.send("Network.getCookies", urls=[args.url])["cookies"]
        session = "; ".join(f"{c['name']}={c['value']}" for c in cookie)

        # A Portuguese demo quotation still in draft (InvoiceXpress): the newcomer's journey starts there.
        orders = rpc(args.url, session, "sale.order", "search_read",
                     [[["state", "=", "draft"], ["fiscal_account_id.provider", "=", "invoicexpress"]]],
                     {"fields": ["name"], "limit": 2, "order": "id"})  # fmt: skip
        if not orders:
            raise SystemExit("no draft quotation left in the demo database (run with FIC_DEMO_RESET=1)")
        order_id, order_name = orders[0]["id"], orders[0]["name"]
        # One more sale (confirmed behind the scenes) so that the fiscal documents views show more than one.
        for other in orders[1:]:
            rpc(args.url, session, "sale.order", "action_confirm", [[other["id"]]])
            print(f"also confirmed {other['name']} (for the fiscal documents views)")
        browser.goto(f"{args.url}/odoo/action-sale.action_quotations_with_onboarding/{order_id}")
        browser.wait("document.querySelector('.o_form_view button[name=action_confirm]')", what="the quotation form")
        time.sleep(0.5)
        browser.js("document.querySelector('.o_form_view button[name=action_confirm]').click()")
        print(f"confirmed {order_name} in the browser")
        # The number appears without any reload once the cron ran; reload to let the form re-read.
        deadline = time.time() + 90
        number = None
        while time.time() < deadline:
            fields = ["fiscal_number", "fiscal_pdf_id", "fiscal_state"]
            rows = rpc(args.url, session, "sale.order", "read", [[order_id], fields])
            if rows[0]["fiscal_number"] and rows[0]["fiscal_pdf_id"]:
                number = rows[0]["fiscal_number"]
                break
            time.sleep(1)
        if not number:
            raise SystemExit(f"no fiscal number on {order_name} after 90 s (state: {rows[0]['fiscal_state']})")
        browser.goto(f"{args.url}/odoo/action-sale.action_orders/{order_id}")
        browser.wait(f"document.body.innerText.includes({json.dumps(number)})", what="the fiscal number on the order")
        browser.wait("document.body.innerText.includes('Fiscal PDF')", what="the fiscal PDF button")
        time.sleep(1)
        browser.screenshot(shot("order-with-fiscal-document.png"))
        print(f"{order_name}: fiscal number {number} and PDF shown on the order")

        browser.goto(f"{args.url}/odoo/action-fiscal_invoice_connector.fiscal_document_action")
        browser.wait("document.querySelector('.o_list_view .o_data_row')", what="the fiscal documents list")
        time.sleep(0.5)
        browser.screenshot(shot("fiscal-documents-list.png"))

        browser.goto(f"{args.url}/odoo/action-fiscal_invoice_connector.fiscal_document_action?view_type=kanban")
        browser.wait("document.querySelector('.o_kanban_view .o_kanban_record')", what="the fiscal documents kanban")
        time.sleep(0.5)
        browser.screenshot(shot("fiscal-documents-kanban.png"))

        browser.goto(f"{args.url}/odoo/action-account.action_account_config")
        browser.wait("document.querySelector('#fiscal_default_account')", what="the connector's settings")
        browser.js("document.querySelector('#fiscal_default_account').scrollIntoView({block: 'center'})")
        browser.wait(
            "document.querySelector('#fiscal_default_account .o_field_widget[name=fiscal_default_environment]')",
            what="the default account in the settings",
        )
        time.sleep(0.5)
        browser.screenshot(shot("settings.png"))

        accounts = rpc(args.url, session, "fiscal.provider.account", "search", [[]], {"limit": 1})
        browser.goto(f"{args.url}/odoo/action-fiscal_invoice_connector.fiscal_provider_account_action/{accounts[0]}")
        browser.wait("document.querySelector('.o_form_view .o_field_widget[name=api_key]')", what="the account form")
        time.sleep(0.5)
        browser.screenshot(shot("provider-account.png"))
    finally:
        browser.close()


if __name__ == "__main__":
    main()
