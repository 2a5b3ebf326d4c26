#!/usr/bin/env bash
# Install the Debian packages listed in the given list files that are missing (needs root or sudo).
# Usage: scripts/install-system-packages.sh [LIST...]   (default: apt-packages.txt apt-packages-test.txt;
# the Docker images pass apt-packages.txt alone). Paths are relative to the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
lists=("$@")
[ ${#lists[@]} -eq 0 ] && lists=(apt-packages.txt apt-packages-test.txt)
mapfile -t wanted < <(cat "${lists[@]}" | grep -v '^\s*#' | sed '/^\s*$/d')
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "missing packages (${missing[*]}) and no root or sudo: install them and re-run" >&2; exit 1
  fi
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
