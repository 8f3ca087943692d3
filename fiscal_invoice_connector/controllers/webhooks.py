"""Inbound status notifications (eNotas, InvoiCy).

The services do not sign their calls, so the URL carries a per-account random secret,
compared in constant time. A notification is only a trigger: the document is read
again from the provider by the queue before anything changes, so forged, replayed or
stale payloads cannot change a document.
"""

import hmac
import json
import logging
import re

from odoo import http
from odoo.http import request

from ..providers import get_provider_class

_logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
WEBHOOK_PATH = "/fiscal_invoice_connector/webhook"
_PATH_SECRET_RE = re.compile(re.escape(WEBHOOK_PATH) + r"/(\d+)/[^\s?\"']+")


class _WebhookSecretFilter(logging.Filter):
    """The access log prints request lines: mask the secret part of our webhook URLs."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        if WEBHOOK_PATH in message:
            record.msg, record.args = _PATH_SECRET_RE.sub(WEBHOOK_PATH + r"/\1/***", message), ()
        return True


for _name in ("werkzeug", "odoo.http"):
    _target = logging.getLogger(_name)
    if not any(isinstance(f, _WebhookSecretFilter) for f in _target.filters):
        _target.addFilter(_WebhookSecretFilter())


class FiscalWebhookController(http.Controller):
    @http.route(
        f"{WEBHOOK_PATH}/<int:account_id>/<string:token>",
        type="http",
        auth="public",
        methods=["POST"],
        csrf=False,
        save_session=False,
    )
    def fiscal_webhook(self, account_id, token, **_kwargs):
        body = request.httprequest.get_data(cache=False, as_text=False)
        if len(body) > MAX_BODY:
            return request.make_json_response({"error": "payload too large"}, status=413)
        account = request.env["fiscal.provider.account"].sudo().browse(account_id).exists()
        secret = account.webhook_secret if account else None
        # Unknown account and wrong secret look the same from outside.
        if not secret or not hmac.compare_digest(secret.encode(), (token or "").encode()):
            return request.make_json_response({"error": "not found"}, status=404)
        try:
            text = body.decode("utf-8")
            try:
                payload = json.loads(text)
            except ValueError:
                payload = text  # InvoiCy may notify in XML; each provider decides what it accepts
            parsed = get_provider_class(account.provider).parse_webhook(payload)
        except (ValueError, UnicodeDecodeError, AttributeError, TypeError, RecursionError):
            # RecursionError: JSON nested a few thousand levels deep (10 KB) was a 500 (fault suite).
            return request.make_json_response({"error": "malformed notification"}, status=400)
        if parsed is None:
            # About nothing of ours (e.g. InvoiCy's certificate notices): acknowledged, ignored.
            return request.make_json_response({"status": "ignored"}, status=200)
        remote_id, reference = parsed if isinstance(parsed, tuple) else (None, parsed)
        doc = request.env["fiscal.document"].sudo()._find_for_webhook(account, remote_id, reference)
        if not doc:
            return request.make_json_response({"error": "unknown document"}, status=404)
        doc._wake_up_from_webhook()
        return request.make_json_response({"status": "queued"}, status=202)
