//! Private mount namespaces for testbed nodes, so that nodes sharing this machine share no
//! files but the cluster's file system.
//!
//! Each node's daemon starts in a mount namespace of its own (`unshare --mount`, private
//! propagation) where `/tmp`, `/var/tmp` and `/home` are the node's own directories
//! (`DIR/nN/root/...`), the other nodes' directories (their DFS data among them) are hidden
//! under empty tmpfs mounts, and `/mnt` is a tmpfs holding the DFS mount point [`DFS_MOUNT`],
//! the same path on every node. What stays shared with the machine and the other nodes: `/`,
//! `/usr`, `/etc`, `/var` (but `/var/tmp`), `/root`, `/opt`, `/work`, `/proc`, `/sys`, `/dev`,
//! and this testbed's directory (its own node directory, the key, the layout).
//!
//! The namespace ends with the last process in it: a daemon killed with SIGKILL leaves no
//! mount behind on the machine.

use std::path::Path;

/// Where each node of a testbed with private mounts mounts the shared file system.
pub const DFS_MOUNT: &str = "/mnt/ssi";
/// Directories each node gets its own copy of.
const PRIVATE: [&str; 3] = ["/tmp", "/var/tmp", "/home"];

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// A shell script that gives node `n` of the testbed in `dir` (of `nodes` nodes) its private
/// directories, then runs its arguments (`sh -c SCRIPT sh PROGRAM ARGS...`). To be run by
/// `unshare --mount --propagation private`. `bin_dir` (where `ssid` is) stays reachable too.
pub fn script(dir: &Path, bin_dir: &Path, n: usize, nodes: usize) -> String {
    let root = dir.join(format!("n{n}")).join("root");
    let mut s = String::from("set -e\n");
    for p in PRIVATE {
        let own = root.join(p.trim_start_matches('/'));
        s.push_str(&format!("mkdir -p {}\n", quote(&own)));
        // The testbed's directory and the binaries (a checkout under /tmp) may live under a
        // directory about to be replaced: keep them reachable at their paths.
        for kept in [dir, bin_dir] {
            if kept.starts_with(p) {
                let keep = root.join(kept.strip_prefix("/").unwrap_or(kept));
                s.push_str(&format!(
                    "mkdir -p {k}\nmount --bind {d} {k}\n",
                    k = quote(&keep),
                    d = quote(kept)
                ));
            }
        }
    }
    for p in PRIVATE {
        let own = root.join(p.trim_start_matches('/'));
        // recursive: the testbed directory bound inside comes along
        s.push_str(&format!("mount --rbind {} {p}\n", quote(&own)));
    }
    for m in (1..=nodes).filter(|m| *m != n) {
        let other = dir.join(format!("n{m}"));
        s.push_str(&format!(
            "mkdir -p {o}\nmount -t tmpfs -o size=64k,mode=700 hidden {o}\n",
            o = quote(&other)
        ));
    }
    s.push_str(&format!(
        "mount -t tmpfs -o mode=755 ssi-mnt /mnt\nmkdir -p {DFS_MOUNT}\nexec \"$@\"\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_testbed_dir_stays_reachable_and_other_nodes_are_hidden() {
        let s = script(
            Path::new("/tmp/x/tb"),
            Path::new("/tmp/src/target/debug"),
            2,
            3,
        );
        assert!(
            s.contains(
                "mount --bind '/tmp/src/target/debug' '/tmp/x/tb/n2/root/tmp/src/target/debug'"
            ),
            "{s}"
        );
        assert!(
            s.contains("mount --bind '/tmp/x/tb' '/tmp/x/tb/n2/root/tmp/x/tb'"),
            "{s}"
        );
        assert!(
            s.contains("mount --rbind '/tmp/x/tb/n2/root/home' /home"),
            "{s}"
        );
        assert!(s.contains("hidden '/tmp/x/tb/n1'") && s.contains("hidden '/tmp/x/tb/n3'"));
        assert!(!s.contains("hidden '/tmp/x/tb/n2'"));
        assert!(s.ends_with("exec \"$@\"\n"));
    }
}
