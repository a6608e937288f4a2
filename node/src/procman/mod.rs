//! The local process manager: the processes this node hosts, in its pid namespace.
//!
//! It starts programs through the namespace init with pipes for stdin, stdout and stderr,
//! keeps one [`Record`] per started (or arrived) process (its pipes, its follower, its exit
//! status), relays input and signals, and lists every process of the namespace for `ssi ps`.
//! Where each gpid stands (starting, running, on its way away or here, departed, ended) is one
//! [`hosted::HostedState`], changed only through the guard methods of [`hosted::Hosted`].

mod hosted;
mod output;
pub mod ps;
mod stdin;

pub use hosted::{HostedState, Moving, SentSignal};
pub use output::End;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::fcntl::OFlag;
use ssi_core::process::{Caller, ExitStatus, Input, Output, ProcState, ProcessView, RunSpec};
use ssi_core::rpc::Handover;
use ssi_core::NodeId;
use tokio::sync::{mpsc, watch};

use crate::cgroup::UserCgroups;
use crate::nsinit::client::{InitClient, InitEvent, SpawnFailure};
use crate::nsinit::SpawnRequest;
use hosted::{ExitMeans, Hosted};

/// How long an exit status nobody collected is kept (detached processes).
const KEEP_EXITED: Duration = Duration::from_secs(3600);

/// The input of a tree whose move was committed (see [`ProcMan::commit_leaving`]).
#[derive(Debug)]
pub enum Taken {
    /// What its frozen copy had not read, to go with it.
    Input(Handover),
    /// Taking it out failed: it stays behind (why, and how many bytes).
    InputLeft(anyhow::Error, u64),
}

/// What this node keeps for one process it hosts: its owner, its pipes, who follows it.
#[derive(Debug)]
pub struct Record {
    uid: u32,
    /// When it started or arrived here.
    since: Instant,
    stdin: Arc<stdin::Stdin>,
    attach: mpsc::Sender<mpsc::Sender<Output>>,
    exit: watch::Sender<Option<End>>,
}

impl Record {
    /// Whether input is on its way into the program: queued for it or in its stdin pipe,
    /// not read yet. Re-balancing leaves such a process where it is: one its user is feeding
    /// moves only by an explicit `ssi migrate` (docs/SCHEDULER.md).
    fn input_in_flight(&self) -> bool {
        self.stdin.unread() > 0
    }

    /// Tells its followers how it ended here (once).
    fn end(&self, end: End) {
        self.exit.send_if_modified(|e| {
            if e.is_none() {
                *e = Some(end);
                true
            } else {
                false
            }
        });
    }

    /// A record with no pipes and nobody to follow it (unit tests of the states).
    #[cfg(test)]
    pub(crate) fn detached_for_tests() -> Record {
        let (attach, _) = mpsc::channel(1);
        let (exit, _) = watch::channel(None);
        Record {
            uid: 0,
            since: Instant::now(),
            stdin: stdin::Stdin::start(None).expect("stdin"),
            attach,
            exit,
        }
    }
}

/// The process manager of this node.
#[derive(Debug)]
pub struct ProcMan {
    node: NodeId,
    node_name: String,
    init: Arc<InitClient>,
    ns: ps::Ns,
    hosted: Arc<Mutex<Hosted>>,
    /// Most processes of one user (but root) kept here when a detached one is started
    /// (`limits.detached_per_user`): each keeps up to 1 MiB of output for an hour after it ends.
    detached_per_user: u32,
    /// The fault-tolerant trees hosted here (by root gpid) and their checkpoints, as `ssi ps`
    /// shows them; kept up to date by `crate::ft`.
    ft: Mutex<HashMap<i32, ssi_core::process::FtView>>,
    /// The users' cgroups programs start in, if the node has them.
    cgroups: Option<Arc<UserCgroups>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")
}

/// The pipes a process restored here gets as its standard streams (`theirs`, for the restore
/// helper), and the ends its record keeps.
#[derive(Debug)]
pub struct Streams {
    /// The ends for the restored tree: stdin's read end, stdout's and stderr's write ends.
    pub theirs: [OwnedFd; 3],
    /// The ends its record keeps: stdin's write end, stdout's and stderr's read ends.
    pub ours: [OwnedFd; 3],
}

impl Streams {
    /// Three fresh pipes.
    pub fn new() -> Result<Streams> {
        let (stdin_r, stdin_w) = pipe_pair()?;
        let (out_r, out_w) = pipe_pair()?;
        let (err_r, err_w) = pipe_pair()?;
        Ok(Streams {
            theirs: [stdin_r, out_w, err_w],
            ours: [stdin_w, out_r, err_r],
        })
    }
}

impl ProcMan {
    /// A manager for the namespace whose init is `init` (pid `init_pid` in the root
    /// namespace); `events` carries what the init reports.
    pub fn start(
        node: NodeId,
        node_name: String,
        init: Arc<InitClient>,
        init_pid: i32,
        mut events: mpsc::Receiver<InitEvent>,
        detached_per_user: u32,
        cgroups: Option<Arc<UserCgroups>>,
    ) -> Result<Arc<ProcMan>> {
        let ns = ps::Ns {
            inode: ps::pid_ns_inode(init_pid)
                .context("cannot read the pid namespace of the init")?,
            init: init_pid,
        };
        let pm = Arc::new(ProcMan {
            node,
            node_name,
            init,
            ns,
            hosted: Arc::default(),
            detached_per_user,
            ft: Mutex::default(),
            cgroups,
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
                lock(&pm.hosted).sweep(KEEP_EXITED);
            }
        });
        Ok(pm)
    }

    /// Notes that `gpid` was just started or is being restored: an exit of it before its
    /// record exists is kept for the record. Exits of other pids without a record (ssid's
    /// helpers, children of programs, a tree that moved away) are not kept: a later process
    /// with the same pid must not inherit them.
    pub fn expect(&self, gpid: i32) {
        lock(&self.hosted).expect(gpid);
    }

    fn exited(&self, pid: i32, status: ExitStatus) {
        if let Some(c) = &self.cgroups {
            c.prune();
        }
        match lock(&self.hosted).exited(pid, status) {
            ExitMeans::End(rec) => {
                tracing::debug!(pid, ?status, "process exited");
                rec.end(End::Exited(status));
            }
            ExitMeans::Nothing => {
                tracing::debug!(pid, ?status, "exit of a process without a record")
            }
        }
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
            let kept = lock(&self.hosted).kept_by(caller.uid);
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
        let joining = match &self.cgroups {
            Some(c) => Some(c.join(caller.uid)?),
            None => None,
        };
        let req = SpawnRequest {
            argv: spec.argv.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            uid: caller.uid,
            gid: caller.gid,
            groups: caller.groups.clone(),
            rlimits: spec.rlimits.clone(),
            cgroup: joining.as_ref().map(|j| j.procs.clone()),
        };
        let spawned = self.init.spawn(req, [&in_r, &out_w, &err_w]).await?;
        drop(joining);
        let gpid = match spawned {
            Ok(gpid) => gpid,
            Err(failure) => return Ok(Err(failure)),
        };
        // The child has its copies; ours of its ends must go, or EOF never comes.
        drop((in_r, out_w, err_w));
        self.record_process(gpid, caller.uid, in_w, out_r, err_r, follower)?;
        tracing::info!(gpid, uid = caller.uid, command = %spec.command_line(), "process started");
        Ok(Ok(gpid))
    }

    /// A record for a process hosted here: its stdin writer (if any), its output pipes, and
    /// who follows its output; it goes from the states once its end has been delivered.
    fn make_record(
        &self,
        gpid: i32,
        uid: u32,
        stdin: Option<OwnedFd>,
        out_r: OwnedFd,
        err_r: OwnedFd,
        follower: Option<mpsc::Sender<Output>>,
    ) -> Result<Arc<Record>> {
        let (attach_tx, attach_rx) = mpsc::channel(1);
        let (exit_tx, exit_rx) = watch::channel(None);
        let rec = Arc::new(Record {
            uid,
            since: Instant::now(),
            stdin: stdin::Stdin::start(stdin)?,
            attach: attach_tx,
            exit: exit_tx,
        });
        let hosted = self.hosted.clone();
        let this = Arc::downgrade(&rec);
        output::start(out_r, err_r, attach_rx, exit_rx, follower, move || {
            if let Some(rec) = this.upgrade() {
                lock(&hosted).ended(gpid, &rec);
            }
        })
        .context("cannot watch output pipes")?;
        Ok(rec)
    }

    /// Keeps a record of a process started here (epoch 0: it never moved).
    fn record_process(
        &self,
        gpid: i32,
        uid: u32,
        stdin: Option<OwnedFd>,
        out_r: OwnedFd,
        err_r: OwnedFd,
        follower: Option<mpsc::Sender<Output>>,
    ) -> Result<()> {
        let rec = self.make_record(gpid, uid, stdin, out_r, err_r, follower)?;
        if let Some(status) = lock(&self.hosted).run(gpid, rec.clone(), 0)? {
            rec.end(End::Exited(status));
        }
        Ok(())
    }

    /// Takes in a checkpoint restored here: `gpid` is its root, `ours` our ends of the pipes
    /// it was restored with ([`Streams::ours`]).
    pub fn adopt(&self, gpid: i32, uid: u32, ours: [OwnedFd; 3]) -> Result<()> {
        let [stdin, out_r, err_r] = ours;
        self.record_process(gpid, uid, Some(stdin), out_r, err_r, None)?;
        tracing::info!(gpid, uid, "process restored here");
        Ok(())
    }

    /// A tree is being received from `from` under `epoch`: refused if a process holds `gpid`
    /// here, or this node is receiving or sending it.
    pub fn begin_incoming(&self, gpid: i32, from: NodeId, epoch: u64) -> Result<()> {
        if self.present(gpid) {
            bail!("pid {gpid} is in use on node {}", self.node);
        }
        lock(&self.hosted).begin_incoming(gpid, from, epoch)
    }

    /// The received tree of `gpid`, whole and held, gets its record, with `ours`, our ends of
    /// its pipes ([`Streams::ours`]).
    pub fn take_in(&self, gpid: i32, uid: u32, ours: [OwnedFd; 3]) -> Result<()> {
        let [stdin, out_r, err_r] = ours;
        let rec = self.make_record(gpid, uid, Some(stdin), out_r, err_r, None)?;
        lock(&self.hosted).take_in(gpid, rec)
    }

    /// The received tree of `gpid` runs here now.
    pub fn arrived(&self, gpid: i32) -> Result<()> {
        lock(&self.hosted).arrived(gpid)?;
        tracing::info!(gpid, "migrated in");
        Ok(())
    }

    /// The tree being received as `gpid` is not coming: its record goes, its followers are
    /// told `why`.
    pub fn discard_incoming(&self, gpid: i32, why: &str) {
        if let Some(rec) = lock(&self.hosted).discard_incoming(gpid) {
            rec.end(End::Discarded(why.to_string()));
        }
    }

    /// A move of `gpid` to `to` begins; its epoch.
    pub fn begin_leaving(&self, gpid: i32, to: NodeId) -> Result<u64> {
        let floor = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros(),
        )
        .unwrap_or(u64::MAX);
        lock(&self.hosted).begin_leaving(gpid, to, floor)
    }

    /// The move of `gpid` is decided: its frozen copy reads no more, and what it had not read
    /// of its input is taken out to go with it; input that comes from now on is given back to
    /// its sender; its coming death here is not its exit. `Err` when the tree is not on its
    /// way out any more (it ended meanwhile): nothing was done, and the move must not go on.
    pub fn commit_leaving(&self, gpid: i32) -> Result<Taken> {
        let rec = lock(&self.hosted).commit_leaving(gpid)?;
        Ok(match rec.stdin.hand_over() {
            Ok(input) => Taken::Input(input),
            Err(e) => Taken::InputLeft(e, rec.stdin.unread() as u64),
        })
    }

    /// Follows the end of `gpid`'s record here: the receiver sees `Some` once its followers
    /// are told how it ended (its exit, or that it moved or was lost).
    pub fn watch_end(&self, gpid: i32) -> Option<watch::Receiver<Option<End>>> {
        lock(&self.hosted)
            .record(gpid)
            .map(|rec| rec.exit.subscribe())
    }

    /// The move of `gpid` is over: it runs on here (`None`), or its copy here is gone and its
    /// followers learn how it ended (`Moved` once the target runs it, with its input in front:
    /// they send it theirs only then). The signals sent to processes of this node meanwhile
    /// (gpid, signal, who sent it).
    pub fn end_leaving(&self, gpid: i32, gone: Option<End>) -> Vec<SentSignal> {
        let Some((rec, signals)) = lock(&self.hosted).end_leaving(gpid, gone.is_some()) else {
            return Vec::new();
        };
        if let Some(end) = gone {
            rec.end(end);
        }
        signals
    }

    /// Sends SIGKILL to `root` and every process of this node under it (a copy whose helper
    /// is gone).
    pub async fn kill_tree(&self, root: i32) {
        for gpid in ps::tree(&self.ps_all(), root) {
            let _ = self.init.signal(gpid, libc::SIGKILL).await;
        }
    }

    /// The owner of process `gpid` of this node.
    pub fn owner(&self, gpid: i32) -> Result<u32> {
        if let Some(rec) = lock(&self.hosted).record(gpid) {
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
    /// uid and gid the caller's, and dumpable). Root may act on any process. A process no
    /// longer in this namespace (on its way to another node) is judged by its recorded owner.
    pub fn check_access(&self, gpid: i32, caller: &Caller, tree: bool) -> Result<()> {
        if caller.uid == 0 {
            return Ok(());
        }
        let Some(procs) = ps::tree_members(self.ns, gpid) else {
            let uid = self.owner(gpid)?;
            if uid != caller.uid {
                bail!(
                    "process {gpid} belongs to user {}: permission denied",
                    ps::user_name(uid)
                );
            }
            return Ok(());
        };
        let procs = if tree { &procs[..] } else { &procs[..1] };
        for m in procs {
            ps::may_act_on(*m, caller.uid, caller.gid).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    /// The row `ssi ps` shows for `gpid` of this node, if it runs here.
    pub fn row(&self, gpid: i32) -> Option<ProcessView> {
        let member = ps::members(self.ns).into_iter().find(|m| m.gpid == gpid)?;
        ps::view(member, self.node, &self.node_name, self.ns)
    }

    /// Starts one of ssid's helpers in this node's namespace with `fds` as its fds 0, 1, ...
    pub async fn helper(&self, argv: Vec<Vec<u8>>, fds: &[&OwnedFd]) -> Result<i32> {
        self.init.helper(argv, fds).await
    }

    /// Kills helper `pid` (a pid of this node's namespace).
    pub async fn kill_helper(&self, pid: i32) -> Result<()> {
        self.init.signal(pid, libc::SIGKILL).await
    }

    /// Follows the output of `gpid` from now on (after what was kept for it).
    pub async fn attach(&self, gpid: i32, caller: &Caller) -> Result<mpsc::Receiver<Output>> {
        let rec = self.record(gpid)?;
        if !caller.may_signal(rec.uid) {
            bail!("process {gpid} belongs to another user");
        }
        // its input and output are a stream the user started it with, but what runs there
        // now may have become another's (a set-id program, one that made itself not
        // dumpable): the kernel would not let the user trace it, so they may not attach
        self.check_access(gpid, caller, false)?;
        let (tx, rx) = mpsc::channel(8);
        rec.attach
            .send(tx)
            .await
            .map_err(|_| anyhow::anyhow!("process {gpid} has ended"))?;
        Ok(rx)
    }

    fn record(&self, gpid: i32) -> Result<Arc<Record>> {
        lock(&self.hosted)
            .record(gpid)
            .with_context(|| format!("no process {gpid} was started on node {}", self.node))
    }

    /// Passes input from its user to `gpid`. Input for a process that has moved away is given
    /// back (`Some`): the caller sends it where the process went.
    pub async fn input(&self, gpid: i32, input: Input) -> Result<Option<Input>> {
        let rec = match self.record(gpid) {
            Ok(rec) => rec,
            Err(_) if lock(&self.hosted).departed().contains(&gpid) => return Ok(Some(input)),
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
    /// A tree on its way out may already run on its target: the signal is kept to go there
    /// too (and only there once the copy here is being killed). A tree that left gets nothing
    /// here: the node it went to, where the signal is to go (and its owner checked).
    pub async fn kill(&self, gpid: i32, sig: i32, caller: &Caller) -> Result<Option<NodeId>> {
        if let Some(to) = lock(&self.hosted).departed_to(gpid) {
            return Ok(Some(to));
        }
        self.check_access(gpid, caller, false)?;
        let gone = lock(&self.hosted).signalled(gpid, sig, caller);
        if !gone {
            self.init.signal(gpid, sig).await?;
        }
        Ok(None)
    }

    /// Whether process `gpid` is in this node's namespace (but a zombie the init is about to
    /// reap).
    pub fn holds(&self, gpid: i32) -> bool {
        ps::members(self.ns).iter().any(|m| m.gpid == gpid)
    }

    /// Whether pid `gpid` is taken in this node's namespace, by anything.
    fn present(&self, gpid: i32) -> bool {
        ps::taken(self.ns, gpid)
    }

    /// Waits, `limit` at most, until pid `gpid` is free here (the copy of a tree that moved
    /// away is reaped), so that the tree can come back at once.
    pub async fn wait_gone(&self, gpid: i32, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.present(gpid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every process of this node's namespace, as /proc shows it.
    fn ps_all(&self) -> Vec<ProcessView> {
        ps::members(self.ns)
            .into_iter()
            .filter_map(|m| ps::view(m, self.node, &self.node_name, self.ns))
            .collect()
    }

    /// Records what `ssi ps` shows of fault-tolerant tree `gpid` (`None`: it is not, or no
    /// longer, protected here).
    pub fn set_ft(&self, gpid: i32, view: Option<ssi_core::process::FtView>) {
        let mut ft = lock(&self.ft);
        match view {
            Some(v) => ft.insert(gpid, v),
            None => ft.remove(&gpid),
        };
    }

    /// Whether tree `gpid` is fault-tolerant and hosted here.
    pub fn is_ft(&self, gpid: i32) -> bool {
        lock(&self.ft).contains_key(&gpid)
    }

    /// Every process of this node's namespace as `ssi ps` shows it: a tree on its way away or
    /// here is `migrating` (its rows name the source, and the target in `to`); the copy of a
    /// tree that moved away is not listed.
    pub fn ps(&self) -> Vec<ProcessView> {
        let mut all = self.ps_all();
        let (moving, departed) = {
            let h = lock(&self.hosted);
            (h.moving(self.node), h.departed())
        };
        for root in departed {
            let gone = ps::tree(&all, root);
            all.retain(|p| !gone.contains(&p.gpid));
        }
        {
            let ft = lock(&self.ft);
            for p in all.iter_mut() {
                p.ft = ft.get(&p.gpid).cloned();
            }
        }
        for (root, m) in moving {
            let tree = ps::tree(&all, root);
            for p in all.iter_mut().filter(|p| tree.contains(&p.gpid)) {
                p.state = ProcState::Migrating;
                p.to = Some(m.to);
                if p.node != m.from {
                    p.node = m.from;
                    p.node_name = String::new();
                }
            }
        }
        all
    }

    /// The trees this node could move away: processes started or restored here that still
    /// run and have no input in flight (see [`Record::input_in_flight`]), with the CPU their
    /// whole tree wants (what it used, per `cpu_by_pid` with pids as /proc sees them, or its
    /// runnable threads if more) and how long they have been here.
    pub fn movable(&self, cpu_by_pid: &HashMap<i32, f64>) -> Vec<scheduler::LocalProc> {
        let members = ps::members(self.ns);
        let gpid_of: HashMap<i32, i32> = members.iter().map(|m| (m.root_pid, m.gpid)).collect();
        let roots: HashMap<i32, Instant> = lock(&self.hosted)
            .running()
            // fault-tolerant trees stay with the node that checkpoints them (docs/FT.md)
            .filter(|(g, r)| r.exit.borrow().is_none() && !r.input_in_flight() && !self.is_ft(*g))
            .map(|(g, r)| (g, r.since))
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

    /// Puts what `gpid` had not read of its input on the node it came from in front of its
    /// input here.
    pub fn feed_input(&self, gpid: i32, left: Handover) -> Result<()> {
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
