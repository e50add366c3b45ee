#!/usr/bin/env bash
# Install the Debian packages named as arguments when any is missing (as root, with apt-get).
# NAME:COMMAND installs NAME only while COMMAND is not on the PATH (e.g. npm:npm: nodesource's
# nodejs package bundles npm and conflicts with Debian's npm).
set -euo pipefail
missing=()
for spec in "$@"; do
    pkg=${spec%%:*}
    if [ "$pkg" != "$spec" ]; then
        command -v "${spec#*:}" >/dev/null 2>&1 && continue
    fi
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
