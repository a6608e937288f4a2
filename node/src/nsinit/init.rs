//! The `ssid ns-init` program: pid 1 of a node's pid namespace. Single-threaded and blocking
//! on purpose: `clone3` followed by `execve` is only safe from a single-threaded process.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{ExitStatus, FromInit, SpawnRequest, ToInit, MAX_MESSAGE};
use crate::sys::{self, Prepared, SpawnError};

/// Runs the init loop on `sock` (inherited from the daemon) for pids `first..=last`; with
/// `hostname`, first moves into a UTS namespace of its own with that host name, which every
/// process it starts inherits.
pub fn run(sock: OwnedFd, first: i32, last: i32, hostname: Option<&str>) -> Result<()> {
    // If the daemon died before this takes effect, its end of `sock` is closed and the loop
    // below ends at the first read.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .context("cannot set the parent-death signal")?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().context("cannot block SIGCHLD")?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("cannot create a signalfd")?;
    sys::cloexec_from_3().context("cannot mark inherited fds close-on-exec")?;
    if let Some(name) = hostname {
        own_hostname(name)?;
    }
    let mut init = Init {
        sock,
        first,
        last,
        cursor: first,
    };
    init.keep_kernel_cursor_in_range();
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (sock_ready, sig_ready) = {
            let mut fds = [
                PollFd::new(init.sock.as_fd(), PollFlags::POLLIN),
                PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::from(1000u16)) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("poll failed"),
                Ok(_) => {}
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if sig_ready {
            // Drain the signalfd; the reaping below catches every exited child.
            while let Ok(Some(_)) = sigfd.read_signal() {}
        }
        init.reap()?;
        if sock_ready {
            let (n, fds) = match sys::recv_with_fds(init.sock.as_raw_fd(), &mut buf) {
                Err(Errno::EINTR) => continue,
                // A message too large, or with too many fds: refuse it, keep serving.
                Err(e @ (Errno::EMSGSIZE | Errno::ENOBUFS)) => {
                    init.send(&FromInit::SpawnFailed {
                        reason: format!("request refused by the namespace init: {e}"),
                        errno: e as i32,
                    })?;
                    continue;
                }
                Err(e) => return Err(e).context("cannot receive from ssid"),
                Ok(r) => r,
            };
            if n == 0 {
                // The daemon closed its end: the node stops, and so do its processes.
                return Ok(());
            }
            let reply = match postcard::from_bytes::<ToInit>(&buf[..n]) {
                Ok(ToInit::Spawn(req)) => init.spawn(&req, &fds),
                Ok(ToInit::Helper { argv }) => helper(&argv, &fds),
                Ok(ToInit::Signal { target, sig }) => init.signal(target, sig),
                Err(e) => FromInit::SpawnFailed {
                    reason: format!("undecodable request: {e}"),
                    errno: libc::EINVAL,
                },
            };
            drop(fds);
            init.send(&reply)?;
        }
        init.keep_kernel_cursor_in_range();
    }
}

struct Init {
    sock: OwnedFd,
    first: i32,
    last: i32,
    cursor: i32,
}

/// Room kept at the top of the range before the kernel's cursor is sent back to its start.
const CURSOR_SLACK: i32 = 64;

impl Init {
    fn send(&self, msg: &FromInit) -> Result<()> {
        let bytes = postcard::to_stdvec(msg).context("cannot encode a message")?;
        sys::send_with_fds(self.sock.as_raw_fd(), &bytes, &[]).context("cannot send to ssid")
    }

    /// Programs that fork get pids from the kernel's cursor (`ns_last_pid`): keep it inside
    /// the node's range, so that their children's pids are the node's too.
    fn keep_kernel_cursor_in_range(&self) {
        let path = "/proc/sys/kernel/ns_last_pid";
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let Ok(last) = text.trim().parse::<i32>() else {
            return;
        };
        if last < self.first - 1 || last > self.last - CURSOR_SLACK {
            let _ = std::fs::write(path, (self.first - 1).to_string());
        }
    }

    fn reap(&self) -> Result<()> {
        loop {
            let status = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, ExitStatus::Signal(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(()),
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("waitpid failed"),
            };
            self.send(&FromInit::Exited {
                pid: status.0.as_raw(),
                status: status.1,
            })?;
        }
    }

    fn signal(&self, target: i32, sig: i32) -> FromInit {
        let error = Signal::try_from(sig)
            .map_err(|e| format!("signal {sig}: {e}"))
            .and_then(|s| {
                nix::sys::signal::kill(Pid::from_raw(target), s)
                    .map_err(|e| format!("kill {target}: {e}"))
            })
            .err();
        FromInit::Signalled { error }
    }

    fn spawn(&mut self, req: &SpawnRequest, fds: &[OwnedFd]) -> FromInit {
        let failed = |reason: String, errno: Errno| FromInit::SpawnFailed {
            reason,
            errno: errno as i32,
        };
        if fds.len() != 3 {
            return failed(
                format!("expected 3 stdio fds, got {}", fds.len()),
                Errno::EINVAL,
            );
        }
        let lifted = match lift_all(fds) {
            Ok(l) => l,
            Err(e) => return failed(format!("cannot move the stdio fds: {e}"), e),
        };
        let Some(arg0) = req.argv.first() else {
            return failed("empty command".into(), Errno::EINVAL);
        };
        let candidates = candidates(arg0, &req.env);
        let paths: Vec<&OsStr> = candidates.iter().map(|p| p.as_os_str()).collect();
        let prepared = match Prepared::new(
            &paths,
            &req.argv,
            &req.env,
            &req.cwd,
            req.uid,
            req.gid,
            req.groups.clone(),
            &req.rlimits,
            lifted.iter().map(AsRawFd::as_raw_fd).collect(),
        ) {
            Ok(p) => p,
            Err(reason) => return failed(reason, Errno::EINVAL),
        };
        // opened here, as root; the child writes to it before it takes the user's ids
        let procs = match &req.cgroup {
            None => None,
            Some(path) => match std::fs::OpenOptions::new().write(true).open(path) {
                Ok(f) => Some(f),
                Err(e) => {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                    return failed(format!("cannot open {}: {e}", path.display()), errno);
                }
            },
        };
        let prepared = match &procs {
            Some(f) => prepared.join_cgroup(f.as_raw_fd()),
            None => prepared,
        };
        let span = self.last - self.first + 1;
        for _ in 0..span {
            let gpid = self.cursor;
            self.cursor = if gpid >= self.last {
                self.first
            } else {
                gpid + 1
            };
            match sys::spawn(&prepared, Some(gpid)) {
                Ok(gpid) => return FromInit::Spawned { gpid },
                Err(SpawnError::Clone(Errno::EEXIST)) => continue,
                Err(SpawnError::Clone(e)) => {
                    return failed(format!("cannot create the process: {e}"), e)
                }
                Err(SpawnError::Child(sys::Stage::Exec, Errno::ENOENT))
                    if !arg0.contains(&b'/') =>
                {
                    let name = String::from_utf8_lossy(arg0);
                    return failed(format!("{name}: command not found"), Errno::ENOENT);
                }
                Err(SpawnError::Child(stage, e)) => {
                    let what = match stage {
                        sys::Stage::Chdir => String::from_utf8_lossy(&req.cwd).into_owned(),
                        _ => String::from_utf8_lossy(arg0).into_owned(),
                    };
                    return failed(format!("{} {what}: {}", stage.describe(), e.desc()), e);
                }
            }
        }
        failed(
            format!("all {span} pids of this node are in use"),
            Errno::EAGAIN,
        )
    }
}

/// Gives this process (and so every process it starts) a UTS namespace of its own named
/// `name`. Several nodes on one kernel would otherwise share one host name, and programs that
/// name shared resources after it (Open MPI's shared-memory segments in /dev/shm) collide.
fn own_hostname(name: &str) -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS)
        .context("cannot create the node's UTS namespace (unshare CLONE_NEWUTS)")?;
    nix::unistd::sethostname(name).with_context(|| format!("cannot set the host name {name:?}"))
}

/// Moves received fds above the numbers they will take in the child.
fn lift_all(fds: &[OwnedFd]) -> Result<Vec<OwnedFd>, Errno> {
    fds.iter().map(sys::lift_fd).collect()
}

/// Starts one of ssid's helpers as root with `fds` as its fds 0, 1, 2, ...
fn helper(argv: &[Vec<u8>], fds: &[OwnedFd]) -> FromInit {
    let failed = |reason: String, errno: Errno| FromInit::SpawnFailed {
        reason,
        errno: errno as i32,
    };
    let Some(path) = argv.first() else {
        return failed("empty helper command".into(), Errno::EINVAL);
    };
    let lifted = match lift_all(fds) {
        Ok(l) => l,
        Err(e) => return failed(format!("cannot move the helper's fds: {e}"), e),
    };
    let env = vec![b"PATH=/usr/local/bin:/usr/bin:/bin".to_vec()];
    let raw = lifted.iter().map(AsRawFd::as_raw_fd).collect();
    let prepared = match Prepared::new(
        &[OsStr::from_bytes(path)],
        argv,
        &env,
        b"/",
        0,
        0,
        Vec::new(),
        &[],
        raw,
    ) {
        Ok(p) => p,
        Err(reason) => return failed(reason, Errno::EINVAL),
    };
    match sys::spawn(&prepared, None) {
        Ok(pid) => FromInit::Spawned { gpid: pid },
        Err(SpawnError::Clone(e)) => failed(format!("cannot create the helper: {e}"), e),
        Err(SpawnError::Child(stage, e)) => {
            failed(format!("helper: {}: {}", stage.describe(), e.desc()), e)
        }
    }
}

/// Where to look for the program, as execvp does: a name with a slash is used as is
/// (relative to the working directory), otherwise in each directory of `PATH` from `env`.
/// Nothing is looked at here, as root: the child tries them in order once it is the user.
fn candidates(arg0: &[u8], env: &[Vec<u8>]) -> Vec<PathBuf> {
    let name = Path::new(OsStr::from_bytes(arg0));
    if arg0.contains(&b'/') {
        return vec![name.to_path_buf()];
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix(b"PATH="))
        .map(|p| p.to_vec())
        .unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec());
    path.split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { &b"."[..] } else { dir };
            Path::new(OsStr::from_bytes(dir)).join(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_path_and_keep_slashes() {
        let env = vec![b"PATH=/nonexistent::/bin".to_vec()];
        let want: Vec<PathBuf> = ["/nonexistent/sh", "./sh", "/bin/sh"]
            .map(PathBuf::from)
            .into();
        assert_eq!(candidates(b"sh", &env), want);
        assert_eq!(candidates(b"./x", &env), vec![PathBuf::from("./x")]);
        assert_eq!(candidates(b"ls", &[]).len(), 3);
    }
}
