//! `ssi dump` and `ssi restore`: checkpoint and restore of a process tree of this machine.
//! They work without a running ssid (the tree is local; nothing goes over the network).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use checkpoint::{AfterDump, DirSink, DumpOptions, Image, RestoreOptions};

use crate::progress::{self, Bar};

/// Options of `ssi dump`.
#[derive(Debug, Clone)]
pub struct DumpArgs {
    /// Root of the tree.
    pub pid: i32,
    /// Image directory (created).
    pub dir: PathBuf,
    /// Let the tree run on after the dump.
    pub leave_running: bool,
    /// Leave the tree stopped (SIGSTOP) after the dump.
    pub leave_stopped: bool,
    /// Memory only, start tracking writes; the tree keeps running.
    pub pre_dump: bool,
    /// Earlier (pre-)dump this one saves only the changes against.
    pub prev: Option<PathBuf>,
}

/// How to name `prev` inside `dir`'s inventory: relative when they are siblings.
fn parent_path(dir: &Path, prev: &Path) -> Result<String> {
    let prev = prev
        .canonicalize()
        .with_context(|| format!("{}", prev.display()))?;
    let dir_parent = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.parent().map(Path::to_path_buf))
        .or_else(|| {
            std::env::current_dir()
                .ok()
                .map(|c| c.join(dir))
                .and_then(|d| d.parent().map(Path::to_path_buf))
        });
    match (dir_parent, prev.parent(), prev.file_name()) {
        (Some(a), Some(b), Some(name)) if a == b => Ok(format!("../{}", name.to_string_lossy())),
        _ => Ok(prev.to_string_lossy().into_owned()),
    }
}

/// `ssi dump`: returns the summary line to print.
pub fn dump(a: &DumpArgs) -> Result<String> {
    if a.leave_running && a.leave_stopped {
        bail!("--leave-running and --leave-stopped exclude each other");
    }
    let prev = match &a.prev {
        Some(p) => Some(Image::load(p).with_context(|| format!("--prev {}", p.display()))?),
        None => None,
    };
    // the sink creates the directory, which `parent_path` then resolves
    let mut sink = DirSink::new(&a.dir)?;
    let bar = Bar::on_terminal(progress::DUMP);
    let opts = DumpOptions {
        after: if a.leave_running {
            AfterDump::Resume
        } else if a.leave_stopped {
            AfterDump::Stop
        } else {
            AfterDump::Kill
        },
        pre_dump: a.pre_dump,
        tracker_in_process: a.pre_dump,
        parent_path: a
            .prev
            .as_deref()
            .map(|p| parent_path(&a.dir, p))
            .transpose()?,
        progress: bar.as_ref().map(Bar::progress),
    };
    let out = checkpoint::dump(a.pid, &opts, prev.as_ref(), &mut sink)?;
    drop(bar);
    let what = if a.pre_dump { "pre-dumped" } else { "dumped" };
    let state = if a.pre_dump || a.leave_running {
        "running"
    } else if a.leave_stopped {
        "stopped"
    } else {
        "killed"
    };
    Ok(format!(
        "{what} {} process{} of tree {} to {} ({:.1} MiB of pages written, {:.1} MiB kept in the parent image); tree {state}",
        out.pids.len(),
        if out.pids.len() == 1 { "" } else { "es" },
        a.pid,
        a.dir.display(),
        out.page_bytes as f64 / (1 << 20) as f64,
        out.parent_bytes as f64 / (1 << 20) as f64,
    ))
}

/// Loads the image in `dir` for a restore with this process's own privileges. No seal is
/// checked here (the cluster key is the daemon's), so root restores only an image root owns,
/// in a directory only root may change: a user's image would otherwise get root's powers for
/// ids, capabilities and files the user wrote into it. A user restores as themselves; the
/// kernel refuses what they may not do.
fn load_trusted(dir: &Path) -> Result<Image> {
    use checkpoint::image::ownership;
    use std::os::unix::fs::OpenOptionsExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(Image::load(dir)?);
    }
    let name = dir.display().to_string();
    // one descriptor for the checks and the load: a directory renamed into place meanwhile
    // is not read
    let pin = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .with_context(|| format!("cannot open the image directory {name}"))?;
    let pinned = Path::new("/proc/self/fd").join(pin.as_raw_fd().to_string());
    let (uid, _) = ownership::owner(&pinned, &name)?;
    if uid != 0 {
        bail!(
            "{name}: an image of uid {uid}'s: as root, ssi restore takes only images root owns \
             (no seal is checked without the daemon); use ssi restart, or restore it as uid {uid}"
        );
    }
    let meta = pin
        .metadata()
        .with_context(|| format!("cannot read {name}"))?;
    ownership::only_root_may_change(&meta, &name)?;
    Ok(Image::load(&pinned).with_context(|| name.clone())?)
}

/// `ssi restore`: restores the tree; with `detach` prints its root pid and returns 0, else
/// waits for the root and returns its exit code (128 + signal if killed).
pub fn restore(
    dir: &Path,
    detach: bool,
    allow_changed_files: bool,
    tcp_close: bool,
) -> Result<i32> {
    let img = load_trusted(dir)?;
    let bar = Bar::on_terminal(progress::RESTORE);
    let opts = RestoreOptions {
        allow_changed_files,
        tcp_close,
        progress: bar.as_ref().map(Bar::progress),
        ..Default::default()
    };
    let r = checkpoint::restore(&img, &opts)?;
    drop(bar);
    if detach {
        println!(
            "restored tree {} ({} process{})",
            r.root,
            r.pids.len(),
            if r.pids.len() == 1 { "" } else { "es" }
        );
        return Ok(0);
    }
    Ok(r.wait()?)
}
