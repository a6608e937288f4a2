//! Checks of a submitted task, each failure naming the JSON field at fault.

use std::collections::BTreeMap;
use std::time::Duration;

use super::model::Task;
use super::staging::file_url_path;
use crate::error::{Error, Result};

/// Most executors one task may have.
pub const MAX_EXECUTORS: usize = 64;
/// Most inputs, outputs, volumes, tags or arguments of one kind.
pub const MAX_ITEMS: usize = 1024;
/// Largest inline input content.
pub const MAX_CONTENT: usize = 1 << 20;
/// Longest name, path, or argument.
pub const MAX_TEXT: usize = 4096;

/// Backend parameters this service understands.
pub const BACKEND_PARAMETERS: [&str; 3] = ["ssi.mpi_ranks", "ssi.wall_time_secs", "ssi.retries"];

/// What the checks derived from a valid task.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checked {
    /// MPI ranks for every executor.
    pub mpi_ranks: Option<u32>,
    /// Wall-time limit of the whole task.
    pub wall_time: Option<Duration>,
    /// How many times an executor whose node was lost is run again.
    pub retries: u32,
    /// Backend parameters ignored (not strict).
    pub ignored: Vec<String>,
}

fn text(field: &str, s: &str) -> Result<()> {
    if s.len() > MAX_TEXT {
        return Err(Error::invalid(
            field,
            format!("longer than {MAX_TEXT} bytes"),
        ));
    }
    if s.contains('\0') {
        return Err(Error::invalid(field, "contains a NUL byte"));
    }
    Ok(())
}

fn absolute(field: &str, p: &str) -> Result<()> {
    text(field, p)?;
    if !p.starts_with('/') {
        return Err(Error::invalid(
            field,
            format!("{p:?} is not an absolute path"),
        ));
    }
    if p.split('/').any(|c| c == "..") {
        return Err(Error::invalid(field, format!("{p:?} has a '..' component")));
    }
    Ok(())
}

fn count(field: &str, n: usize, max: usize) -> Result<()> {
    if n > max {
        return Err(Error::invalid(field, format!("{n} items, at most {max}")));
    }
    Ok(())
}

fn file_url(field: &str, url: &str) -> Result<()> {
    text(field, url)?;
    match file_url_path(url) {
        Some(p) => absolute(field, &p.to_string_lossy()),
        None => Err(Error::invalid(
            field,
            format!("{url:?}: only file:///absolute/path urls are supported"),
        )),
    }
}

fn executors(t: &Task) -> Result<()> {
    if t.executors.is_empty() {
        return Err(Error::invalid(
            "executors",
            "at least one executor is required",
        ));
    }
    count("executors", t.executors.len(), MAX_EXECUTORS)?;
    for (i, e) in t.executors.iter().enumerate() {
        let f = |n: &str| format!("executors[{i}].{n}");
        if e.image.trim().is_empty() {
            return Err(Error::invalid(
                f("image"),
                "required (recorded; see the service documentation)",
            ));
        }
        text(&f("image"), &e.image)?;
        if e.command.is_empty() || e.command[0].is_empty() {
            return Err(Error::invalid(f("command"), "a program is required"));
        }
        count(&f("command"), e.command.len(), MAX_ITEMS)?;
        for (j, a) in e.command.iter().enumerate() {
            text(&format!("executors[{i}].command[{j}]"), a)?;
        }
        for (name, p) in [
            ("workdir", &e.workdir),
            ("stdin", &e.stdin),
            ("stdout", &e.stdout),
            ("stderr", &e.stderr),
        ] {
            if let Some(p) = p {
                absolute(&f(name), p)?;
            }
        }
        for (k, v) in e.env.iter().flatten() {
            if k.is_empty() || k.contains('=') {
                return Err(Error::invalid(
                    f("env"),
                    format!("{k:?} is not a variable name"),
                ));
            }
            text(&format!("executors[{i}].env.{k}"), v)?;
        }
    }
    Ok(())
}

fn files(t: &Task) -> Result<()> {
    let inputs = t.inputs.as_deref().unwrap_or_default();
    count("inputs", inputs.len(), MAX_ITEMS)?;
    for (i, input) in inputs.iter().enumerate() {
        absolute(&format!("inputs[{i}].path"), &input.path)?;
        match (&input.url, &input.content) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    format!("inputs[{i}]"),
                    "url and content are exclusive",
                ))
            }
            (None, None) => {
                return Err(Error::invalid(
                    format!("inputs[{i}]"),
                    "url or content is required",
                ))
            }
            (Some(u), None) => file_url(&format!("inputs[{i}].url"), u)?,
            (None, Some(c)) if c.len() > MAX_CONTENT => {
                return Err(Error::invalid(
                    format!("inputs[{i}].content"),
                    format!("{} bytes, at most {MAX_CONTENT}", c.len()),
                ))
            }
            (None, Some(_)) => {}
        }
    }
    let outputs = t.outputs.as_deref().unwrap_or_default();
    count("outputs", outputs.len(), MAX_ITEMS)?;
    for (i, o) in outputs.iter().enumerate() {
        absolute(&format!("outputs[{i}].path"), &o.path)?;
        file_url(&format!("outputs[{i}].url"), &o.url)?;
        let wild = o.path.contains(['*', '?', '[']);
        match &o.path_prefix {
            None if wild => {
                return Err(Error::invalid(
                    format!("outputs[{i}].path_prefix"),
                    "required when path has wildcards",
                ))
            }
            Some(p) if !o.path.starts_with(p.as_str()) => {
                return Err(Error::invalid(
                    format!("outputs[{i}].path_prefix"),
                    format!("{p:?} does not start path {:?}", o.path),
                ))
            }
            _ => {}
        }
    }
    let volumes = t.volumes.as_deref().unwrap_or_default();
    count("volumes", volumes.len(), MAX_ITEMS)?;
    for (i, v) in volumes.iter().enumerate() {
        absolute(&format!("volumes[{i}]"), v)?;
    }
    Ok(())
}

fn number<T: std::str::FromStr>(
    key: &str,
    v: &str,
    ok: impl Fn(&T) -> bool,
    want: &str,
) -> Result<T> {
    v.parse().ok().filter(|n| ok(n)).ok_or_else(|| {
        Error::invalid(
            format!("resources.backend_parameters.{key}"),
            format!("{v:?}: want {want}"),
        )
    })
}

fn backend(params: &BTreeMap<String, String>, strict: bool) -> Result<Checked> {
    let mut c = Checked::default();
    for (k, v) in params {
        match k.as_str() {
            "ssi.mpi_ranks" => {
                c.mpi_ranks = Some(number(
                    k,
                    v,
                    |n: &u32| (1..=4096).contains(n),
                    "an integer 1..=4096",
                )?)
            }
            "ssi.wall_time_secs" => {
                c.wall_time = Some(Duration::from_secs(number(
                    k,
                    v,
                    |n: &u64| *n > 0,
                    "a positive integer",
                )?))
            }
            "ssi.retries" => c.retries = number(k, v, |n: &u32| *n <= 10, "an integer 0..=10")?,
            _ if strict => {
                return Err(Error::invalid(
                    format!("resources.backend_parameters.{k}"),
                    format!(
                        "not supported (supported: {}) and backend_parameters_strict is set",
                        BACKEND_PARAMETERS.join(", ")
                    ),
                ))
            }
            _ => c.ignored.push(k.clone()),
        }
    }
    Ok(c)
}

/// Checks `t` as submitted; returns what its backend parameters ask for.
pub fn check(t: &Task) -> Result<Checked> {
    for (name, v) in [
        ("id", t.id.is_some()),
        ("state", t.state.is_some()),
        ("logs", t.logs.is_some()),
    ] {
        if v {
            return Err(Error::invalid(
                name,
                "is set by the service, not by the client",
            ));
        }
    }
    if let Some(n) = &t.name {
        text("name", n)?;
    }
    if t.description
        .as_ref()
        .is_some_and(|d| d.len() > MAX_CONTENT)
    {
        return Err(Error::invalid(
            "description",
            format!("longer than {MAX_CONTENT} bytes"),
        ));
    }
    executors(t)?;
    files(t)?;
    let tags = t.tags.as_ref().map_or(0, BTreeMap::len);
    count("tags", tags, MAX_ITEMS)?;
    for (k, v) in t.tags.iter().flatten() {
        text(&format!("tags.{k}"), v)?;
    }
    let r = t.resources.clone().unwrap_or_default();
    if r.ram_gb.is_some_and(|g| !(g.is_finite() && g >= 0.0)) {
        return Err(Error::invalid(
            "resources.ram_gb",
            "must be a finite number >= 0",
        ));
    }
    if r.disk_gb.is_some_and(|g| !(g.is_finite() && g >= 0.0)) {
        return Err(Error::invalid(
            "resources.disk_gb",
            "must be a finite number >= 0",
        ));
    }
    for (i, z) in r.zones.iter().flatten().enumerate() {
        crate::vo::check_name("queue", z)
            .map_err(|e| Error::invalid(format!("resources.zones[{i}]"), e))?;
    }
    backend(
        &r.backend_parameters.unwrap_or_default(),
        r.backend_parameters_strict.unwrap_or(false),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn task(json: serde_json::Value) -> Task {
        serde_json::from_value(json).unwrap()
    }

    fn field_of(json: serde_json::Value) -> String {
        match check(&task(json)) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_plain_task_passes_and_backend_parameters_are_read() {
        let c = check(&task(serde_json::json!({
            "executors": [{"image": "debian", "command": ["echo", "hi"]}],
            "resources": {"backend_parameters": {"ssi.mpi_ranks": "3", "ssi.wall_time_secs": "60", "x.other": "1"}}
        })))
        .unwrap();
        assert_eq!(c.mpi_ranks, Some(3));
        assert_eq!(c.wall_time, Some(Duration::from_secs(60)));
        assert_eq!(c.ignored, ["x.other"]);
    }

    #[test]
    fn each_bad_field_is_named() {
        let ex = serde_json::json!([{"image": "i", "command": ["true"]}]);
        for (json, field) in [
            (serde_json::json!({"executors": []}), "executors"),
            (
                serde_json::json!({"executors": [{"image": "", "command": ["x"]}]}),
                "executors[0].image",
            ),
            (
                serde_json::json!({"executors": [{"image": "i", "command": []}]}),
                "executors[0].command",
            ),
            (
                serde_json::json!({"executors": [{"image": "i", "command": ["x"], "workdir": "rel"}]}),
                "executors[0].workdir",
            ),
            (
                serde_json::json!({"executors": ex, "inputs": [{"path": "/a"}]}),
                "inputs[0]",
            ),
            (
                serde_json::json!({"executors": ex, "inputs": [{"path": "/a", "url": "s3://b/k"}]}),
                "inputs[0].url",
            ),
            (
                serde_json::json!({"executors": ex, "inputs": [{"path": "/a/../etc", "content": "x"}]}),
                "inputs[0].path",
            ),
            (
                serde_json::json!({"executors": ex, "outputs": [{"path": "/w/*.txt", "url": "file:///o"}]}),
                "outputs[0].path_prefix",
            ),
            (
                serde_json::json!({"executors": ex, "resources": {"ram_gb": -1.0}}),
                "resources.ram_gb",
            ),
            (
                serde_json::json!({"executors": ex, "resources": {"zones": ["a b"]}}),
                "resources.zones[0]",
            ),
            (
                serde_json::json!({"executors": ex, "resources": {"backend_parameters": {"ssi.mpi_ranks": "0"}}}),
                "resources.backend_parameters.ssi.mpi_ranks",
            ),
            (
                serde_json::json!({"executors": ex, "resources": {"backend_parameters": {"gpu": "1"}, "backend_parameters_strict": true}}),
                "resources.backend_parameters.gpu",
            ),
            (serde_json::json!({"executors": ex, "id": "mine"}), "id"),
            (
                serde_json::json!({"executors": ex, "inputs": [{"path": "/a", "content": "x".repeat(MAX_CONTENT + 1)}]}),
                "inputs[0].content",
            ),
        ] {
            assert_eq!(field_of(json.clone()), field, "{json}");
        }
    }
}
