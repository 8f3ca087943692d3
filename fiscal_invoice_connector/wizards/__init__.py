from . import fiscal_cancel_wizard, fiscal_issue_wizard
