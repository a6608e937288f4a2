//! Access policies in Cedar: who may submit to which queue, who may view or cancel whose tasks,
//! kill, migrate or checkpoint whose processes, read or write which DFS directories.
//!
//! ```text
//!  Principal (from a verified VO credential) ─┐
//!  Action ────────────────────────────────────┼─> entities (JSON, checked against the schema)
//!  Resource (queue, task, process, path) ─────┘        │
//!                                   PolicySet ──> Authorizer ──> Decision (+ policy ids, logged)
//! ```
//!
//! The schema (`schema.cedarschema`) is fixed by this crate; the policy set is data: the
//! defaults (`default.cedar`) until an admin sets another. A set is validated against the schema
//! in strict mode before it replaces the current one; an invalid set is refused with every error
//! and the current set stays in force.

mod entities;

pub use entities::{Principal, Resource};

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use cedar_policy::{Authorizer, Context, PolicySet, Request, Schema, ValidationMode, Validator};

use crate::error::{Error, Result};
use crate::store::{self, GridStore, Table};

/// The schema every policy set is validated against.
pub const SCHEMA: &str = include_str!("schema.cedarschema");
/// The policies in force until an admin sets others.
pub const DEFAULT_POLICIES: &str = include_str!("default.cedar");
/// The store key of the policy set.
const STORE_KEY: &str = "policy";

/// What a principal asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Submit a task to a queue.
    Submit,
    /// See a task.
    View,
    /// Cancel a task.
    Cancel,
    /// Send a signal to a process.
    Kill,
    /// Move a process to another node.
    Migrate,
    /// Checkpoint a process.
    Checkpoint,
    /// Read a DFS path.
    Read,
    /// Write a DFS path.
    Write,
}

const ACTIONS: [(Action, &str); 8] = [
    (Action::Submit, "submit"),
    (Action::View, "view"),
    (Action::Cancel, "cancel"),
    (Action::Kill, "kill"),
    (Action::Migrate, "migrate"),
    (Action::Checkpoint, "checkpoint"),
    (Action::Read, "read"),
    (Action::Write, "write"),
];

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = ACTIONS
            .iter()
            .find(|(a, _)| a == self)
            .map_or("?", |(_, n)| n);
        f.write_str(name)
    }
}

impl FromStr for Action {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ACTIONS
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(a, _)| *a)
            .ok_or_else(|| {
                let names: Vec<&str> = ACTIONS.iter().map(|(_, n)| *n).collect();
                Error::Policy(format!(
                    "unknown action {s:?} (one of {})",
                    names.join(", ")
                ))
            })
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether it is allowed.
    pub allowed: bool,
    /// The policies that decided (their `@id`, else Cedar's id); empty when nothing permitted.
    pub policies: Vec<String>,
    /// Errors met while evaluating policies (such a policy is skipped, as Cedar does).
    pub errors: Vec<String>,
}

struct Loaded {
    text: String,
    set: PolicySet,
}

/// The policy decision point: the schema and the policy set in force.
pub struct PolicyEngine {
    schema: Schema,
    authorizer: Authorizer,
    current: RwLock<Arc<Loaded>>,
}

impl fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyEngine").finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// An engine with the default policies.
    pub fn new() -> Result<Self> {
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA)
            .map_err(|e| Error::Policy(format!("built-in schema: {e}")))?;
        let set = validate(&schema, DEFAULT_POLICIES)?;
        Ok(PolicyEngine {
            schema,
            authorizer: Authorizer::new(),
            current: RwLock::new(Arc::new(Loaded {
                text: DEFAULT_POLICIES.to_string(),
                set,
            })),
        })
    }

    /// Checks `text` against the schema without putting it in force.
    pub fn check(&self, text: &str) -> Result<()> {
        validate(&self.schema, text).map(|_| ())
    }

    /// Puts the policies of `text` in force, if they validate; otherwise the error lists every
    /// problem and the current policies stay.
    pub fn set(&self, text: &str) -> Result<()> {
        let set = validate(&self.schema, text)?;
        let mut cur = self
            .current
            .write()
            .map_err(|_| Error::Policy("policy lock poisoned".into()))?;
        *cur = Arc::new(Loaded {
            text: text.to_string(),
            set,
        });
        tracing::info!(policies = cur.set.policies().count(), "policy set replaced");
        Ok(())
    }

    /// The text of the policies in force.
    pub fn text(&self) -> Result<String> {
        Ok(self.loaded()?.text.clone())
    }

    fn loaded(&self) -> Result<Arc<Loaded>> {
        self.current
            .read()
            .map(|c| c.clone())
            .map_err(|_| Error::Policy("policy lock poisoned".into()))
    }

    /// Validates `text`, stores it in the replicated store and puts it in force.
    pub async fn set_and_store(&self, store: &dyn GridStore, text: &str) -> Result<()> {
        self.check(text)?;
        let stored = text.to_string();
        store::update_json::<String, _>(store, Table::Settings, STORE_KEY, |_| {
            Ok(Some(stored.clone()))
        })
        .await?;
        self.set(text)
    }

    /// Puts in force the policies kept in the store, if any (at start, or when another node
    /// changed them). A stored set that no longer validates is refused and the current one kept.
    pub async fn reload(&self, store: &dyn GridStore) -> Result<()> {
        if let Some((text, _)) =
            store::get_json::<String>(store, Table::Settings, STORE_KEY).await?
        {
            if text != self.text()? {
                self.set(&text)?;
            }
        }
        Ok(())
    }

    /// Decides whether `principal` may do `action` on `resource`, and logs the decision.
    pub fn decide(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
    ) -> Result<Decision> {
        self.decide_logged(principal, action, resource, true)
    }

    /// Whether `principal` may do `action` on `resource`, as a filter (listing what a user may
    /// see): the decision is logged at debug level only, denials included, so that a listing
    /// does not log one denial per task of other users.
    pub fn allows(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
    ) -> Result<bool> {
        Ok(self
            .decide_logged(principal, action, resource, false)?
            .allowed)
    }

    fn decide_logged(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        log_denials: bool,
    ) -> Result<Decision> {
        let loaded = self.loaded()?;
        let (entities, p, a, r) = entities::build(&self.schema, principal, action, resource)?;
        let request = Request::new(p, a, r, Context::empty(), Some(&self.schema))
            .map_err(|e| Error::Policy(format!("request: {e}")))?;
        let response = self
            .authorizer
            .is_authorized(&request, &loaded.set, &entities);
        let policies = response
            .diagnostics()
            .reason()
            .map(|id| {
                loaded
                    .set
                    .annotation(id, "id")
                    .map_or_else(|| id.to_string(), str::to_string)
            })
            .collect();
        let errors = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        let d = Decision {
            allowed: response.decision() == cedar_policy::Decision::Allow,
            policies,
            errors,
        };
        log(principal, action, resource, &d, log_denials);
        Ok(d)
    }

    /// `Ok` if allowed, else [`Error::Denied`] naming principal, action and resource.
    pub fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
    ) -> Result<()> {
        if self.decide(principal, action, resource)?.allowed {
            return Ok(());
        }
        Err(Error::Denied {
            principal: principal.subject.clone(),
            action: action.to_string(),
            resource: resource.to_string(),
        })
    }
}

fn log(
    principal: &Principal,
    action: Action,
    resource: &Resource,
    d: &Decision,
    log_denials: bool,
) {
    let (subject, vo) = (principal.subject.as_str(), principal.vo.as_str());
    if d.allowed || !log_denials {
        tracing::debug!(target: "grid::policy", subject, vo, %action, %resource, policies = ?d.policies, allowed = d.allowed, "decision");
    } else {
        tracing::info!(target: "grid::policy", subject, vo, %action, %resource, errors = ?d.errors, "deny");
    }
}

/// The policy set of `text` if it parses and validates against `schema` (strict mode).
fn validate(schema: &Schema, text: &str) -> Result<PolicySet> {
    let set =
        PolicySet::from_str(text).map_err(|e| Error::Policy(format!("does not parse: {e}")))?;
    let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    if !result.validation_passed() {
        let errors: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
        return Err(Error::Policy(format!(
            "does not validate against the schema: {}",
            errors.join("; ")
        )));
    }
    Ok(set)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
