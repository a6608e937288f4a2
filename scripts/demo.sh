#!/usr/bin/env bash
# The main demo of the README: builds ssi in release mode and runs the guided tour on a
# 3-node testbed (pass --netns to put each node in its own network namespace; root only).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --workspace --bins
exec ./target/release/ssi-testbed demo "$@"
