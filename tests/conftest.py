"""Plain pytest suite (no Odoo): provider clients and the local provider simulators.

The addon folder goes first on sys.path so that tests can ``import simulators`` and
``import providers`` as top-level packages, without Odoo's ``odoo.addons`` namespace.
"""

import sys
from pathlib import Path

import pytest

ADDON_DIR = Path(__file__).resolve().parent.parent / "fiscal_invoice_connector"
if str(ADDON_DIR) not in sys.path:
    sys.path.insert(0, str(ADDON_DIR))

from fiscal_simulators.invoicexpress import InvoiceXpressSimulator  # noqa: E402 - needs the path above


@pytest.fixture
def ix_sim():
    """A running InvoiceXpress simulator, unlimited rate (tests that need the limit set it)."""
    with InvoiceXpressSimulator(rate_limit_per_minute=None) as sim:
        yield sim


# pytest-odoo (installed in the project venv for the Odoo test suite) adds session- and
# module-wide autouse fixtures that open an Odoo registry on a database. This suite is
# plain Python: shadow them with no-ops here. (When ``odoo`` is not importable at all,
# the plugin fails at start-up; run with ``-p no:odoo`` or with Odoo on PYTHONPATH.)
@pytest.fixture(scope="session", autouse=True)
def load_registry():
    yield


@pytest.fixture(scope="module", autouse=True)
def enable_odoo_test_flag():
    yield
