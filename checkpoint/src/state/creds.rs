//! Credentials: user and group ids, supplementary groups, capability sets.
//!
//! Saved from /proc/PID/status; a process whose threads do not all have the same credentials
//! is refused. Restored in every thread (credentials belong to a thread; a raw `setresuid`
//! changes only the calling one) after everything that needs the restorer's privileges, and
//! before the attributes that a change of credentials resets (dumpable, the parent-death
//! signal).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::persist::{Persist, ProcDump, ProcRestore};
use crate::restore::holder::InThread;

/// Highest capability number the bounding set is trimmed to.
const CAP_LAST: u64 = 40;

/// Credentials of a thread (all threads of a process share them here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creds {
    /// Real, effective, saved, filesystem uid.
    pub uids: [u32; 4],
    /// Real, effective, saved, filesystem gid.
    pub gids: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Inheritable, permitted, effective, bounding, ambient capability sets.
    pub caps: [u64; 5],
}

/// Refuses a process whose threads do not all have the credentials of the process.
pub(crate) fn check(pid: i32, status: &procfs::process::Status) -> Result<()> {
    let want = Creds::from_status(status);
    let Ok(tasks) = procfs::process::Process::new(pid).and_then(|p| p.tasks()) else {
        return Ok(());
    };
    for t in tasks.flatten() {
        let Ok(st) = t.status() else { continue };
        if Creds::from_status(&st) != want {
            return Err(Error::unsupported(
                pid,
                format!("thread {} has other credentials than its process", t.tid),
            ));
        }
    }
    Ok(())
}

impl Creds {
    /// Credentials of process `pid` as /proc/PID/status shows them.
    pub(crate) fn from_status(st: &procfs::process::Status) -> Creds {
        Creds {
            uids: [st.ruid, st.euid, st.suid, st.fuid],
            gids: [st.rgid, st.egid, st.sgid, st.fgid],
            groups: st.groups.clone(),
            caps: [
                st.capinh,
                st.capprm,
                st.capeff,
                st.capbnd.unwrap_or(0),
                st.capamb.unwrap_or(0),
            ],
        }
    }

    /// The restorer's own credentials, if /proc tells them.
    pub(crate) fn mine() -> Option<Creds> {
        procfs::process::Process::myself()
            .and_then(|p| p.status())
            .ok()
            .map(|st| Creds::from_status(&st))
    }
}

impl Persist for Creds {
    type Saving<'a> = ProcDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut ProcDump<'_>) -> Result<Creds> {
        Ok(Creds::from_status(cx.status))
    }

    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        if cx.tree.same_creds {
            return Ok(());
        }
        for t in cx.p.threads.iter() {
            set_in_thread(&mut cx.h.task.thread(t.tid)?, self)?;
        }
        Ok(())
    }
}

/// Sets credentials in one thread: bounding set, groups, gids, uids keeping the permitted
/// capabilities, then the capability sets and ambient capabilities.
fn set_in_thread(th: &mut InThread<'_>, cr: &Creds) -> Result<()> {
    let scratch = th.scratch();
    for cap in 0..=CAP_LAST {
        if cr.caps[3] & (1 << cap) == 0 {
            th.call(
                "drop bounding capability",
                libc::SYS_prctl,
                [libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0, 0],
            )?;
        }
    }
    let groups: Vec<u8> = cr.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    th.put(2048, &groups)?;
    th.call(
        "setgroups",
        libc::SYS_setgroups,
        [cr.groups.len() as u64, scratch + 2048, 0, 0, 0, 0],
    )?;
    let [rg, eg, sg, fg] = cr.gids.map(u64::from);
    th.call("setresgid", libc::SYS_setresgid, [rg, eg, sg, 0, 0, 0])?;
    th.call("setfsgid", libc::SYS_setfsgid, [fg, 0, 0, 0, 0, 0])?;
    th.call(
        "keepcaps",
        libc::SYS_prctl,
        [libc::PR_SET_KEEPCAPS as u64, 1, 0, 0, 0, 0],
    )?;
    let [ru, eu, su, fu] = cr.uids.map(u64::from);
    th.call("setresuid", libc::SYS_setresuid, [ru, eu, su, 0, 0, 0])?;
    th.call("setfsuid", libc::SYS_setfsuid, [fu, 0, 0, 0, 0, 0])?;
    set_caps(th, cr)?;
    th.call(
        "keepcaps",
        libc::SYS_prctl,
        [libc::PR_SET_KEEPCAPS as u64, 0, 0, 0, 0, 0],
    )?;
    Ok(())
}

/// capset v3, then the ambient capabilities.
fn set_caps(th: &mut InThread<'_>, cr: &Creds) -> Result<()> {
    let scratch = th.scratch();
    // header {version, pid}, two data words {effective, permitted, inheritable}
    let mut b = Vec::new();
    b.extend(0x2008_0522u32.to_le_bytes());
    b.extend(0i32.to_le_bytes());
    for half in 0..2 {
        let part = |v: u64| ((v >> (32 * half)) & 0xffff_ffff) as u32;
        b.extend(part(cr.caps[2]).to_le_bytes());
        b.extend(part(cr.caps[1]).to_le_bytes());
        b.extend(part(cr.caps[0]).to_le_bytes());
    }
    th.put(2048, &b)?;
    th.call(
        "capset",
        libc::SYS_capset,
        [scratch + 2048, scratch + 2056, 0, 0, 0, 0],
    )?;
    for cap in 0..64u64 {
        if cr.caps[4] & (1 << cap) != 0 {
            th.call(
                "raise ambient capability",
                libc::SYS_prctl,
                [
                    libc::PR_CAP_AMBIENT as u64,
                    libc::PR_CAP_AMBIENT_RAISE as u64,
                    cap,
                    0,
                    0,
                    0,
                ],
            )?;
        }
    }
    Ok(())
}
