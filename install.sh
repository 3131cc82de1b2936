#!/usr/bin/env bash
# Install the counter kiosk.
#
#   sudo ./install.sh                      install on Raspberry Pi OS Bookworm / Debian 12, or
#                                          upgrade: run it again from a newer checkout
#   sudo ./install.sh --uninstall          remove the service and /opt/kiosk; keep the config
#                                          (/etc/kiosk), the outbox (/var/lib/kiosk), the user
#   sudo ./install.sh --uninstall --purge  remove those too
#   sudo ./install.sh --usb-keyboard       install, and make the Pi a USB keyboard for the counter's
#                                          POS at every boot (kiosk-usb-keyboard.service; docs/POS.md)
#   sudo ./install.sh --release WHEEL WHEELHOUSE
#                                          install the kiosk of WHEEL, its dependencies from the
#                                          folder WHEELHOUSE (no network), as a release beside the
#                                          others in /opt/kiosk/releases; it does not switch to it
#                                          (Ansible's role does: docs/ANSIBLE.md)
#   sudo ./install.sh --switch VERSION     run release VERSION: /opt/kiosk/venv points at it, and the
#                                          service restarts when it runs (also the rollback)
#   ./install.sh --constraints             the pip constraints of this machine (the numpy pin on a Pi),
#                                          for a wheelhouse built elsewhere
#   ./install.sh --dev                     a development checkout: .venv here, with every tool the
#                                          tests use (apt's as root; otherwise it says what to install)
#
# What goes where and why: docs/INSTALL.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

# Steps: each prints one numbered line, e.g. "install.sh: [3/7] python packages into
# /opt/kiosk/venv (about 30 s)", and its output goes to a log that is shown only when it fails.
STEP=0
STEPS=0
STEP_LOG=""

# The line that says why a step failed: pip's or our own last error line, else the last line.
# $1: the step's log.
failure_reason() {
    local line
    line="$(grep -E '^(ERROR|error|Error|E):|^install\.sh: error:' "$1" | tail -n 1)"
    [ -n "$line" ] || line="$(grep -v '^[[:space:]]*$' "$1" | tail -n 1)"
    line="${line#install.sh: error: }"
    printf '%s' "${line:-exit status $2, no output}"
}

# run_step NAME CMD...: run CMD (a command or one of the functions here) as step NAME. Its output
# goes to $STEP_LOG; on success only its own "install.sh: ..." lines are shown, on failure the last
# lines of the log and "install.sh: error: NAME failed: <reason>".
run_step() {
    local name="$1" rc=0
    shift
    STEP=$((STEP + 1))
    say "[$STEP/$STEPS] $name"
    [ -n "$STEP_LOG" ] || STEP_LOG="$(mktemp "${TMPDIR:-/tmp}/kiosk-install.XXXXXX")"
    # A subshell with errexit of its own: in an `if` or `||`, bash would ignore set -e inside it.
    set +e
    (set -e; "$@") >"$STEP_LOG" 2>&1
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
        tail -n 15 "$STEP_LOG" | sed 's/^/  | /' >&2
        die "$name failed: $(failure_reason "$STEP_LOG" "$rc")"
    fi
    grep '^install\.sh: ' "$STEP_LOG" || true
}

# Call when every step has run: the log is not needed any more.
steps_done() { [ -z "$STEP_LOG" ] || rm -f "$STEP_LOG"; }

# Where the system install puts things (the unit file names the same paths).
readonly OPT_DIR=/opt/kiosk
# The venv the unit's ExecStart and /usr/local/bin/kiosk name: a folder (the plain install), or a
# link to the venv of one release (--release, --switch): switching back is a rollback, no reinstall.
readonly VENV="$OPT_DIR/venv"
# The releases side by side: $RELEASES/<version>/venv, its installer, and a marker written last.
readonly RELEASES="$OPT_DIR/releases"
readonly RELEASE_MARKER=installed
readonly ETC_DIR=/etc/kiosk
readonly CONFIG="$ETC_DIR/kiosk.toml"
readonly TOKEN="$ETC_DIR/token"
readonly STATE_DIR=/var/lib/kiosk
readonly UNIT=/etc/systemd/system/kiosk.service
# The USB keyboard gadget for the POS (--usb-keyboard): created at boot, before the kiosk starts.
readonly GADGET_UNIT=/etc/systemd/system/kiosk-usb-keyboard.service
readonly COMMAND_LINK=/usr/local/bin/kiosk
readonly USER_NAME=kiosk
# The technicians' group (device/status.py TECHNICIANS_GROUP): reads the config, status, the queue
# and snapshots, never the token. The service runs with it as its main group, so that what the
# daemon writes is theirs to read; the token is the kiosk group's alone.
readonly TECH_GROUP=kiosk-tech

need_python() {
    command -v python3 >/dev/null || die "python3 not found: sudo apt-get install python3 python3-venv"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "Python 3.11 or newer is needed (found $(python3 --version 2>&1))"
    python3 -c 'import venv, ensurepip' 2>/dev/null \
        || die "the Python venv module is missing: sudo apt-get install python3-venv"
}

# The packages among "$@" that dpkg does not have installed, one a line.
missing_packages() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || printf '%s\n' "$pkg"
    done
}

apt_install() {
    local missing=()
    mapfile -t missing < <(missing_packages "$@")
    [ "${#missing[@]}" -eq 0 ] && return 0
    say "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh system may have stale package lists: update only when the first try fails.
    apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
        || die "apt could not install ${missing[*]}"
}

# picamera2 before 0.3.20 lacks cancel_all_and_flush(): closing a stalled CSI camera can then hang.
readonly PICAMERA2_MIN_VERSION=0.3.20

# An installed python3-picamera2 older than PICAMERA2_MIN_VERSION is upgraded (apt_install only
# installs what is missing, so an old one would stay for ever). Not installed: nothing to do.
upgrade_old_picamera2() {
    local version
    version=$(dpkg-query -W -f='${Version}' python3-picamera2 2>/dev/null) || return 0
    [ -n "$version" ] || return 0
    dpkg --compare-versions "$version" ge "$PICAMERA2_MIN_VERSION" && return 0
    say "upgrading python3-picamera2 $version (older than $PICAMERA2_MIN_VERSION: closing a stalled camera can hang)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --only-upgrade python3-picamera2 \
        || { apt-get update -q && apt-get install -y -q --only-upgrade python3-picamera2; } \
        || die "apt could not upgrade python3-picamera2 (from $version)"
    version=$(dpkg-query -W -f='${Version}' python3-picamera2 2>/dev/null) || true
    if ! dpkg --compare-versions "$version" ge "$PICAMERA2_MIN_VERSION"; then
        say "warning: python3-picamera2 is still $version, older than $PICAMERA2_MIN_VERSION: is the Raspberry Pi apt source in /etc/apt/sources.list.d/?"
    fi
}

# Install the system packages named (system_packages' list); on a Pi also upgrade an old picamera2.
install_system_packages() {
    apt_install "$@"
    if is_pi; then upgrade_old_picamera2; fi
}

have_zbar() { ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0'; }

# What a development checkout needs from apt: the kiosk's own library, and every tool a test uses.
# Without one, its tests would skip, and a skip outside tests/skips.toml fails the run.
readonly DEV_PACKAGES=(
    libzbar0          # pyzbar's library: the kiosk reads barcodes with it
    python3           # Debian's /usr/bin/python3, which the user nobody may run (tests/support/unprivileged.py);
    python3-venv      #   a pyenv Python under /root is not theirs to run
    openssl           # test certificates for the TLS tests (tests/support/central.py)
    systemd           # systemd-analyze verify, on the unit (tests/test_systemd.py)
    shellcheck        # the lint of this script (tests/test_systemd.py)
    libfuse3-3        # the power-cut filesystem (tests/lazyfs.py, through mfusepy)
    chromium          # the live view in a real browser (tests/test_preview.py, through playwright)
    debootstrap       # a fresh Debian root for the system install (tests/test_install.py)
    systemd-container # systemd-nspawn, which boots that root (tests/test_unit_boot.py)
    git               # which files of the checkout go into that root (tests/debian_root.py)
    openssh-client    # ssh and ssh-keygen: Ansible reaches the test fleet's kiosks over SSH (tests/test_fleet.py)
    prometheus        # promtool, which checks and unit-tests the example alert rules (tests/test_alert_rules.py);
                      #   the package also brings a Prometheus server, which systemd starts on port 9090
    postgresql        # initdb and pg_ctl: the central's store tests and benchmarks start a throwaway cluster
                      #   (central/pgcluster.py); the package's own cluster on port 5432 is not used
)

# As root: install what is missing. Otherwise: stop when the kiosk itself cannot run (no zbar, no
# venv module), else name the missing test tools and the one command that installs them.
dev_system_packages() {
    local missing=() command
    mapfile -t missing < <(missing_packages "${DEV_PACKAGES[@]}")
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ]; then
        apt_install "${missing[@]}"
        return 0
    fi
    command="sudo apt-get install -y --no-install-recommends ${missing[*]}"
    if ! have_zbar || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        die "the kiosk needs packages that only root can install; run: $command   then run this again"
    fi
    say "warning: the tests need ${missing[*]} (else they fail: a skip outside tests/skips.toml);" \
        "only root can install them: $command"
}

dev_venv() {
    [ -x .venv/bin/python ] || python3 -m venv .venv
    check_others_python
}

# tests/support/unprivileged.py runs the kiosk as the user nobody, with .venv's packages, through a Python of
# .venv's version that nobody may run: Debian's /usr/bin/python3 when .venv's is a pyenv under /root.
check_others_python() {
    local version='import sys; print("%d.%d" % sys.version_info[:2])' ours theirs
    ours="$(.venv/bin/python -c "$version" 2>/dev/null)" || return 0  # the next step says what is wrong
    theirs="$(/usr/bin/python3 -c "$version" 2>/dev/null)" || theirs="missing"
    [ "$ours" = "$theirs" ] \
        || say "warning: .venv has Python $ours, /usr/bin/python3 is $theirs: the tests that run the kiosk as" \
            "the user nobody need a Python $ours that user may run (make .venv with /usr/bin/python3 -m venv .venv)"
}

dev_packages() {
    .venv/bin/python -m pip install --disable-pip-version-check -r requirements-dev.txt
    .venv/bin/python -m pip install --disable-pip-version-check --no-deps -e .
}

install_dev() {
    cd "$here"
    STEPS=4
    run_step "system packages for the kiosk and its tests (apt)" dev_system_packages
    run_step "python 3.11 with venv" need_python
    run_step "virtual environment .venv" dev_venv
    run_step "python packages and test tools into .venv (about 30 s)" dev_packages
    steps_done
    say "done: .venv/bin/kiosk --help   (tests: .venv/bin/python -m pytest)"
}

# ---------------------------------------------------------------------------------------------
# System install

# $1: the command line to suggest.
need_root() {
    [ "$(id -u)" -eq 0 ] || die "this changes /opt, /etc and /var: run it as root: sudo $1"
}

# A Raspberry Pi names itself in the device tree; picamera2 (CSI cameras) then comes from apt.
is_pi() { grep -qa 'Raspberry Pi' /proc/device-tree/model /sys/firmware/devicetree/base/model 2>/dev/null; }

systemd_running() { [ -d /run/systemd/system ]; }

warn_if_untested_os() {
    local id="" version=""
    if [ -r /etc/os-release ]; then
        # shellcheck source=/dev/null
        id="$(. /etc/os-release && printf '%s' "${ID:-}")"
        # shellcheck source=/dev/null
        version="$(. /etc/os-release && printf '%s' "${VERSION_ID:-}")"
    fi
    case "$id:$version" in
        debian:12 | raspbian:12) ;;
        *) say "warning: made for Raspberry Pi OS Bookworm / Debian 12, this is ${id:-unknown} ${version:-}; going on" ;;
    esac
}

ensure_group() { getent group "$1" >/dev/null || { say "creating system group $1"; groupadd --system "$1"; }; }

ensure_user() {
    # video exists on Debian; gpio only on Raspberry Pi OS, and the unit's SupplementaryGroups=
    # makes the service fail to start when a group is missing.
    ensure_group video
    ensure_group gpio
    ensure_group "$USER_NAME"
    ensure_group "$TECH_GROUP"
    if ! id -u "$USER_NAME" >/dev/null 2>&1; then
        say "creating system user $USER_NAME"
        useradd --system --gid "$USER_NAME" --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "Counter kiosk daemon" "$USER_NAME"
    fi
    # The service gets these groups from the unit; membership also lets `sudo -u kiosk kiosk diag ...`
    # (and the config check below) work.
    usermod --append --groups "video,gpio,$TECH_GROUP" "$USER_NAME"
}

# The venv is kept across upgrades (pip only replaces what changed) unless it no longer fits:
# the OS moved to another Python, or system site packages are wanted (Pi) but not set.
ensure_venv() {
    local site="false" version='import sys; print(sys.version_info[:2])'
    if is_pi; then site="true"; fi
    # A link to a release (--switch): the plain install makes a venv of its own, the releases stay.
    if [ -L "$VENV" ]; then
        say "replacing the link $VENV -> $(readlink "$VENV") with a venv of its own"
        rm -f "$VENV"
    fi
    if [ -x "$VENV/bin/python" ] \
        && [ "$("$VENV/bin/python" -c "$version" 2>/dev/null)" = "$(python3 -c "$version")" ] \
        && grep -qx "include-system-site-packages = $site" "$VENV/pyvenv.cfg"; then
        return 0
    fi
    [ -e "$VENV" ] && say "re-creating $VENV (it does not fit this system any more)"
    rm -rf "$VENV"
    make_venv "$VENV"
}

# make_venv DIR: a new venv in DIR; on a Pi it sees apt's packages (picamera2).
make_venv() {
    local args=()
    if is_pi; then args+=(--system-site-packages); fi
    say "creating $1${args[*]:+ (${args[*]}, for picamera2)}"
    install -d -m 0755 "$(dirname "$1")"
    python3 -m venv "${args[@]}" "$1"
}

# The pin that keeps pip on apt's numpy (picamera2 and simplejpeg are built against it; numpy 2
# from pip would break them). A system numpy that cannot be imported is an error with its reason:
# skipping the pin would let pip install numpy 2 behind the technician's back.
numpy_constraint() {
    local out
    if ! out="$(python3 -c 'import numpy; print("numpy==" + numpy.__version__)' 2>&1)"; then
        die "the system numpy (apt's python3-numpy, which picamera2 needs) cannot be imported: ${out##*$'\n'}
  fix it first, e.g.: sudo apt-get install --reinstall python3-numpy python3-picamera2"
    fi
    # Warnings on stderr may come first: the pin is the last line.
    out="${out##*$'\n'}"
    case "$out" in
        numpy==1.*)
            # OpenCV wheels from 4.12 on need numpy 2: without this pip downloads each of them
            # (five, about 175 MB on aarch64) before it settles on 4.11.
            printf '%s\nopencv-python-headless<4.12\n' "$out" ;;
        numpy==[0-9]*) printf '%s\n' "$out" ;;
        *) die "could not read the system numpy's version (got: $out)" ;;
    esac
}

# The pip constraints of this machine: on a Pi the venv sees apt's numpy, so pin it, and the OpenCV
# releases built for it; elsewhere none.
pip_constraints() {
    if is_pi; then numpy_constraint; fi
}

# pip builds in the source folder (build/, *.egg-info): build from a copy, so that the checkout
# stays untouched by root and stale build files never end up in the install.
install_package() {
    local stage
    stage="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand now: $stage is local
    trap "rm -rf '$stage'" EXIT
    tar -C "$here" --exclude='./.*' --exclude=./build --exclude=./dist --exclude='*.egg-info' \
        --exclude=__pycache__ -cf - . | tar -C "$stage" -xf -
    pip_constraints >"$stage/constraints.txt"
    # Without --upgrade: dependencies already satisfied stay as they are.
    "$VENV/bin/python" -m pip install --disable-pip-version-check \
        -c "$stage/constraints.txt" -r "$stage/requirements.txt"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps --force-reinstall "$stage"
    rm -rf "$stage"
    trap - EXIT
    # Technicians type `kiosk status`; /usr/local/bin is on everyone's PATH, the venv is not.
    ln -sfn "$VENV/bin/kiosk" "$COMMAND_LINK"
}

install_config() {
    install -d -m 0755 -o root -g root "$ETC_DIR"
    if [ -e "$CONFIG" ]; then
        say "keeping $CONFIG"
    else
        say "installing $CONFIG (the example, with api.token_file = \"$TOKEN\")"
        sed "s|^token_file = \"\"|token_file = \"$TOKEN\"|" "$here/config/kiosk.toml" >"$CONFIG.new"
        grep -q "^token_file = \"$TOKEN\"" "$CONFIG.new" \
            || say "warning: could not set api.token_file in $CONFIG: set it to \"$TOKEN\" yourself"
        chmod 0640 "$CONFIG.new"
        mv "$CONFIG.new" "$CONFIG"
    fi
    # Technicians read the config (their commands load it), unless it holds the token itself.
    if grep -Eq '^[[:space:]]*token[[:space:]]*=[[:space:]]*"[^"]' "$CONFIG"; then
        say "warning: $CONFIG holds api.token: kept from $TECH_GROUP; move the token to $TOKEN (api.token_file)"
        chown root:"$USER_NAME" "$CONFIG"
    else
        chown root:"$TECH_GROUP" "$CONFIG"
    fi
    # The token is a secret: root writes it, the kiosk group (the service) reads it, nobody else.
    [ -e "$TOKEN" ] || { say "creating an empty $TOKEN"; : >"$TOKEN"; }
    chown root:"$USER_NAME" "$TOKEN"
    chmod 0640 "$TOKEN"
    # The outbox: the daemon writes, technicians read (the unit's StateDirectory= keeps it so).
    install -d -m 0750 -o "$USER_NAME" -g "$TECH_GROUP" "$STATE_DIR"
    chgrp -R "$TECH_GROUP" "$STATE_DIR"
}

install_unit() {
    say "installing $UNIT"
    install -m 0644 "$here/systemd/kiosk.service" "$UNIT"
    if systemd_running; then systemctl daemon-reload; fi
}

# --usb-keyboard: the unit that creates the USB keyboard gadget at boot, enabled, and created now
# when systemd runs. A machine that cannot be a USB keyboard (no device controller: the overlay
# line is missing, or a Pi 3) is said in a warning with what to do; the install goes on.
install_gadget_unit() {
    say "installing $GADGET_UNIT"
    install -m 0644 "$here/systemd/kiosk-usb-keyboard.service" "$GADGET_UNIT"
    command -v systemctl >/dev/null || return 0
    if systemd_running; then systemctl daemon-reload; fi
    systemctl enable --quiet kiosk-usb-keyboard
    local missing line
    if ! missing="$("$VENV/bin/python" -m device.outputs.pos.gadget check 2>&1)"; then
        say "warning: this machine is no USB keyboard yet (the unit fails at boot until it is):"
        while IFS= read -r line; do say "  $line"; done <<<"$missing"
        return 0
    fi
    if systemd_running; then
        systemctl restart kiosk-usb-keyboard || die "kiosk-usb-keyboard.service failed: journalctl -u kiosk-usb-keyboard"
    fi
}

# One config key (section.key) from the config file, or nothing.
config_value() {
    "$VENV/bin/python" - "$CONFIG" "$1" <<'EOF'
import sys, tomllib
section, key = sys.argv[2].split(".")
with open(sys.argv[1], "rb") as f:
    print(tomllib.load(f).get(section, {}).get(key, ""))
EOF
}

# Prints what is still to be filled in (nothing when the kiosk can start).
config_todo() {
    local check token_file
    # As the service's user: the check then also proves that it can read the file.
    if ! check="$(runuser -u "$USER_NAME" -- "$VENV/bin/kiosk" config check --config "$CONFIG" 2>&1)"; then
        printf '  - fix %s: %s\n' "$CONFIG" "$check"
        return 0
    fi
    [ -n "$(config_value api.url)" ] \
        || printf '  - set api.url in %s (the central, e.g. https://central.example.net)\n' "$CONFIG"
    token_file="$(config_value api.token_file)"
    if [ -z "$(config_value api.token)" ]; then
        if [ -z "$token_file" ]; then
            printf '  - set api.token_file = "%s" in %s\n' "$TOKEN" "$CONFIG"
        elif [ ! -s "$token_file" ]; then
            printf '  - put this kiosk'\''s token for the central into %s (one line)\n' "$token_file"
        elif ! runuser -u "$USER_NAME" -- test -r "$token_file"; then
            printf '  - let the service read %s: sudo chown root:%s %s && sudo chmod 0640 %s\n' \
                "$token_file" "$USER_NAME" "$token_file" "$token_file"
        fi
    fi
}

start_service() {
    local todo
    todo="$(config_todo)"
    if [ -n "$todo" ]; then
        say "installed, not started yet. To finish:"
        printf '%s\n' "$todo"
        printf '  - check: sudo kiosk config check --config %s\n' "$CONFIG"
        printf '  - start it (now and at every boot): sudo systemctl enable --now kiosk\n'
        return 0
    fi
    if ! command -v systemctl >/dev/null; then
        say "installed; systemd is not installed here, so nothing starts the kiosk"
        return 0
    fi
    systemctl enable --quiet kiosk
    if ! systemd_running; then
        say "installed and enabled; systemd is not running here (chroot or image build): it starts at boot"
        return 0
    fi
    if systemctl is-active --quiet kiosk; then
        say "restarting kiosk.service (upgrade)"
        systemctl restart kiosk || die "kiosk.service did not come back: journalctl -u kiosk -n 50"
    else
        say "starting kiosk.service"
        systemctl start kiosk || die "kiosk.service did not start: journalctl -u kiosk -n 50"
    fi
    say "running: kiosk status   (logs: journalctl -u kiosk)"
}

# What the kiosk needs from apt, one a line: picamera2 for CSI cameras and lgpio for gpiozero on a
# Pi 5 (pip's gpiozero does not bring it) only on a Pi.
system_packages() {
    printf '%s\n' python3 python3-venv libzbar0
    if is_pi; then printf '%s\n' python3-picamera2 python3-lgpio; fi
}

# $1: yes to also install the USB keyboard gadget's unit (--usb-keyboard).
install_system() {
    local usb_keyboard="${1:-no}" again="$0"
    if [ "$usb_keyboard" = yes ]; then again="$0 --usb-keyboard"; fi
    need_root "$again"
    warn_if_untested_os
    local packages=()
    mapfile -t packages < <(system_packages)
    STEPS=8
    if [ "$usb_keyboard" = yes ]; then STEPS=9; fi
    run_step "system packages (apt: ${packages[*]})" install_system_packages "${packages[@]}"
    run_step "python 3.11 with venv" need_python
    run_step "the $USER_NAME user and groups" ensure_user
    run_step "virtual environment $VENV" ensure_venv
    run_step "python packages into $VENV (about 30 s)" install_package
    run_step "config and token in $ETC_DIR, outbox folder $STATE_DIR" install_config
    run_step "systemd unit $UNIT" install_unit
    if [ "$usb_keyboard" = yes ]; then
        run_step "USB keyboard gadget for the POS, $GADGET_UNIT" install_gadget_unit
    fi
    steps_done
    say "[$STEPS/$STEPS] start: installed $("$VENV/bin/kiosk" --version 2>&1)"
    start_service
}

uninstall_system() {
    local purge="$1"
    need_root "$0 --uninstall"
    if command -v systemctl >/dev/null; then
        if systemd_running; then
            systemctl disable --now --quiet kiosk 2>/dev/null || true
            # Stopping it removes the gadget: the POS sees the keyboard unplugged.
            systemctl disable --now --quiet kiosk-usb-keyboard 2>/dev/null || true
        else
            systemctl disable --quiet kiosk 2>/dev/null || true
            systemctl disable --quiet kiosk-usb-keyboard 2>/dev/null || true
        fi
    fi
    say "removing $UNIT and $OPT_DIR"
    rm -f "$UNIT" "$GADGET_UNIT"
    if [ "$(readlink "$COMMAND_LINK" 2>/dev/null)" = "$VENV/bin/kiosk" ]; then rm -f "$COMMAND_LINK"; fi
    rm -rf "$OPT_DIR"
    if systemd_running; then
        systemctl daemon-reload
        systemctl reset-failed kiosk 2>/dev/null || true
    fi
    if [ "$purge" = yes ]; then
        say "purging $ETC_DIR, $STATE_DIR (the outbox) and the user $USER_NAME"
        rm -rf "$ETC_DIR" "$STATE_DIR" "$UNIT.d"
        if id -u "$USER_NAME" >/dev/null 2>&1; then userdel "$USER_NAME"; fi
        if getent group "$USER_NAME" >/dev/null; then groupdel "$USER_NAME"; fi
        if getent group "$TECH_GROUP" >/dev/null; then groupdel "$TECH_GROUP"; fi
        say "kept the gpio group (other software may use it)"
    else
        say "kept $ETC_DIR (config, token), $STATE_DIR (the outbox) and the user $USER_NAME;" \
            "--uninstall --purge removes them"
    fi
    say "uninstalled"
}

# --- Releases side by side (--release, --switch; Ansible's role uses them, docs/ANSIBLE.md) -----

# The version in a kiosk wheel's name: counter_kiosk-0.1.0+g1a2b3c4-py3-none-any.whl -> 0.1.0+g1a2b3c4.
wheel_version() {
    local name="${1##*/}"
    case "$name" in
        counter_kiosk-*-py3-none-any.whl) name="${name#counter_kiosk-}"; printf '%s\n' "${name%%-*}" ;;
        *) die "$1 is no kiosk wheel (counter_kiosk-VERSION-py3-none-any.whl)" ;;
    esac
}

# The releases that are complete (their marker written), one a line.
installed_releases() {
    local marker
    for marker in "$RELEASES"/*/"$RELEASE_MARKER"; do
        [ -e "$marker" ] || continue
        marker="${marker%/*}"
        printf '%s\n' "${marker##*/}"
    done
}

# The release the service runs (the one $VENV links to), or nothing (a plain install, none yet).
current_release() {
    local target
    [ -L "$VENV" ] || return 0
    target="$(readlink "$VENV")"
    target="${target%/venv}"
    printf '%s\n' "${target##*/}"
}

# The kiosk of wheel $1 into $RELEASES/$3, its dependencies from folder $2 only (no index: a Pi on
# a slow link downloads nothing). The release keeps the installer it came with (this script, the
# units, the example config) for --switch. The marker comes last: a release without one is half
# made (pip failed, the power went) and is made again.
install_release_venv() {
    local wheel="$1" wheelhouse="$2" version="$3" dir="$RELEASES/$3"
    if [ -e "$dir/$RELEASE_MARKER" ]; then
        say "release $version is installed already"
        return 0
    fi
    rm -rf "$dir"
    make_venv "$dir/venv"
    pip_constraints >"$dir/constraints.txt"
    "$dir/venv/bin/python" -m pip install --disable-pip-version-check --no-index --find-links "$wheelhouse" \
        -c "$dir/constraints.txt" "$wheel"
    install -d -m 0755 "$dir/installer/systemd" "$dir/installer/config"
    install -m 0755 "$here/install.sh" "$dir/installer/install.sh"
    install -m 0644 "$here"/systemd/*.service "$dir/installer/systemd/"
    install -m 0644 "$here/config/kiosk.toml" "$dir/installer/config/kiosk.toml"
    local installed
    installed="$("$dir/venv/bin/kiosk" --version)"
    [ "$installed" = "kiosk $version" ] || die "the wheel's kiosk says \"$installed\", its name says $version"
    date -u +%FT%TZ >"$dir/$RELEASE_MARKER"
}

# --release WHEEL WHEELHOUSE: the system parts as the plain install has them (packages, users,
# config, unit), and the kiosk as a release beside the others. It does not switch to it.
install_release() {
    local wheel="$1" wheelhouse="$2" version packages=()
    need_root "$0 --release $wheel $wheelhouse"
    [ -f "$wheel" ] || die "no such wheel: $wheel"
    [ -d "$wheelhouse" ] || die "no such folder of wheels: $wheelhouse"
    version="$(wheel_version "$wheel")"
    warn_if_untested_os
    mapfile -t packages < <(system_packages)
    STEPS=6
    run_step "system packages (apt: ${packages[*]})" install_system_packages "${packages[@]}"
    run_step "python 3.11 with venv" need_python
    run_step "the $USER_NAME user and groups" ensure_user
    run_step "release $version into $RELEASES/$version (wheels from $wheelhouse, no network)" \
        install_release_venv "$wheel" "$wheelhouse" "$version"
    run_step "config and token in $ETC_DIR, outbox folder $STATE_DIR" install_config
    run_step "systemd unit $UNIT" install_unit
    steps_done
    say "installed release $version; run it: sudo $RELEASES/$version/installer/install.sh --switch $version"
}

# --switch VERSION: the service runs release VERSION from now on. $VENV becomes a link to its venv,
# replaced in one rename (a start in between finds the old release or the new one, never none); a
# running service restarts into it. A plain install's venv folder goes: the releases replace it.
switch_release() {
    local version="$1" current
    need_root "$0 --switch $version"
    [ -e "$RELEASES/$version/$RELEASE_MARKER" ] \
        || die "release $version is not installed in $RELEASES (installed: $(installed_releases | tr '\n' ' '))"
    current="$(current_release)"
    if [ "$current" = "$version" ]; then
        say "release $version runs already"
        return 0
    fi
    if [ -d "$VENV" ] && [ ! -L "$VENV" ]; then
        say "removing the plain install's $VENV (the releases replace it)"
        rm -rf "$VENV"
    fi
    ln -sfn "$RELEASES/$version/venv" "$VENV.switch"
    mv -T "$VENV.switch" "$VENV"
    ln -sfn "$VENV/bin/kiosk" "$COMMAND_LINK"
    say "switched to release $version (was ${current:-none})"
    if systemd_running && systemctl is-active --quiet kiosk; then
        say "restarting kiosk.service"
        systemctl restart kiosk || die "kiosk.service did not come back on release $version: journalctl -u kiosk -n 50"
    fi
}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

# Sourced (tests: `source install.sh` to call one function), it only defines the functions.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then return 0; fi

case "${1:-}:${2:-}" in
    --dev:) install_dev ;;
    :) install_system ;;
    --usb-keyboard:) install_system yes ;;
    --release:*) [ "$#" -eq 3 ] || die "usage: $0 --release WHEEL WHEELHOUSE"; install_release "$2" "$3" ;;
    --switch:?*) [ "$#" -eq 2 ] || die "usage: $0 --switch VERSION"; switch_release "$2" ;;
    --constraints:) pip_constraints ;;
    --uninstall:) uninstall_system no ;;
    --uninstall:--purge | --purge:--uninstall) uninstall_system yes ;;
    -h: | --help:) usage ;;
    *) usage >&2; die "unknown arguments: $*" ;;
esac
