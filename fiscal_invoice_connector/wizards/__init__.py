from . import fiscal_backfill_wizard, fiscal_cancel_wizard, fiscal_issue_wizard, fiscal_reconciliation
from . import account_move_reversal_nfse
