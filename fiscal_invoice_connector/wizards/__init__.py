from . import (
    fiscal_backfill_wizard,
    fiscal_cancel_wizard,
    fiscal_issue_wizard,
    fiscal_reconciliation,
    fiscal_reconciliation_line,
    account_move_reversal_nfse,
)
