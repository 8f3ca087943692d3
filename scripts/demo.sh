#!/usr/bin/env bash
# The main job: Odoo 19 on http://localhost:8069 with the connector installed in a demo
# database (demo data included) and a local InvoiceXpress simulator beside it.
# Log in as admin / admin, open Sales, confirm a quotation: its fiscal invoice number,
# state and PDF appear on the order within seconds.
#
# Environment: FIC_DEMO_DB (fic_demo), FIC_HTTP_PORT (8069), FIC_SIM_PORT (8765),
# FIC_DEMO_RESET=1 to rebuild the demo database from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh

DB="${FIC_DEMO_DB:-fic_demo}"
HTTP_PORT="${FIC_HTTP_PORT:-8069}"
SIM_PORT="${FIC_SIM_PORT:-8765}"
SIM_KEY="demo-key"  # the demo account's key; the simulator accepts only this one

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_busy "$HTTP_PORT" && die "port $HTTP_PORT is already in use (another Odoo?): stop it or set FIC_HTTP_PORT"
port_busy "$SIM_PORT" && die "port $SIM_PORT is already in use: stop it or set FIC_SIM_PORT"

say "starting the InvoiceXpress simulator on 127.0.0.1:$SIM_PORT..."
(cd fiscal_invoice_connector && exec "$PY" -m simulators.invoicexpress --port "$SIM_PORT" --api-key "$SIM_KEY") &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do port_busy "$SIM_PORT" && break; sleep 0.1; done
port_busy "$SIM_PORT" || die "the simulator did not start"

exists=$(psql -X -Atq -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")
if [ -n "$exists" ] && [ "${FIC_DEMO_RESET:-0}" = 1 ]; then
    odoo db drop "$DB" >/dev/null 2>&1 || true
    exists=""
fi
if [ -z "$exists" ]; then
    say "creating the demo database $DB (Odoo + demo data + the connector; about two minutes, once)..."
    odoo -d "$DB" -i fiscal_invoice_connector --with-demo --stop-after-init --log-level=warn --http-port=0 \
        > "$FIC_CACHE/demo-install.log" 2>&1 || { tail -60 "$FIC_CACHE/demo-install.log"; die "demo installation failed (log: $FIC_CACHE/demo-install.log)"; }
else
    say "updating the connector in $DB..."
    odoo -d "$DB" -u fiscal_invoice_connector --stop-after-init --log-level=warn --http-port=0 \
        > "$FIC_CACHE/demo-install.log" 2>&1 || { tail -60 "$FIC_CACHE/demo-install.log"; die "update failed (log: $FIC_CACHE/demo-install.log)"; }
fi
# Keep the demo account on this simulator (only while it still points at a local one).
psql -X -q -d "$DB" -c "UPDATE fiscal_provider_account SET base_url = 'http://127.0.0.1:$SIM_PORT', state = 'active'
    WHERE base_url LIKE 'http://127.0.0.1:%'" >/dev/null
# A snappy demo: poll the PDF every second.
psql -X -q -d "$DB" -c "INSERT INTO ir_config_parameter (key, value) VALUES ('fiscal_invoice_connector.pdf_poll_interval', '1')
    ON CONFLICT (key) DO NOTHING" >/dev/null

cat >&2 <<EOF

  Odoo 19 with the fiscal invoice connector: http://localhost:$HTTP_PORT  (login: admin / password: admin)
  InvoiceXpress simulator:                    http://127.0.0.1:$SIM_PORT
  Try: Sales > Quotations > open a quotation > Confirm; the "Fiscal document" button shows the
  number, then the PDF appears in the chatter. Ctrl+C stops both.

EOF
odoo -d "$DB" --db-filter="^$DB\$" --http-port="$HTTP_PORT" --http-interface=127.0.0.1 --log-level=info
