#!/usr/bin/env bash
# Set-up from nothing, cached: Odoo 19 sources, a virtualenv with Odoo's and the
# project's dependencies, and a running PostgreSQL with a role Odoo accepts.
#
# Sourced by the other scripts (`. scripts/bootstrap.sh`): it exports
#   FIC_CACHE   cache folder (default ~/.cache/fiscal_invoice_connector)
#   ODOO_SRC    folder holding the `odoo` package (Debian's dist-packages, or your own tree)
#   VENV        the virtualenv; PY its python
#   ODOO_BIN    the Odoo launcher; ADDONS_PATH for --addons-path
#   PGHOST/PGPORT/PGUSER for Odoo and psql
# A second run only checks stamps and takes a few seconds.
#
# Bring your own Odoo 19 with ODOO_SRC=/path/to/odoo-tree (the folder that contains
# the `odoo` package, i.e. where `odoo-bin` or `setup.py` lives).

set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_DIR
export FIC_CACHE="${FIC_CACHE:-$HOME/.cache/fiscal_invoice_connector}"
mkdir -p "$FIC_CACHE"

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- Odoo sources
# Debian packages that resolve the symlinks of the odoo-19 package (static files of the
# web client). font-awesome must be bookworm's (4.7 file names).
SID_PKGS="odoo-19 libjs-jquery libjs-jquery-form libjs-underscore fonts-roboto-unhinted fonts-inconsolata fonts-ocr-b fonts-glyphicons-halflings fonts-montserrat"
BOOKWORM_PKGS="fonts-font-awesome"

debian_mirror() {
    # The mirror this machine is already configured with: never a host written here.
    local uri=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        uri=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v -- '-security' | head -1 || true)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(grep -E '^deb ' /etc/apt/sources.list | grep -v -- '-security' | awk '{ for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' | head -1 || true)
    fi
    [ -n "$uri" ] || die "no Debian mirror found in /etc/apt/sources.list(.d); give an Odoo 19 tree with ODOO_SRC=..."
    printf '%s' "$uri"
}

fetch_odoo_deb() {
    local root="$FIC_CACHE/odoo-19-deb" stamp="$FIC_CACHE/odoo-19-deb/.complete"
    if [ -f "$stamp" ]; then ODOO_SRC="$root/usr/lib/python3/dist-packages"; return; fi
    command -v apt-get >/dev/null || die "apt-get is missing: install Odoo 19 yourself and pass ODOO_SRC=..."
    local mirror aptdir
    mirror=$(debian_mirror)
    aptdir="$FIC_CACHE/apt"
    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/debs"
    cat > "$aptdir/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main
EOF
    cat > "$aptdir/sources-bookworm.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main
EOF
    local opts=(-o "Dir::Etc::SourceParts=/dev/null" -o "Dir::Cache=$aptdir/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
    say "downloading Odoo 19 (Debian package odoo-19, suite sid) from the configured mirror..."
    (
        cd "$aptdir/debs"
        apt-get -qq "${opts[@]}" -o "Dir::Etc::SourceList=$aptdir/sources.list" -o "Dir::State::Lists=$aptdir/lists" update \
            || die "apt-get update of the sid list failed (is the Debian mirror reachable?)"
        # shellcheck disable=SC2086
        apt-get -qq "${opts[@]}" -o "Dir::Etc::SourceList=$aptdir/sources.list" -o "Dir::State::Lists=$aptdir/lists" download $SID_PKGS \
            || die "could not download: $SID_PKGS"
        mkdir -p "$aptdir/lists-bookworm/partial"
        apt-get -qq "${opts[@]}" -o "Dir::Etc::SourceList=$aptdir/sources-bookworm.list" -o "Dir::State::Lists=$aptdir/lists-bookworm" update \
            || die "apt-get update of the bookworm list failed"
        # shellcheck disable=SC2086
        apt-get -qq "${opts[@]}" -o "Dir::Etc::SourceList=$aptdir/sources-bookworm.list" -o "Dir::State::Lists=$aptdir/lists-bookworm" download $BOOKWORM_PKGS \
            || die "could not download: $BOOKWORM_PKGS"
    )
    rm -rf "$root"; mkdir -p "$root"
    local deb
    for deb in "$aptdir"/debs/*.deb; do dpkg -x "$deb" "$root"; done
    [ -d "$root/usr/lib/python3/dist-packages/odoo" ] || die "the odoo-19 package did not contain usr/lib/python3/dist-packages/odoo"
    rm -rf "$aptdir/debs" "$aptdir/cache/archives"
    touch "$stamp"
    ODOO_SRC="$root/usr/lib/python3/dist-packages"
    say "Odoo 19 extracted to $root"
}

if [ -n "${ODOO_SRC:-}" ]; then
    [ -d "$ODOO_SRC/odoo/addons/base" ] || die "ODOO_SRC=$ODOO_SRC does not contain odoo/addons/base (give the folder holding the odoo package)"
else
    fetch_odoo_deb
fi
export ODOO_SRC
grep -q "version_info = (19" "$ODOO_SRC/odoo/release.py" || die "$ODOO_SRC is not Odoo 19 (see odoo/release.py)"

# ---------------------------------------------------------------- virtualenv
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "no $PYTHON on PATH: install CPython 3.11 (python3, python3-venv)"
req_hash=$( (cat "$REPO_DIR/requirements.txt"; "$PYTHON" --version) | sha256sum | cut -c1-12)
export VENV="${VENV:-$FIC_CACHE/venv-$req_hash}"
if [ ! -f "$VENV/.complete" ]; then
    say "building the virtualenv $VENV (Odoo's and the connector's dependencies, about a minute)..."
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "python -m venv failed: install the venv module (Debian: python3-venv)"
    # (grep drops pip's notices about find-links folders that some machines configure.)
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO_DIR/requirements.txt" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
    [ "${PIPESTATUS[0]}" = 0 ] || die "pip install -r requirements.txt failed (see above); PyPI must be reachable"
    touch "$VENV/.complete"
fi
export PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
# The provider simulators (tests, demo, benchmark; never part of the addon): installed editable from
# this checkout, again whenever the virtualenv points at another one (a second clone, CI).
sim_dir=$("$PY" -c 'import fiscal_simulators, os; print(os.path.dirname(os.path.dirname(os.path.realpath(fiscal_simulators.__file__))))' 2>/dev/null || true)
if [ "$sim_dir" != "$REPO_DIR/simulators" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO_DIR/simulators" >&2 \
        || die "pip install -e simulators failed (see above)"
fi
# The addon itself, installed editable with pip the way an integrator installs it (pyproject.toml,
# whool: a .pth pointing at fiscal_invoice_connector/build/__editable__, a link back to this folder),
# so that plain Python (the plain tests, the scripts) imports odoo.addons.fiscal_invoice_connector
# without path tricks. Odoo also finds it on ADDONS_PATH: both are this same folder. Without
# dependencies (requirements.txt has them; Odoo itself is not a pip package here) and offline.
addon_link="$REPO_DIR/fiscal_invoice_connector/build/__editable__"
addon_pth=$(cat "$VENV"/lib/python*/site-packages/odoo_addon_fiscal_invoice_connector.pth 2>/dev/null || true)
if [ "$addon_pth" != "$addon_link" ] || [ ! -e "$addon_link/odoo/addons/fiscal_invoice_connector/__manifest__.py" ]; then
    "$PY" -c 'import whool' 2>/dev/null || "$VENV/bin/pip" install -q --disable-pip-version-check \
        "$(grep -i '^whool' "$REPO_DIR/requirements.txt")" >&2 || die "pip install whool failed (see above)"
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation \
        -e "$REPO_DIR/fiscal_invoice_connector" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
    [ "${PIPESTATUS[0]}" = 0 ] || die "pip install -e fiscal_invoice_connector failed (see above)"
fi
export PYTHONPATH="$ODOO_SRC${PYTHONPATH:+:$PYTHONPATH}"

# The Odoo launcher: Debian's /usr/bin/odoo, or odoo-bin of a source tree.
if [ -f "$ODOO_SRC/odoo-bin" ]; then
    ODOO_BIN="$ODOO_SRC/odoo-bin"
else
    ODOO_BIN="$FIC_CACHE/odoo-launcher"
    printf '%s\n' '#!/usr/bin/env python3' 'import odoo.cli' 'odoo.cli.main()' > "$ODOO_BIN"
fi
export ODOO_BIN
export ADDONS_PATH="$ODOO_SRC/odoo/addons,$REPO_DIR"

# ---------------------------------------------------------------- PostgreSQL
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}"
if [ -z "${PGUSER:-}" ]; then
    # Odoo refuses the postgres role; use the OS user's role (root on these machines).
    PGUSER="$(id -un)"
    [ "$PGUSER" = postgres ] && PGUSER=odoo
fi
export PGUSER
command -v psql >/dev/null || die "psql is missing: install PostgreSQL 15 (Debian: postgresql postgresql-client)"
if ! pg_isready -q -h "$PGHOST" -p "$PGPORT"; then
    say "PostgreSQL is not answering on $PGHOST:$PGPORT; starting it..."
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        for v in $(ls /etc/postgresql); do
            pg_ctlcluster --skip-systemctl-redirect "$v" main start 2>&1 | sed 's/^/[setup]   /' >&2 || true
        done
    fi
    for _ in $(seq 1 30); do pg_isready -q -h "$PGHOST" -p "$PGPORT" && break; sleep 1; done
    pg_isready -q -h "$PGHOST" -p "$PGPORT" || die "PostgreSQL is not running on $PGHOST:$PGPORT and could not be started (install postgresql and run: pg_ctlcluster 15 main start)"
fi
if ! psql -X -q -d postgres -c 'select 1' >/dev/null 2>&1; then
    say "creating the PostgreSQL role $PGUSER..."
    if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
        runuser -u postgres -- psql -X -q -h "$PGHOST" -p "$PGPORT" -d postgres \
            -c "CREATE ROLE \"$PGUSER\" LOGIN CREATEDB" >/dev/null 2>&1 || true
    else
        psql -X -q -U postgres -d postgres -c "CREATE ROLE \"$PGUSER\" LOGIN CREATEDB" >/dev/null 2>&1 || true
    fi
    psql -X -q -d postgres -c 'select 1' >/dev/null 2>&1 \
        || die "cannot connect to PostgreSQL as role '$PGUSER' (trust auth expected): create it with CREATE ROLE $PGUSER LOGIN CREATEDB, or set PGUSER"
fi

# `odoo [subcommand] [options]` with this project's addons path and database settings.
odoo() {
    local sub=()
    case "${1:-}" in shell|db|neutralize|populate|module|cloc|start) sub=("$1"); shift ;; esac
    "$PY" "$ODOO_BIN" "${sub[@]}" --addons-path="$ADDONS_PATH" --db_host="$PGHOST" --db_port="$PGPORT" --db_user="$PGUSER" "$@"
}
say "ready: Odoo $(cd "$ODOO_SRC" && "$PY" -c 'import odoo.release as r; print(r.version)' 2>/dev/null) in $ODOO_SRC, venv $VENV, PostgreSQL $PGUSER@$PGHOST:$PGPORT"
