//! Fault tolerance (`ssi run --ft`): the node hosting a protected tree checkpoints it
//! periodically into the FT directory (on the DFS); when membership declares that node dead,
//! one surviving node claims the next epoch of the tree and restarts it, with the same gpid,
//! from its last complete checkpoint, on a node the placement policy chooses.
//!
//! ```text
//!   host:     keep (one task per tree) --order--> helper (Job::Periodic, keeps the trackers)
//!               | every interval: image img-E-S (incremental) synced, then manifest renamed
//!               | every second: a claim above its epoch? -> fenced: kill its copy, stop
//!   any node: watch (every second) -- decide(view, owner) --> claim epoch-N (O_EXCL)
//!               --> restart_here, or FtRestart to the placed node --> restore + keep
//!   home:     session relay waits for the tree to run again and follows it there
//! ```
//!
//! The decision has no I/O ([`decide`]); the layout on disk and the claim are in [`store`].

mod decide;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ssi_core::auth::unix_ms;
use ssi_core::config::DfsMode;
use ssi_core::process::{Caller, FtSpec, FtView};
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::view::NodeView;
use ssi_core::NodeId;

use crate::migration::checkpoint::Periodic;
use crate::node::Node;
use crate::peer;
use crate::procman::End;
use decide::{decide, Action};
use store::{Manifest, Owner, Store};

/// Images in a chain at most: the next checkpoint then starts a new chain with a whole
/// image, and the old chain is removed once the new image is complete.
const MAX_CHAIN: usize = 4;
/// How often a host looks whether its trees were fenced off, and every node whether a tree's
/// owner died.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The FT directory of this node: `ft_dir`, else `.ssi-ft` on the DFS, else
/// `<state_dir>/ft` (node-local: checkpoints kept, no restart elsewhere).
pub fn store(node: &Node) -> Store {
    let c = &node.config;
    Store::new(match &c.ft_dir {
        Some(d) => d.clone(),
        None if c.dfs.mode == DfsMode::Replicated => c.dfs.mount.join(".ssi-ft"),
        None => c.state_dir.join("ft"),
    })
}

/// Runs `f` on a thread of the blocking pool: the FT directory is on the DFS, which this
/// daemon serves itself, and a runtime thread blocked in a FUSE call would starve the very
/// tasks that answer it.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow::anyhow!("FT directory task failed: {e}"))?
}

/// One protected tree, as its host keeps it.
#[derive(Debug)]
struct Tree {
    gpid: i32,
    uid: u32,
    epoch: u64,
    every_ms: u64,
    /// Images of the current chain, oldest first.
    chain: Vec<String>,
    /// Images written in this epoch.
    seq: u64,
    /// The next image starts a new chain (no tracking yet, or a failed image).
    fresh: bool,
    view: FtView,
}

impl Tree {
    fn manifest(&self, node: &Node, gen: u64) -> Manifest {
        Manifest {
            version: store::VERSION,
            gpid: self.gpid,
            uid: self.uid,
            host: node.config.id.0,
            host_gen: gen,
            epoch: self.epoch,
            every_ms: self.every_ms,
            image: self.chain.last().cloned(),
            chain: self.chain.clone(),
            // until its first checkpoint here, a restarted tree's image is the one it came from
            taken_ms: self
                .view
                .last_checkpoint_ms
                .or(self.view.restarted_from_ms)
                .unwrap_or(0),
            freeze_us: self.view.freeze_us,
            bytes: self.view.bytes,
            restarted_from_ms: self.view.restarted_from_ms,
        }
    }
}

/// Protects tree `gpid`, just started here for `uid`: checkpointed every `spec.every_ms`.
pub fn protect(node: &Arc<Node>, gpid: i32, uid: u32, spec: FtSpec) {
    let tree = Tree {
        gpid,
        uid,
        epoch: 0,
        every_ms: spec.every_ms,
        chain: Vec::new(),
        seq: 0,
        fresh: true,
        view: FtView {
            every_ms: spec.every_ms,
            ..FtView::default()
        },
    };
    tokio::spawn(keep(node.clone(), tree));
}

/// How a tree's time here ended.
enum Gone {
    /// It ended (or its record went): its checkpoints go.
    Ended,
    /// Another node claimed a later epoch: the copy here was killed.
    Fenced,
}

/// The host's task for one tree: checkpoints, fencing, clean-up at its end.
async fn keep(node: Arc<Node>, mut t: Tree) {
    let gpid = t.gpid;
    let Ok(pm) = node.local_procs() else { return };
    let Some(mut end) = pm.watch_end(gpid) else {
        tracing::warn!(gpid, "fault-tolerant process ended before it was protected");
        return;
    };
    pm.set_ft(gpid, Some(t.view.clone()));
    let store = store(&node);
    let gen = node.gossip.identity().await.map(|i| i.gen).unwrap_or(0);
    let (s, m) = (store.clone(), t.manifest(&node, gen));
    if let Err(e) = blocking(move || {
        s.create_tree(gpid)?;
        s.write_manifest(&m)
    })
    .await
    {
        tracing::error!(gpid, error = %format!("{e:#}"), "fault-tolerant process: cannot record it; it will not be restarted");
    }
    let gone = run_tree(&node, &store, &mut t, &mut end, gen).await;
    pm.set_ft(gpid, None);
    match gone {
        Gone::Ended => {
            if fenced(&store, &t).await {
                // E.g. killed by SIGPIPE once its client followed the copy restarted elsewhere.
                tracing::warn!(
                    gpid,
                    epoch = t.epoch,
                    "fault-tolerant process was restarted elsewhere: the stale copy here ended before it was killed; the checkpoints are kept"
                );
            } else {
                let s = store.clone();
                let _ = blocking(move || {
                    s.remove_tree(gpid);
                    Ok(())
                })
                .await;
                tracing::info!(
                    gpid,
                    "fault-tolerant process ended: its checkpoints are removed"
                );
            }
        }
        Gone::Fenced => {
            tracing::warn!(
                gpid,
                epoch = t.epoch,
                "fault-tolerant process was restarted elsewhere: the stale copy here is killed"
            );
            pm.kill_tree(gpid).await;
        }
    }
}

/// Whether a later epoch of the tree was claimed (by a node that restarted it).
async fn fenced(store: &Store, t: &Tree) -> bool {
    let (s, gpid) = (store.clone(), t.gpid);
    matches!(blocking(move || s.highest_claim(gpid)).await, Ok(Some(c)) if c.epoch > t.epoch)
}

/// Removes image `name` of tree `gpid`, off the runtime.
async fn remove_image(store: &Store, gpid: i32, name: String) {
    let s = store.clone();
    let _ = blocking(move || {
        s.remove_image(gpid, &name);
        Ok(())
    })
    .await;
}

/// Checkpoints the tree every interval until it ends or is fenced.
async fn run_tree(
    node: &Node,
    store: &Store,
    t: &mut Tree,
    end: &mut tokio::sync::watch::Receiver<Option<End>>,
    gen: u64,
) -> Gone {
    let every = Duration::from_millis(t.every_ms);
    let mut next = Instant::now() + every;
    let mut helper: Option<Periodic> = None;
    loop {
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(LOOK_EVERY);
        tokio::select! {
            changed = end.changed() => if changed.is_err() { return Gone::Ended },
            () = tokio::time::sleep(wait) => {}
        }
        if end.borrow().is_some() {
            return Gone::Ended;
        }
        if fenced(store, t).await {
            return Gone::Fenced;
        }
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + every;
        if helper.is_none() {
            match Periodic::start(node, t.gpid).await {
                Ok(h) => helper = Some(h),
                Err(e) => {
                    tracing::warn!(gpid = t.gpid, error = %format!("{e:#}"), "cannot start the checkpoint helper");
                    continue;
                }
            }
            t.fresh = true;
        }
        let Some(h) = helper.as_mut() else { continue };
        match checkpoint_once(node, store, t, h, gen).await {
            Ok(true) => {}
            Ok(false) => return Gone::Fenced,
            Err(e) => {
                if end.borrow().is_some() {
                    return Gone::Ended;
                }
                tracing::warn!(gpid = t.gpid, error = %format!("{e:#}"), "periodic checkpoint failed; the next one starts a new chain");
                helper = None;
            }
        }
    }
}

/// Writes the next image and, once it is durable, the manifest naming it; removes the chain
/// it replaces. `false` if the tree was fenced meanwhile (nothing published).
async fn checkpoint_once(
    node: &Node,
    store: &Store,
    t: &mut Tree,
    h: &mut Periodic,
    gen: u64,
) -> Result<bool> {
    t.seq += 1;
    let name = format!("img-{}-{}", t.epoch, t.seq);
    let chained = !t.fresh && !t.chain.is_empty() && t.chain.len() < MAX_CHAIN;
    let parent = t
        .chain
        .last()
        .filter(|_| chained)
        .map(|p| format!("../{p}"));
    let dir = store.tree_dir(t.gpid).join(&name);
    let taken = unix_ms();
    let written = match h.checkpoint(&dir, parent).await {
        Ok(w) => w,
        Err(e) => {
            remove_image(store, t.gpid, name).await;
            t.fresh = true;
            return Err(e);
        }
    };
    if fenced(store, t).await {
        remove_image(store, t.gpid, name).await;
        return Ok(false);
    }
    let old = if chained {
        Vec::new()
    } else {
        std::mem::take(&mut t.chain)
    };
    t.chain.push(name);
    t.fresh = false;
    t.view.last_checkpoint_ms = Some(taken);
    t.view.freeze_us = written.freeze_us;
    t.view.bytes = written.page_bytes;
    t.view.chain = u32::try_from(t.chain.len()).unwrap_or(u32::MAX);
    let (s, m) = (store.clone(), t.manifest(node, gen));
    blocking(move || s.write_manifest(&m)).await?;
    for o in old {
        remove_image(store, t.gpid, o).await;
    }
    if let Ok(pm) = node.local_procs() {
        pm.set_ft(t.gpid, Some(t.view.clone()));
    }
    tracing::debug!(gpid = t.gpid, image = ?t.chain.last(), bytes = written.page_bytes, freeze_us = written.freeze_us, "checkpoint complete");
    Ok(true)
}

/// Restarts tree `gpid` here from its last complete checkpoint, under `epoch`, which must
/// be claimed for this node; then keeps checkpointing it. Its root's gpid.
pub async fn restart_here(node: &Arc<Node>, gpid: i32, epoch: u64) -> Result<i32> {
    let store = store(node);
    let s = store.clone();
    let (m, owner) = blocking(move || s.owner(gpid))
        .await?
        .with_context(|| format!("no checkpoints of process {gpid}"))?;
    if owner.epoch != epoch || owner.node != node.config.id {
        bail!(
            "process {gpid}: epoch {epoch} is not this node's (epoch {} belongs to node {})",
            owner.epoch,
            owner.node
        );
    }
    let image = m
        .image
        .clone()
        .with_context(|| format!("process {gpid} has no complete checkpoint"))?;
    let dir = store.tree_dir(gpid).join(&image);
    let dir = dir.to_str().context("FT directory is not UTF-8")?;
    let root = Caller {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    };
    let restored = crate::migration::checkpoint::restart(node, dir, &root).await?;
    if restored != gpid {
        node.local_procs()?.kill_tree(restored).await;
        bail!("the checkpoint of process {gpid} restored as {restored}");
    }
    tracing::info!(gpid, epoch, image = %image, "fault-tolerant process restarted here");
    let tree = Tree {
        gpid,
        uid: m.uid,
        epoch,
        every_ms: m.every_ms,
        chain: m.chain.clone(),
        seq: 0,
        fresh: true,
        view: FtView {
            every_ms: m.every_ms,
            epoch,
            restarted_from_ms: Some(m.taken_ms),
            ..FtView::default()
        },
    };
    tokio::spawn(keep(node.clone(), tree));
    Ok(gpid)
}

/// Every second, looks at every protected tree and restarts those whose owner died (see
/// [`decide`]).
pub async fn watch(node: Arc<Node>) {
    let store = store(&node);
    let mut unrestartable = std::collections::HashSet::new();
    let mut tick = tokio::time::interval(LOOK_EVERY);
    loop {
        tick.tick().await;
        let (Ok(view), Ok(me)) = (node.gossip.view().await, node.gossip.identity().await) else {
            continue;
        };
        let s = store.clone();
        let Ok(trees) = blocking(move || s.trees()).await else {
            continue;
        };
        for gpid in trees {
            let s = store.clone();
            let Ok(Some((m, owner))) = blocking(move || s.owner(gpid)).await else {
                continue;
            };
            let own_orphan = owner.node == me.id && owner.gen != me.gen;
            let Action::Restart { epoch } = decide(me.id, &view, owner, own_orphan) else {
                continue;
            };
            if m.image.is_none() {
                if unrestartable.insert(gpid) {
                    tracing::warn!(gpid, node = %owner.node, "fault-tolerant process lost with its node before its first checkpoint");
                }
                continue;
            }
            take_over(&node, &store, &view, gpid, epoch).await;
        }
    }
}

/// Claims `epoch` of tree `gpid` for the node placement chooses and restarts it there; if
/// that fails on another node, claims the next epoch for this node and restarts it here.
async fn take_over(node: &Arc<Node>, store: &Store, view: &[NodeView], gpid: i32, epoch: u64) {
    let me = node.config.id;
    let req = crate::sched::state::request(None, None, &[]);
    let target = node
        .sched
        .place(&req, &format!("restart of fault-tolerant process {gpid}"))
        .unwrap_or(me);
    match claim_for(store, view, gpid, epoch, target).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(gpid, error = %format!("{e:#}"), "cannot claim a fault-tolerant process");
            return;
        }
    }
    tracing::info!(gpid, epoch, node = %target, "restarting a fault-tolerant process whose node died");
    let outcome = if target == me {
        restart_here(node, gpid, epoch).await.map(drop)
    } else {
        match peer::ask(node, target, &RpcRequest::FtRestart { gpid, epoch }).await {
            Ok(RpcResponse::Restored { .. }) => Ok(()),
            Ok(RpcResponse::Error { message }) => Err(anyhow::anyhow!("{message}")),
            Ok(other) => Err(anyhow::anyhow!("unexpected answer {other:?}")),
            Err(e) => Err(e),
        }
    };
    let Err(e) = outcome else { return };
    tracing::error!(gpid, node = %target, error = %format!("{e:#}"), "restart of a fault-tolerant process failed");
    if target != me && matches!(claim_for(store, view, gpid, epoch + 1, me).await, Ok(true)) {
        if let Err(e) = restart_here(node, gpid, epoch + 1).await {
            tracing::error!(gpid, error = %format!("{e:#}"), "restart here failed too: the process is lost");
        }
    }
}

/// Claims `epoch` of `gpid` for `target` (named with its current run).
async fn claim_for(
    store: &Store,
    view: &[NodeView],
    gpid: i32,
    epoch: u64,
    target: NodeId,
) -> Result<bool> {
    let gen = view.iter().find(|n| n.id == target).map_or(0, |n| n.gen);
    let s = store.clone();
    blocking(move || {
        s.claim(
            gpid,
            epoch,
            Owner {
                epoch,
                node: target,
                gen,
            },
        )
    })
    .await
}
