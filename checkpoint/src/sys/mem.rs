//! Memory of other processes: bulk copies, the PAGEMAP_SCAN ioctl, userfaultfd write-protect.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// Page categories of PAGEMAP_SCAN (`linux/fs.h`, Linux 6.7+; Debian 12's headers lack them).
pub mod category {
    /// Written since write-protected (uffd-wp async).
    pub const WRITTEN: u64 = 1 << 1;
    /// Page cache page (not anonymous).
    pub const FILE: u64 = 1 << 2;
    /// Present in memory.
    pub const PRESENT: u64 = 1 << 3;
    /// Swapped out.
    pub const SWAPPED: u64 = 1 << 4;
    /// Mapped to the shared zero page.
    pub const PFNZERO: u64 = 1 << 5;
}

const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: libc::c_ulong = 0xC060_6610;

#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// A PAGEMAP_SCAN query: pages `p` with `((cat(p) ^ inverted) & mask) == mask` and, if
/// `anyof != 0`, `(cat(p) ^ inverted) & anyof != 0`.
#[derive(Debug, Clone, Copy)]
pub struct Scan {
    /// Categories to invert before matching.
    pub inverted: u64,
    /// Categories that must all be set (after inversion).
    pub mask: u64,
    /// Categories of which one must be set (after inversion).
    pub anyof: u64,
    /// Write-protect the matching pages again (uffd-wp async).
    pub write_protect: bool,
}

/// Runs PAGEMAP_SCAN over `[start, end)` of the process whose /proc/PID/pagemap is `pagemap`;
/// appends matching `[start, end)` ranges (merged) to `out`.
pub fn pagemap_scan(
    pagemap: BorrowedFd<'_>,
    start: u64,
    end: u64,
    q: Scan,
    out: &mut Vec<(u64, u64)>,
) -> io::Result<()> {
    let mut regions = vec![PageRegion::default(); 512];
    let mut at = start;
    while at < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags: if q.write_protect {
                PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC
            } else {
                0
            },
            start: at,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: regions.len() as u64,
            category_inverted: q.inverted,
            category_mask: q.mask,
            category_anyof_mask: q.anyof,
            return_mask: q.mask | q.anyof,
            ..Default::default()
        };
        // SAFETY: arg is a valid pm_scan_arg whose vec points at vec_len page_regions we own.
        let n = cvt(unsafe {
            libc::ioctl(
                pagemap.as_raw_fd(),
                PAGEMAP_SCAN,
                &mut arg as *mut PmScanArg,
            )
        } as libc::c_long)?;
        for r in &regions[..n as usize] {
            match out.last_mut() {
                Some(last) if last.1 == r.start => last.1 = r.end,
                _ => out.push((r.start, r.end)),
            }
        }
        if arg.walk_end <= at {
            break;
        }
        at = arg.walk_end;
    }
    Ok(())
}

/// Copies from process `pid`: remote ranges `(addr, len)` into `local`, in order. Returns the
/// bytes copied (less than asked if a page could not be read).
pub fn read_remote(pid: i32, local: &mut [u8], remote: &[(u64, usize)]) -> io::Result<usize> {
    let mut done = 0usize;
    let mut ri = 0usize;
    let mut r_off = 0usize;
    while ri < remote.len() {
        let mut riov: Vec<libc::iovec> = Vec::with_capacity(1024);
        let mut want = 0usize;
        let (mut i, mut off) = (ri, r_off);
        while i < remote.len() && riov.len() < 1024 {
            let (a, l) = remote[i];
            riov.push(libc::iovec {
                iov_base: (a as usize + off) as *mut libc::c_void,
                iov_len: l - off,
            });
            want += l - off;
            i += 1;
            off = 0;
        }
        let liov = libc::iovec {
            iov_base: local[done..].as_mut_ptr().cast(),
            iov_len: want,
        };
        // SAFETY: liov covers `want` bytes of `local` (the caller sized it to the sum of the
        // remote lengths); remote iovecs are only interpreted in the other process.
        let n = cvt(unsafe {
            libc::process_vm_readv(pid, &liov, 1, riov.as_ptr(), riov.len() as u64, 0)
        } as libc::c_long)? as usize;
        done += n;
        // advance (ri, r_off) by n bytes
        let mut left = n;
        while left > 0 && ri < remote.len() {
            let avail = remote[ri].1 - r_off;
            if left >= avail {
                left -= avail;
                ri += 1;
                r_off = 0;
            } else {
                r_off += left;
                left = 0;
            }
        }
        if n < want {
            return Ok(done);
        }
    }
    Ok(done)
}

/// Copies `local` slices to addresses in process `pid`; fails on a short copy.
pub fn write_remote(pid: i32, pieces: &[(u64, &[u8])]) -> io::Result<()> {
    for batch in pieces.chunks(1024) {
        let liov: Vec<libc::iovec> = batch
            .iter()
            .map(|(_, d)| libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        let riov: Vec<libc::iovec> = batch
            .iter()
            .map(|(a, d)| libc::iovec {
                iov_base: *a as usize as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        let want: usize = batch.iter().map(|(_, d)| d.len()).sum();
        // SAFETY: local iovecs point into live slices, only read; remote ones are addresses in
        // the other process.
        let n = cvt(unsafe {
            libc::process_vm_writev(
                pid,
                liov.as_ptr(),
                liov.len() as u64,
                riov.as_ptr(),
                riov.len() as u64,
                0,
            )
        } as libc::c_long)? as usize;
        if n != want {
            return Err(io::Error::other(format!(
                "short write to process memory ({n} of {want} bytes)"
            )));
        }
    }
    Ok(())
}

/// userfaultfd ioctls and features used for write tracking.
pub mod uffd {
    use super::*;

    /// `UFFD_FEATURE_WP_UNPOPULATED`.
    pub const FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
    /// `UFFD_FEATURE_WP_ASYNC`.
    pub const FEATURE_WP_ASYNC: u64 = 1 << 15;
    const UFFD_API: u64 = 0xAA;
    const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
    const UFFDIO_REGISTER: libc::c_ulong = 0xC020_AA00;
    const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
    /// Flags for the `userfaultfd` syscall: `O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY`.
    pub const SYSCALL_FLAGS: u64 = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64 | 1;

    /// Enables the API with `features`.
    pub fn api(fd: BorrowedFd<'_>, features: u64) -> io::Result<()> {
        let mut a = [UFFD_API, features, 0u64];
        // SAFETY: struct uffdio_api is three u64s; the kernel reads and writes it.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, a.as_mut_ptr()) } as libc::c_long)?;
        Ok(())
    }

    /// Registers `[start, start+len)` for write-protect tracking.
    pub fn register_wp(fd: BorrowedFd<'_>, start: u64, len: u64) -> io::Result<()> {
        let mut r = [start, len, UFFDIO_REGISTER_MODE_WP, 0u64];
        // SAFETY: struct uffdio_register is four u64s; the kernel reads and writes it.
        let res = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_REGISTER, r.as_mut_ptr()) };
        cvt(res as libc::c_long)?;
        Ok(())
    }
}

/// A copy of `len` bytes of this process' own memory at `addr` (a readable mapping such as
/// the vDSO).
pub fn read_own(addr: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    // SAFETY: the caller names a mapped, readable range of this process (found in
    // /proc/self/maps); it is copied, never written.
    unsafe { std::ptr::copy_nonoverlapping(addr as usize as *const u8, out.as_mut_ptr(), len) };
    out
}

/// Writes one byte (its own value) at `addr` in this process, to dirty the page.
pub fn touch_own(addr: u64) {
    let p = addr as usize as *mut u8;
    // SAFETY: the caller passes an address inside a live, writable buffer it owns.
    unsafe { std::ptr::write_volatile(p, std::ptr::read_volatile(p)) };
}

/// userfaultfd used at restore to fill anonymous memory (`UFFDIO_COPY` allocates each page and
/// copies into it without zeroing it first, and without a page fault per page).
pub mod uffd_copy {
    use super::*;

    const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
    const UFFDIO_REGISTER: libc::c_ulong = 0xC020_AA00;
    const UFFDIO_COPY: libc::c_ulong = 0xC028_AA03;
    const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;

    /// Enables the basic API (no features).
    pub fn api(fd: BorrowedFd<'_>) -> io::Result<()> {
        let mut a = [0xAAu64, 0, 0];
        // SAFETY: struct uffdio_api is three u64s; the kernel reads and writes it.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, a.as_mut_ptr()) };
        cvt(r as libc::c_long)?;
        Ok(())
    }

    /// Registers `[start, start+len)` for missing-page handling.
    pub fn register_missing(fd: BorrowedFd<'_>, start: u64, len: u64) -> io::Result<()> {
        let mut r = [start, len, UFFDIO_REGISTER_MODE_MISSING, 0u64];
        // SAFETY: struct uffdio_register is four u64s; the kernel reads and writes it.
        let res = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_REGISTER, r.as_mut_ptr()) };
        cvt(res as libc::c_long)?;
        Ok(())
    }

    /// Copies `data` to `dst` in the registered process (whole pages).
    pub fn copy(fd: BorrowedFd<'_>, dst: u64, data: &[u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            #[repr(C)]
            struct Copy {
                dst: u64,
                src: u64,
                len: u64,
                mode: u64,
                copy: i64,
            }
            let mut c = Copy {
                dst: dst + done as u64,
                src: data[done..].as_ptr() as u64,
                len: (data.len() - done) as u64,
                mode: 0,
                copy: 0,
            };
            // SAFETY: c is a valid uffdio_copy whose src covers len readable bytes of `data`.
            let r = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_COPY, &mut c as *mut Copy) };
            if r == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if c.copy > 0 {
                done += c.copy as usize;
            } else if err.raw_os_error() != Some(libc::EAGAIN) {
                return Err(err);
            }
        }
        Ok(())
    }
}

/// Maps an image part read-only, populated in one pass (MAP_POPULATE) instead of a fault per
/// 16 pages.
pub fn map_image(f: &std::fs::File) -> io::Result<memmap2::Mmap> {
    // SAFETY: the mapping is only read. Image files are written once and never modified in
    // place; if another process truncated one while it is mapped, reads would fault (SIGBUS).
    unsafe { memmap2::MmapOptions::new().map(f) }
}
