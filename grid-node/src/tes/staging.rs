//! Moving a task's files, acting as the task's account: inputs in (inline content or copies of
//! `file://` paths), volumes made, stdio files opened, outputs out (with wildcards).
//!
//! Every function here runs on a thread that [`as_account`] gave the account's file-system
//! ids, so the kernel checks each path against the account, not root: a task cannot read or
//! overwrite what its user could not.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::model::{FileType, Input, Output, OutputFileLog};
use crate::accounts::Lease;

/// Runs `f` on a fresh thread acting as `account` (when this process is root; otherwise as
/// itself, since only root can switch) and returns its result.
pub async fn as_account<R, F>(account: &Lease, f: F) -> Result<R, String>
where
    F: FnOnce() -> Result<R, String> + Send + 'static,
    R: Send + 'static,
{
    let (uid, gid) = (account.uid, account.gid);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("grid-staging".into())
        .spawn(move || {
            let r = if nix::unistd::geteuid().is_root() {
                crate::sys::act_as_on_this_thread(uid, gid)
                    .map_err(|e| format!("acting as uid {uid}: {e}"))
                    .and_then(|()| f())
            } else {
                f()
            };
            let _ = tx.send(r);
        })
        .map_err(|e| format!("staging thread: {e}"))?;
    rx.await
        .map_err(|_| "staging thread ended without an answer".to_string())?
}

/// The local path of a `file://` URL.
pub fn file_url_path(url: &str) -> Option<PathBuf> {
    let p = url.strip_prefix("file://")?;
    p.starts_with('/').then(|| PathBuf::from(p))
}

fn named(path: &Path, e: io::Error) -> String {
    format!("{}: {e}", path.display())
}

fn make_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(d) => fs::create_dir_all(d).map_err(|e| named(d, e)),
        None => Ok(()),
    }
}

/// Copies `from` to `to` (a file, or a directory tree when `dir`); returns the bytes copied.
fn copy(from: &Path, to: &Path, dir: bool) -> Result<u64, String> {
    if !dir {
        make_parent(to)?;
        return fs::copy(from, to)
            .map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()));
    }
    fs::create_dir_all(to).map_err(|e| named(to, e))?;
    let mut total = 0;
    for entry in fs::read_dir(from).map_err(|e| named(from, e))? {
        let entry = entry.map_err(|e| named(from, e))?;
        let kind = entry.file_type().map_err(|e| named(&entry.path(), e))?;
        total += copy(&entry.path(), &to.join(entry.file_name()), kind.is_dir())?;
    }
    Ok(total)
}

/// Stages input `i` into place.
pub fn stage_input(i: usize, input: &Input) -> Result<(), String> {
    let to = Path::new(&input.path);
    let at = |r: String| format!("inputs[{i}]: {r}");
    if let Some(content) = &input.content {
        make_parent(to).map_err(at)?;
        return fs::write(to, content).map_err(|e| at(named(to, e)));
    }
    let url = input.url.as_deref().unwrap_or_default();
    let from = file_url_path(url).ok_or_else(|| at(format!("{url}: not a file:// url")))?;
    copy(&from, to, input.kind == FileType::Directory)
        .map(|_| ())
        .map_err(at)
}

/// Makes each volume an (empty or existing) directory.
pub fn make_volumes(volumes: &[String]) -> Result<(), String> {
    for (i, v) in volumes.iter().enumerate() {
        fs::create_dir_all(v).map_err(|e| format!("volumes[{i}]: {v}: {e}"))?;
    }
    Ok(())
}

/// Opens executor `i`'s standard streams: stdin to read, stdout and stderr created or
/// truncated (their directories made).
pub fn open_stdio(
    i: usize,
    stdin: Option<&Path>,
    stdout: Option<&Path>,
    stderr: Option<&Path>,
) -> Result<[Option<File>; 3], String> {
    let at =
        |what: &str, p: &Path, e: String| format!("executors[{i}].{what}: {}: {e}", p.display());
    let input = stdin
        .map(|p| File::open(p).map_err(|e| at("stdin", p, e.to_string())))
        .transpose()?;
    let mut out = [None, None];
    for (slot, (what, path)) in out.iter_mut().zip([("stdout", stdout), ("stderr", stderr)]) {
        if let Some(p) = path {
            make_parent(p).map_err(|e| at(what, p, e))?;
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(p);
            *slot = Some(f.map_err(|e| at(what, p, e.to_string()))?);
        }
    }
    let [o, e] = out;
    Ok([input, o, e])
}

fn has_wildcard(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// Copies output `i` out; returns what was copied.
pub fn stage_output(i: usize, output: &Output) -> Result<Vec<OutputFileLog>, String> {
    let at = |r: String| format!("outputs[{i}]: {r}");
    let dest = file_url_path(&output.url)
        .ok_or_else(|| at(format!("{}: not a file:// url", output.url)))?;
    let dir = output.kind == FileType::Directory;
    if !has_wildcard(&output.path) {
        let size = copy(Path::new(&output.path), &dest, dir).map_err(at)?;
        return Ok(vec![OutputFileLog {
            url: output.url.clone(),
            path: output.path.clone(),
            size_bytes: size.to_string(),
        }]);
    }
    let prefix = output.path_prefix.as_deref().unwrap_or_default();
    let matches = glob::glob(&output.path).map_err(|e| at(format!("{}: {e}", output.path)))?;
    let mut logs = Vec::new();
    for m in matches {
        let path = m.map_err(|e| at(e.to_string()))?;
        let rel = path.strip_prefix(prefix).map_err(|_| {
            at(format!(
                "{} does not start with path_prefix {prefix}",
                path.display()
            ))
        })?;
        let to = dest.join(rel);
        let size = copy(&path, &to, path.is_dir()).map_err(at)?;
        logs.push(OutputFileLog {
            url: format!("file://{}", to.display()),
            path: path.display().to_string(),
            size_bytes: size.to_string(),
        });
    }
    Ok(logs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_outputs_keep_their_names_below_the_prefix() {
        let d = tempfile::tempdir().unwrap();
        let work = d.path().join("work");
        fs::create_dir_all(work.join("sub")).unwrap();
        for (p, c) in [
            ("a.txt", "aa"),
            ("b.txt", "bbb"),
            ("c.log", "c"),
            ("sub/d.txt", "dddd"),
        ] {
            fs::write(work.join(p), c).unwrap();
        }
        let out = Output {
            url: format!("file://{}/out", d.path().display()),
            path: format!("{}/**/*.txt", work.display()),
            path_prefix: Some(format!("{}/", work.display())),
            ..Output::default()
        };
        let logs = stage_output(0, &out).unwrap();
        let mut got: Vec<(String, String)> = logs
            .iter()
            .map(|l| {
                (
                    l.url.rsplit("/out/").next().unwrap().to_string(),
                    l.size_bytes.clone(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("a.txt".into(), "2".into()),
                ("b.txt".into(), "3".into()),
                ("sub/d.txt".into(), "4".into())
            ]
        );
        assert_eq!(
            fs::read_to_string(d.path().join("out/sub/d.txt")).unwrap(),
            "dddd"
        );
        assert!(!d.path().join("out/c.log").exists());
    }

    #[test]
    fn inputs_from_content_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("x")).unwrap();
        fs::write(src.join("x/y"), "why").unwrap();
        let dir = Input {
            url: Some(format!("file://{}", src.display())),
            path: format!("{}/in/tree", d.path().display()),
            kind: FileType::Directory,
            ..Input::default()
        };
        stage_input(0, &dir).unwrap();
        assert_eq!(
            fs::read_to_string(d.path().join("in/tree/x/y")).unwrap(),
            "why"
        );
        let inline = Input {
            content: Some("hello".into()),
            path: format!("{}/in/a/b.txt", d.path().display()),
            ..Input::default()
        };
        stage_input(1, &inline).unwrap();
        assert_eq!(
            fs::read_to_string(d.path().join("in/a/b.txt")).unwrap(),
            "hello"
        );
        let missing = Input {
            url: Some("file:///nonexistent/x".into()),
            path: format!("{}/z", d.path().display()),
            ..Input::default()
        };
        let e = stage_input(2, &missing).unwrap_err();
        assert!(e.starts_with("inputs[2]: /nonexistent/x"), "{e}");
    }
}
