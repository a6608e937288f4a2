//! The local process manager: the processes this node hosts, in its pid namespace.
//!
//! It starts programs through the namespace init with pipes for stdin, stdout and stderr,
//! keeps one record per started process (its pipes, its follower, its exit status), relays
//! input and signals, and lists every process of the namespace for `ssi ps`.

mod output;
pub mod ps;
mod stdin;

pub use output::End;
pub use stdin::Leftover;

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::fcntl::OFlag;
use ssi_core::process::{Caller, ExitStatus, Input, Output, ProcessView, RunSpec};
use ssi_core::NodeId;
use tokio::sync::{mpsc, watch};

use super::nsinit::client::{InitClient, InitEvent, SpawnFailure};
use super::nsinit::SpawnRequest;

/// How long an exit status nobody collected is kept (detached processes).
const KEEP_EXITED: Duration = Duration::from_secs(3600);

/// One process started by this node.
#[derive(Debug)]
struct Hosted {
    uid: u32,
    /// When it started or arrived here.
    since: Instant,
    stdin: Arc<stdin::Stdin>,
    attach: mpsc::Sender<mpsc::Sender<Output>>,
    exit: watch::Sender<Option<End>>,
    exited_at: Mutex<Option<Instant>>,
}

impl Hosted {
    /// Whether input is on its way into the program: queued for it or in its stdin pipe,
    /// not read yet. Re-balancing leaves such a process where it is: one its user is feeding
    /// moves only by an explicit `ssi migrate` (docs/SCHEDULER.md).
    fn input_in_flight(&self) -> bool {
        self.stdin.unread() > 0
    }
}

type Table = Arc<Mutex<HashMap<i32, Arc<Hosted>>>>;

/// A signal sent to a process of this node: (gpid, signal, who sent it).
pub type SentSignal = (i32, i32, Caller);

/// The process manager of this node.
#[derive(Debug)]
pub struct ProcMan {
    node: NodeId,
    node_name: String,
    init: Arc<InitClient>,
    ns: u64,
    table: Table,
    /// Pids started (or being restored) whose record is not made yet.
    expecting: Mutex<HashSet<i32>>,
    /// Exits of expected pids that came before their record.
    early: Mutex<HashMap<i32, ExitStatus>>,
    /// Trees that moved away, whose copy left here is about to be killed: that death is not
    /// their exit, even once their record is gone (a tree may come back under the same gpid).
    departed: Mutex<HashMap<i32, Instant>>,
    /// Trees being migrated away, by root, with the signals sent here meanwhile.
    migrating: Mutex<HashMap<i32, Vec<SentSignal>>>,
    /// Most processes of one user (but root) kept here when a detached one is started
    /// (`limits.detached_per_user`): each keeps up to 1 MiB of output for an hour after it ends.
    detached_per_user: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")
}

impl ProcMan {
    /// A manager for the namespace whose init is `init` (pid `init_pid` in the root
    /// namespace); `exits` carries the exit statuses the init reports.
    pub fn start(
        node: NodeId,
        node_name: String,
        init: Arc<InitClient>,
        init_pid: i32,
        mut events: mpsc::Receiver<InitEvent>,
        detached_per_user: u32,
    ) -> Result<Arc<ProcMan>> {
        let ns = ps::pid_ns_inode(init_pid).context("cannot read the pid namespace of the init")?;
        let pm = Arc::new(ProcMan {
            node,
            node_name,
            init,
            ns,
            table: Arc::default(),
            expecting: Mutex::default(),
            early: Mutex::default(),
            departed: Mutex::default(),
            migrating: Mutex::default(),
            detached_per_user,
        });
        let weak = Arc::downgrade(&pm);
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let Some(pm) = weak.upgrade() else { return };
                match ev {
                    InitEvent::Spawned(gpid) => pm.expect(gpid),
                    InitEvent::Exited(pid, status) => pm.exited(pid, status),
                }
            }
            tracing::error!("the namespace init is gone: this node can no longer host processes");
        });
        let weak = Arc::downgrade(&pm);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(pm) = weak.upgrade() else { return };
                pm.sweep();
            }
        });
        Ok(pm)
    }

    /// Notes that `gpid` was just started or is being restored: an exit of it before its
    /// record exists is kept for the record. Exits of other pids without a record (ssid's
    /// helpers, children of programs, a tree that moved away) are not kept: a later process
    /// with the same pid must not inherit them.
    pub fn expect(&self, gpid: i32) {
        // Under the table lock: the record may already be there.
        let table = lock(&self.table);
        if !table.contains_key(&gpid) {
            lock(&self.expecting).insert(gpid);
        }
    }

    /// Stops expecting `gpid`: its record is made, or its restore failed.
    pub fn forget(&self, gpid: i32) {
        let _table = lock(&self.table);
        lock(&self.expecting).remove(&gpid);
        lock(&self.early).remove(&gpid);
    }

    fn exited(&self, pid: i32, status: ExitStatus) {
        if lock(&self.departed).remove(&pid).is_some() {
            return;
        }
        let rec = {
            let table = lock(&self.table);
            match table.get(&pid) {
                Some(r) => Some(r.clone()),
                None => {
                    if lock(&self.expecting).remove(&pid) {
                        lock(&self.early).insert(pid, status);
                    } else {
                        tracing::debug!(pid, ?status, "exit of a process without a record");
                    }
                    None
                }
            }
        };
        if let Some(rec) = rec {
            tracing::debug!(pid, ?status, "process exited");
            *lock(&rec.exited_at) = Some(Instant::now());
            // A tree that moved away is killed here afterwards: that is not its end.
            rec.exit.send_if_modified(|end| {
                if end.is_none() {
                    *end = Some(End::Exited(status));
                    true
                } else {
                    false
                }
            });
        }
    }

    /// Forgets exit statuses nobody collected in time.
    fn sweep(&self) {
        lock(&self.departed).retain(|_, at| at.elapsed() < Duration::from_secs(60));
        lock(&self.table)
            .retain(|_, rec| lock(&rec.exited_at).is_none_or(|at| at.elapsed() < KEEP_EXITED));
    }

    /// Starts `spec` for `caller`. With `follower`, output goes there from the first byte;
    /// without, it is kept for a later attach.
    pub async fn spawn(
        &self,
        spec: &RunSpec,
        caller: &Caller,
        follower: Option<mpsc::Sender<Output>>,
    ) -> Result<Result<i32, SpawnFailure>> {
        if spec.detach && caller.uid != 0 {
            let kept = lock(&self.table)
                .values()
                .filter(|h| h.uid == caller.uid)
                .count();
            if kept >= self.detached_per_user as usize {
                return Ok(Err(SpawnFailure {
                    reason: format!(
                        "uid {} already has {kept} processes kept on node {} \
                         (limits.detached_per_user): collect or kill some first",
                        caller.uid, self.node
                    ),
                    errno: libc::EAGAIN,
                }));
            }
        }
        let (in_r, in_w) = if spec.detach {
            let null = std::fs::File::open("/dev/null").context("cannot open /dev/null")?;
            (OwnedFd::from(null), None)
        } else {
            let (r, w) = pipe_pair()?;
            (r, Some(w))
        };
        let (out_r, out_w) = pipe_pair()?;
        let (err_r, err_w) = pipe_pair()?;
        let req = SpawnRequest {
            argv: spec.argv.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            uid: caller.uid,
            gid: caller.gid,
            groups: caller.groups.clone(),
            rlimits: spec.rlimits.clone(),
        };
        let gpid = match self.init.spawn(req, [&in_r, &out_w, &err_w]).await? {
            Ok(gpid) => gpid,
            Err(failure) => return Ok(Err(failure)),
        };
        // The child has its copies; ours of its ends must go, or EOF never comes.
        drop((in_r, out_w, err_w));
        self.record_process(gpid, caller.uid, in_w, out_r, err_r, follower)?;
        tracing::info!(gpid, uid = caller.uid, command = %spec.command_line(), "process started");
        Ok(Ok(gpid))
    }

    /// Keeps a record of a process now hosted here: its stdin writer (if any), its output
    /// pipes, and who follows its output.
    fn record_process(
        &self,
        gpid: i32,
        uid: u32,
        stdin: Option<OwnedFd>,
        out_r: OwnedFd,
        err_r: OwnedFd,
        follower: Option<mpsc::Sender<Output>>,
    ) -> Result<()> {
        let (attach_tx, attach_rx) = mpsc::channel(1);
        let (exit_tx, exit_rx) = watch::channel(None);
        let rec = Arc::new(Hosted {
            uid,
            since: Instant::now(),
            stdin: stdin::Stdin::start(stdin)?,
            attach: attach_tx,
            exit: exit_tx,
            exited_at: Mutex::new(None),
        });
        {
            let mut table = lock(&self.table);
            table.insert(gpid, rec.clone());
            lock(&self.expecting).remove(&gpid);
            if let Some(status) = lock(&self.early).remove(&gpid) {
                *lock(&rec.exited_at) = Some(Instant::now());
                let _ = rec.exit.send(Some(End::Exited(status)));
            }
        }
        let table = self.table.clone();
        let this = Arc::downgrade(&rec);
        output::start(out_r, err_r, attach_rx, exit_rx, follower, move || {
            // the record of a tree that came back here after a migration is not this one
            let mut t = lock(&table);
            if t.get(&gpid)
                .is_some_and(|r| Arc::as_ptr(r) == this.as_ptr())
            {
                t.remove(&gpid);
            }
        })
        .context("cannot watch output pipes")
    }

    /// Takes in a tree restored here (migration or restart): `gpid` is its root, the pipes
    /// are the other ends of the streams it was restored with.
    pub fn adopt(
        &self,
        gpid: i32,
        uid: u32,
        stdin: OwnedFd,
        out_r: OwnedFd,
        err_r: OwnedFd,
    ) -> Result<()> {
        self.record_process(gpid, uid, Some(stdin), out_r, err_r, None)?;
        tracing::info!(gpid, uid, "process restored here");
        Ok(())
    }

    /// Marks `gpid` as moved to `to`: its followers are sent there once its last output here
    /// is delivered, and its coming death here is not its exit.
    pub fn moved(&self, gpid: i32, to: NodeId) {
        lock(&self.departed).insert(gpid, Instant::now());
        if let Some(rec) = lock(&self.table).get(&gpid) {
            let _ = rec.exit.send(Some(End::Moved(to)));
        }
    }

    /// The owner of process `gpid` of this node.
    pub fn owner(&self, gpid: i32) -> Result<u32> {
        if let Some(rec) = lock(&self.table).get(&gpid) {
            return Ok(rec.uid);
        }
        let member = ps::members(self.ns)
            .into_iter()
            .find(|m| m.gpid == gpid)
            .with_context(|| format!("no process {gpid} on node {}", self.node))?;
        ps::view(member, self.node, &self.node_name, self.ns)
            .map(|v| v.uid)
            .with_context(|| format!("process {gpid} has just ended"))
    }

    /// Refuses unless `caller` may act on process `gpid` (with `tree`, on every process of its
    /// tree) as the kernel lets a user trace a process of their own ([`ps::may_act_on`]: every
    /// uid and gid the caller's, and dumpable). Root may act on any process.
    pub fn check_access(&self, gpid: i32, caller: &Caller, tree: bool) -> Result<()> {
        if caller.uid == 0 {
            return Ok(());
        }
        let procs = ps::tree(self.ns, gpid)
            .with_context(|| format!("no process {gpid} on node {}", self.node))?;
        let procs = if tree { &procs[..] } else { &procs[..1] };
        for m in procs {
            ps::may_act_on(*m, caller.uid, caller.gid).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    /// Starts one of ssid's helpers in this node's namespace with `fds` as its fds 0, 1, ...
    pub async fn helper(&self, argv: Vec<Vec<u8>>, fds: &[&OwnedFd]) -> Result<i32> {
        self.init.helper(argv, fds).await
    }

    /// Follows the output of `gpid` from now on (after what was kept for it).
    pub async fn attach(&self, gpid: i32, caller: &Caller) -> Result<mpsc::Receiver<Output>> {
        let rec = self.record(gpid)?;
        if !caller.may_signal(rec.uid) {
            bail!("process {gpid} belongs to another user");
        }
        let (tx, rx) = mpsc::channel(8);
        rec.attach
            .send(tx)
            .await
            .map_err(|_| anyhow::anyhow!("process {gpid} has ended"))?;
        Ok(rx)
    }

    fn record(&self, gpid: i32) -> Result<Arc<Hosted>> {
        lock(&self.table)
            .get(&gpid)
            .cloned()
            .with_context(|| format!("no process {gpid} was started on node {}", self.node))
    }

    /// Passes input from its user to `gpid`. Input for a process that has moved away is given
    /// back (`Some`): the caller sends it where the process went.
    pub async fn input(&self, gpid: i32, input: Input) -> Result<Option<Input>> {
        let rec = match self.record(gpid) {
            Ok(rec) => rec,
            Err(_) if lock(&self.departed).contains_key(&gpid) => return Ok(Some(input)),
            Err(e) => return Err(e),
        };
        match input {
            Input::Stdin(bytes) => {
                if !rec.stdin.send(&bytes).await {
                    return Ok(Some(Input::Stdin(bytes)));
                }
            }
            Input::StdinEof => {
                if !rec.stdin.end() {
                    return Ok(Some(Input::StdinEof));
                }
            }
            Input::Signal(sig) => {
                // As a terminal does: to the process group the program leads.
                if let Err(e) = self.init.signal(-gpid, sig).await {
                    tracing::debug!(gpid, sig, error = %e, "signal not delivered");
                }
            }
        }
        Ok(None)
    }

    /// Sends `sig` to process `gpid` of this node, if `caller` may ([`ProcMan::check_access`]).
    pub async fn kill(&self, gpid: i32, sig: i32, caller: &Caller) -> Result<()> {
        self.check_access(gpid, caller, false)?;
        self.init.signal(gpid, sig).await?;
        // A tree on its way out may already run on its target: the signal goes there too.
        for pending in lock(&self.migrating).values_mut() {
            pending.push((gpid, sig, caller.clone()));
        }
        Ok(())
    }

    /// A migration of the tree of `root` away from here begins: signals sent from now on are
    /// kept for [`ProcMan::end_migration`].
    pub fn begin_migration(&self, root: i32) {
        lock(&self.migrating).insert(root, Vec::new());
    }

    /// The migration of the tree of `root` is over: the signals sent to processes of this node
    /// meanwhile (gpid, signal, who sent it).
    pub fn end_migration(&self, root: i32) -> Vec<SentSignal> {
        lock(&self.migrating).remove(&root).unwrap_or_default()
    }

    /// Whether process `gpid` is in this node's namespace (zombies included).
    pub fn holds(&self, gpid: i32) -> bool {
        ps::members(self.ns).iter().any(|m| m.gpid == gpid)
    }

    /// Every process of this node's namespace.
    pub fn ps(&self) -> Vec<ProcessView> {
        ps::members(self.ns)
            .into_iter()
            .filter_map(|m| ps::view(m, self.node, &self.node_name, self.ns))
            .collect()
    }

    /// The trees this node could move away: processes started or restored here that still
    /// run and have no input in flight (see [`Hosted::input_in_flight`]), with the CPU their
    /// whole tree wants (what it used, per `cpu_by_pid` with pids as /proc sees them, or its
    /// runnable threads if more) and how long they have been here.
    pub fn movable(&self, cpu_by_pid: &HashMap<i32, f64>) -> Vec<scheduler::LocalProc> {
        let members = ps::members(self.ns);
        let gpid_of: HashMap<i32, i32> = members.iter().map(|m| (m.root_pid, m.gpid)).collect();
        let roots: HashMap<i32, Instant> = lock(&self.table)
            .iter()
            .filter(|(_, r)| r.exit.borrow().is_none() && !r.input_in_flight())
            .map(|(g, r)| (*g, r.since))
            .collect();
        let parent: HashMap<i32, i32> = members
            .iter()
            .filter_map(|m| {
                let stat = procfs::process::Process::new(m.root_pid)
                    .ok()?
                    .stat()
                    .ok()?;
                Some((m.gpid, *gpid_of.get(&stat.ppid)?))
            })
            .collect();
        let mut cpu: HashMap<i32, f64> = HashMap::new();
        for m in &members {
            // Each process's CPU counts for the tree it belongs to.
            let mut g = m.gpid;
            let mut hops = 0;
            while !roots.contains_key(&g) && hops < 64 {
                match parent.get(&g) {
                    Some(&p) => g = p,
                    None => break,
                }
                hops += 1;
            }
            if roots.contains_key(&g) {
                // What moves with a process is its demand for CPU: at least the CPU it got,
                // and at least one CPU per thread that runs or waits to (a throttled or
                // crowded process gets less than it wants).
                let got = cpu_by_pid.get(&m.root_pid).copied().unwrap_or(0.0);
                let want = f64::from(ps::running_threads(m.root_pid));
                *cpu.entry(g).or_default() += got.max(want);
            }
        }
        roots
            .into_iter()
            .filter(|(g, _)| members.iter().any(|m| m.gpid == *g))
            .map(|(gpid, since)| scheduler::LocalProc {
                gpid,
                cpu: cpu.get(&gpid).copied().unwrap_or(0.0),
                resident_s: since.elapsed().as_secs_f64(),
            })
            .collect()
    }

    /// Stops the input of `gpid`, which moved away (its copy here is frozen), and takes out
    /// what it had not read, to go with it.
    pub fn hand_over_input(&self, gpid: i32) -> Result<Leftover> {
        self.record(gpid)?.stdin.hand_over()
    }

    /// Bytes queued for `gpid` or in its stdin pipe, not read yet (0 if there is no such
    /// process).
    pub fn unread_input(&self, gpid: i32) -> u64 {
        self.record(gpid).map_or(0, |rec| rec.stdin.unread() as u64)
    }

    /// Puts what `gpid` had not read of its input on the node it came from in front of its
    /// input here.
    pub fn feed_input(&self, gpid: i32, left: Leftover) -> Result<()> {
        self.record(gpid)?.stdin.feed_front(left);
        Ok(())
    }

    /// Pids (in the root namespace) of every process this node hosts, for the probes.
    pub fn hosted_pids(&self) -> Vec<i32> {
        ps::members(self.ns)
            .into_iter()
            .map(|m| m.root_pid)
            .collect()
    }
}
