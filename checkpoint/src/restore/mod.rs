//! Restore: rebuild a tree from one image, or from a chain of images as they arrive.
//!
//! ```text
//!  image 1 (pre-dump)   create each process stopped (the root by the restorer, the others
//!                       by clone3 inside their parent), give it the image's mappings, write
//!                       its pages
//!  image 2..n-1         processes gone are killed, new ones created; mappings brought up to
//!                       date; only the pages the image carries are written
//!  image n (final)      the same, then: zombies, fds, shared memory, protections, mm fields,
//!                       signals, threads, credentials, registers; every task goes at once
//! ```
//! [`restore`] is the one-image case. [`Restorer`] takes the images of a pre-copy one by one
//! ([`Restorer::apply_stream`] reads pages and writes them as they arrive), so that what is
//! left for the last image (the downtime of a migration) is its own pages and the non-memory
//! state, not the whole memory.
//!
//! Pids are created with `clone3` `set_tid` in the restorer's own pid namespace, so a restorer
//! running inside a pid namespace (as the node daemon does) restores the tree there. No /proc
//! of the restored processes is read, so that namespace needs no /proc mount of its own.
//! Everything a restore creates is killed if it fails, or if the [`Restorer`] is dropped before
//! the last image.

mod bound;
mod cursor;
pub(crate) mod holder;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::image::stream::{self, Piece, PieceReader};
use crate::image::{Image, Inventory, ProcessImage, Shared};
use crate::persist::{Persist, ProcRestore, TreeMade};
use crate::progress::{self, Meter, Phase, Progress};
use crate::state::creds::Creds;
use crate::state::memory::{self, shmem, space::PageWriter};
use crate::state::tree::{Groups, ZombieRestore};
use crate::state::{self, files, signals, threads};
use crate::sys::{self, ptrace, spawn};
use crate::vdso;
pub use bound::Bound;
use cursor::Cursor;
use holder::Holder;

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Descriptors that files saved as standard streams (`Stdio`) are bound to; by default the
    /// restorer's own 0, 1 and 2.
    pub stdio: Option<[RawFd; 3]>,
    /// Restore even if a regular or mapped file changed size since the dump.
    pub allow_changed_files: bool,
    /// Restore established TCP connections closed (shut down both ways, no address), as
    /// CRIU's `--tcp-close` does: for a tree whose peers are gone.
    pub tcp_close: bool,
    /// Told how the restore of a loaded image goes (see [`crate::progress`]); restores from a
    /// stream do not report.
    pub progress: Option<Progress>,
    /// The most the restored tree may hold; `None`: what the image says (an image trusted
    /// whole). Checked for every process before it is created.
    pub bound: Option<Bound>,
}

/// A restored tree, running (or held stopped, see [`Restorer::hold`]). Its root is a child of
/// the restorer.
#[derive(Debug)]
pub struct Restored {
    /// Pid of the root.
    pub root: i32,
    /// All pids, parents first.
    pub pids: Vec<i32>,
    /// Time from the first piece of the last image to the tree running (for a stream, the
    /// part of a migration's downtime spent on the target).
    pub took: Duration,
}

impl Restored {
    /// Waits for the root to exit; returns its exit code, or 128 + signal if it was killed.
    pub fn wait(&self) -> Result<i32> {
        use nix::sys::wait::{waitpid, WaitStatus};
        loop {
            match waitpid(nix::unistd::Pid::from_raw(self.root), None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys(self.root, "wait", e)),
            }
        }
    }
}

/// Restores the image: the tree runs again when this returns.
pub fn restore(img: &Image, opts: &RestoreOptions) -> Result<Restored> {
    if img.inventory.pre_dump {
        return Err(Error::bad_image(
            "inventory.rec",
            "a pre-dump holds memory only; restore the dump made with --prev on top of it",
        ));
    }
    let mut r = Restorer::new(opts.clone())?;
    r.apply_image(img)?
        .ok_or_else(|| Error::Conflict("the image did not finish the restore".into()))
}

/// Rebuilds a tree from the images of a chain, applied one after the other as they arrive (see
/// the module doc). Holds the processes it creates stopped under ptrace, so it must stay on
/// the thread that created it; dropping it before the final image kills them.
#[derive(Debug)]
pub struct Restorer {
    opts: RestoreOptions,
    local: vdso::Local,
    holders: BTreeMap<i32, Holder>,
    /// Id of the last image applied.
    last_image: Option<u64>,
    /// The tree runs (or an image failed and everything was killed): nothing more to apply.
    done: bool,
    /// Keep the tree stopped after the final image (see [`Restorer::hold`]).
    hold: bool,
    /// Threads of a tree restored whole but held, to let go.
    held: Vec<i32>,
    _not_send: PhantomData<*const ()>,
}

/// What the restorer made for the tree's fds and shared mappings (final image only).
struct Objects {
    files: files::Made,
    shmem: HashMap<u32, OwnedFd>,
}

/// The image being applied.
struct Applying {
    inv: Inventory,
    shared: Shared,
    objects: Option<Objects>,
    procs: Vec<ProcessImage>,
    /// Where the next page data of the current process goes.
    cursor: Option<Cursor>,
    /// When the image began to be applied.
    started: Instant,
}

impl Restorer {
    /// A restorer with nothing applied yet.
    pub fn new(opts: RestoreOptions) -> Result<Restorer> {
        Ok(Restorer {
            opts,
            local: vdso::local()?,
            holders: BTreeMap::new(),
            last_image: None,
            done: false,
            hold: false,
            held: Vec::new(),
            _not_send: PhantomData,
        })
    }

    /// Applies a loaded image (its chain already resolved: every page is taken from it).
    /// Returns the running tree for a final image, `None` for a pre-dump.
    pub fn apply_image(&mut self, img: &Image) -> Result<Option<Restored>> {
        let r = self.apply_image_inner(img);
        self.settle(r)
    }

    /// Reads one image from `r` and applies it while it arrives: page data is written into the
    /// processes as it comes (a second thread reads and checks the stream). The image must
    /// extend the last one applied, if it names a parent. Returns the running tree for a final
    /// image, `None` for a pre-dump.
    pub fn apply_stream<R: Read + Send>(&mut self, r: R) -> Result<Option<Restored>> {
        let res = (|| {
            let (tx, rx) = crossbeam::channel::bounded::<Result<Piece>>(4);
            let (free_tx, free_rx) = crossbeam::channel::bounded::<Vec<u8>>(8);
            crossbeam::thread::scope(|s| {
                s.spawn(move |_| {
                    let mut pieces = PieceReader::new(r);
                    loop {
                        let buf = free_rx.try_recv().unwrap_or_default();
                        let p = pieces.next(buf);
                        let last = !matches!(
                            p,
                            Ok(Piece::Head(_) | Piece::Shmem { .. } | Piece::Process(_))
                                | Ok(Piece::Pages { .. })
                        );
                        if tx.send(p).is_err() || last {
                            return;
                        }
                    }
                });
                self.apply_pieces(&rx, &free_tx)
            })
            .map_err(|_| Error::Conflict("image stream reader thread panicked".into()))?
        })();
        self.settle(res)
    }

    /// Kills everything after a failure; a restorer that failed applies nothing more.
    fn settle(&mut self, r: Result<Option<Restored>>) -> Result<Option<Restored>> {
        if r.is_err() {
            self.abort();
        }
        r
    }

    fn apply_pieces(
        &mut self,
        rx: &crossbeam::channel::Receiver<Result<Piece>>,
        free: &crossbeam::channel::Sender<Vec<u8>>,
    ) -> Result<Option<Restored>> {
        let next = || {
            rx.recv()
                .map_err(|_| Error::bad_image("<stream>", "image stream ended early"))?
        };
        let Piece::Head(head) = next()? else {
            return Err(Error::bad_image(
                "<stream>",
                "image does not start with its inventory",
            ));
        };
        let (inv, shared) = *head;
        if let Some(p) = &inv.parent {
            if self.last_image != Some(p.image_id) {
                return Err(Error::bad_image(
                    "<stream>/inventory.rec",
                    format!(
                        "image extends image {:x}, which is not the last one applied",
                        p.image_id
                    ),
                ));
            }
        }
        let mut a = self.begin(inv, shared)?;
        loop {
            match next()? {
                Piece::Head(_) => {
                    return Err(Error::bad_image(
                        "<stream>",
                        "second inventory in one image",
                    ))
                }
                Piece::Shmem { id, offset, data } => {
                    if let Some(o) = &a.objects {
                        shmem::write(&o.shmem, id, offset, &data)?;
                    }
                    let _ = free.try_send(data);
                }
                Piece::Process(p) => {
                    if let Some(c) = &a.cursor {
                        c.finish()?;
                    }
                    stream::check_process(&p, &a.shared, a.inv.pre_dump)?;
                    self.process(&mut a, *p)?;
                }
                Piece::Pages { addr, data } => {
                    let c = a
                        .cursor
                        .as_mut()
                        .ok_or_else(|| Error::bad_image("<stream>", "pages before a process"))?;
                    let pieces = c.take(addr, &data)?;
                    let h = self
                        .holders
                        .get(&c.pid)
                        .ok_or_else(|| Error::Conflict(format!("pid {}: not held", c.pid)))?;
                    let w = h.space.writer(h.pid);
                    for (at, bytes) in pieces {
                        w.write(at, bytes)?;
                    }
                    let _ = free.try_send(data);
                }
                Piece::End => {
                    if let Some(c) = &a.cursor {
                        c.finish()?;
                    }
                    return self.end(a);
                }
            }
        }
    }

    fn apply_image_inner(&mut self, img: &Image) -> Result<Option<Restored>> {
        let progress = self.opts.progress.clone();
        progress::report(progress.as_ref(), Phase::Preparing, 0, 0);
        // everything that can be checked is checked before anything is created
        for p in &img.processes {
            self.check_new_process(p, &img.inventory)?;
        }
        let mut a = self.begin(img.inventory.clone(), img.shared.clone())?;
        // the chain is resolved: this image gives every page
        let pages = img
            .processes
            .iter()
            .map(|p| img.resolve_pages(p.pid))
            .collect::<Result<Vec<_>>>()?;
        let shmem_chunks = || {
            img.shared
                .shmem
                .iter()
                .flat_map(|s| img.shmem_chunks(s.id).iter().map(|c| (s.id, c)))
        };
        let total: u64 = shmem_chunks()
            .map(|(_, c)| c.data.as_slice().len() as u64)
            .chain(
                pages
                    .iter()
                    .flatten()
                    .map(|c| c.data.as_slice().len() as u64),
            )
            .sum();
        let mut meter = Meter::start(progress.as_ref(), total);
        if let Some(o) = &a.objects {
            for (id, c) in shmem_chunks() {
                shmem::write(&o.shmem, id, c.addr, c.data.as_slice())?;
                meter.add(c.data.as_slice().len() as u64);
            }
        }
        for (p, chunks) in img.processes.iter().zip(&pages) {
            let mut full = p.clone();
            for r in &mut full.mm.pages {
                r.in_parent = false;
            }
            self.process(&mut a, full)?;
            let h = self
                .holders
                .get(&p.pid)
                .ok_or_else(|| Error::Conflict(format!("pid {}: not held", p.pid)))?;
            let pieces: Vec<(u64, &[u8])> =
                chunks.iter().map(|c| (c.addr, c.data.as_slice())).collect();
            for batch in batches(&pieces, BATCH_BYTES) {
                write_split(h.space.writer(h.pid), batch, p.pid)?;
                meter.add(batch.iter().map(|p| p.1.len() as u64).sum());
            }
            a.cursor = None;
        }
        meter.finish();
        self.end(a)
    }

    /// Checks made before process `p` is created: its files, and its pid and thread ids free.
    fn check_new_process(&self, p: &ProcessImage, inv: &Inventory) -> Result<()> {
        if let Some(b) = &self.opts.bound {
            b.check(p)?;
        }
        memory::check_files(p, self.opts.allow_changed_files)?;
        state::cgroups::check(p.pid, &p.cgroups)?;
        if !self.holders.contains_key(&p.pid) && ptrace::pid_exists(p.pid) {
            return Err(Error::Conflict(format!("pid {} is in use", p.pid)));
        }
        if !inv.pre_dump {
            for t in p.threads.iter().skip(1) {
                if ptrace::pid_exists(t.tid) {
                    return Err(Error::Conflict(format!(
                        "thread id {} (pid {}) is in use",
                        t.tid, p.pid
                    )));
                }
            }
        }
        Ok(())
    }

    /// Starts applying an image: checks, processes gone are killed, shared objects created.
    fn begin(&mut self, inv: Inventory, shared: Shared) -> Result<Applying> {
        if self.done {
            return Err(Error::Conflict(
                "the restore is over: nothing more can be applied".into(),
            ));
        }
        let local = &self.local;
        if inv.vdso_crc != local.crc || inv.vdso_block_len != local.block.end - local.block.start {
            return Err(Error::Conflict(format!(
                "image was dumped on kernel {} whose vDSO differs from this kernel's",
                inv.kernel
            )));
        }
        for z in &inv.zombies {
            if ptrace::pid_exists(z.pid) {
                return Err(Error::Conflict(format!("pid {} is in use", z.pid)));
            }
        }
        let gone: Vec<i32> = self
            .holders
            .keys()
            .copied()
            .filter(|p| !inv.pids.contains(p))
            .collect();
        self.kill(&gone)?;
        let objects = if inv.pre_dump {
            None
        } else {
            files::check(&shared, self.opts.allow_changed_files)?;
            Some(Objects {
                files: files::create(
                    &shared,
                    self.opts.stdio.unwrap_or([0, 1, 2]),
                    self.opts.tcp_close,
                )?,
                shmem: shmem::create(&shared.shmem)?,
            })
        };
        sys::fd::raise_nofile();
        Ok(Applying {
            inv,
            shared,
            objects,
            procs: Vec::new(),
            cursor: None,
            started: Instant::now(),
        })
    }

    /// Creates the process of manifest `p` if needed and brings its memory to the image; its
    /// pages follow.
    fn process(&mut self, a: &mut Applying, p: ProcessImage) -> Result<()> {
        let pid = p.pid;
        self.check_new_process(&p, &a.inv)?;
        let root = a.inv.root_pid;
        let ppid = if pid == root { 0 } else { p.ppid };
        if self.holders.get(&pid).is_some_and(|h| h.ppid != ppid) {
            // another process under the same pid (or moved to another parent): start over
            let sub = self.subtree(pid);
            self.kill(&sub)?;
        }
        if !self.holders.contains_key(&pid) {
            let h = if pid == root {
                self.spawn_root(&p)?
            } else {
                let parent = self.holders.get_mut(&p.ppid).ok_or_else(|| {
                    Error::bad_image(
                        format!("proc-{pid}.rec"),
                        format!("parent {} is not in the image", p.ppid),
                    )
                })?;
                parent.fork(pid, p.exit_signal)?
            };
            self.holders.insert(pid, h);
        }
        let local = self.local;
        let h = self
            .holders
            .get_mut(&pid)
            .ok_or_else(|| Error::Conflict(format!("pid {pid}: not held")))?;
        h.bring_to(&p, &local)?;
        a.cursor = Some(Cursor::new(&p));
        a.procs.push(p);
        Ok(())
    }

    fn spawn_root(&mut self, p: &ProcessImage) -> Result<Holder> {
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::io("pipe", e.into()))?;
        let setsid = p.sid == p.pid;
        let setpgid_self = p.pgid == p.pid && !setsid;
        let pid = spawn::spawn_holder(
            p.pid,
            p.exit_signal,
            setsid,
            setpgid_self,
            ready_w.as_raw_fd(),
        )
        .map_err(|e| Error::sys(p.pid, "clone3 with set_tid", e))?;
        drop(ready_w);
        if let Err(e) = wait_ready(&ready_r) {
            ptrace::kill9(pid);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            return Err(e);
        }
        Holder::seize_root(pid, &self.local).inspect_err(|_| {
            ptrace::kill9(pid);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        })
    }

    /// `pid` and every held process under it, children first.
    fn subtree(&self, pid: i32) -> Vec<i32> {
        let mut set = vec![pid];
        let mut i = 0;
        while i < set.len() {
            let p = set[i];
            set.extend(self.holders.values().filter(|h| h.ppid == p).map(|h| h.pid));
            i += 1;
        }
        set.reverse();
        set
    }

    /// Kills held processes `pids` (children before parents) and has the surviving parents
    /// reap them.
    fn kill(&mut self, pids: &[i32]) -> Result<()> {
        let set: HashSet<i32> = pids.iter().copied().collect();
        let mut order: Vec<i32> = Vec::new();
        for &p in pids {
            for q in self.subtree(p) {
                if !order.contains(&q) {
                    order.push(q);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for &p in &order {
            let Some(h) = self.holders.remove(&p) else {
                continue;
            };
            h.kill();
            ptrace::reap_traced(p, deadline);
            if !set.contains(&h.ppid) && !order.contains(&h.ppid) {
                if let Some(parent) = self.holders.get_mut(&h.ppid) {
                    parent.call(
                        &format!("wait4 {p}"),
                        libc::SYS_wait4,
                        [p as u64, 0, libc::__WALL as u64, 0, 0, 0],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Ends an image: a pre-dump leaves the processes held; a final image lets them go.
    fn end(&mut self, a: Applying) -> Result<Option<Restored>> {
        self.last_image = Some(a.inv.image_id);
        if a.inv.pre_dump {
            for h in self.holders.values_mut() {
                h.drop_scratch()?;
            }
            return Ok(None);
        }
        self.finish(a).map(Some)
    }

    /// The last steps of a final image, then every task goes.
    fn finish(&mut self, a: Applying) -> Result<Restored> {
        let Applying {
            inv,
            shared,
            objects,
            procs,
            started,
            ..
        } = a;
        let mut objects = objects.ok_or_else(|| Error::Conflict("no objects created".into()))?;
        if procs.iter().map(|p| p.pid).collect::<Vec<_>>() != inv.pids {
            return Err(Error::bad_image(
                "<image>",
                "processes missing from the image",
            ));
        }
        for h in self.holders.values_mut() {
            h.space.end_fill();
        }
        self.tree_shape(&inv, &procs)?;
        objects.files.make_late(&shared)?;
        for p in &procs {
            signals::drain(self.held(p.pid)?)?;
        }
        objects
            .files
            .plan_finish(procs.iter().map(|p| (p.pid, &p.fds)));
        let made = TreeMade {
            restorer: std::process::id() as i32,
            files: &objects.files,
            shared: &shared,
            shmem: &objects.shmem,
            same_creds: same_creds_as_me(&procs),
        };
        for p in &procs {
            let mut cx = ProcRestore {
                h: self.held(p.pid)?,
                p,
                tree: &made,
            };
            state::restore_process(p, &mut cx)?;
        }
        objects.files.restore_owners(&shared)?;
        objects.files.release_keepers();
        self.go(&procs)?;
        Ok(Restored {
            root: inv.root_pid,
            pids: inv.pids,
            took: started.elapsed(),
        })
    }

    /// Groups and sessions of the processes, then the zombies.
    fn tree_shape(&mut self, inv: &Inventory, procs: &[ProcessImage]) -> Result<()> {
        let root = inv.root_pid;
        let h = self.held(root)?;
        let groups = Groups::new(&inv.pids, &inv.zombies, (h.pgid, h.sid));
        groups.restore(procs, root, &mut self.holders)?;
        for z in &inv.zombies {
            let parent = self.holders.get_mut(&z.ppid).ok_or_else(|| {
                Error::bad_image(
                    "inventory.rec",
                    format!("parent {} of zombie {} is not in the image", z.ppid, z.pid),
                )
            })?;
            z.restore(&mut ZombieRestore {
                parent,
                pgid_sid: groups.want(z.pgid, z.sid),
            })?;
        }
        Ok(())
    }

    /// Registers, extended state and signal masks of every thread (and a stop queued for
    /// those job control had stopped: taken once let go), then every task goes (unless the
    /// tree is held, see [`Restorer::hold`]).
    fn go(&mut self, procs: &[ProcessImage]) -> Result<()> {
        for p in procs {
            threads::set_registers(p.pid, &p.threads)?;
            p.signals.stop_again(p.pid, &p.threads)?;
        }
        self.done = true;
        self.held = procs
            .iter()
            .flat_map(|p| p.threads.iter().map(|t| t.tid))
            .collect();
        if !self.hold {
            self.release()?;
        }
        Ok(())
    }

    /// Keeps the tree stopped once the final image is applied, until [`Restorer::release`] (a
    /// migration target lets it go only on the source's word); dropping the restorer before
    /// kills it.
    pub fn hold(&mut self) {
        self.hold = true;
    }

    /// Lets a held tree go (see [`Restorer::hold`]): from here it runs, and it is not the
    /// restorer's to kill any more. Nothing to do if it already runs.
    pub fn release(&mut self) -> Result<()> {
        for tid in std::mem::take(&mut self.held) {
            ptrace::detach(tid).map_err(|e| Error::sys(tid, "detach", e))?;
        }
        self.holders.clear();
        Ok(())
    }

    fn held(&mut self, pid: i32) -> Result<&mut Holder> {
        self.holders
            .get_mut(&pid)
            .ok_or_else(|| Error::Conflict(format!("pid {pid}: not held")))
    }

    /// Kills every held process.
    fn abort(&mut self) {
        self.done = true;
        let deadline = Instant::now() + Duration::from_secs(10);
        let pids: Vec<i32> = self.holders.keys().rev().copied().collect();
        for &p in &pids {
            ptrace::kill9(p);
        }
        for p in pids {
            ptrace::reap_traced(p, deadline);
        }
        self.holders.clear();
    }
}

impl Drop for Restorer {
    fn drop(&mut self) {
        if !self.holders.is_empty() {
            self.abort();
        }
    }
}

/// Page data written into a process between two progress reports.
const BATCH_BYTES: usize = 64 << 20;

/// `pieces` cut into consecutive batches of about `max` bytes (a piece is never split).
fn batches<'p, 'd>(pieces: &'p [(u64, &'d [u8])], max: usize) -> Vec<&'p [(u64, &'d [u8])]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, p) in pieces.iter().enumerate() {
        bytes += p.1.len();
        if bytes >= max {
            out.push(&pieces[start..=i]);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < pieces.len() {
        out.push(&pieces[start..]);
    }
    out
}

/// Writes `pieces` into a process, on two threads when there is enough to share (the copy
/// into fresh pages is the bulk of a restore).
fn write_split(w: PageWriter<'_>, pieces: &[(u64, &[u8])], pid: i32) -> Result<()> {
    let write = |part: &[(u64, &[u8])]| -> Result<()> {
        for &(a, d) in part {
            w.write(a, d)?;
        }
        Ok(())
    };
    let total: usize = pieces.iter().map(|p| p.1.len()).sum();
    if total < 16 << 20 {
        return write(pieces);
    }
    // split at the piece where half the bytes are reached
    let mut acc = 0;
    let mid = pieces
        .iter()
        .position(|p| {
            acc += p.1.len();
            acc >= total / 2
        })
        .map_or(pieces.len(), |i| i + 1);
    let (a, b) = pieces.split_at(mid);
    let (ra, rb) = crossbeam::thread::scope(|s| {
        let h = s.spawn(|_| write(b));
        (write(a), h.join())
    })
    .map_err(|_| Error::Conflict(format!("pid {pid}: page writer thread panicked")))?;
    ra?;
    rb.map_err(|_| Error::Conflict(format!("pid {pid}: page writer thread panicked")))?
}

/// Waits for the root's report that it is set up.
fn wait_ready(r: &OwnedFd) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = Vec::new();
    while buf.len() < 8 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Conflict("the root process did not come up".into()));
        }
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(r), PollFlags::POLLIN)];
        let ms =
            PollTimeout::try_from(left.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(Error::io("ready pipe", e.into())),
        }
        let mut chunk = [0u8; 8];
        let k = nix::unistd::read(r, &mut chunk).map_err(|e| Error::io("ready pipe", e.into()))?;
        if k == 0 {
            return Err(Error::Conflict("the root process did not come up".into()));
        }
        buf.extend_from_slice(&chunk[..k]);
    }
    let pid = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let err = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if err != 0 {
        return Err(Error::sys(
            pid,
            "setting up",
            std::io::Error::from_raw_os_error(err),
        ));
    }
    Ok(())
}

/// True when every process has the restorer's own credentials (nothing to set).
fn same_creds_as_me(procs: &[ProcessImage]) -> bool {
    Creds::mine().is_some_and(|mine| procs.iter().all(|p| p.creds == mine))
}
