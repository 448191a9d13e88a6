#!/bin/sh
# `make install`: a .venv with the project and its dev tools, plus PostgreSQL server binaries
# for the local database (aftersales_dev/devenv.py). Quick when nothing changed: the install is
# keyed on both pyproject.toml files + constraints.txt (a checksum kept in .venv/.install-stamp).
#
# Environment: PYTHON (interpreter to create .venv with; default: the first python3,
# python3.13, python3.12 or python3.11 that is >= 3.11), VENV (default .venv).
set -eu
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
STAMP="$VENV/.install-stamp"
say() { printf '[install] %s\n' "$*"; }
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

# Whether Debian packages can be installed here: as root, with apt-get.
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
# Debian packages installed quietly (the optional tools below); fails when apt-get does.
apt_quiet() {
    apt-get update >/dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null
}

py_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

find_python() {
    if [ -n "${PYTHON:-}" ]; then
        if ! py_ok "$PYTHON"; then
            version=$("$PYTHON" -V 2>&1) || version="cannot run it"
            die "PYTHON=$PYTHON is not Python >= 3.11 ($version)"
        fi
        echo "$PYTHON"
        return
    fi
    for candidate in python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 && py_ok "$candidate"; then
            echo "$candidate"
            return
        fi
    done
    found=$(python3 -V 2>&1) || found="no python3 on PATH"
    die "Python >= 3.11 is required (found: $found). Install it, or run: make install PYTHON=/path/to/python3.11"
}

# -- the virtualenv --------------------------------------------------------------------------
if [ -x "$VENV/bin/python" ] && py_ok "$VENV/bin/python"; then
    :
else
    python=$(find_python)
    if [ -e "$VENV" ]; then
        say "$VENV is broken or too old: recreating it"
        rm -rf "$VENV"
    fi
    say "creating $VENV with $python ($("$python" -V 2>&1))"
    "$python" -m venv "$VENV" || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
fi

constraints=""
[ -f constraints.txt ] && constraints="-c constraints.txt"
key=$(cat pyproject.toml aftersales_dev/pyproject.toml ${constraints:+constraints.txt} | cksum)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ]; then
    say "$VENV is up to date"
else
    say "installing the project and its dev tools into $VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # The development tools (aftersales_dev) are a distribution of their own, never in an image.
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install --quiet $constraints -e '.[dev]' -e ./aftersales_dev
    echo "$key" > "$STAMP"
    say "done"
fi

# -- PostgreSQL server binaries (for the throwaway local database) ---------------------------
if bindir=$("$VENV/bin/python" aftersales_dev/devenv.py check-postgres 2>/dev/null); then
    say "PostgreSQL server binaries: $bindir"
elif can_apt; then
    say "installing PostgreSQL (Debian package postgresql)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
    bindir=$("$VENV/bin/python" aftersales_dev/devenv.py check-postgres) \
        || die "postgresql was installed but initdb/pg_ctl/postgres are still not found"
    say "PostgreSQL server binaries: $bindir"
else
    say "warning: PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found."
    say "  Install a PostgreSQL server (Debian/Ubuntu: sudo apt-get install postgresql;"
    say "  Fedora: sudo dnf install postgresql-server; macOS: brew install postgresql@15),"
    say "  or set DATABASE_URL to an existing database. Database tests are skipped until then."
fi

# -- promtool (Prometheus), for `make deploy-check` to check and unit-test the alert rules ------
if command -v promtool >/dev/null 2>&1; then
    say "promtool: $(command -v promtool)"
elif can_apt; then
    say "installing promtool (Debian package prometheus)"
    if apt_quiet prometheus && command -v promtool >/dev/null 2>&1; then
        say "promtool: $(command -v promtool)"
    else
        say "warning: could not install promtool; make deploy-check skips the alert rule tests"
    fi
else
    say "promtool not found: make deploy-check skips the alert rule tests"
    say "  (Debian/Ubuntu: sudo apt-get install prometheus; or a promtool binary from prometheus.io on PATH)"
fi

# -- Chromium and its driver, for the console's browser test (tests/e2e/test_console_browser.py) --
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    say "chromium: $(command -v chromium), chromedriver: $(command -v chromedriver)"
elif can_apt; then
    say "installing Chromium (Debian packages chromium and chromium-driver)"
    if apt_quiet chromium chromium-driver && command -v chromedriver >/dev/null 2>&1; then
        say "chromium: $(command -v chromium), chromedriver: $(command -v chromedriver)"
    else
        say "warning: could not install Chromium; the console's browser test is skipped"
    fi
else
    say "Chromium not found: the console's browser test is skipped"
    say "  (Debian/Ubuntu: sudo apt-get install chromium chromium-driver)"
fi

# -- a CJK font, so the console's pages in Chromium (and its screenshots) show Chinese text ------
if ! command -v chromium >/dev/null 2>&1 || ! command -v fc-list >/dev/null 2>&1; then
    :
elif [ -n "$(fc-list :lang=zh family 2>/dev/null)" ]; then
    say "CJK font: $(fc-list :lang=zh family | head -n 1)"
elif can_apt; then
    say "installing a CJK font (Debian package fonts-wqy-microhei)"
    if apt_quiet fonts-wqy-microhei; then
        say "CJK font: $(fc-list :lang=zh family | head -n 1)"
    else
        say "warning: could not install a CJK font; Chinese text shows as boxes in Chromium"
    fi
else
    say "no CJK font: Chinese text shows as boxes in Chromium"
    say "  (Debian/Ubuntu: sudo apt-get install fonts-wqy-microhei)"
fi
