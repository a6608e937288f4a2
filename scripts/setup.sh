#!/usr/bin/env bash
# Installs what building and testing ssi needs on Debian 12, idempotently: only missing packages
# are installed. Run as root (or with sudo available).
set -euo pipefail

# openmpi-bin and libopenmpi-dev: `ssi mpirun` and its end-to-end test (mpirun, orted, mpicc)
# tmux: the end-to-end test of `ssi top` runs it in a tmux pane and reads the screen
# dpkg-dev (dpkg-shlibdeps), man-db, systemd (systemd-analyze): building the Debian package
# (scripts/package.sh) and its install test
# python3-prometheus-client: the end-to-end test of /metrics parses the scrape with its parser
# python3-venv: the grid tests install py-tes (a TES client) into a virtual environment
packages=(iproute2 gcc libc6-dev python3 util-linux openmpi-bin libopenmpi-dev tmux
          dpkg-dev man-db systemd python3-prometheus-client python3-venv)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
# cargo-deb, pinned in package.sh: builds the Debian package (and its install test)
"$(dirname "$0")/package.sh" --tools
