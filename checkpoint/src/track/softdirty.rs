//! Write tracking with soft-dirty bits (`CONFIG_MEM_SOFT_DIRTY`; not on this machine's kernel).
//!
//! Writing `4` to /proc/PID/clear_refs clears the bits; bit 55 of a pagemap entry is set once
//! the page is written again. Mappings created since the last clear are all soft-dirty, so no
//! range is ever untracked. Clearing is process-wide, so a round must read every range and then
//! clear, with the process stopped in between (the dump does that).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use super::{DirtyTracker, TrackedRange};
use crate::error::{Error, Result};

const SOFT_DIRTY_BIT: u64 = 1 << 55;
const PRESENT_OR_SWAPPED: u64 = 3 << 62;

/// Soft-dirty tracker of one process.
#[derive(Debug)]
pub struct SoftDirtyTracker {
    pid: i32,
    pagemap: File,
}

impl SoftDirtyTracker {
    /// Checks that this kernel keeps soft-dirty bits: clears them for this very process,
    /// writes a page and looks for the bit. The error says why not.
    pub fn probe() -> Result<()> {
        let page = vec![1u8; 4096 * 2];
        let addr = (page.as_ptr() as u64).div_ceil(4096) * 4096;
        std::fs::write("/proc/self/clear_refs", "4")
            .map_err(|e| Error::io("/proc/self/clear_refs", e))?;
        crate::sys::mem::touch_own(addr);
        let f = File::open("/proc/self/pagemap").map_err(|e| Error::io("/proc/self/pagemap", e))?;
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, addr / 4096 * 8)
            .map_err(|e| Error::io("/proc/self/pagemap", e))?;
        drop(page);
        if u64::from_le_bytes(b) & SOFT_DIRTY_BIT == 0 {
            return Err(Error::Conflict(
                "this kernel keeps no soft-dirty bits (CONFIG_MEM_SOFT_DIRTY is off)".into(),
            ));
        }
        Ok(())
    }

    /// Starts tracking process `pid` (clears its soft-dirty bits).
    pub fn start(pid: i32) -> Result<SoftDirtyTracker> {
        Self::probe()?;
        let path = format!("/proc/{pid}/pagemap");
        let pagemap = File::open(&path).map_err(|e| Error::io(path, e))?;
        let t = SoftDirtyTracker { pid, pagemap };
        t.clear()?;
        Ok(t)
    }

    fn clear(&self) -> Result<()> {
        let path = format!("/proc/{}/clear_refs", self.pid);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        f.write_all(b"4").map_err(|e| Error::io(&path, e))
    }
}

impl DirtyTracker for SoftDirtyTracker {
    fn name(&self) -> &'static str {
        "soft-dirty"
    }

    fn mm_alive(&self) -> bool {
        super::pagemap_mm_alive(&self.pagemap)
    }

    fn take_written(&mut self, r: TrackedRange) -> Result<Option<Vec<(u64, u64)>>> {
        let n = ((r.end - r.start) / 4096) as usize;
        let mut raw = vec![0u8; n * 8];
        self.pagemap
            .read_exact_at(&mut raw, r.start / 4096 * 8)
            .map_err(|e| Error::io(format!("/proc/{}/pagemap", self.pid), e))?;
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (i, e) in raw.chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes(e.try_into().unwrap_or_default());
            if v & SOFT_DIRTY_BIT != 0 && v & PRESENT_OR_SWAPPED != 0 {
                let a = r.start + i as u64 * 4096;
                match out.last_mut() {
                    Some(l) if l.1 == a => l.1 = a + 4096,
                    _ => out.push((a, a + 4096)),
                }
            }
        }
        Ok(Some(out))
    }

    fn end_round(&mut self) -> Result<()> {
        self.clear()
    }
}
