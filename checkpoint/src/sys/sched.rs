//! Scheduling attributes of threads of other processes: policy and priority, nice value, CPU
//! affinity (read and set from outside; setting them for a thread of another user needs
//! CAP_SYS_NICE).

use std::io;

use super::cvt_i;

/// Words of a CPU affinity mask (1024 CPUs, as glibc's `cpu_set_t`).
pub const MASK_WORDS: usize = 16;

/// `(policy, priority)` of thread `tid`; the policy keeps `SCHED_RESET_ON_FORK`.
pub fn scheduler(tid: i32) -> io::Result<(i32, i32)> {
    // SAFETY: no memory arguments.
    let policy = cvt_i(unsafe { libc::sched_getscheduler(tid) })?;
    let mut p = libc::sched_param { sched_priority: 0 };
    // SAFETY: the kernel writes one sched_param to &p.
    cvt_i(unsafe { libc::sched_getparam(tid, &mut p) })?;
    Ok((policy, p.sched_priority))
}

/// Sets the policy (with `SCHED_RESET_ON_FORK` if given) and priority of thread `tid`.
pub fn set_scheduler(tid: i32, policy: i32, priority: i32) -> io::Result<()> {
    let p = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: the kernel reads one sched_param from &p.
    cvt_i(unsafe { libc::sched_setscheduler(tid, policy, &p) })?;
    Ok(())
}

/// The nice value of thread `tid`.
pub fn nice(tid: i32) -> io::Result<i32> {
    // -1 is a valid result: errno tells an error apart
    // SAFETY: __errno_location returns this thread's errno, which may be written.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: no memory arguments.
    let n = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    let e = io::Error::last_os_error();
    if n == -1 && e.raw_os_error() != Some(0) {
        return Err(e);
    }
    Ok(n)
}

/// Sets the nice value of thread `tid`.
pub fn set_nice(tid: i32, nice: i32) -> io::Result<()> {
    // SAFETY: no memory arguments.
    cvt_i(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) })?;
    Ok(())
}

/// The CPU affinity mask of thread `tid`, as 64-bit words.
pub fn affinity(tid: i32) -> io::Result<[u64; MASK_WORDS]> {
    let mut mask = [0u64; MASK_WORDS];
    // SAFETY: the kernel writes at most size_of_val(&mask) bytes to mask.
    cvt_i(unsafe {
        libc::sched_getaffinity(
            tid,
            std::mem::size_of_val(&mask),
            mask.as_mut_ptr().cast::<libc::cpu_set_t>(),
        )
    })?;
    Ok(mask)
}

/// Sets the CPU affinity mask of thread `tid`.
pub fn set_affinity(tid: i32, mask: &[u64]) -> io::Result<()> {
    let mut m = [0u64; MASK_WORDS];
    let n = mask.len().min(MASK_WORDS);
    m[..n].copy_from_slice(&mask[..n]);
    // SAFETY: the kernel reads size_of_val(&m) bytes from m.
    cvt_i(unsafe {
        libc::sched_setaffinity(
            tid,
            std::mem::size_of_val(&m),
            m.as_ptr().cast::<libc::cpu_set_t>(),
        )
    })?;
    Ok(())
}
