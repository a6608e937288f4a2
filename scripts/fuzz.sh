#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets of fuzz/ (cargo-fuzz, nightly Rust).
#
#   scripts/fuzz.sh TARGET SECONDS     one target for SECONDS
#   scripts/fuzz.sh --all SECONDS      every target, SECONDS each (CI: --all 6)
#   scripts/fuzz.sh --list             the targets
#
# The seed corpus is fuzz/corpus/TARGET (in the repo, read only); new inputs found go to
# fuzz/work/TARGET (ignored by git, kept between runs); a
# crash leaves its input in fuzz/artifacts/TARGET and fails the run. Each run prints the
# target's executions (libFuzzer's "Done N runs" line). Needs `cargo install cargo-fuzz` and a
# nightly toolchain (`rustup toolchain install nightly`); both are installed if missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup run nightly true 2>/dev/null || rustup toolchain install nightly --profile minimal

targets() { sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^ssi-fuzz$'; }

# No sanitizer: the decoders are safe Rust (a sanitizer finds nothing more there and halves
# the speed); debug assertions stay on, so an arithmetic overflow is a crash.
run() {
  local target=$1 secs=$2
  mkdir -p "corpus/$target" "work/$target"
  cargo +nightly fuzz run --sanitizer none --debug-assertions "$target" "work/$target" "corpus/$target" -- \
    -max_total_time="$secs" -max_len=262144 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    2>&1 | tee "/tmp/fuzz-$target.log" | grep -E '^(Done|stat::number_of_executed_units|==|SUMMARY)|panicked|deadly signal' || true
  if grep -qE 'deadly signal|panicked|ERROR: libFuzzer' "/tmp/fuzz-$target.log"; then
    echo "fuzz: $target crashed (input in fuzz/artifacts/$target, log /tmp/fuzz-$target.log)" >&2
    return 1
  fi
}

case "${1:-}" in
  --list) targets ;;
  --all)
    secs=${2:?seconds per target}
    cargo +nightly fuzz build --sanitizer none --debug-assertions
    failed=0
    for t in $(targets); do run "$t" "$secs" || failed=1; done
    exit $failed ;;
  "") echo "usage: scripts/fuzz.sh TARGET SECONDS | --all SECONDS | --list" >&2; exit 2 ;;
  *) run "$1" "${2:?seconds}" ;;
esac
