#!/usr/bin/env bash
# Installs the ssi Debian package with `dpkg -i` into a copy-on-write view of this machine and
# uses it as an operator would; nothing changes outside (run as root):
#
#   packaging/tests/install-in-overlay.sh target/debian/ssi_0.1.0-1_amd64.deb
#
# The view is an overlay of / (written changes go to a tmpfs) mounted in a mount namespace of
# this script's own, with /proc, /sys and /dev bound in; dpkg -i runs chrooted there, with
# this machine's own dpkg database and libraries. The checks:
#   - the package installs, its files are in place, /etc/ssi/ssid.toml is a conffile;
#   - systemd-analyze verify accepts the installed unit (its binaries and man pages exist);
#   - two ssid start from the installed files with the unit's own ExecStart line (flags added
#     for what differs between two nodes on one machine); the installed ssi sees both and
#     runs a program;
#   - the unit's own ExecStop lines stop one node, which leaves gracefully ("left", exit 0),
#     and return only once it is gone.
# What cannot run here: systemd as PID 1 (this machine's init is another program), so the
# unit is verified, not started by systemd; Restart=, KillMode= and the capability bounding
# set are not exercised.
set -euo pipefail

deb=$(realpath "${1:?usage: install-in-overlay.sh PACKAGE.deb}")
[ "$(id -u)" -eq 0 ] || { echo "install-in-overlay: needs root" >&2; exit 1; }
if [ -z "${SSI_INSTALL_TEST_NS:-}" ]; then
  # a private mount namespace: every mount below disappears with this script
  exec env SSI_INSTALL_TEST_NS=1 unshare --mount --propagation private "$0" "$@"
fi

checks=0
ok() { checks=$((checks + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  umount -R "$work" || true
  rmdir "$work" || true
}
trap cleanup EXIT

mount -t tmpfs tmpfs "$work"
mkdir "$work/upper" "$work/work" "$work/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/work" "$work/root"
R=$work/root
for d in proc sys dev; do mount --rbind "/$d" "$R/$d"; done
in_root() { chroot "$R" "$@"; }

# --- install
cp "$deb" "$R/tmp/ssi.deb"
in_root dpkg -i /tmp/ssi.deb >/dev/null 2>"$work/dpkg.err"
# the maintainer scripts say nothing when they work (a broken line would only print here)
[ ! -s "$work/dpkg.err" ] || fail "dpkg -i wrote errors: $(cat "$work/dpkg.err")"
in_root dpkg -s ssi | grep -q '^Status: install ok installed' || fail "dpkg -s ssi: not installed"
ok "dpkg -i installed $(basename "$deb")"
for f in /usr/bin/ssid /usr/bin/ssi /usr/bin/ssi-testbed /etc/ssi/ssid.toml \
         /lib/systemd/system/ssid.service /usr/share/man/man8/ssid.8.gz \
         /usr/share/man/man1/ssi.1.gz /usr/share/man/man1/ssi-top.1.gz \
         /usr/share/bash-completion/completions/ssi /usr/share/zsh/vendor-completions/_ssi \
         /usr/share/fish/vendor_completions.d/ssi.fish /usr/share/doc/ssi/OPERATIONS.md; do
  [ -e "$R$f" ] || fail "$f is not installed"
done
ok "binaries, unit, config, manual pages, completions and docs in place"
in_root dpkg-query --control-show ssi conffiles | grep -q '^/etc/ssi/ssid.toml$' \
  || fail "/etc/ssi/ssid.toml is not a conffile"
ok "/etc/ssi/ssid.toml is a conffile"
[ "$(in_root man -w ssid)" = /usr/share/man/man8/ssid.8.gz ] || fail "man -w ssid"
LC_ALL=C in_root man ssi-kill 2>/dev/null | grep -q 'ssi kill -s KILL 4097' || fail "man ssi-kill has no examples"
ok "man finds the pages"
[ ! -e "$R/etc/systemd/system/multi-user.target.wants/ssid.service" ] || fail "ssid enabled on install"
ok "ssid.service not enabled on install"

# --- the unit
unit=$R/lib/systemd/system/ssid.service
in_root systemd-analyze verify ssid.service || fail "systemd-analyze verify ssid.service"
ok "systemd-analyze verify ssid.service"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
mapfile -t exec_stop < <(sed -n 's/^ExecStop=//p' "$unit")
[ "${#exec_stop[@]}" -ge 1 ] || fail "no ExecStop in the unit"

# --- two nodes from the installed files, on loopback addresses of their own
a=$((RANDOM % 254 + 1)); b=$((RANDOM % 256))
addr1=127.$a.$b.1:7700; addr2=127.$a.$b.2:7700
in_root ssid --gen-key /etc/ssi/cluster.key
# the cluster CA (kept off the nodes in real life) and a certificate for each node
in_root ssid --init-ca /root/ssi-ca >/dev/null
in_root ssid --issue-cert /etc/ssi --ca /root/ssi-ca --name one >/dev/null
in_root ssid --issue-cert /etc/ssi/two --ca /root/ssi-ca --name two >/dev/null
in_root cp /root/ssi-ca/ca.pem /etc/ssi/ca.pem
# chroot itself in the background (not a function, which would run in a subshell): its pid is
# ssid's, the $MAINPID of the unit; its output goes to a log, not to this script's stdout
# shellcheck disable=SC2086  # ExecStart is a command line, split as systemd splits it
chroot "$R" $exec_start --id 1 --name one --listen "$addr1" --advertise "$addr1" \
  >"$work/n1.log" 2>&1 </dev/null & pids+=($!)
# shellcheck disable=SC2086
chroot "$R" $exec_start --id 2 --name two --listen "$addr2" --advertise "$addr2" \
  --seed "$addr1" --state-dir /var/lib/ssi-two \
  --node-cert-file /etc/ssi/two/node.pem --node-key-file /etc/ssi/two/node.key >"$work/n2.log" 2>&1 </dev/null & pids+=($!)

# state of node $1 as node 1 sees it (through the default socket /var/lib/ssi/ssid.sock)
state_of() {
  in_root ssi nodes --json 2>>"$work/ssi.log" | python3 -c '
import json, sys
rows = [n for n in json.load(sys.stdin) if n["id"] == int(sys.argv[1])]
print(rows[0]["state"] if rows else "unknown")' "$1" 2>/dev/null || echo unreachable
}
wait_for() { # wait_for SECONDS COMMAND...: polls every 0.1 s
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do [ "$SECONDS" -lt "$deadline" ] || return 1; sleep 0.1; done
}
both_alive() { [ "$(state_of 1)" = alive ] && [ "$(state_of 2)" = alive ]; }
wait_for 30 both_alive || {
  tail -n 5 "$work/n1.log" "$work/n2.log" "$work/ssi.log" >&2
  fail "the two nodes never saw each other"
}
ok "two ssid started with the unit's ExecStart see each other"
out=$(in_root ssi run --node 2 -- echo hello from node two)
[ "$out" = "hello from node two" ] || fail "ssi run --node 2 printed: $out"
ok "the installed ssi runs a program on node 2"

# --- stop node 2 the way systemd would: the unit's ExecStop lines with $MAINPID
main=${pids[1]}
for line in "${exec_stop[@]}"; do
  # shellcheck disable=SC2086
  in_root timeout 30 ${line//\$MAINPID/$main} || fail "ExecStop line failed: $line"
done
kill -0 "$main" 2>/dev/null && fail "ssid still runs after the ExecStop lines returned"
status=0; wait "$main" || status=$?
[ "$status" -eq 0 ] || fail "ssid exited $status after ExecStop"
ok "ExecStop returned after ssid exited with 0"
left() { [ "$(state_of 2)" = left ]; }
wait_for 10 left || fail "node 1 sees node 2 as $(state_of 2), not left"
ok "node 1 sees node 2 as left (a graceful leave)"
echo "install-in-overlay: $checks passed, 0 failed"
