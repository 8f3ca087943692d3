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
SIM_PORT="${FIC_SIM_PORT:-8765}"       # InvoiceXpress; eNotas, Vendus, InvoiCy on the next three ports
ENOTAS_PORT=$((SIM_PORT + 1)) VENDUS_PORT=$((SIM_PORT + 2)) INVOICY_PORT=$((SIM_PORT + 3))

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$HTTP_PORT" "$SIM_PORT" "$ENOTAS_PORT" "$VENDUS_PORT" "$INVOICY_PORT"; do
    port_busy "$port" && die "port $port is already in use (another demo?): stop it, or set FIC_HTTP_PORT / FIC_SIM_PORT"
done

exists=$(psql -X -Atq -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")
if [ -n "$exists" ] && [ "${FIC_DEMO_RESET:-0}" = 1 ]; then
    odoo db drop "$DB" >/dev/null 2>&1 || true
    exists=""
fi
if [ -z "$exists" ]; then
    say "creating the demo database $DB (Odoo + demo data + the connector; about three minutes, once)..."
    # Odoo's Portuguese chart of accounts first (its demo creates the Portuguese company), so that
    # the connector's demo finds it; then the connector with its demo sales.
    { odoo -d "$DB" -i l10n_pt --with-demo --stop-after-init --log-level=warn --http-port=0 &&
        odoo -d "$DB" -i fiscal_invoice_connector --stop-after-init --log-level=warn --http-port=0; } \
        > "$FIC_CACHE/demo-install.log" 2>&1 || { tail -60 "$FIC_CACHE/demo-install.log"; die "demo installation failed (log: $FIC_CACHE/demo-install.log)"; }
else
    say "updating the connector in $DB..."
    odoo -d "$DB" -u fiscal_invoice_connector --stop-after-init --log-level=warn --http-port=0 \
        > "$FIC_CACHE/demo-install.log" 2>&1 || { tail -60 "$FIC_CACHE/demo-install.log"; die "update failed (log: $FIC_CACHE/demo-install.log)"; }
fi
# Keep the demo accounts on these simulators (only while they still point at a local one).
psql -X -q -d "$DB" -c "UPDATE fiscal_provider_account SET state = 'active', base_url = CASE provider
        WHEN 'invoicexpress' THEN 'http://127.0.0.1:$SIM_PORT'
        WHEN 'enotas' THEN 'http://127.0.0.1:$ENOTAS_PORT/v1'
        WHEN 'vendus' THEN 'http://127.0.0.1:$VENDUS_PORT'
        WHEN 'invoicy' THEN 'http://127.0.0.1:$INVOICY_PORT' END
    WHERE base_url LIKE 'http://127.0.0.1:%'" >/dev/null
# eNotas notifies the demo's webhook URL (with the account's secret) when a note is decided.
enotas_hook=$(psql -X -Atq -d "$DB" -c "SELECT id || '/' || webhook_secret FROM fiscal_provider_account
    WHERE provider = 'enotas' AND base_url LIKE 'http://127.0.0.1:%' ORDER BY id LIMIT 1")

say "starting the simulators: InvoiceXpress :$SIM_PORT, eNotas :$ENOTAS_PORT, Vendus :$VENDUS_PORT, InvoiCy :$INVOICY_PORT..."
pids=()
start_sim() { "$PY" -m "$@" & pids+=($!); }
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
start_sim fiscal_simulators.invoicexpress --port "$SIM_PORT" --api-key demo-key
start_sim fiscal_simulators.enotas --port "$ENOTAS_PORT" --api-key demo-key --company-id 3f1c9a52-6d0e-4b8a-9c51-2a7e0d4b8f16 \
    --authorization-delay 4 ${enotas_hook:+--webhook-url "http://127.0.0.1:$HTTP_PORT/fiscal_invoice_connector/webhook/$enotas_hook"}
start_sim fiscal_simulators.vendus --port "$VENDUS_PORT" --api-key demo-key --register-id 1 --rate-limit 0
start_sim fiscal_simulators.invoicy --port "$INVOICY_PORT" --partner-key demo-partner-key --access-key demo-access-key \
    --company-code 11222333000181 --authorization-delay 4
for port in "$SIM_PORT" "$ENOTAS_PORT" "$VENDUS_PORT" "$INVOICY_PORT"; do
    for _ in $(seq 1 50); do port_busy "$port" && break; sleep 0.1; done
    port_busy "$port" || die "a simulator did not start on port $port"
done
# A snappy demo: poll the PDF every second.
psql -X -q -d "$DB" -c "INSERT INTO ir_config_parameter (key, value) VALUES ('fiscal_invoice_connector.pdf_poll_interval', '1')
    ON CONFLICT (key) DO NOTHING" >/dev/null

cat >&2 <<EOF

  Odoo 19 with the fiscal invoice connector: http://localhost:$HTTP_PORT  (login: admin / password: admin)
  Simulators: InvoiceXpress :$SIM_PORT, eNotas :$ENOTAS_PORT, Vendus :$VENDUS_PORT, InvoiCy :$INVOICY_PORT (127.0.0.1)
  Try: Sales > Quotations > open a quotation > Confirm; the "Fiscal document" button shows the
  number, then the PDF appears in the chatter. Switch to "Serviços Digitais Ltda" (Brazil) for NFS-e.
  Ctrl+C stops everything.

EOF
odoo -d "$DB" --db-filter="^$DB\$" --http-port="$HTTP_PORT" --http-interface=127.0.0.1 --log-level=info
