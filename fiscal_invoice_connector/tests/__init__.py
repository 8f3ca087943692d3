from . import (
    test_fiscal_corpus,
    test_lifecycle,
    test_nfse,
    test_outbox,
    test_policies,
    test_policies_window,
    test_reconciliation,
    test_routing,
    test_security,
    test_tour,
    test_ui,
)
