"""Inbound status notifications (eNotas, InvoiCy).

The services do not sign their calls, so the URL carries a per-account random secret,
compared in constant time. A notification is only a trigger: the document is read
again from the provider by the queue before anything changes, so forged, replayed or
stale payloads cannot change a document.
"""

import hmac
import json
import logging

from odoo import http
from odoo.http import request

from ..providers.log_redaction import WEBHOOK_PATH

_logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


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
            parsed = account._get_provider_class().parse_webhook(payload)
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
        account._webhook_received()
        return request.make_json_response({"status": "queued"}, status=202)
