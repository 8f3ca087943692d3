from . import test_lifecycle, test_outbox, test_policies, test_policies_window, test_security
