//! Network namespaces for the testbed: one per node, on one bridge, addresses in 10.77.0.0/16.
//!
//! The bridge `ssibr0` carries 10.77.0.254/16 in the root namespace, so that the route to
//! every testbed address is local: on these machines the default route leads off the machine,
//! and no packet for 10.77.x may take it. Before any node starts, `ip route get` must confirm
//! that the node's address goes through the bridge; otherwise the testbed refuses to start.
//!
//! Several testbeds can run at once: each takes a slot S (1..=250) and gives node N the
//! address 10.77.S.N and the namespace `ssi{S}n{N}`. The namespaces themselves are the
//! registry of slots in use; slot allocation and bridge creation happen under a lock file.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

/// The bridge all testbed namespaces hang on.
pub const BRIDGE: &str = "ssibr0";
const BRIDGE_ADDR: &str = "10.77.0.254/16";
const LOCK: &str = "/run/ssi-testbed.lock";

/// Runs `ip` with `args`; fails with its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Name of node `n`'s namespace in slot `slot`.
pub fn ns_name(slot: u8, n: usize) -> String {
    format!("ssi{slot}n{n}")
}

/// Address of node `n` in slot `slot`.
pub fn node_addr(slot: u8, n: usize) -> Result<Ipv4Addr> {
    let host = u8::try_from(n)
        .ok()
        .filter(|&h| (1..=250).contains(&h))
        .with_context(|| format!("node {n}: --netns supports nodes 1..=250"))?;
    Ok(Ipv4Addr::new(10, 77, slot, host))
}

fn namespaces() -> Result<Vec<String>> {
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// The host-side veth ends of testbed nodes (`ssi<slot>n<node>h`) in this namespace, with
/// their slots. They can outlive their namespace for a moment: a deleted namespace's devices
/// go away asynchronously.
fn host_links() -> Vec<(String, u8)> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| Some((n.clone(), link_slot(&n)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The slot of a host-side veth end's name.
fn link_slot(link: &str) -> Option<u8> {
    link.strip_suffix('h').and_then(slot_of)
}

fn slot_of(ns: &str) -> Option<u8> {
    let rest = ns.strip_prefix("ssi")?;
    let (slot, node) = rest.split_once('n')?;
    node.parse::<usize>().ok()?;
    slot.parse().ok()
}

fn lock() -> Result<Flock<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .with_context(|| format!("cannot open {LOCK}"))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {LOCK}: {e}"))
}

/// Creates the namespaces of `nodes` nodes in a free slot and returns the slot.
pub fn create(nodes: usize) -> Result<u8> {
    if !nix::unistd::geteuid().is_root() {
        bail!("--netns needs root (network namespaces, veth pairs and a bridge)");
    }
    let _guard = lock()?;
    let mut used: Vec<u8> = namespaces()?.iter().filter_map(|n| slot_of(n)).collect();
    used.extend(host_links().into_iter().map(|(_, slot)| slot));
    let slot = (1..=250u8)
        .find(|s| !used.contains(s))
        .context("all 250 testbed slots are in use (run `ssi-testbed down` on old testbeds)")?;
    ensure_bridge()?;
    let made = (1..=nodes).try_for_each(|n| add_node(slot, n));
    if let Err(e) = made {
        // under the lock already taken: flock is per open file, a second one would wait forever
        remove_slot_locked(slot);
        return Err(e);
    }
    Ok(slot)
}

fn ensure_bridge() -> Result<()> {
    if ip(&["link", "show", BRIDGE]).is_err() {
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
    }
    let addrs = ip(&["-4", "addr", "show", "dev", BRIDGE])?;
    if !addrs.contains(BRIDGE_ADDR) {
        ip(&["addr", "add", BRIDGE_ADDR, "dev", BRIDGE])?;
    }
    ip(&["link", "set", BRIDGE, "up"])?;
    Ok(())
}

fn add_node(slot: u8, n: usize) -> Result<()> {
    let ns = ns_name(slot, n);
    let addr = format!("{}/16", node_addr(slot, n)?);
    let host_if = format!("{ns}h");
    ip(&["netns", "add", &ns])?;
    ip(&[
        "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ])?;
    ip(&["link", "set", &host_if, "master", BRIDGE, "up"])?;
    ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    check_route(node_addr(slot, n)?)
}

/// Refuses an address whose route from the root namespace would leave the machine.
pub fn check_route(addr: Ipv4Addr) -> Result<()> {
    let route = ip(&["route", "get", &addr.to_string()])?;
    if !route
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w == ["dev", BRIDGE])
    {
        bail!(
            "refusing to start: the route to {addr} does not go through {BRIDGE} \
             (`ip route get {addr}` says: {}); packets would leave this machine",
            route.trim()
        );
    }
    Ok(())
}

/// Removes every namespace of `slot`, and the bridge once no testbed uses it.
pub fn remove_slot(slot: u8) {
    let Ok(_guard) = lock() else { return };
    remove_slot_locked(slot);
}

fn remove_slot_locked(slot: u8) {
    // The veth pairs first: deleting one end removes both at once, while a deleted
    // namespace's devices go away later, and the next testbed could find the names taken.
    for (link, _) in host_links().into_iter().filter(|(_, s)| *s == slot) {
        let _ = ip(&["link", "del", &link]);
    }
    let Ok(all) = namespaces() else { return };
    for ns in all.iter().filter(|n| slot_of(n) == Some(slot)) {
        let _ = ip(&["netns", "del", ns]);
    }
    let others = namespaces()
        .map(|v| v.iter().any(|n| slot_of(n).is_some()))
        .unwrap_or(true);
    if !others && Path::new(&format!("/sys/class/net/{BRIDGE}")).exists() {
        let _ = ip(&["link", "del", BRIDGE]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(ns_name(3, 12), "ssi3n12");
        assert_eq!(slot_of("ssi3n12"), Some(3));
        assert_eq!(slot_of("other"), None);
        assert_eq!(slot_of("ssixn1"), None);
        assert_eq!(link_slot("ssi3n12h"), Some(3));
        assert_eq!(link_slot("ssibr0"), None);
        assert_eq!(
            node_addr(3, 12).expect("addr"),
            Ipv4Addr::new(10, 77, 3, 12)
        );
        assert!(node_addr(3, 251).is_err());
    }
}
