#!/usr/bin/env bash
# Install the counter kiosk.
#
#   ./install.sh --dev     a development checkout: .venv here, with the test tools (no root needed
#                          once libzbar0 is installed)
#
# The system install on Raspberry Pi OS / Debian 12 (service, user, /opt/kiosk) is tracked in
# issue 4 and not written yet: this script refuses it rather than half-installing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

need_python() {
    command -v python3 >/dev/null || die "python3 not found: sudo apt-get install python3 python3-venv"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "Python 3.11 or newer is needed (found $(python3 --version 2>&1))"
    python3 -c 'import venv, ensurepip' 2>/dev/null \
        || die "the Python venv module is missing: sudo apt-get install python3-venv"
}

have_zbar() { ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0'; }

need_zbar() {
    have_zbar && return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "pyzbar needs the zbar library; run: sudo apt-get install -y libzbar0   then run this again"
    fi
    say "installing libzbar0 (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq libzbar0 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libzbar0; }
    have_zbar || die "libzbar0 did not install"
}

install_dev() {
    need_python
    need_zbar
    cd "$here"
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv"
        python3 -m venv .venv
    fi
    say "installing the kiosk and its test tools into .venv"
    .venv/bin/python -m pip install -q -r requirements-dev.txt
    .venv/bin/python -m pip install -q --no-deps -e .
    say "done: .venv/bin/kiosk --help   (tests: .venv/bin/python -m pytest)"
}

case "${1:-}" in
    --dev) install_dev ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "the system install is not written yet (issue 4); use ./install.sh --dev for a development checkout" ;;
esac
