//! Worker logic with a runner that plays back scripted ends and records what it was asked
//! (placement and processes are tested end to end in tests/tes_pytes.rs).

use std::sync::Mutex;

use futures::future::BoxFuture;

use super::*;
use crate::accounts::OnExpiry;
use crate::store::MemStore;
use crate::tes::model::Executor;

#[derive(Debug, Default)]
struct Scripted {
    ends: Mutex<Vec<ExecEnd>>,
    asked: Mutex<Vec<ExecRequest>>,
}

impl Runner for Scripted {
    fn prepare<'a>(&'a self, _: &'a Lease) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn run(&self, req: ExecRequest, _kill: watch::Receiver<bool>) -> BoxFuture<'_, ExecEnd> {
        self.asked.lock().unwrap().push(req);
        let end = self.ends.lock().unwrap().remove(0);
        Box::pin(async move { end })
    }
}

fn exited(code: i32) -> ExecEnd {
    ExecEnd::Exited {
        code,
        stdout: String::new(),
        stderr: String::new(),
        place: "node 2 pid 8200".into(),
    }
}

async fn setup(ends: Vec<ExecEnd>) -> (Arc<TaskService>, Arc<Scripted>, Arc<MemStore>, VoIdentity) {
    let store = Arc::new(MemStore::new());
    VoRegistry::new(&*store).create("atlas").await.unwrap();
    let runner = Arc::new(Scripted {
        ends: Mutex::new(ends),
        ..Scripted::default()
    });
    let pool = PoolConfig {
        vo: "atlas".into(),
        name_prefix: "atlas".into(),
        gid: 65000,
        uid_first: 65000,
        uid_last: 65001,
        lease_secs: 60,
        home_root: "/nonexistent".into(),
        on_expiry: OnExpiry::Archive,
    };
    let config = TesConfig {
        queues: [(
            "default".to_string(),
            [("rack".to_string(), "a".to_string())].into(),
        )]
        .into(),
        ..TesConfig::default()
    };
    let s = TaskService::new(
        store.clone(),
        runner.clone(),
        Arc::new(PolicyEngine::new().unwrap()),
        vec![pool],
        config,
    );
    let who = VoIdentity {
        subject: "/CN=alice".into(),
        vo: "atlas".into(),
        fqans: vec!["/atlas".parse().unwrap()],
        not_after: i64::MAX,
    };
    (s, runner, store, who)
}

fn task(n: usize, params: &[(&str, &str)]) -> Task {
    let mut t = Task {
        executors: vec![
            Executor {
                image: "x".into(),
                command: vec!["prog".into()],
                ..Executor::default()
            };
            n
        ],
        ..Task::default()
    };
    let bp = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    t.resources = Some(crate::tes::model::Resources {
        cpu_cores: Some(4),
        backend_parameters: Some(bp),
        ..Default::default()
    });
    t
}

async fn wait_final(s: &TaskService, who: &VoIdentity, id: &str) -> Task {
    for _ in 0..500 {
        let v = s.get(who, id, View::Full).await.unwrap();
        let t: Task = serde_json::from_value(v).unwrap();
        if t.state.is_some_and(State::is_final) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("task {id} did not end");
}

#[tokio::test]
async fn a_lost_executor_runs_again_within_its_retries() {
    let (s, runner, _, who) = setup(vec![
        ExecEnd::Lost("node 2 died".into()),
        exited(0),
        exited(0),
    ])
    .await;
    let id = s
        .create(&who, task(2, &[("ssi.retries", "1")]))
        .await
        .unwrap();
    let t = wait_final(&s, &who, &id).await;
    assert_eq!(t.state, Some(State::Complete));
    let asked = runner.asked.lock().unwrap();
    assert_eq!(asked.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 0, 1]);
    assert_eq!(
        (
            asked[0].cpu_cores,
            asked[0].queue.as_str(),
            asked[0].account.uid
        ),
        (4, "default", 65000)
    );
    assert_eq!(asked[0].labels.get("rack").map(String::as_str), Some("a"));
    let sys = t.logs.unwrap()[0].system_logs.clone().unwrap();
    assert!(
        sys.iter()
            .any(|l| l.contains("lost (node 2 died); running it again (retry 1 of 1)")),
        "{sys:?}"
    );
}

#[tokio::test]
async fn without_retries_a_lost_executor_is_a_system_error() {
    let (s, runner, _, who) = setup(vec![ExecEnd::Lost("node 2 died".into())]).await;
    let id = s.create(&who, task(2, &[])).await.unwrap();
    assert_eq!(
        wait_final(&s, &who, &id).await.state,
        Some(State::SystemError)
    );
    assert_eq!(runner.asked.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn ignore_error_goes_on_to_the_next_executor() {
    let (s, runner, _, who) = setup(vec![exited(2), exited(0)]).await;
    let mut t = task(2, &[]);
    t.executors[0].ignore_error = Some(true);
    let id = s.create(&who, t).await.unwrap();
    let t = wait_final(&s, &who, &id).await;
    assert_eq!(t.state, Some(State::Complete));
    assert_eq!(runner.asked.lock().unwrap().len(), 2);
}

/// Stores tasks as services that died (or still run) would have left them.
async fn leave_tasks(s: &TaskService, store: &MemStore, tasks: &[(&str, State, Option<&str>)]) {
    for (id, state, worker) in tasks {
        let mut t = task(1, &[]);
        t.id = Some(id.to_string());
        t.state = Some(*state);
        let lease = AccountMapper::new(store, &s.pools)
            .map("atlas", "/CN=alice", 0)
            .await
            .unwrap();
        let rec = TaskRecord {
            task: t,
            owner: "/CN=alice".into(),
            vo: "atlas".into(),
            queue: "default".into(),
            account: lease,
            checked: Checked::default(),
            cancel: false,
            worker: worker.map(str::to_string),
        };
        store::cas_json(store, Table::Tasks, id, None, Some(&rec))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_restarted_service_resumes_queued_tasks_and_fails_interrupted_ones() {
    let (s, _, store, who) = setup(vec![exited(0)]).await;
    let left = [
        ("a-queued", State::Queued, None),
        ("b-running", State::Running, None),
    ];
    leave_tasks(&s, &store, &left).await;
    assert_eq!(s.resume().await.unwrap(), 1);
    assert_eq!(
        wait_final(&s, &who, "a-queued").await.state,
        Some(State::Complete)
    );
    let b = wait_final(&s, &who, "b-running").await;
    assert_eq!(b.state, Some(State::SystemError));
    assert!(b.logs.unwrap()[0].system_logs.clone().unwrap()[0].contains("restarted"));
}

#[tokio::test]
async fn tasks_of_a_gone_worker_are_adopted_once_and_others_left_alone() {
    let (s, runner, store, who) = setup(vec![exited(0)]).await;
    let left = [
        ("a-queued", State::Queued, Some("node-2")),
        ("b-running", State::Running, Some("node-2")),
        ("c-alive", State::Queued, Some("node-3")),
    ];
    leave_tasks(&s, &store, &left).await;
    assert_eq!(s.adopt(false, |w| w == "node-2").await.unwrap(), 1);
    assert_eq!(
        wait_final(&s, &who, "a-queued").await.state,
        Some(State::Complete)
    );
    let b = wait_final(&s, &who, "b-running").await;
    assert_eq!(b.state, Some(State::SystemError));
    assert!(b.logs.unwrap()[0].system_logs.clone().unwrap()[0].contains("was lost"));
    let c = s.load("c-alive").await.unwrap();
    assert_eq!(
        (c.state(), c.worker.as_deref()),
        (State::Queued, Some("node-3"))
    );
    // Adopted tasks are now this service's: adopting again takes nothing.
    assert_eq!(s.adopt(false, |w| w == "node-2").await.unwrap(), 0);
    assert_eq!(runner.asked.lock().unwrap().len(), 1);
}
