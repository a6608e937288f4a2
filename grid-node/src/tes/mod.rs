//! The GA4GH Task Execution Service (TES) v1.1 on the cluster: `/ga4gh/tes/v1`.
//!
//! - [`model`]: the TES messages;
//! - [`validate`]: checks of a submitted task, naming the field at fault;
//! - [`service`]: the task lifecycle over the replicated store;
//! - [`runner`]: the seam to where executors run ([`LocalRunner`] on one host);
//! - [`staging`]: inputs, outputs and stdio as the task's account;
//! - [`api`]: the HTTP API (axum), bearer-token authentication, the OpenAPI document.
//!
//! The `image` field of an executor is required by TES and recorded with the task, but no
//! container is pulled or entered: executors run on the nodes' own userland, as the mapped
//! account. A task that needs a particular software stack names a queue whose nodes have it.

pub mod api;
pub mod model;
pub mod runner;
pub mod service;
pub mod staging;
pub mod validate;
pub mod view;

pub use model::{State, Task};
pub use runner::{ExecEnd, ExecRequest, LocalRunner, Runner};
pub use service::{ListQuery, TaskRecord, TaskService, TesConfig};
pub use view::View;
