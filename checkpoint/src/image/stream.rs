//! Reading an image from a byte stream one piece at a time, so that its pages can be applied
//! as they arrive instead of being held in memory (see `restore::Restorer::apply_stream`).
//!
//! The pieces come in stream order and are checked as [`super::Image::read_stream`] checks
//! them: record kinds and order, owners, checksums, references of each manifest. What needs
//! the whole chain (which pages a parent image holds) is checked by the consumer.

use std::io::Read;

use super::manifest::{Inventory, ProcessImage, Shared};
use super::record::{decode_meta, Kind, StreamReader};
use super::{check_refs, Part};
use crate::error::{Error, Result};

/// One piece of an image, in stream order.
#[derive(Debug)]
pub(crate) enum Piece {
    /// The inventory and the shared objects (first).
    Head(Box<(Inventory, Shared)>),
    /// Bytes of shared memory object `id` from `offset`.
    Shmem { id: u32, offset: u64, data: Vec<u8> },
    /// A process' manifest (parents first); its pages follow.
    Process(Box<ProcessImage>),
    /// Page data of the process whose manifest came last, from `addr`.
    Pages { addr: u64, data: Vec<u8> },
    /// The image is complete.
    End,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Head,
    Shmem,
    Process(usize),
    Pages(usize),
    Done,
}

/// Reads the pieces of one image.
#[derive(Debug)]
pub(crate) struct PieceReader<R: Read> {
    r: StreamReader<R>,
    state: State,
    pids: Vec<i32>,
    shmem_ids: Vec<u32>,
}

fn name(part: Part) -> String {
    format!("<stream>/{}", part.file_name())
}

impl<R: Read> PieceReader<R> {
    /// A reader of the image that starts at the current position of `r`.
    pub fn new(r: R) -> Self {
        PieceReader {
            r: StreamReader::new(r),
            state: State::Head,
            pids: Vec::new(),
            shmem_ids: Vec::new(),
        }
    }

    /// The next piece; `buf` is a spare buffer whose allocation a data piece may reuse.
    pub fn next(&mut self, mut buf: Vec<u8>) -> Result<Piece> {
        loop {
            match self.state {
                State::Done => return Ok(Piece::End),
                State::Head => {
                    let part = Part::Inventory;
                    let inv: Inventory = self.meta(part, Kind::Inventory, &mut buf)?;
                    let shared: Shared = self.meta(part, Kind::Shared, &mut buf)?;
                    self.end_of(part, &mut buf)?;
                    self.pids = inv.pids.clone();
                    self.shmem_ids = shared.shmem.iter().map(|s| s.id).collect();
                    self.state = State::Shmem;
                    return Ok(Piece::Head(Box::new((inv, shared))));
                }
                State::Shmem => {
                    let h = self.record(Part::Shmem, &mut buf)?;
                    if h.kind == Kind::End {
                        self.state = State::Process(0);
                        continue;
                    }
                    let known = u32::try_from(h.owner)
                        .ok()
                        .filter(|id| self.shmem_ids.contains(id));
                    let (Kind::ShmemPages, Some(id)) = (h.kind, known) else {
                        return Err(Error::bad_image(
                            name(Part::Shmem),
                            "shared memory record of an unknown object",
                        ));
                    };
                    return Ok(Piece::Shmem {
                        id,
                        offset: h.addr,
                        data: buf,
                    });
                }
                State::Process(i) => {
                    let Some(&pid) = self.pids.get(i) else {
                        self.state = State::Done;
                        return Ok(Piece::End);
                    };
                    let part = Part::Process(pid);
                    let p: ProcessImage = self.meta(part, Kind::Process, &mut buf)?;
                    self.end_of(part, &mut buf)?;
                    if p.pid != pid {
                        return Err(Error::bad_image(
                            name(part),
                            format!("does not describe process {pid}"),
                        ));
                    }
                    // shared objects are checked against the head, which is not kept here
                    self.state = State::Pages(i);
                    return Ok(Piece::Process(Box::new(p)));
                }
                State::Pages(i) => {
                    let pid = self.pids[i];
                    let part = Part::Pages(pid);
                    let h = self.record(part, &mut buf)?;
                    if h.kind == Kind::End {
                        self.state = State::Process(i + 1);
                        continue;
                    }
                    if h.kind != Kind::Pages || h.owner != pid as u64 {
                        return Err(Error::bad_image(
                            name(part),
                            format!("unexpected {:?} record for owner {}", h.kind, h.owner),
                        ));
                    }
                    return Ok(Piece::Pages {
                        addr: h.addr,
                        data: buf,
                    });
                }
            }
        }
    }

    fn record(&mut self, part: Part, buf: &mut Vec<u8>) -> Result<super::record::Header> {
        self.r
            .next_record_into(buf)
            .map_err(|e| Error::bad_image(name(part), e))
    }

    fn meta<T: serde::de::DeserializeOwned>(
        &mut self,
        part: Part,
        kind: Kind,
        buf: &mut Vec<u8>,
    ) -> Result<T> {
        let h = self.record(part, buf)?;
        if h.kind != kind {
            return Err(Error::bad_image(
                name(part),
                format!("expected a {kind:?} record, found {:?}", h.kind),
            ));
        }
        decode_meta(buf).map_err(|e| Error::bad_image(name(part), e))
    }

    fn end_of(&mut self, part: Part, buf: &mut Vec<u8>) -> Result<()> {
        let h = self.record(part, buf)?;
        if h.kind != Kind::End {
            return Err(Error::bad_image(
                name(part),
                format!("unexpected {:?} record", h.kind),
            ));
        }
        Ok(())
    }
}

/// Checks the references of manifest `p` against the shared objects of its image.
pub(crate) fn check_process(p: &ProcessImage, shared: &Shared, pre_dump: bool) -> Result<()> {
    check_refs(&name(Part::Process(p.pid)), p, shared, pre_dump)
}
