#!/usr/bin/env bash
# build_wheelhouse.sh OUT REQUIREMENTS CONSTRAINTS PYTHON PIP-OPTION...: on the controller, the
# wheels of the kiosk's dependencies for the kiosks' CPU and Python (the pip options: --platform,
# --python-version, ...), so that a kiosk installs them with `pip --no-index`. CONSTRAINTS is the
# text `install.sh --constraints` printed on a kiosk (apt's numpy on a Pi). OUT/.complete is
# written last: a wheelhouse without it is made again.
set -euo pipefail
out="$1" requirements="$2" constraints="$3" python="$4"
shift 4
rm -rf "$out"
mkdir -p "$out"
printf '%s\n' "$constraints" >"$out.constraints.txt"
"$python" -m pip download --quiet --disable-pip-version-check --dest "$out" \
    -c "$out.constraints.txt" -r "$requirements" "$@"
rm -f "$out.constraints.txt"
date -u +%FT%TZ >"$out/.complete"
