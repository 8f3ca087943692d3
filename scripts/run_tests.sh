#!/usr/bin/env bash
# All tests, from nothing: set-up (cached), plain-Python tests, then the Odoo tests
# (pytest-odoo) on a fresh database with the addon installed.
#
#   scripts/run_tests.sh            everything
#   scripts/run_tests.sh -k pdf     extra arguments go to both pytest runs
#
# The Odoo database is cloned from a cached template holding sale_management and
# account, so only the first run pays for their installation (about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh

results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
status=0

echo "== Lint (ruff) =="
{ ruff check . && ruff format --check . >/dev/null && echo "ruff: clean"; } || status=1

echo "== Plain-Python tests (provider clients, simulators) =="
# Capped at 6 GB of address space: a runaway test fails alone instead of exhausting the machine.
(ulimit -v 6000000; python -m pytest tests -p no:odoo -q -p no:cacheprovider --junitxml="$results/plain.xml" "$@") || status=$?

# ------------------------------------------------------------------ Odoo tests
TEMPLATE_MODULES="sale_management,account,mail"
tmpl_key=$( (grep version_info "$ODOO_SRC/odoo/release.py"; echo "$TEMPLATE_MODULES"; "$PY" --version) | sha256sum | cut -c1-8)
TEMPLATE_DB="fic_template_$tmpl_key"
TEST_DB="${FIC_TEST_DB:-fic_test}"

db_ready() { [ "$(psql -X -Atq -d postgres -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$1'")" = "complete" ]; }

if ! db_ready "$TEMPLATE_DB"; then
    say "creating the template database $TEMPLATE_DB ($TEMPLATE_MODULES, once; about a minute)..."
    odoo db drop "$TEMPLATE_DB" >/dev/null 2>&1 || true
    odoo -d "$TEMPLATE_DB" -i "$TEMPLATE_MODULES" --stop-after-init --log-level=warn --http-port=0 \
        > "$FIC_CACHE/template-install.log" 2>&1 || { tail -40 "$FIC_CACHE/template-install.log"; die "installing $TEMPLATE_MODULES failed"; }
    psql -X -q -d postgres -c "COMMENT ON DATABASE \"$TEMPLATE_DB\" IS 'complete'"
fi

say "fresh test database $TEST_DB with the addon installed..."
odoo db drop "$TEST_DB" >/dev/null 2>&1 || true
odoo db duplicate "$TEMPLATE_DB" "$TEST_DB" >/dev/null 2>&1 || die "could not copy $TEMPLATE_DB to $TEST_DB"
started=$(date +%s)
odoo -d "$TEST_DB" -i fiscal_invoice_connector --stop-after-init --log-level=warn --http-port=0 \
    > "$FIC_CACHE/addon-install.log" 2>&1 || { tail -60 "$FIC_CACHE/addon-install.log"; die "installing fiscal_invoice_connector failed"; }
say "addon installed in $(( $(date +%s) - started )) s"

echo "== Odoo tests (pytest-odoo, database $TEST_DB) =="
python -m pytest fiscal_invoice_connector -q -p no:cacheprovider \
    --odoo-database="$TEST_DB" --odoo-addons-path="$ADDONS_PATH" --odoo-log-level=warn --odoo-http \
    --junitxml="$results/odoo.xml" "$@" || status=$?

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
