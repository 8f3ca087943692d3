"""pytest fixtures of the plain suites (tests/ and simulators/tests/), imported by their
conftest.py files: a running simulator, and no-ops in place of pytest-odoo's database fixtures."""

import pytest

from .invoicexpress import InvoiceXpressSimulator


@pytest.fixture
def ix_sim():
    """A running InvoiceXpress simulator, unlimited rate (tests that need the limit set it)."""
    with InvoiceXpressSimulator(rate_limit_per_minute=None) as sim:
        yield sim


# pytest-odoo (installed in the project venv for the Odoo test suite) adds session- and
# module-wide autouse fixtures that open an Odoo registry on a database. The plain suites need
# none: these shadow them when the plugin is loaded (scripts/run_tests.sh runs with -p no:odoo).
@pytest.fixture(scope="session", autouse=True)
def load_registry():
    yield


@pytest.fixture(scope="module", autouse=True)
def enable_odoo_test_flag():
    yield
