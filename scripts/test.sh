#!/usr/bin/env bash
# The test command of the README: installs test dependencies, builds every binary (the
# end-to-end tests start real ssid daemons), then runs all unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --workspace --bins
cargo test --workspace "$@"
