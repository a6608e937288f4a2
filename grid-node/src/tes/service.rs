//! The task service: accepting, listing, cancelling tasks and running them.
//!
//! ```text
//!  create ─ check ─ policy(submit, queue) ─ lease account ─ store QUEUED ─ spawn worker
//!  worker:  INITIALIZING (prepare account, stage inputs, volumes)
//!        -> RUNNING (executors one after another through the Runner; wall time, retries)
//!        -> outputs staged -> COMPLETE | EXECUTOR_ERROR | SYSTEM_ERROR
//!  cancel:  CANCELING (the running executor is killed) -> CANCELED
//! ```
//!
//! Every transition is written to the replicated store before it is acted on, so any node can
//! answer `get` and `list`, and a restarted service finds the tasks it must resume
//! ([`TaskService::resume`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::model::{ExecutorLog, ListTasksResponse, State, Task, TaskLog};
use super::runner::{ExecEnd, ExecRequest, Runner};
use super::staging;
use super::validate::{self, Checked};
use super::view::{self, View};
use crate::accounts::{AccountMapper, Lease, PoolConfig};
use crate::credential::VoIdentity;
use crate::error::{Error, Result};
use crate::policy::{Action, PolicyEngine, Principal, Resource};
use crate::store::{self, GridStore, Table};
use crate::vo::VoRegistry;

/// Settings of the job service.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TesConfig {
    /// Queues by name, each a set of node labels its executors must run on (`default` with no
    /// labels if empty). A VO's queue list names which of them its members may use.
    #[serde(default)]
    pub queues: BTreeMap<String, BTreeMap<String, String>>,
    /// Subjects of cluster administrators (may do anything the policies let them).
    #[serde(default)]
    pub cluster_admins: BTreeSet<String>,
    /// Storage the executors can reach, for service-info (e.g. `file:///dfs`).
    #[serde(default)]
    pub storage: Vec<String>,
    /// The name this service's workers write in the tasks they run (ssid: `node-<id>`), so that
    /// services sharing one store each resume their own tasks and adopt those of a dead one.
    #[serde(skip)]
    pub worker: Option<String>,
}

/// A task as stored: the TES task and what the service decided about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task, with state and logs.
    pub task: Task,
    /// Its owner's subject.
    pub owner: String,
    /// The VO it was submitted in.
    pub vo: String,
    /// The queue chosen.
    pub queue: String,
    /// The account it runs as.
    pub account: Lease,
    /// What its backend parameters asked for.
    pub checked: Checked,
    /// Whether a cancel was asked.
    pub cancel: bool,
    /// The service whose worker runs it ([`TesConfig::worker`]).
    #[serde(default)]
    pub worker: Option<String>,
}

impl TaskRecord {
    fn resource(&self) -> Resource {
        Resource::Task {
            id: self.task.id.clone().unwrap_or_default(),
            owner: self.owner.clone(),
            vo: self.vo.clone(),
            queue: self.queue.clone(),
        }
    }

    fn state(&self) -> State {
        self.task.state.unwrap_or(State::Unknown)
    }

    fn log(&mut self) -> &mut TaskLog {
        let logs = self.task.logs.get_or_insert_with(Vec::new);
        if logs.is_empty() {
            logs.push(TaskLog::default());
        }
        let last = logs.len() - 1;
        &mut logs[last]
    }

    fn system_log(&mut self, line: String) {
        self.log()
            .system_logs
            .get_or_insert_with(Vec::new)
            .push(line);
    }
}

/// Filters of a list request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only names starting with this.
    pub name_prefix: Option<String>,
    /// Only tasks in this state.
    pub state: Option<State>,
    /// Only tasks with these tags (`(key, value)`; an empty value: the key alone).
    pub tags: Vec<(String, String)>,
    /// Page size (default 256, at most 2048).
    pub page_size: Option<usize>,
    /// Where the previous page ended.
    pub page_token: Option<String>,
    /// How much of each task to show.
    pub view: View,
}

/// RFC 3339 UTC time of now.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// How often a worker looks for a cancel asked elsewhere.
const CANCEL_POLL: Duration = Duration::from_secs(1);

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The job service.
#[derive(Debug)]
pub struct TaskService {
    store: Arc<dyn GridStore>,
    runner: Arc<dyn Runner>,
    policy: Arc<PolicyEngine>,
    pools: Vec<PoolConfig>,
    config: TesConfig,
    /// Cancel switches of the tasks this node's workers run.
    running: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl TaskService {
    /// A service over these parts.
    pub fn new(
        store: Arc<dyn GridStore>,
        runner: Arc<dyn Runner>,
        policy: Arc<PolicyEngine>,
        pools: Vec<PoolConfig>,
        config: TesConfig,
    ) -> Arc<Self> {
        Arc::new(TaskService {
            store,
            runner,
            policy,
            pools,
            config,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// The service's settings.
    pub fn config(&self) -> &TesConfig {
        &self.config
    }

    fn principal(&self, who: &VoIdentity) -> Principal {
        Principal::from_identity(who, self.config.cluster_admins.contains(&who.subject))
    }

    /// The first queue of `zones` (or `default`) that `who` may submit to.
    async fn choose_queue(&self, who: &Principal, zones: &[String]) -> Result<String> {
        let default = ["default".to_string()];
        let zones = if zones.is_empty() {
            &default[..]
        } else {
            zones
        };
        let vos = VoRegistry::new(&*self.store).list().await?;
        let mut denied = None;
        for (i, z) in zones.iter().enumerate() {
            if !self.config.queues.contains_key(z) && z != "default" {
                return Err(Error::invalid(
                    format!("resources.zones[{i}]"),
                    format!("no queue {z:?}"),
                ));
            }
            let allowed: Vec<String> = vos
                .iter()
                .filter(|v| v.queues.contains(z))
                .map(|v| v.name.clone())
                .collect();
            let q = Resource::Queue {
                name: z.clone(),
                vos: allowed,
            };
            match self.policy.authorize(who, Action::Submit, &q) {
                Ok(()) => return Ok(z.clone()),
                Err(e) => denied = Some(e),
            }
        }
        Err(denied.unwrap_or_else(|| Error::Policy("no queue".into())))
    }

    /// Accepts `task` from `who`; returns its id. Nothing is stored unless it is accepted.
    pub async fn create(self: &Arc<Self>, who: &VoIdentity, mut task: Task) -> Result<String> {
        let checked = validate::check(&task)?;
        let principal = self.principal(who);
        let zones = task
            .resources
            .as_ref()
            .and_then(|r| r.zones.clone())
            .unwrap_or_default();
        let queue = self.choose_queue(&principal, &zones).await?;
        let account = AccountMapper::new(&*self.store, &self.pools)
            .map(&who.vo, &who.subject, unix_now())
            .await?;
        let id = uuid::Uuid::now_v7().to_string();
        task.id = Some(id.clone());
        task.state = Some(State::Queued);
        task.creation_time = Some(now_rfc3339());
        let mut rec = TaskRecord {
            task,
            owner: who.subject.clone(),
            vo: who.vo.clone(),
            queue,
            account,
            checked,
            cancel: false,
            worker: self.config.worker.clone(),
        };
        for p in rec.checked.ignored.clone() {
            rec.system_log(format!(
                "backend parameter {p} is not supported and was ignored"
            ));
        }
        if !store::cas_json(&*self.store, Table::Tasks, &id, None, Some(&rec)).await? {
            return Err(Error::Store(format!("task {id}: id already used")));
        }
        tracing::info!(task = %id, subject = %who.subject, vo = %who.vo, queue = %rec.queue, account = %rec.account.account, "task accepted");
        self.start_worker(id.clone());
        Ok(id)
    }

    fn start_worker(self: &Arc<Self>, id: String) {
        let (tx, rx) = watch::channel(false);
        if let Ok(mut r) = self.running.lock() {
            r.insert(id.clone(), tx);
        }
        let me = self.clone();
        tokio::spawn(async move {
            // A cancel asked through another service sharing the store reaches this worker
            // through the store.
            let watcher = me.clone().watch_cancel(id.clone());
            let end = me.work(&id, rx).await;
            watcher.abort();
            if let Err(e) = end {
                tracing::warn!(task = %id, error = %e, "task worker failed");
                let reason = e.to_string();
                let _ = me
                    .update(&id, |r| {
                        r.system_log(format!("worker: {reason}"));
                        finish(r, State::SystemError);
                    })
                    .await;
            }
            if let Ok(mut r) = me.running.lock() {
                r.remove(&id);
            }
        });
    }

    /// Polls the task's cancel flag in the store and pulls this worker's cancel switch.
    fn watch_cancel(self: Arc<Self>, id: String) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CANCEL_POLL).await;
                if let Ok(rec) = self.load(&id).await {
                    if rec.cancel {
                        if let Some(tx) = self.running.lock().ok().and_then(|r| r.get(&id).cloned())
                        {
                            let _ = tx.send(true);
                        }
                        return;
                    }
                }
            }
        })
    }

    async fn load(&self, id: &str) -> Result<TaskRecord> {
        match store::get_json::<TaskRecord>(&*self.store, Table::Tasks, id).await? {
            Some((r, _)) => Ok(r),
            None => Err(Error::NoSuchTask(id.to_string())),
        }
    }

    async fn update(
        &self,
        id: &str,
        mut change: impl FnMut(&mut TaskRecord),
    ) -> Result<TaskRecord> {
        let r = store::update_json::<TaskRecord, _>(&*self.store, Table::Tasks, id, |cur| {
            let mut r = cur.ok_or_else(|| Error::NoSuchTask(id.to_string()))?;
            change(&mut r);
            Ok(Some(r))
        })
        .await?;
        r.ok_or_else(|| Error::NoSuchTask(id.to_string()))
    }

    /// Moves the task to `state` unless it was cancelled or ended meanwhile; returns whether
    /// the worker should go on.
    async fn advance(&self, id: &str, state: State) -> Result<bool> {
        let r = self
            .update(id, |r| {
                if !r.cancel && !r.state().is_final() {
                    r.task.state = Some(state);
                }
            })
            .await?;
        Ok(!r.cancel && r.state() == state)
    }

    async fn work(&self, id: &str, mut cancel: watch::Receiver<bool>) -> Result<()> {
        let rec = self.load(id).await?;
        if !self.advance(id, State::Initializing).await? {
            return self.end(id, State::Canceled, None).await;
        }
        let labels = self
            .config
            .queues
            .get(&rec.queue)
            .cloned()
            .unwrap_or_default();
        let account = rec.account.clone();
        self.update(id, |r| {
            let queue = r.queue.clone();
            let meta = r.log().metadata.get_or_insert_with(BTreeMap::new);
            meta.insert("ssi.account".into(), account.account.clone());
            meta.insert("ssi.uid".into(), account.uid.to_string());
            meta.insert("ssi.queue".into(), queue);
            r.log().start_time = Some(now_rfc3339());
        })
        .await?;
        if let Err(reason) = self.stage_in(&rec).await {
            return self.end(id, State::SystemError, Some(reason)).await;
        }
        if !self.advance(id, State::Running).await? {
            return self.end(id, State::Canceled, None).await;
        }
        let deadline = rec.checked.wall_time.map(|d| Instant::now() + d);
        for (i, ex) in rec.task.executors.iter().enumerate() {
            let r = ExecRequest {
                task_id: id.to_string(),
                index: i,
                command: ex.command.clone(),
                workdir: ex.workdir.as_ref().map(Into::into),
                env: ex.env.clone().unwrap_or_default(),
                stdin: ex.stdin.as_ref().map(Into::into),
                stdout: ex.stdout.as_ref().map(Into::into),
                stderr: ex.stderr.as_ref().map(Into::into),
                cpu_cores: rec
                    .task
                    .resources
                    .as_ref()
                    .and_then(|r| r.cpu_cores)
                    .unwrap_or(1),
                ram_gb: rec
                    .task
                    .resources
                    .as_ref()
                    .and_then(|r| r.ram_gb)
                    .unwrap_or(0.0),
                queue: rec.queue.clone(),
                labels: labels.clone(),
                account: rec.account.clone(),
                mpi_ranks: rec.checked.mpi_ranks,
            };
            match self
                .run_executor(id, r, rec.checked.retries, deadline, &mut cancel)
                .await?
            {
                Step::Next => {}
                Step::Stop(state, reason)
                    if ex.ignore_error == Some(true) && state == State::ExecutorError =>
                {
                    self.update(id, |t| {
                        t.system_log(format!(
                            "executors[{i}]: {} (ignored)",
                            reason.clone().unwrap_or_default()
                        ))
                    })
                    .await?;
                }
                Step::Stop(state, reason) => return self.end(id, state, reason).await,
            }
        }
        let outputs = rec.task.outputs.clone().unwrap_or_default();
        let staged = staging::as_account(&rec.account, move || {
            let mut logs = Vec::new();
            for (i, o) in outputs.iter().enumerate() {
                logs.extend(staging::stage_output(i, o)?);
            }
            Ok(logs)
        })
        .await;
        match staged {
            Ok(logs) => {
                self.update(id, |r| r.log().outputs = logs.clone()).await?;
                self.end(id, State::Complete, None).await
            }
            Err(reason) => self.end(id, State::SystemError, Some(reason)).await,
        }
    }

    async fn stage_in(&self, rec: &TaskRecord) -> Result<(), String> {
        self.runner.prepare(&rec.account).await?;
        let inputs = rec.task.inputs.clone().unwrap_or_default();
        let volumes = rec.task.volumes.clone().unwrap_or_default();
        staging::as_account(&rec.account, move || {
            staging::make_volumes(&volumes)?;
            inputs
                .iter()
                .enumerate()
                .try_for_each(|(i, input)| staging::stage_input(i, input))
        })
        .await
    }

    /// Runs one executor (again, up to `retries` times, when its node is lost).
    async fn run_executor(
        &self,
        id: &str,
        req: ExecRequest,
        retries: u32,
        deadline: Option<Instant>,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Step> {
        let i = req.index;
        for attempt in 0..=retries {
            let start = now_rfc3339();
            let (kill_tx, kill_rx) = watch::channel(false);
            let run = self.runner.run(req.clone(), kill_rx);
            tokio::pin!(run);
            let far = Instant::now() + Duration::from_secs(365 * 86_400);
            let (end, why_killed) = tokio::select! {
                end = &mut run => (end, None),
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)) => {
                    let _ = kill_tx.send(true);
                    (run.await, Some(State::ExecutorError))
                }
                _ = async { let _ = cancel.wait_for(|c| *c).await; } => {
                    let _ = kill_tx.send(true);
                    (run.await, Some(State::Canceled))
                }
            };
            let mut log = ExecutorLog {
                start_time: Some(start),
                end_time: Some(now_rfc3339()),
                ..ExecutorLog::default()
            };
            let step = match end {
                ExecEnd::Exited {
                    code,
                    stdout,
                    stderr,
                    place,
                } => {
                    log.exit_code = Some(code);
                    log.stdout = (!stdout.is_empty()).then_some(stdout);
                    log.stderr = (!stderr.is_empty()).then_some(stderr);
                    self.update(id, |r| {
                        r.system_log(format!("executors[{i}]: ran at {place}, exit code {code}"))
                    })
                    .await?;
                    match why_killed {
                        Some(s) => Step::Stop(s, killed_reason(s, i)),
                        None if code == 0 => Step::Next,
                        None => Step::Stop(
                            State::ExecutorError,
                            Some(format!("executors[{i}]: exit code {code}")),
                        ),
                    }
                }
                ExecEnd::NotStarted(reason) => Step::Stop(
                    State::ExecutorError,
                    Some(format!("could not start: {reason}")),
                ),
                ExecEnd::Killed => Step::Stop(
                    why_killed.unwrap_or(State::SystemError),
                    killed_reason(why_killed.unwrap_or(State::SystemError), i),
                ),
                ExecEnd::Lost(reason) if attempt < retries => {
                    let line = format!(
                        "executors[{i}]: lost ({reason}); running it again (retry {} of {retries})",
                        attempt + 1
                    );
                    self.update(id, |r| {
                        r.log().logs.push(log.clone());
                        r.system_log(line.clone());
                    })
                    .await?;
                    continue;
                }
                ExecEnd::Lost(reason) => Step::Stop(
                    State::SystemError,
                    Some(format!("executors[{i}]: lost: {reason}")),
                ),
            };
            self.update(id, |r| r.log().logs.push(log.clone())).await?;
            return Ok(step);
        }
        Ok(Step::Stop(
            State::SystemError,
            Some(format!("executors[{i}]: no attempt left")),
        ))
    }

    async fn end(&self, id: &str, state: State, reason: Option<String>) -> Result<()> {
        let r = self
            .update(id, |r| {
                if let Some(why) = &reason {
                    r.system_log(why.clone());
                }
                let state = if r.cancel { State::Canceled } else { state };
                finish(r, state);
            })
            .await?;
        tracing::info!(task = %id, state = %r.state().name(), "task ended");
        Ok(())
    }

    /// Task `id` in `view`, if `who` may view it.
    pub async fn get(&self, who: &VoIdentity, id: &str, v: View) -> Result<serde_json::Value> {
        let rec = self.load(id).await?;
        self.policy
            .authorize(&self.principal(who), Action::View, &rec.resource())?;
        Ok(view::render(&rec.task, v))
    }

    /// A page of the tasks `who` may view, filtered by `q`.
    pub async fn list(&self, who: &VoIdentity, q: &ListQuery) -> Result<ListTasksResponse> {
        let size = q.page_size.unwrap_or(256);
        if size == 0 || size > 2048 {
            return Err(Error::invalid(
                "page_size",
                format!("{size}: want 1..=2048"),
            ));
        }
        let principal = self.principal(who);
        let mut after = q.page_token.clone();
        let mut tasks = Vec::new();
        loop {
            let batch = self
                .store
                .scan(Table::Tasks, "", after.as_deref(), 256)
                .await?;
            let exhausted = batch.len() < 256;
            for (key, raw) in batch {
                after = Some(key.clone());
                let rec: TaskRecord = serde_json::from_slice(&raw)
                    .map_err(|e| Error::Store(format!("task {key}: {e}")))?;
                if !matches(&rec.task, q)
                    || !self
                        .policy
                        .allows(&principal, Action::View, &rec.resource())?
                {
                    continue;
                }
                if tasks.len() == size {
                    // One more exists: the page ends at the last task shown.
                    let token = tasks
                        .last()
                        .and_then(|t: &serde_json::Value| t["id"].as_str())
                        .map(str::to_string);
                    return Ok(ListTasksResponse {
                        tasks,
                        next_page_token: token,
                    });
                }
                tasks.push(view::render(&rec.task, q.view));
            }
            if exhausted {
                return Ok(ListTasksResponse {
                    tasks,
                    next_page_token: None,
                });
            }
        }
    }

    /// Cancels task `id` for `who`: it ends CANCELED (a task already ended stays as it was).
    pub async fn cancel(&self, who: &VoIdentity, id: &str) -> Result<()> {
        let rec = self.load(id).await?;
        self.policy
            .authorize(&self.principal(who), Action::Cancel, &rec.resource())?;
        if rec.state().is_final() {
            return Ok(());
        }
        let local = self.running.lock().ok().and_then(|r| r.get(id).cloned());
        self.update(id, |r| {
            if !r.state().is_final() {
                r.cancel = true;
                if local.is_some() {
                    r.task.state = Some(State::Canceling);
                } else {
                    // No worker of this service runs it: nothing to stop here.
                    finish(r, State::Canceled);
                }
            }
        })
        .await?;
        if let Some(tx) = local {
            let _ = tx.send(true);
        }
        tracing::info!(task = %id, by = %who.subject, "task cancel requested");
        Ok(())
    }

    /// Picks up, after a restart, the tasks that were not finished: queued ones start, ones
    /// caught in the middle end in SYSTEM_ERROR (their executors died with the old worker).
    pub async fn resume(self: &Arc<Self>) -> Result<usize> {
        self.adopt(true, |_| false).await
    }

    /// Takes over the unfinished tasks of workers that are `gone` (and, with `mine`, those
    /// this service's previous run left): queued ones start here, ones caught in the middle
    /// end in SYSTEM_ERROR. Returns how many were started.
    pub async fn adopt(self: &Arc<Self>, mine: bool, gone: impl Fn(&str) -> bool) -> Result<usize> {
        let all = store::scan_json::<TaskRecord>(&*self.store, Table::Tasks, "").await?;
        let me = self.config.worker.clone();
        let mut n = 0;
        for (id, rec) in all {
            if rec.state().is_final() {
                continue;
            }
            let ours = rec.worker == me;
            if !(ours && mine || !ours && rec.worker.as_deref().is_some_and(&gone)) {
                continue;
            }
            if !ours {
                // Two services may see the same worker gone: one takes each task.
                let was = rec.worker.clone();
                let took =
                    store::update_json::<TaskRecord, _>(&*self.store, Table::Tasks, &id, |cur| {
                        match cur {
                            Some(mut r) if r.worker == was => {
                                r.worker = me.clone();
                                Ok(Some(r))
                            }
                            _ => Err(Error::Store("taken by another service".into())),
                        }
                    })
                    .await;
                if took.is_err() {
                    continue;
                }
                tracing::info!(task = %id, from = ?was, "task adopted from a worker that is gone");
            }
            match rec.state() {
                State::Queued if !rec.cancel => {
                    self.start_worker(id);
                    n += 1;
                }
                _ => {
                    let why = if ours {
                        "the service restarted while the task ran"
                    } else {
                        "the node running the task's worker was lost while the task ran"
                    };
                    self.end(&id, State::SystemError, Some(why.into())).await?;
                }
            }
        }
        Ok(n)
    }
}

fn killed_reason(state: State, i: usize) -> Option<String> {
    match state {
        State::ExecutorError => Some(format!("executors[{i}]: wall time limit exceeded, killed")),
        State::Canceled => Some(format!("executors[{i}]: killed by cancel")),
        _ => Some(format!("executors[{i}]: killed")),
    }
}

enum Step {
    Next,
    Stop(State, Option<String>),
}

fn finish(r: &mut TaskRecord, state: State) {
    r.task.state = Some(state);
    r.log().end_time = Some(now_rfc3339());
}

fn matches(t: &Task, q: &ListQuery) -> bool {
    if let Some(p) = &q.name_prefix {
        if !t
            .name
            .as_deref()
            .unwrap_or_default()
            .starts_with(p.as_str())
        {
            return false;
        }
    }
    if q.state.is_some() && t.state != q.state {
        return false;
    }
    let tags = t.tags.clone().unwrap_or_default();
    q.tags
        .iter()
        .all(|(k, v)| tags.get(k).is_some_and(|have| v.is_empty() || have == v))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
