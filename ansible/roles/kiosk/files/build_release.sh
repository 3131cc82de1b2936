#!/usr/bin/env bash
# build_release.sh REPO COMMIT VERSION OUT PYTHON: on the controller, the kiosk of one commit as a
# release: OUT/installer-VERSION/ (install.sh, the units, the example config, requirements.txt and the
# kiosk's wheel) and OUT/installer-VERSION.tar of it. The wheel is built from `git archive`, never
# from a working tree, with VERSION (0.1.0+g<commit>) written into the one place of the version,
# device/__init__.py, so that `kiosk status` shows which commit runs.
set -euo pipefail
repo="$1" commit="$2" version="$3" out="$4" python="$5"
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
git -C "$repo" archive --format=tar "$commit" | tar -x -C "$src"
sed -i "s/^__version__ = .*/__version__ = \"$version\"/" "$src/device/__init__.py"
grep -qx "__version__ = \"$version\"" "$src/device/__init__.py" \
    || { echo "could not write the version into device/__init__.py" >&2; exit 1; }
installer="$out/installer-$version"
rm -rf "$installer"
mkdir -p "$installer/systemd" "$installer/config"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$installer" "$src"
cp "$src/install.sh" "$installer/"
cp "$src"/systemd/*.service "$installer/systemd/"
cp "$src/config/kiosk.toml" "$installer/config/"
cp "$src/requirements.txt" "$installer/"
tar -C "$out" -cf "$out/installer-$version.tar.partial" "installer-$version"
mv "$out/installer-$version.tar.partial" "$out/installer-$version.tar"
