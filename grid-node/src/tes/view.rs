//! The three TES views of a task: MINIMAL (id and state), BASIC (all but the bulky parts:
//! executor stdout/stderr, inline input content, system logs) and FULL.

use serde_json::{json, Value};

use super::model::Task;
use crate::error::{Error, Result};

/// How much of a task to show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum View {
    /// Id and state.
    #[default]
    Minimal,
    /// Everything but logs' stdout/stderr, inputs' content and system logs.
    Basic,
    /// Everything.
    Full,
}

impl std::str::FromStr for View {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "MINIMAL" => Ok(View::Minimal),
            "BASIC" => Ok(View::Basic),
            "FULL" => Ok(View::Full),
            _ => Err(Error::invalid(
                "view",
                format!("{s:?}: want MINIMAL, BASIC or FULL"),
            )),
        }
    }
}

/// `t` as JSON in view `v`.
pub fn render(t: &Task, v: View) -> Value {
    match v {
        View::Minimal => json!({ "id": t.id, "state": t.state }),
        View::Full => serde_json::to_value(t).unwrap_or(Value::Null),
        View::Basic => {
            let mut t = t.clone();
            for i in t.inputs.iter_mut().flatten() {
                i.content = None;
            }
            for l in t.logs.iter_mut().flatten() {
                l.system_logs = None;
                for e in &mut l.logs {
                    e.stdout = None;
                    e.stderr = None;
                }
            }
            serde_json::to_value(&t).unwrap_or(Value::Null)
        }
    }
}
