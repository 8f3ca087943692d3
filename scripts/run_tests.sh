#!/usr/bin/env bash
# All tests, from nothing: set-up (cached), plain-Python tests, then the Odoo tests
# (pytest-odoo) on a fresh database with the addon installed.
#
#   scripts/run_tests.sh            everything
#   scripts/run_tests.sh -k pdf     extra arguments go to every pytest run
#
# The Odoo database is cloned from a cached template holding sale_management and
# account, so only the first run pays for their installation (about a minute). A second
# stage runs the tests that need Odoo's Portuguese and Brazilian localizations on a
# database cloned from a second cached template that also holds l10n_pt and l10n_br.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh

results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
status=0

echo "== Lint (ruff) =="
{ ruff check . && ruff format --check . >/dev/null && echo "ruff: clean"; } || status=1

echo "== Plain-Python tests (provider clients: tests/; simulators and packaging: simulators/tests/) =="
# Capped at 6 GB of address space: a runaway test fails alone instead of exhausting the machine.
(ulimit -v 6000000; python -m pytest tests simulators/tests -p no:odoo -q -p no:cacheprovider --junitxml="$results/plain.xml" "$@") || status=$?

# ------------------------------------------------------------------ Odoo tests
TEMPLATE_MODULES="sale_management,account,mail"
# Odoo's Portuguese and Brazilian localizations: in a database of their own, because they bring
# base_vat, whose VAT check refuses the deliberately invalid tax ids of the other test modules.
L10N_TEMPLATE_MODULES="$TEMPLATE_MODULES,l10n_pt,l10n_br"
# What runs there: the corpus with Odoo's Portuguese chart, the NFS-e address from l10n_br's street fields.
L10N_TESTS=(
    fiscal_invoice_connector/tests/test_fiscal_corpus.py::TestFiscalCorpusPortugueseChartInvoiceXpress
    fiscal_invoice_connector/tests/test_fiscal_corpus.py::TestFiscalCorpusPortugueseChartVendus
    fiscal_invoice_connector/tests/test_nfse_l10n_br.py
)
TEST_DB="${FIC_TEST_DB:-fic_test}"
L10N_TEST_DB="${FIC_L10N_TEST_DB:-fic_test_l10n}"

db_ready() { [ "$(psql -X -Atq -d postgres -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$1'")" = "complete" ]; }

# A template database holding $2 (cached: named by a hash of Odoo's version, the modules and Python).
template_db() {
    local prefix=$1 modules=$2 key db
    key=$( (grep version_info "$ODOO_SRC/odoo/release.py"; echo "$modules"; "$PY" --version) | sha256sum | cut -c1-8)
    db="${prefix}_$key"
    if ! db_ready "$db"; then
        say "creating the template database $db ($modules, once; a few minutes)..."
        odoo db drop "$db" >/dev/null 2>&1 || true
        odoo -d "$db" -i "$modules" --stop-after-init --log-level=warn --http-port=0 \
            > "$FIC_CACHE/$prefix-install.log" 2>&1 || { tail -40 "$FIC_CACHE/$prefix-install.log"; die "installing $modules failed"; }
        psql -X -q -d postgres -c "COMMENT ON DATABASE \"$db\" IS 'complete'"
    fi
    printf '%s' "$db"
}

# A fresh database $2 copied from the template $1, with the addon installed.
fresh_db() {
    say "fresh test database $2 with the addon installed..."
    odoo db drop "$2" >/dev/null 2>&1 || true
    odoo db duplicate "$1" "$2" >/dev/null 2>&1 || die "could not copy $1 to $2"
    local started
    started=$(date +%s)
    odoo -d "$2" -i fiscal_invoice_connector --stop-after-init --log-level=warn --http-port=0 \
        > "$FIC_CACHE/addon-install-$2.log" 2>&1 || { tail -60 "$FIC_CACHE/addon-install-$2.log"; die "installing fiscal_invoice_connector failed"; }
    say "addon installed in $(( $(date +%s) - started )) s"
}

TEMPLATE_DB=$(template_db fic_template "$TEMPLATE_MODULES")
fresh_db "$TEMPLATE_DB" "$TEST_DB"

echo "== Odoo tests (pytest-odoo, database $TEST_DB) =="
python -m pytest fiscal_invoice_connector -q -p no:cacheprovider \
    --odoo-database="$TEST_DB" --odoo-addons-path="$ADDONS_PATH" --odoo-log-level=warn --odoo-http \
    --junitxml="$results/odoo.xml" "$@" || status=$?

echo "== Odoo tests with the Portuguese and Brazilian localizations (l10n_pt, l10n_br; database $L10N_TEST_DB) =="
stage_started=$(date +%s)
L10N_TEMPLATE_DB=$(template_db fic_template_l10n "$L10N_TEMPLATE_MODULES")
fresh_db "$L10N_TEMPLATE_DB" "$L10N_TEST_DB"
python -m pytest "${L10N_TESTS[@]}" -q -p no:cacheprovider \
    --odoo-database="$L10N_TEST_DB" --odoo-addons-path="$ADDONS_PATH" --odoo-log-level=warn --odoo-http \
    --junitxml="$results/odoo-l10n.xml" "$@" || { rc=$?; [ "$rc" = 5 ] || status=$rc; }  # 5: -k chose none here
say "localization stage: $(( $(date +%s) - stage_started )) s"

echo "== Fault suite (real processes: SIGKILL, dropped connections, two workers) =="
python scripts/fault_suite.py || status=$?

# One closing line for the pytest runs (the fault suite prints its own table and fails the run on
# any duplicate or lost document).
"$PY" - "$results"/*.xml <<'EOF'
import sys
import xml.etree.ElementTree as ET

total = failed = skipped = 0
for path in sys.argv[1:]:
    root = ET.parse(path).getroot()
    for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
print(f"all tests: {total - failed - skipped} passed, {failed} failed, {skipped} skipped")
EOF
exit $status
