-- A copied database (neutralized by `odoo neutralize`) must never issue legal documents.
UPDATE fiscal_provider_account SET state = 'paused',
    paused_reason = 'Neutralized database: check the account before resuming.';
