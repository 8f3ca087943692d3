from . import (
    fiscal_provider_account,
    fiscal_routing_rule,
    fiscal_document,
    fiscal_document_attempt,
    fiscal_mapping,
    fiscal_source_mixin,
    product,
    res_company,
    account_tax,
    sale_order,
    account_move,
    account_partial_reconcile,
)
