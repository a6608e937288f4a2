//! The GA4GH TES v1.1 messages, as they travel in JSON.
//!
//! Field names and optionality follow the TES 1.1 OpenAPI description. `size_bytes` is an
//! int64 and therefore a string in JSON, as TES says. Unknown fields in a request are ignored
//! (TES clients send fields of newer versions), but every known field is type-checked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// TES task states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Not known (never stored; TES's default).
    Unknown,
    /// Accepted, waiting to be started.
    Queued,
    /// Inputs being staged.
    Initializing,
    /// Executors running.
    Running,
    /// Paused (not produced by this service).
    Paused,
    /// Every executor succeeded and outputs were staged.
    Complete,
    /// An executor failed or could not start.
    ExecutorError,
    /// The system failed (staging, node lost beyond the retries).
    SystemError,
    /// Canceled by a user.
    Canceled,
    /// Cancel requested, executors being stopped.
    Canceling,
    /// Stopped by the system to free resources (not produced by this service).
    Preempted,
}

impl State {
    /// Every state, in TES order.
    pub const ALL: [State; 11] = [
        State::Unknown,
        State::Queued,
        State::Initializing,
        State::Running,
        State::Paused,
        State::Complete,
        State::ExecutorError,
        State::SystemError,
        State::Canceled,
        State::Canceling,
        State::Preempted,
    ];

    /// Whether the task has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Complete
                | State::ExecutorError
                | State::SystemError
                | State::Canceled
                | State::Preempted
        )
    }

    /// The SAGA job state grid tools show for it.
    pub fn saga(self) -> &'static str {
        match self {
            State::Unknown => "New",
            State::Queued | State::Initializing => "Pending",
            State::Running | State::Canceling => "Running",
            State::Paused => "Suspended",
            State::Complete => "Done",
            State::ExecutorError | State::SystemError | State::Preempted => "Failed",
            State::Canceled => "Canceled",
        }
    }

    /// The TES name (`EXECUTOR_ERROR` ...).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// FILE or DIRECTORY.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FileType {
    /// A single file.
    #[default]
    File,
    /// A directory tree.
    Directory,
}

/// An input to stage before the executors run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Input {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where to copy from (`file://` only); exclusive with `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where executors find it (absolute).
    pub path: String,
    /// FILE or DIRECTORY.
    #[serde(default, rename = "type")]
    pub kind: FileType,
    /// Inline content, exclusive with `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Accepted and ignored: inputs are always copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streamable: Option<bool>,
}

/// An output to copy out after the executors ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Output {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where to copy to (`file://`).
    pub url: String,
    /// What to copy (absolute; may hold wildcards `*`, `?`, `[...]`).
    pub path: String,
    /// With wildcards: the prefix cut from each match to make its name under `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// FILE or DIRECTORY.
    #[serde(default, rename = "type")]
    pub kind: FileType,
}

/// Resources asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Resources {
    /// Cores per executor (drives placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<u32>,
    /// Accepted; this service does not preempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptible: Option<bool>,
    /// Memory per executor in GB (drives placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_gb: Option<f64>,
    /// Accepted and recorded; disk is not reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gb: Option<f64>,
    /// Queues (node label sets) the task may run in; the first one the user may submit to
    /// is used; none: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<String>>,
    /// Parameters TES lacks (`ssi.mpi_ranks`, `ssi.wall_time_secs`, `ssi.retries`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_parameters: Option<BTreeMap<String, String>>,
    /// Refuse the task when a backend parameter is not supported (else ignore and log it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_parameters_strict: Option<bool>,
}

/// One command to run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Executor {
    /// Container image: recorded, not pulled (see docs/GRID.md).
    pub image: String,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Working directory (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// File to read standard input from (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// File to write standard output to (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// File to write standard error to (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Go on with the next executor even if this one fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_error: Option<bool>,
}

/// What one executor did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutorLog {
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// The tail of its standard output (FULL view only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// The tail of its standard error (FULL view only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Exit code (128 + signal when killed by one); absent if it never ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// One output file copied out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OutputFileLog {
    /// Where it went.
    pub url: String,
    /// Where it came from.
    pub path: String,
    /// Its size (int64 as a string).
    pub size_bytes: String,
}

/// One attempt at running the task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskLog {
    /// Executor logs, in order.
    pub logs: Vec<ExecutorLog>,
    /// Where it ran, which account (`ssi.account`, `ssi.queue` ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Outputs copied out.
    pub outputs: Vec<OutputFileLog>,
    /// What the system says (reasons of errors; FULL view only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_logs: Option<Vec<String>>,
}

/// A task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    /// Its id (set by the service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its state (set by the service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<Input>>,
    /// Outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<Output>>,
    /// Resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Executors, run one after another.
    pub executors: Vec<Executor>,
    /// Directories shared by the executors (absolute; made empty before they run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<String>>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Logs (set by the service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Vec<TaskLog>>,
    /// RFC 3339 (set by the service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<String>,
}

/// The answer to a create.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateTaskResponse {
    /// The new task's id.
    pub id: String,
}

/// A page of tasks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListTasksResponse {
    /// The tasks, in the view asked for.
    pub tasks: Vec<serde_json::Value>,
    /// Token of the next page, absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// The service type (GA4GH service-info).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceType {
    /// `org.ga4gh`.
    pub group: String,
    /// `tes`.
    pub artifact: String,
    /// `1.1.0`.
    pub version: String,
}

/// Who runs the service.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Organization {
    /// Name.
    pub name: String,
    /// URL.
    pub url: String,
}

/// GA4GH service-info with the TES additions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceInfo {
    /// Reverse-domain id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: ServiceType,
    /// Description.
    pub description: String,
    /// Organization.
    pub organization: Organization,
    /// Version of this service.
    pub version: String,
    /// Storage locations tasks can use.
    pub storage: Vec<String>,
    /// Backend parameters understood.
    #[serde(rename = "tesResources_backend_parameters")]
    pub tes_resources_backend_parameters: Vec<String>,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the field or object.
    pub msg: String,
    /// The HTTP status code.
    pub status_code: u16,
}
