"""Secrets never reach a log handler: one filter per logger of the libraries the connector goes
through, each with the mask for what that library prints. Installed once, by the providers
package (``providers/__init__.py``), whatever imports it: the Odoo addon, a script, a test.

- urllib3 / requests print request lines at DEBUG, query string included (InvoiceXpress puts
  its API key there);
- zeep's transport prints whole SOAP envelopes at DEBUG (InvoiCy's partner and access keys);
- Odoo's and werkzeug's access logs print request lines, our webhook URLs included, whose last
  segment is the account's webhook secret.
"""

import logging
import re

from .base import _QUERY_SECRET_RE, Redactor
from .invoicy import mask_envelope

WEBHOOK_PATH = "/fiscal_invoice_connector/webhook"
_WEBHOOK_SECRET_RE = re.compile(re.escape(WEBHOOK_PATH) + r"/(\d+)/[^\s?\"']+")


def mask_query(text):
    """``?api_key=SECRET`` (and token, secret, password) masked."""
    return _QUERY_SECRET_RE.sub(r"\1" + Redactor.MASK, text)


def mask_webhook_path(text):
    """``/fiscal_invoice_connector/webhook/<id>/<secret>``: the secret masked."""
    return _WEBHOOK_SECRET_RE.sub(WEBHOOK_PATH + r"/\1/" + Redactor.MASK, text) if WEBHOOK_PATH in text else text


MASKS = {
    "urllib3.connectionpool": mask_query,
    "urllib3.connection": mask_query,
    "requests": mask_query,
    "zeep.transports": mask_envelope,
    "werkzeug": mask_webhook_path,
    "odoo.http": mask_webhook_path,
}


class SecretLogFilter(logging.Filter):
    """Rewrites a record with ``mask`` applied before any handler sees it."""

    fiscal_secret_filter = True  # found again by install(), even from a second copy of this module

    def __init__(self, mask):
        super().__init__()
        self.mask = mask

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to fix
            return True
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def install():
    """Add the filters (once per logger)."""
    for name, mask in MASKS.items():
        target = logging.getLogger(name)
        if not any(getattr(f, "fiscal_secret_filter", False) for f in target.filters):
            target.addFilter(SecretLogFilter(mask))
