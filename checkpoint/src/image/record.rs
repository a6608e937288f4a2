//! Framing of image records: a fixed header, optional zero padding, a payload.
//!
//! ```text
//!  0  magic "SSIR"        4  version u16   6  kind u16
//!  8  owner u64 (pid or shmem id)         16  addr u64 (first byte the payload covers)
//! 24  payload length u64  32  padding u32  36  payload crc32 u32
//! 40  header crc32 u32 (of bytes 0..40)   44  reserved u32 (0)
//! 48  `padding` zero bytes, then the payload
//! ```
//! Page payloads are padded so they start on a 4 KiB boundary of the file they are in (when the
//! writer aligns; stream writers do not), which lets restore map them. Every part ends with an
//! `END` record, so a truncated part is detected.

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

/// Current format version. Readers refuse any other.
pub const FORMAT_VERSION: u16 = 4;
/// Size of a record header.
pub const HEADER_LEN: usize = 48;
const MAGIC: &[u8; 4] = b"SSIR";
/// Page size the format aligns to.
pub const PAGE: u64 = 4096;
/// Largest metadata payload accepted (page payloads have no limit other than the part's size).
const MAX_META: u64 = 1 << 30;

/// Record kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// [`super::Inventory`].
    Inventory = 1,
    /// [`super::Shared`].
    Shared = 2,
    /// [`super::ProcessImage`].
    Process = 3,
    /// Raw pages of process `owner` starting at `addr`.
    Pages = 4,
    /// Raw bytes of shared memory object `owner` starting at offset `addr`.
    ShmemPages = 5,
    /// End of a part.
    End = 0xffff,
}

impl Kind {
    fn from_u16(v: u16) -> Option<Kind> {
        Some(match v {
            1 => Kind::Inventory,
            2 => Kind::Shared,
            3 => Kind::Process,
            4 => Kind::Pages,
            5 => Kind::ShmemPages,
            0xffff => Kind::End,
            _ => return None,
        })
    }

    /// True for kinds whose payload is raw memory.
    pub fn is_data(self) -> bool {
        matches!(self, Kind::Pages | Kind::ShmemPages)
    }
}

/// Whether `bytes` have checksum `crc`. Fuzz builds (`cfg(fuzzing)`, set by cargo-fuzz) take
/// every checksum as right, so that mutated inputs reach the decoders behind the checksums
/// instead of stopping at them.
fn crc_matches(bytes: &[u8], crc: u32) -> bool {
    cfg!(fuzzing) || crc32fast::hash(bytes) == crc
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Record kind.
    pub kind: Kind,
    /// Pid or shmem id.
    pub owner: u64,
    /// Address (pages) or offset (shmem) of the payload's first byte.
    pub addr: u64,
    /// Payload length.
    pub len: u64,
    /// Zero bytes between header and payload.
    pub pad: u32,
    /// crc32 of the payload.
    pub crc: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(MAGIC);
        b[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&(self.kind as u16).to_le_bytes());
        b[8..16].copy_from_slice(&self.owner.to_le_bytes());
        b[16..24].copy_from_slice(&self.addr.to_le_bytes());
        b[24..32].copy_from_slice(&self.len.to_le_bytes());
        b[32..36].copy_from_slice(&self.pad.to_le_bytes());
        b[36..40].copy_from_slice(&self.crc.to_le_bytes());
        let hcrc = crc32fast::hash(&b[0..40]);
        b[40..44].copy_from_slice(&hcrc.to_le_bytes());
        b
    }

    /// Decodes and checks a header; the error text says what is wrong.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, String> {
        if &b[0..4] != MAGIC {
            return Err("not an ssi image record (bad magic)".into());
        }
        let word = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 8];
            a[..r.len()].copy_from_slice(&b[r]);
            u64::from_le_bytes(a)
        };
        let hcrc = word(40..44) as u32;
        if !crc_matches(&b[0..40], hcrc) {
            return Err("record header checksum mismatch".into());
        }
        let version = word(4..6) as u16;
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version} not supported (this build reads version {FORMAT_VERSION})"
            ));
        }
        let kind = Kind::from_u16(word(6..8) as u16)
            .ok_or_else(|| format!("unknown record kind {}", word(6..8)))?;
        let h = Header {
            kind,
            owner: word(8..16),
            addr: word(16..24),
            len: word(24..32),
            pad: word(32..36) as u32,
            crc: word(36..40) as u32,
        };
        if !kind.is_data() && h.len > MAX_META {
            return Err(format!("record of {} bytes is too large", h.len));
        }
        if h.pad as u64 >= PAGE {
            return Err("record padding too large".into());
        }
        Ok(h)
    }
}

/// Writes records to any [`Write`], tracking the position to align page payloads.
#[derive(Debug)]
pub struct RecordWriter<W: Write> {
    w: W,
    pos: u64,
    align: bool,
}

impl<W: Write> RecordWriter<W> {
    /// A writer; `align` pads page payloads to 4 KiB file offsets.
    pub fn new(w: W, align: bool) -> Self {
        RecordWriter { w, pos: 0, align }
    }

    /// Writes a metadata record (postcard-serialized `value`).
    pub fn meta<T: Serialize>(&mut self, kind: Kind, value: &T) -> io::Result<()> {
        let payload = postcard::to_stdvec(value).map_err(io::Error::other)?;
        self.raw(kind, 0, 0, &[&payload])
    }

    /// Writes a data record whose payload is the concatenation of `parts`.
    pub fn data(&mut self, kind: Kind, owner: u64, addr: u64, parts: &[&[u8]]) -> io::Result<()> {
        self.raw(kind, owner, addr, parts)
    }

    /// Writes a data record whose crc32 the caller computed already (on another thread).
    pub fn data_with_crc(
        &mut self,
        kind: Kind,
        owner: u64,
        addr: u64,
        payload: &[u8],
        crc: u32,
    ) -> io::Result<()> {
        self.write(kind, owner, addr, &[payload], payload.len() as u64, crc)
    }

    /// Closes the part with an END record.
    pub fn end(&mut self) -> io::Result<()> {
        self.raw(Kind::End, 0, 0, &[])?;
        self.w.flush()
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.w
    }

    fn raw(&mut self, kind: Kind, owner: u64, addr: u64, parts: &[&[u8]]) -> io::Result<()> {
        let mut hasher = crc32fast::Hasher::new();
        let mut len = 0u64;
        for p in parts {
            hasher.update(p);
            len += p.len() as u64;
        }
        self.write(kind, owner, addr, parts, len, hasher.finalize())
    }

    fn write(
        &mut self,
        kind: Kind,
        owner: u64,
        addr: u64,
        parts: &[&[u8]],
        len: u64,
        crc: u32,
    ) -> io::Result<()> {
        let pad = if self.align && kind.is_data() {
            let after = self.pos + HEADER_LEN as u64;
            ((PAGE - after % PAGE) % PAGE) as u32
        } else {
            0
        };
        let h = Header {
            kind,
            owner,
            addr,
            len,
            pad,
            crc,
        };
        self.w.write_all(&h.encode())?;
        if pad > 0 {
            self.w.write_all(&[0u8; PAGE as usize][..pad as usize])?;
        }
        for p in parts {
            self.w.write_all(p)?;
        }
        self.pos += HEADER_LEN as u64 + pad as u64 + len;
        Ok(())
    }
}

/// A record found in a byte slice (a mapped part file).
#[derive(Debug, Clone, Copy)]
pub struct SliceRecord {
    /// Its header.
    pub header: Header,
    /// Offset of the payload in the slice.
    pub offset: usize,
}

/// Parses all records of one part held in memory, checking every checksum; stops at END.
/// Headers are read in order; payload checksums are checked on two threads when there is
/// enough to share (a part of page data is mostly payload).
pub fn parse_slice(bytes: &[u8]) -> Result<Vec<SliceRecord>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        let hb: &[u8; HEADER_LEN] = bytes
            .get(pos..pos + HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| format!("truncated at byte {pos} (no END record)"))?;
        let header = Header::decode(hb).map_err(|e| format!("record at byte {pos}: {e}"))?;
        let offset = pos + HEADER_LEN + header.pad as usize;
        let end = usize::try_from(header.len)
            .ok()
            .and_then(|l| offset.checked_add(l))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| format!("record at byte {pos}: truncated payload"))?;
        if header.kind == Kind::End {
            check_payload(bytes, &SliceRecord { header, offset })?;
            break;
        }
        out.push(SliceRecord { header, offset });
        pos = end;
    }
    let total: u64 = out.iter().map(|r| r.header.len).sum();
    if total < PARALLEL_CHECK_BYTES {
        out.iter().try_for_each(|r| check_payload(bytes, r))?;
    } else {
        // split where half the payload bytes are reached
        let mut acc = 0;
        let mid = out
            .iter()
            .position(|r| {
                acc += r.header.len;
                acc >= total / 2
            })
            .map_or(out.len(), |i| i + 1);
        let (a, b) = out.split_at(mid);
        let check = |part: &[SliceRecord]| part.iter().try_for_each(|r| check_payload(bytes, r));
        let (ra, rb) = crossbeam::thread::scope(|s| {
            let h = s.spawn(|_| check(b));
            (check(a), h.join())
        })
        .map_err(|_| "checksum thread panicked".to_string())?;
        ra?;
        rb.map_err(|_| "checksum thread panicked".to_string())??;
    }
    Ok(out)
}

/// Payload bytes of a part above which its checksums are checked on two threads.
const PARALLEL_CHECK_BYTES: u64 = 16 << 20;

fn check_payload(bytes: &[u8], r: &SliceRecord) -> Result<(), String> {
    let payload = &bytes[r.offset..r.offset + r.header.len as usize];
    if !crc_matches(payload, r.header.crc) {
        let at = r.offset - HEADER_LEN - r.header.pad as usize;
        return Err(format!("record at byte {at}: payload checksum mismatch"));
    }
    Ok(())
}

/// Reads records one at a time from a byte stream, checking every checksum.
#[derive(Debug)]
pub struct StreamReader<R: Read> {
    r: R,
    pos: u64,
}

impl<R: Read> StreamReader<R> {
    /// A reader over `r`.
    pub fn new(r: R) -> Self {
        StreamReader { r, pos: 0 }
    }

    /// The next record and its payload (END records included).
    pub fn next_record(&mut self) -> Result<(Header, Vec<u8>), String> {
        let mut payload = Vec::new();
        let h = self.next_record_into(&mut payload)?;
        Ok((h, payload))
    }

    /// The next record (END records included); its payload replaces the contents of `payload`,
    /// whose allocation is reused when large enough.
    pub fn next_record_into(&mut self, payload: &mut Vec<u8>) -> Result<Header, String> {
        let at = self.pos;
        let mut hb = [0u8; HEADER_LEN];
        self.r
            .read_exact(&mut hb)
            .map_err(|e| format!("record at byte {at}: {}", short_read(e)))?;
        let header = Header::decode(&hb).map_err(|e| format!("record at byte {at}: {e}"))?;
        let mut pad = [0u8; PAGE as usize];
        self.r
            .read_exact(&mut pad[..header.pad as usize])
            .map_err(|e| format!("record at byte {at}: {}", short_read(e)))?;
        let len = usize::try_from(header.len)
            .map_err(|_| format!("record at byte {at}: payload too large"))?;
        payload.clear();
        payload
            .try_reserve_exact(len)
            .map_err(|_| format!("record at byte {at}: payload of {len} bytes too large"))?;
        (&mut self.r)
            .take(header.len)
            .read_to_end(payload)
            .map_err(|e| format!("record at byte {at}: {e}"))?;
        if payload.len() != len {
            return Err(format!("record at byte {at}: truncated payload"));
        }
        if !crc_matches(payload, header.crc) {
            return Err(format!("record at byte {at}: payload checksum mismatch"));
        }
        self.pos += (HEADER_LEN + header.pad as usize + len) as u64;
        Ok(header)
    }
}

fn short_read(e: io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        "truncated (stream ended early)".into()
    } else {
        e.to_string()
    }
}

/// Decodes a metadata payload.
pub fn decode_meta<T: DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    postcard::from_bytes(payload).map_err(|e| format!("undecodable record: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(align: bool) -> Vec<u8> {
        let mut w = RecordWriter::new(Vec::new(), align);
        w.meta(Kind::Inventory, &(7u32, "x".to_string())).unwrap();
        let page = vec![0xabu8; 8192];
        w.data(
            Kind::Pages,
            42,
            0x7000_0000,
            &[&page[..4096], &page[4096..]],
        )
        .unwrap();
        w.end().unwrap();
        w.into_inner()
    }

    #[test]
    fn aligned_pages_start_on_page_boundary() {
        let bytes = sample(true);
        let recs = parse_slice(&bytes).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].header.kind, Kind::Pages);
        assert_eq!(recs[1].offset % 4096, 0);
        assert_eq!(recs[1].header.owner, 42);
        assert_eq!(recs[1].header.len, 8192);
        let v: (u32, String) =
            decode_meta(&bytes[recs[0].offset..][..recs[0].header.len as usize]).unwrap();
        assert_eq!(v, (7, "x".into()));
    }

    #[test]
    fn stream_reads_what_slice_reads() {
        for align in [false, true] {
            let bytes = sample(align);
            let mut r = StreamReader::new(&bytes[..]);
            let (h1, _) = r.next_record().unwrap();
            let (h2, p2) = r.next_record().unwrap();
            let (h3, _) = r.next_record().unwrap();
            assert_eq!(h1.kind, Kind::Inventory);
            assert_eq!((h2.kind, p2.len()), (Kind::Pages, 8192));
            assert!(p2.iter().all(|&b| b == 0xab));
            assert_eq!(h3.kind, Kind::End);
        }
    }

    #[test]
    fn corruption_is_detected() {
        let good = sample(true);
        // flip one byte of page data, of a header, of the magic
        for (at, want) in [
            (4096 + 10, "payload checksum"),
            (20, "header checksum"),
            (1, "magic"),
        ] {
            let mut b = good.clone();
            b[at] ^= 0x55;
            let e = parse_slice(&b).unwrap_err();
            assert!(e.contains(want), "{at}: {e}");
        }
    }

    #[test]
    fn corruption_is_detected_in_either_half_of_a_large_part() {
        // 24 records of 1 MiB: above the size whose checksums are checked on two threads
        let mut w = RecordWriter::new(Vec::new(), true);
        let page = vec![0x5au8; 1 << 20];
        for i in 0..24u64 {
            w.data(Kind::Pages, 1, i << 20, &[&page[..]]).unwrap();
        }
        w.end().unwrap();
        let good = w.into_inner();
        assert_eq!(parse_slice(&good).unwrap().len(), 24);
        let recs = parse_slice(&good).unwrap();
        for r in [&recs[2], &recs[20]] {
            let mut b = good.clone();
            b[r.offset + 100] ^= 1;
            let e = parse_slice(&b).unwrap_err();
            let at = r.offset - HEADER_LEN - r.header.pad as usize;
            assert_eq!(e, format!("record at byte {at}: payload checksum mismatch"));
        }
    }

    #[test]
    fn truncation_is_detected() {
        let good = sample(false);
        for cut in [10, HEADER_LEN + 3, good.len() - 5] {
            let e = parse_slice(&good[..cut]).unwrap_err();
            assert!(e.contains("truncated"), "{cut}: {e}");
            let e = {
                let mut r = StreamReader::new(&good[..cut]);
                loop {
                    match r.next_record() {
                        Ok((h, _)) if h.kind == Kind::End => break String::new(),
                        Ok(_) => continue,
                        Err(e) => break e,
                    }
                }
            };
            assert!(e.contains("truncated"), "{cut}: {e}");
        }
    }

    #[test]
    fn other_version_is_refused() {
        let mut b = sample(false);
        b[4] = 9;
        // fix the header crc so only the version is wrong
        let hcrc = crc32fast::hash(&b[0..40]);
        b[40..44].copy_from_slice(&hcrc.to_le_bytes());
        let e = parse_slice(&b).unwrap_err();
        assert!(e.contains("format version 9 not supported"), "{e}");
    }
}
