"""The simulators' own tests (plain pytest, run by scripts/run_tests.sh with the plain suite):
each simulator is as strict as the real service."""

from fiscal_simulators.pytest_fixtures import enable_odoo_test_flag, ix_sim, load_registry

__all__ = ["enable_odoo_test_flag", "ix_sim", "load_registry"]
