from . import test_outbox, test_policies, test_security
