//! The references a dump and a restore are held against, measured in the same run on the same
//! memory and disk: the bytes moved by plain syscalls, either by a serial copy loop (one thread
//! alternating a read and a write) or by a two-thread pipeline (one thread reads while the
//! other writes), the physical limit of what two CPUs can do with these syscalls.

use std::fs::File;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::path::Path;
use std::time::Instant;

use crossbeam::channel::bounded;
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;

/// Bytes moved per syscall.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the two threads of the pipeline.
const IN_FLIGHT: usize = 4;

/// How the bytes are moved.
#[derive(Clone, Copy, Debug)]
pub enum Copier {
    /// One thread: read a chunk, write it, read the next.
    SerialLoop,
    /// Two threads: one reads chunks, the other writes them.
    Pipeline,
}

/// Fills a chunk: (offset, buffer).
type Produce<'a> = dyn FnMut(usize, &mut [u8]) + Send + 'a;
/// Takes a chunk: (offset, bytes).
type Consume<'a> = dyn FnMut(usize, &[u8]) + 'a;

impl Copier {
    fn run(self, len: usize, produce: &mut Produce<'_>, consume: &mut Consume<'_>) {
        match self {
            Copier::SerialLoop => {
                let mut buf = vec![0u8; CHUNK];
                for at in (0..len).step_by(CHUNK) {
                    let n = CHUNK.min(len - at);
                    produce(at, &mut buf[..n]);
                    consume(at, &buf[..n]);
                }
            }
            Copier::Pipeline => {
                let (free_tx, free_rx) = bounded::<Vec<u8>>(IN_FLIGHT);
                let (full_tx, full_rx) = bounded::<(usize, Vec<u8>)>(IN_FLIGHT);
                for _ in 0..IN_FLIGHT {
                    let _ = free_tx.send(vec![0u8; CHUNK]);
                }
                std::thread::scope(|s| {
                    s.spawn(move || {
                        for at in (0..len).step_by(CHUNK) {
                            let Ok(mut buf) = free_rx.recv() else { return };
                            buf.truncate(CHUNK.min(len - at));
                            produce(at, &mut buf);
                            let _ = full_tx.send((at, buf));
                        }
                    });
                    for (at, mut buf) in full_rx {
                        consume(at, &buf);
                        buf.resize(CHUNK, 0);
                        let _ = free_tx.send(buf);
                    }
                });
            }
        }
    }
}

/// Dump reference: `process_vm_readv` of `len` bytes at `addr` in `pid` and `write` of them
/// to a new file at `path`. Returns the seconds until the file is closed, then those of an
/// fsync of it.
pub fn copy_out(how: Copier, pid: i32, addr: usize, len: usize, path: &Path) -> (f64, f64) {
    let t = Instant::now();
    let mut f = File::create(path).expect("create reference file");
    how.run(
        len,
        &mut |at, buf| {
            let remote = [RemoteIoVec {
                base: addr + at,
                len: buf.len(),
            }];
            let n = process_vm_readv(Pid::from_raw(pid), &mut [IoSliceMut::new(buf)], &remote)
                .expect("process_vm_readv");
            assert_eq!(n, buf.len(), "short process_vm_readv");
        },
        &mut |_, buf| f.write_all(buf).expect("write reference file"),
    );
    let written = t.elapsed().as_secs_f64();
    let t = Instant::now();
    f.sync_all().expect("fsync reference file");
    (written, t.elapsed().as_secs_f64())
}

/// Restore reference: `read` of `len` bytes of `image` and `process_vm_writev` of them into the
/// untouched area at `addr` in `pid` (fresh memory, faulted in by the writes). Returns seconds.
pub fn copy_in(how: Copier, image: &Path, pid: i32, addr: usize, len: usize) -> f64 {
    let t = Instant::now();
    let mut f = File::open(image).expect("open image pages");
    how.run(
        len,
        &mut |_, buf| f.read_exact(buf).expect("read image pages"),
        &mut |at, buf| {
            let remote = [RemoteIoVec {
                base: addr + at,
                len: buf.len(),
            }];
            let n = process_vm_writev(Pid::from_raw(pid), &[IoSlice::new(buf)], &remote)
                .expect("process_vm_writev");
            assert_eq!(n, buf.len(), "short process_vm_writev");
        },
    );
    t.elapsed().as_secs_f64()
}
