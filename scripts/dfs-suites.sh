#!/usr/bin/env bash
# Outside suites against the shared file system (docs/DFS.md), with this machine's ext4 as the
# reference in the same run: pjdfstest (POSIX conformance, the maintained Rust rewrite) and fsx
# (random reads, writes, truncations and mmaps checked against a model of the file).
#
#   scripts/dfs-suites.sh            # the full run: every pjdfstest test, fsx 100,000 operations
#   scripts/dfs-suites.sh --quick    # a bounded subset: pjdfstest's open, chmod, chown, unlink,
#                                    # rename, mkdir tests, fsx 5,000 operations
#
# Idempotent: installs only what is missing (Debian's acl and libacl1-dev, the users `tests`
# and `pjdfstest`, `cargo install` of pjdfstest 0.2.2 and fsx 0.3.2), builds the binaries,
# boots a 3-node testbed serving the DFS in a temporary directory, runs each suite on node 1's
# mount and on an ext4 directory, prints one line of counts per suite and file system, and
# tears everything down, also on failure. Root only (FUSE mounts, switching users). Exits 1 if
# a suite fails on the DFS where it passes on ext4.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "dfs-suites: needs root (FUSE mounts, switching users)" >&2; exit 1; }

missing=()
for p in acl libacl1-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "dfs-suites: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
for u in tests pjdfstest; do
  id "$u" >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$u"
done
export PATH="$HOME/.cargo/bin:$PATH"
command -v pjdfstest >/dev/null || cargo install --locked pjdfstest@0.2.2
command -v fsx >/dev/null || cargo install --locked fsx@0.3.2
cargo build --bins -p ssi-node -p ssi-cli -p testbed
bin=$PWD/target/debug

work=$(mktemp -d /var/tmp/dfs-suites.XXXXXX)
chmod 755 "$work"     # the users pjdfstest switches to must reach the directories below
down() {
  "$bin/ssi-testbed" down --dir "$work/tb" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap down EXIT
"$bin/ssi-testbed" up --nodes 3 --dir "$work/tb" --dfs >/dev/null
mnt=$work/tb/n1/mnt
deadline=$((SECONDS + 120))
until SSI_SOCKET=$work/tb/n1/ssid.sock "$bin/ssi" dfs status --json 2>/dev/null \
    | grep -q '"leader":[0-9]' && ls "$mnt" >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "dfs-suites: the DFS did not become ready in 120 s" >&2; exit 1; }
  sleep 1
done

cat >"$work/pjdfstest.toml" <<'EOF'
[features]
posix_fallocate = {}
rename_ctime = {}
utime_now = {}
utimensat = {}

[settings]
naptime = 0.01
EOF

patterns=()
[ $quick -eq 1 ] && patterns=(open chmod chown unlink rename mkdir)
fsx_ops=100000
[ $quick -eq 1 ] && fsx_ops=5000

# pjdfstest in directory $2 (named $1): prints its summary ("N failed, N skipped, N passed")
# and keeps the whole output in $work/pjdfstest.NAME.
pjd() {
  mkdir -p "$2" && chmod 755 "$2"
  local out=$work/pjdfstest.$1
  (cd "$2" && pjdfstest -c "$work/pjdfstest.toml" -p "$2" "${patterns[@]}" >"$out" 2>&1) || true
  local summary
  summary=$(grep '^Summary:' "$out" || echo "Summary: no summary (the run broke off)")
  echo "pjdfstest $1: ${summary#Summary: } ($out)"
  local failed
  failed=$(echo "$summary" | sed -n 's/^Summary: \([0-9]*\) failed.*/\1/p')
  echo "${failed:-9999}" >"$work/pjd-failed.$1"
}

# fsx on a file in directory $2 (named $1): prints "fsx NAME: N operations ok|FAILED".
fsxrun() {
  mkdir -p "$2"
  local out=$work/fsx.$1
  if fsx -N "$fsx_ops" -S 1 -P "$2" "$2/fsx.file" >"$out" 2>&1; then
    echo "fsx $1: $fsx_ops operations ok"
    echo 0 >"$work/fsx-failed.$1"
  else
    echo "fsx $1: FAILED after $(grep -c . "$out") lines of output ($out):"
    tail -5 "$out"
    echo 1 >"$work/fsx-failed.$1"
  fi
}

pjd ext4 "$work/ext4/pjd"
pjd dfs "$mnt/pjd"
fsxrun ext4 "$work/ext4/fsx"
fsxrun dfs "$mnt/fsx"

worse=0
[ "$(cat "$work/pjd-failed.dfs")" -gt "$(cat "$work/pjd-failed.ext4")" ] && worse=1
[ "$(cat "$work/fsx-failed.dfs")" -gt "$(cat "$work/fsx-failed.ext4")" ] && worse=1
if [ $worse -eq 1 ]; then
  mkdir -p target/dfs-suites && cp "$work"/pjdfstest.* "$work"/fsx.* target/dfs-suites/ 2>/dev/null || true
  echo "dfs-suites: the DFS fails where ext4 passes (outputs kept in target/dfs-suites/)"
  exit 1
fi
