//! The filesystem context of a process: working directory, root directory, file mode creation
//! mask.
//!
//! The root is changed last of the three (`chroot`), once every file of the process was opened
//! by the path the dumper saw, and before the credentials drop the privilege it needs.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::persist::{Persist, ProcDump, ProcRestore};

/// Filesystem context of a process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fs {
    /// Working directory.
    pub cwd: String,
    /// Root directory.
    pub root: String,
    /// File mode creation mask.
    pub umask: u32,
}

fn link(pid: i32, what: &str) -> Result<String> {
    let p = format!("/proc/{pid}/{what}");
    std::fs::read_link(&p)
        .map(|l| l.to_string_lossy().into_owned())
        .map_err(|e| Error::io(p, e))
}

/// Refuses a working or root directory that was deleted: it cannot be entered again.
pub(crate) fn check(pid: i32) -> Result<()> {
    for (what, name) in [("cwd", "working directory"), ("root", "root directory")] {
        let dir = link(pid, what)?;
        if let Some(dir) = dir.strip_suffix(" (deleted)") {
            return Err(Error::unsupported(
                pid,
                format!("its {name} {dir} was deleted"),
            ));
        }
    }
    Ok(())
}

impl Persist for Fs {
    type Saving<'a> = ProcDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut ProcDump<'_>) -> Result<Fs> {
        Ok(Fs {
            cwd: link(cx.pid, "cwd")?,
            root: link(cx.pid, "root")?,
            umask: cx.status.umask.unwrap_or(0o022),
        })
    }

    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        path_call(cx, "chdir", libc::SYS_chdir, &self.cwd)?;
        cx.h.call("umask", libc::SYS_umask, [self.umask as u64, 0, 0, 0, 0, 0])?;
        if self.root != "/" {
            path_call(cx, "chroot", libc::SYS_chroot, &self.root)?;
        }
        Ok(())
    }
}

/// Injects system call `nr` taking one path.
fn path_call(cx: &mut ProcRestore<'_>, name: &str, nr: i64, path: &str) -> Result<u64> {
    let at = cx.h.task.put_str(0, path)?;
    cx.h.call(&format!("{name} {path}"), nr, [at, 0, 0, 0, 0, 0])
}
