//! The vvar/vdso block: where it is, and where its `syscall` instruction is.
//!
//! This kernel maps `[vvar]`, `[vvar_vclock]` and `[vdso]` next to each other (older kernels
//! have no `[vvar_vclock]`). The block is treated as one area found by adjacency, not by names:
//! every consecutive `[vvar*]`/`[vdso]` mapping belongs to it.

use procfs::process::{MMapPath, MemoryMap};

use crate::error::{Error, Result};
use crate::sys;

/// Location of a process' vvar..vdso block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    /// Start of the block (first vvar page).
    pub start: u64,
    /// End of the block.
    pub end: u64,
    /// Start of the `[vdso]` mapping.
    pub vdso: u64,
    /// Length of the `[vdso]` mapping.
    pub vdso_len: u64,
}

/// True if this mapping is part of the vvar/vdso block.
pub(crate) fn is_block_part(m: &MemoryMap) -> bool {
    match &m.pathname {
        MMapPath::Vdso | MMapPath::Vvar => true,
        MMapPath::Other(s) => s.starts_with("vvar"),
        _ => false,
    }
}

/// Finds the block in a list of mappings.
pub(crate) fn find(maps: &[MemoryMap]) -> Option<Block> {
    let v = maps
        .iter()
        .position(|m| matches!(m.pathname, MMapPath::Vdso))?;
    let mut first = v;
    while first > 0
        && is_block_part(&maps[first - 1])
        && maps[first - 1].address.1 == maps[first].address.0
    {
        first -= 1;
    }
    let mut last = v;
    while last + 1 < maps.len()
        && is_block_part(&maps[last + 1])
        && maps[last + 1].address.0 == maps[last].address.1
    {
        last += 1;
    }
    Some(Block {
        start: maps[first].address.0,
        end: maps[last].address.1,
        vdso: maps[v].address.0,
        vdso_len: maps[v].address.1 - maps[v].address.0,
    })
}

/// This process' block, its vDSO's crc32 and the offset of a `syscall` instruction in it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local {
    /// Where the block is here.
    pub block: Block,
    /// crc32 of the vDSO bytes (identifies the kernel's vDSO build).
    pub crc: u32,
    /// Offset of `syscall` from the vDSO start.
    pub syscall_off: u64,
}

/// Inspects this process' own vDSO.
pub(crate) fn local() -> Result<Local> {
    let maps = procfs::process::Process::myself()
        .and_then(|p| p.maps())
        .map_err(|e| Error::procfs("/proc/self/maps", e))?;
    let maps: Vec<MemoryMap> = maps.into_iter().collect();
    let block = find(&maps).ok_or_else(|| Error::Conflict("this process has no vDSO".into()))?;
    let bytes = sys::mem::read_own(block.vdso, block.vdso_len as usize);
    let syscall_off = sys::ptrace::vdso_syscall_offset(&bytes)
        .ok_or_else(|| Error::Conflict("no syscall instruction in the vDSO".into()))?;
    Ok(Local {
        block,
        crc: crc32fast::hash(&bytes),
        syscall_off,
    })
}
