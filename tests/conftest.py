"""Plain pytest suite (no Odoo database): the provider clients against the simulators.

The clients are imported as the installed addon's ``odoo.addons.fiscal_invoice_connector.providers``
(scripts/bootstrap.sh installs the addon editable with pip, as an integrator would) and the
simulators as the ``fiscal_simulators`` package: no path tricks.
"""

from fiscal_simulators.pytest_fixtures import enable_odoo_test_flag, ix_sim, load_registry

__all__ = ["enable_odoo_test_flag", "ix_sim", "load_registry"]
