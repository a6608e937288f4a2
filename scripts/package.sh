#!/usr/bin/env bash
# Builds the Debian package `ssi` (ssid, ssi, ssi-testbed, the systemd unit ssid.service, the
# default /etc/ssi/ssid.toml, manual pages and bash/zsh/fish completions) with cargo-deb, which
# it installs first when missing. See docs/OPERATIONS.md.
#
#   scripts/package.sh                  release build; prints the path of the .deb
#                                       (target/debian/ssi_<version>-1_<arch>.deb)
#   scripts/package.sh --debug OUT_DIR  packs the debug binaries that `cargo build --workspace
#                                       --bins` already built, into OUT_DIR (for the install
#                                       test: no release build, light compression)
#   scripts/package.sh --tools          only installs cargo-deb (scripts/setup.sh does this)
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
BINS=(ssid ssi ssi-testbed)

if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$CARGO_DEB_VERSION" ]; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi
command -v dpkg-shlibdeps >/dev/null || {
  echo "package: dpkg-shlibdeps not found (apt-get install dpkg-dev)" >&2
  exit 1
}

case "${1:-}" in
  --tools)
    ;;
  --debug)
    out=${2:?usage: scripts/package.sh --debug OUT_DIR}
    mkdir -p "$out"
    # cargo-deb takes binaries from <target dir>/release; lay the debug ones out as such in a
    # target dir of their own (copies: cargo-deb strips what it packs)
    target=$(mktemp -d)
    trap 'rm -rf "$target"' EXIT
    mkdir -p "$target/release"
    for b in "${BINS[@]}" ssi-manuals; do
      [ -x "target/debug/$b" ] || { echo "package: target/debug/$b missing: cargo build --workspace --bins" >&2; exit 1; }
      cp "target/debug/$b" "$target/release/"
    done
    "$target/release/ssi-manuals" "$target/release/manuals" >/dev/null
    gzip -9n "$target/release/manuals/man"/man*/*
    CARGO_TARGET_DIR="$target" cargo deb -p ssi-packaging --no-build --fast --quiet \
      --strip --no-separate-debug-symbols --output "$out"
    ;;
  "")
    cargo build --release --quiet -p ssi-node -p ssi-cli -p testbed -p ssi-packaging --bins
    rm -rf target/release/manuals
    target/release/ssi-manuals target/release/manuals >/dev/null
    gzip -9n target/release/manuals/man/man*/*
    cargo deb -p ssi-packaging --no-build --quiet --compress-debug-symbols=zlib
    ;;
  *)
    echo "usage: scripts/package.sh [--debug OUT_DIR | --tools]" >&2
    exit 2
    ;;
esac
