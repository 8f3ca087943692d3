#!/usr/bin/env bash
# Re-export fiscal_invoice_connector/i18n/fiscal_invoice_connector.pot with Odoo's exporter and
# merge every i18n/*.po with it: new strings are added (empty, or marked fuzzy with a guess from
# a similar string; Odoo ignores fuzzy entries), strings gone from the code become obsolete.
# Then translate the empty and fuzzy entries (e.g. with poedit) and check with the statistics
# printed at the end.
#
#   scripts/update_translations.sh            in the database fic_i18n (created when missing)
#   scripts/update_translations.sh my_db      in another database (the addon is installed or updated there)
#
# Uses msgmerge (Debian: apt-get install gettext) when it is installed, else polib (in the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh

DB="${1:-${FIC_I18N_DB:-fic_i18n}}"
I18N=fiscal_invoice_connector/i18n
POT="$I18N/fiscal_invoice_connector.pot"
mkdir -p "$I18N"

exists=$(psql -X -Atq -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")
log="$FIC_CACHE/i18n-$DB.log"
if [ -z "$exists" ]; then
    say "installing the connector in a new database $DB (once, about two minutes)..."
    odoo -d "$DB" -i fiscal_invoice_connector --stop-after-init --log-level=warn --http-port=0 > "$log" 2>&1 \
        || { tail -40 "$log"; die "installing fiscal_invoice_connector in $DB failed"; }
else
    say "updating the connector in $DB..."
    odoo -d "$DB" -u fiscal_invoice_connector --stop-after-init --log-level=warn --http-port=0 > "$log" 2>&1 \
        || { tail -40 "$log"; die "updating fiscal_invoice_connector in $DB failed"; }
fi

say "exporting $POT..."
"$PY" "$ODOO_BIN" --addons-path="$ADDONS_PATH" i18n export -d "$DB" -o "$POT" fiscal_invoice_connector >> "$log" 2>&1 \
    || { tail -40 "$log"; die "the export failed"; }
# bootstrap.sh installs the addon editable: build/__editable__/odoo/addons/fiscal_invoice_connector
# links back to this folder, and the exporter follows links (down to the longest path the system
# allows), so every Python string would also be listed under build/__editable__/... paths.
sed -i '\|^#: code:addons/fiscal_invoice_connector/build/|d' "$POT"

shopt -s nullglob
for po in "$I18N"/*.po; do
    if command -v msgmerge >/dev/null; then
        msgmerge --quiet --update --backup=none "$po" "$POT"
    else
        "$PY" - "$po" "$POT" <<'EOF'
import sys

import polib

po = polib.pofile(sys.argv[1], wrapwidth=78)
po.merge(polib.pofile(sys.argv[2]))
po.save(sys.argv[1])
EOF
    fi
done

# What is left to translate, per language.
"$PY" - "$I18N"/*.po <<'EOF'
import sys

import polib

for path in sys.argv[1:]:
    po = polib.pofile(path)
    todo = len(po.untranslated_entries()) + len(po.fuzzy_entries())
    print(f"{path}: {po.percent_translated()}% translated, {todo} to do")
EOF
