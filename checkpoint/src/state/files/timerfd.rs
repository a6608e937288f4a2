//! timerfd: clock, time to the next expiry, period and expirations not read yet, from fdinfo.
//! Expirations not read yet come back as one expiry right away.

use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use super::{FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::sys::fd as sfd;

/// A timerfd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerFd {
    /// Clock (`CLOCK_*`).
    pub clockid: i32,
    /// Time to the next expiry, in nanoseconds (0: disarmed).
    pub value_ns: u64,
    /// Period, in nanoseconds.
    pub interval_ns: u64,
    /// Expirations not read yet.
    pub ticks: u64,
}

impl Persist for TimerFd {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<TimerFd> {
        let info = &cx.e.info;
        // "(seconds, nanoseconds)"
        let time = |k: &str| -> u64 {
            info.get(k)
                .map(|v| v.trim_matches(|c| c == '(' || c == ')'))
                .and_then(|v| v.split_once(','))
                .map(|(s, ns)| {
                    s.trim().parse::<u64>().unwrap_or(0) * 1_000_000_000
                        + ns.trim().parse::<u64>().unwrap_or(0)
                })
                .unwrap_or(0)
        };
        Ok(TimerFd {
            clockid: info
                .get("clockid")
                .and_then(|c| c.parse().ok())
                .unwrap_or(libc::CLOCK_MONOTONIC),
            value_ns: time("it_value"),
            interval_ns: time("it_interval"),
            ticks: info.get("ticks").and_then(|c| c.parse().ok()).unwrap_or(0),
        })
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        let value = if self.ticks > 0 { 1 } else { self.value_ns };
        let fl = if cx.file.flags & libc::O_NONBLOCK != 0 {
            libc::TFD_NONBLOCK
        } else {
            0
        };
        sfd::timerfd(self.clockid, fl, value, self.interval_ns).map_err(|e| Error::io("timerfd", e))
    }
}
