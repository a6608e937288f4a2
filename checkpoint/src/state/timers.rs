//! Timers of a process: the three interval timers (`setitimer`) and its POSIX timers
//! (`timer_create`).
//!
//! POSIX timers are listed by /proc/PID/timers (id, signal and value, how they notify, clock);
//! the time left and the period are read by `timer_gettime` injected into the process. Restore
//! creates each again with its id: `prctl(PR_TIMER_CREATE_RESTORE_IDS)` makes `timer_create`
//! take the id it is given (kernel 6.17 and later; an older kernel fails the restore, naming
//! it). Overruns not yet read are not kept: `timer_getoverrun` starts again from 0.
//!
//! Timers are set last of all the process' state (after its threads exist: a timer may signal
//! one thread): `ITIMER_REAL` and the POSIX timers run from the moment they are set.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::persist::{Persist, ProcDump, ProcRestore};

const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const SIGEV_THREAD_ID: i32 = 4;

/// Timer state of a process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`: `(interval, value)` in microseconds.
    pub itimers: [(u64, u64); 3],
    /// POSIX timers, by id.
    pub posix: Vec<PosixTimer>,
}

/// A POSIX timer (`timer_create`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    /// Its id.
    pub id: i32,
    /// Clock (`CLOCK_*`, or a CPU clock of a process or thread).
    pub clock: i32,
    /// `sigev_notify` (`SIGEV_SIGNAL`, `SIGEV_NONE`, with `SIGEV_THREAD_ID` for one thread).
    pub notify: i32,
    /// The thread it signals (`SIGEV_THREAD_ID`).
    pub tid: i32,
    /// Signal it sends.
    pub signo: i32,
    /// Value the signal carries (`sigev_value`).
    pub value: u64,
    /// Period, in nanoseconds (0: one shot).
    pub interval_ns: u64,
    /// Time left until it expires, in nanoseconds (0: disarmed).
    pub left_ns: u64,
}

/// Parses /proc/PID/timers: id, signal, notification and clock of each timer.
fn parse(text: &str) -> Vec<PosixTimer> {
    let mut out: Vec<PosixTimer> = Vec::new();
    for line in text.lines() {
        let Some((key, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if key == "ID" {
            out.push(PosixTimer {
                id: v.parse().unwrap_or(-1),
                ..PosixTimer::default()
            });
            continue;
        }
        let Some(t) = out.last_mut() else { continue };
        match key {
            "signal" => {
                let (sig, val) = v.split_once('/').unwrap_or((v, "0"));
                t.signo = sig.parse().unwrap_or(0);
                t.value = u64::from_str_radix(val.trim_start_matches("0x"), 16).unwrap_or(0);
            }
            "notify" => {
                // "signal/pid.N", "none/pid.N", "thread/tid.N"
                let (how, whom) = v.split_once('/').unwrap_or((v, ""));
                t.notify = match how {
                    "none" => libc::SIGEV_NONE,
                    "thread" => libc::SIGEV_THREAD,
                    _ => libc::SIGEV_SIGNAL,
                };
                if let Some(tid) = whom.strip_prefix("tid.") {
                    t.notify |= SIGEV_THREAD_ID;
                    t.tid = tid.parse().unwrap_or(0);
                }
            }
            "ClockID" => t.clock = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    out
}

fn ns(sec: u64, nsec: u64) -> u64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Reads the POSIX timers of the frozen process.
fn save_posix(cx: &mut ProcDump<'_>) -> Result<Vec<PosixTimer>> {
    let path = format!("/proc/{}/timers", cx.pid);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut timers = parse(&text);
    let scratch = cx.par.scratch();
    for t in &mut timers {
        if t.id < 0 || t.notify & !SIGEV_THREAD_ID == libc::SIGEV_THREAD {
            return Err(Error::unsupported(
                cx.pid,
                format!("POSIX timer {} notifies in an unknown way", t.id),
            ));
        }
        cx.par.call(
            "timer_gettime",
            libc::SYS_timer_gettime,
            [t.id as u64, scratch, 0, 0, 0, 0],
        )?;
        let w = cx.par.read_words(0, 4)?;
        t.interval_ns = ns(w[0], w[1]);
        t.left_ns = ns(w[2], w[3]);
    }
    timers.sort_by_key(|t| t.id);
    Ok(timers)
}

/// Creates the POSIX timers again in the held process, each with its id, and arms them.
fn restore_posix(timers: &[PosixTimer], cx: &mut ProcRestore<'_>) -> Result<()> {
    if timers.is_empty() {
        return Ok(());
    }
    let scratch = cx.h.scratch_at()?;
    cx.h.call(
        "prctl PR_TIMER_CREATE_RESTORE_IDS (kernel 6.17 or later)",
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0, 0],
    )?;
    for t in timers {
        // struct sigevent: value, signo, notify, tid (64 bytes); then the id asked for
        let mut ev = [0u8; 64];
        ev[..8].copy_from_slice(&t.value.to_le_bytes());
        ev[8..12].copy_from_slice(&t.signo.to_le_bytes());
        ev[12..16].copy_from_slice(&t.notify.to_le_bytes());
        ev[16..20].copy_from_slice(&t.tid.to_le_bytes());
        let mut buf = ev.to_vec();
        buf.extend_from_slice(&t.id.to_le_bytes());
        cx.h.put(0, &buf)?;
        cx.h.call(
            &format!("timer_create {}", t.id),
            libc::SYS_timer_create,
            [t.clock as u64, scratch, scratch + 64, 0, 0, 0],
        )?;
        if t.left_ns == 0 {
            continue;
        }
        let (i, l) = (t.interval_ns, t.left_ns);
        cx.h.put(
            128,
            &[
                i / 1_000_000_000,
                i % 1_000_000_000,
                l / 1_000_000_000,
                l % 1_000_000_000,
            ]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect::<Vec<u8>>(),
        )?;
        cx.h.call(
            &format!("timer_settime {}", t.id),
            libc::SYS_timer_settime,
            [t.id as u64, 0, scratch + 128, 0, 0, 0],
        )?;
    }
    cx.h.call(
        "prctl PR_TIMER_CREATE_RESTORE_IDS off",
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0, 0],
    )?;
    Ok(())
}

impl Persist for Timers {
    type Saving<'a> = ProcDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut ProcDump<'_>) -> Result<Timers> {
        let mut itimers = [(0, 0); 3];
        let scratch = cx.par.scratch();
        for (which, slot) in itimers.iter_mut().enumerate() {
            cx.par.call(
                "getitimer",
                libc::SYS_getitimer,
                [which as u64, scratch, 0, 0, 0, 0],
            )?;
            let w = cx.par.read_words(0, 4)?;
            *slot = (w[0] * 1_000_000 + w[1], w[2] * 1_000_000 + w[3]);
        }
        Ok(Timers {
            itimers,
            posix: save_posix(cx)?,
        })
    }

    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        let scratch = cx.h.scratch_at()?;
        for (which, &(interval, value)) in self.itimers.iter().enumerate() {
            if interval == 0 && value == 0 {
                continue;
            }
            cx.h.task.put_words(
                0,
                &[
                    interval / 1_000_000,
                    interval % 1_000_000,
                    value / 1_000_000,
                    value % 1_000_000,
                ],
            )?;
            cx.h.call(
                "setitimer",
                libc::SYS_setitimer,
                [which as u64, scratch, 0, 0, 0, 0],
            )?;
        }
        restore_posix(&self.posix, cx)
    }
}
