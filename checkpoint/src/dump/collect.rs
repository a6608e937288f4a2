//! Collecting the image of a frozen tree: each process' parts (`state::save_process`), its
//! memory, the tree's open files and shared memory, the inventory.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use super::freeze::FrozenTree;
use super::parasite::Parasite;
use super::session::Session;
use super::DumpOptions;
use crate::error::{Error, Result};
use crate::image::{Inventory, ParentRef, ProcessImage, Shared};
use crate::persist::{Persist, ProcDump};
use crate::state::memory::{self, shmem, MemDump, MmImage, PagePlan};
use crate::state::tree::{ZombieDump, ZombieImage};
use crate::state::{self, files};
use crate::sys::fd as sfd;
use crate::track::DirtyTracker;
use crate::vdso;

/// One process of the image, with the pages to copy into it.
pub(super) struct Collected {
    pub image: ProcessImage,
    pub plan: PagePlan,
}

/// The image of a tree, ready to be written (page contents are copied while writing).
pub(super) struct TreeImage {
    pub inventory: Inventory,
    pub shared: Shared,
    pub procs: Vec<Collected>,
    /// Where to read each shared memory object, by id.
    pub shmem: Vec<shmem::Source>,
    /// TCP sockets in repair mode until the dump ends.
    pub repaired: files::tcp_conn::Repaired,
}

/// Collects processes `pids` of the frozen tree.
pub(super) fn tree(
    frozen: &FrozenTree,
    pids: &[i32],
    opts: &DumpOptions,
    session: &mut Session,
    local: &vdso::Local,
) -> Result<TreeImage> {
    // The tree may have ended between its discovery and its freeze.
    let Some(&root) = frozen.shape.order.first() else {
        return Err(Error::Conflict(
            "the tree to dump has no process left: it ended before it could be frozen".into(),
        ));
    };
    let mut procs = Vec::with_capacity(pids.len());
    let mut tables = Vec::new();
    let mut pidfds: HashMap<i32, OwnedFd> = HashMap::new();
    for &pid in pids {
        let pidfd = sfd::pidfd_open(pid).map_err(|e| Error::sys(pid, "pidfd_open", e))?;
        procs.push(process(pid, frozen, opts, session, local, &pidfd)?);
        if !opts.pre_dump {
            let skip: Vec<i32> = session.tracker_fds.get(&pid).copied().into_iter().collect();
            tables.push((pid, files::scan::scan(pid, &skip)?));
        }
        pidfds.insert(pid, pidfd);
    }
    let (mut shared, mut fd_tables, repaired) = if opts.pre_dump {
        (Shared::default(), HashMap::new(), Default::default())
    } else {
        files::build(root, &tables, &pidfds, true)?
    };
    for c in procs.iter_mut() {
        c.image.fds = fd_tables.remove(&c.image.pid).unwrap_or_default();
    }
    let shmem = {
        let mut maps: Vec<_> = procs
            .iter_mut()
            .map(|c| (c.image.pid, &c.plan.vmas[..], &mut c.image.mm.vmas[..]))
            .collect();
        shmem::assign_ids(&mut maps)
    };
    shared.shmem = shmem
        .iter()
        .map(shmem::Source::image)
        .collect::<Result<_>>()?;
    let inventory = inventory(frozen, pids, opts, session, local)?;
    Ok(TreeImage {
        inventory,
        shared,
        procs,
        shmem,
        repaired,
    })
}

fn inventory(
    frozen: &FrozenTree,
    pids: &[i32],
    opts: &DumpOptions,
    session: &Session,
    local: &vdso::Local,
) -> Result<Inventory> {
    let zombies = if opts.pre_dump {
        Vec::new()
    } else {
        frozen
            .zombies
            .iter()
            .map(|&pid| {
                ZombieImage::save(&mut ZombieDump {
                    pid,
                    tree: frozen.pids(),
                    zombies: &frozen.zombies,
                })
            })
            .collect::<Result<_>>()?
    };
    Ok(Inventory {
        image_id: new_id(),
        parent: session.parent_id.map(|id| ParentRef {
            image_id: id,
            path: opts.parent_path.clone(),
        }),
        root_pid: frozen.shape.order[0],
        pids: pids.to_vec(),
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        vdso_crc: local.crc,
        vdso_block_len: local.block.end - local.block.start,
        pre_dump: opts.pre_dump,
        zombies,
    })
}

fn new_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ ((std::process::id() as u64) << 40)
}

/// Collects one frozen process: its parts by injected calls and from /proc, then its memory
/// once the injection session is over (its scratch area must not be saved).
fn process(
    pid: i32,
    frozen: &FrozenTree,
    opts: &DumpOptions,
    session: &mut Session,
    local: &vdso::Local,
    pidfd: &OwnedFd,
) -> Result<Collected> {
    let st = state::tree::stat(pid)?;
    let status = procfs::process::Process::new(pid)
        .and_then(|p| p.status())
        .map_err(|e| Error::procfs(format!("/proc/{pid}/status"), e))?;
    let block = memory::maps::vdso_block(pid)?
        .ok_or_else(|| Error::unsupported(pid, "the process has no vDSO"))?;
    if block.end - block.start != local.block.end - local.block.start {
        return Err(Error::unsupported(
            pid,
            "its vvar/vdso block differs from this kernel's",
        ));
    }
    let mut par = Parasite::start(pid, block.vdso + local.syscall_off)?;
    let tids = frozen.threads.get(&pid).cloned().unwrap_or_default();
    let saved = state::save_process(
        &mut ProcDump {
            pid,
            is_root: pid == frozen.shape.order[0],
            tids: &tids,
            taken: &frozen.taken,
            stopped_by: frozen.stopped.get(&pid).copied(),
            status: &status,
            par: &mut par,
        },
        opts.pre_dump,
    )?;
    let tracker_fd = session.track(&mut par, pidfd, opts.pre_dump, opts.tracker_in_process)?;
    let brk = memory::brk(&mut par)?;
    par.finish()?;
    let avail = session.avail.get(&pid).cloned().unwrap_or_default();
    let ppid = if pid == frozen.shape.order[0] {
        0
    } else {
        frozen.shape.parent.get(&pid).copied().unwrap_or(0)
    };
    // pages shared copy-on-write with the parent are kept shared by a restore of one image;
    // a chain saves them whole (its processes may be forked in an earlier image)
    let cow_parent = (ppid != 0 && !opts.pre_dump && session.parent_id.is_none()).then_some(ppid);
    let mut mcx = MemDump {
        pid,
        stat: &st,
        brk,
        vdso_block: block.start,
        pre_dump: opts.pre_dump,
        avail: &avail,
        tracker: session
            .trackers
            .get_mut(&pid)
            .map(|t| &mut **t as &mut dyn DirtyTracker),
        cow_parent,
        plan: None,
    };
    let mm = MmImage::save(&mut mcx)?;
    let plan = mcx
        .plan
        .ok_or_else(|| Error::Conflict(format!("pid {pid}: no page plan")))?;
    let image = ProcessImage {
        pid,
        ppid,
        pgid: st.pgrp,
        sid: st.session,
        exit_signal: st.exit_signal.unwrap_or(libc::SIGCHLD),
        threads: saved.threads,
        mm,
        fds: Default::default(),
        fs: saved.fs,
        limits: saved.limits,
        audit: saved.audit,
        creds: saved.creds,
        signals: saved.signals,
        timers: saved.timers,
        attrs: saved.attrs,
        cgroups: saved.cgroups,
        tracker_fd,
    };
    Ok(Collected { image, plan })
}
