//! The checkpoint image: records grouped in parts, written to a directory or a byte stream.
//!
//! ```text
//!  part            file in a directory     records
//!  inventory       inventory.rec           Inventory, Shared, END
//!  shmem           shmem.rec               ShmemPages*, END
//!  process PID     proc-PID.rec            Process, END
//!  pages PID       pages-PID.rec           Pages*, END      (payloads 4 KiB-aligned)
//!  (seal)          seal                    MAC over a digest of each part (see [`seal`])
//! ```
//! A stream is the concatenation of the parts in this order (processes in inventory order), so
//! the same bytes travel over a socket or land in files. See docs/IMAGE.md.

pub mod manifest;
pub mod ownership;
pub mod record;
pub mod seal;
pub(crate) mod stream;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

pub use manifest::*;
use record::{decode_meta, parse_slice, Header, Kind, StreamReader};
use seal::{Hashing, DIGEST_LEN, SEAL_FILE};
pub use seal::{Seal, SealKey};

use crate::error::{Error, Result};

/// Most images in a chain of incremental images (the image and its parents).
pub const MAX_CHAIN: usize = 64;

/// A part of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Inventory and shared objects.
    Inventory,
    /// Shared memory contents.
    Shmem,
    /// One process' manifest.
    Process(i32),
    /// One process' pages.
    Pages(i32),
}

impl Part {
    /// File name of the part inside an image directory.
    pub fn file_name(&self) -> String {
        match self {
            Part::Inventory => "inventory.rec".into(),
            Part::Shmem => "shmem.rec".into(),
            Part::Process(pid) => format!("proc-{pid}.rec"),
            Part::Pages(pid) => format!("pages-{pid}.rec"),
        }
    }
}

/// Where a dump writes its records.
pub trait ImageSink {
    /// Starts a part; the writer it returns takes the part's records.
    fn begin(&mut self, part: Part) -> Result<&mut dyn Write>;
    /// Ends the current part.
    fn end(&mut self) -> Result<()>;
    /// Whether page payloads should be aligned to 4 KiB (true for files).
    fn aligned(&self) -> bool;
    /// Called once every part is written.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Opens an image file for reading without following a link, and without waiting on a FIFO
/// put in its place (opening one without `O_NONBLOCK` blocks until a writer comes).
pub(crate) fn open_part(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Creates an image file, mode 0600, refusing anything already in its place (a link is
/// neither followed nor truncated); with `replace`, what is there is removed first.
fn create_part(path: &Path, replace: bool) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if replace {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(path, e)),
            _ => {}
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::io(
                path,
                std::io::Error::new(
                    e.kind(),
                    "exists already (an image is not overwritten: remove it first)",
                ),
            ),
            _ => Error::io(path, e),
        })
}

/// What a sealing [`DirSink`] gathers: the digest of each part written.
#[derive(Debug)]
struct Sealing {
    key: SealKey,
    owner: u32,
    parent: Option<[u8; DIGEST_LEN]>,
    parts: BTreeMap<String, [u8; DIGEST_LEN]>,
}

/// Writes each part to a file in a directory (created if missing, mode 0700).
///
/// Part files are created mode 0600 with `O_CREAT|O_EXCL|O_NOFOLLOW`: a file or a link already
/// in a part's place is refused, never followed or truncated (a directory someone else can
/// write to cannot turn the dump into a write elsewhere). [`DirSink::replacing`] removes what
/// is in the way first: a link is removed, not followed. A sink made with [`DirSink::seal`]
/// also writes a seal (see [`seal`]) once every part is written.
#[derive(Debug)]
pub struct DirSink {
    dir: PathBuf,
    replace: bool,
    current: Option<(PathBuf, String, BufWriter<Hashing<File>>)>,
    sealing: Option<Sealing>,
    /// The tag of the seal written by `finish`, if sealed.
    tag: Option<[u8; 32]>,
}

impl DirSink {
    /// A sink writing into `dir`; an image part already there is refused.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::open(dir.into(), false)
    }

    /// A sink writing into `dir` that replaces the image parts already there.
    pub fn replacing(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::open(dir.into(), true)
    }

    fn open(dir: PathBuf, replace: bool) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        if replace {
            // a seal of the image replaced would not match this one
            let stale = dir.join(SEAL_FILE);
            match std::fs::remove_file(&stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(&stale, e))
                }
                _ => {}
            }
        }
        Ok(DirSink {
            dir,
            replace,
            current: None,
            sealing: None,
            tag: None,
        })
    }

    /// Seals the image with `key` once written, for user `owner` (0: root); `parent` is the
    /// image it extends, which must be sealed (see [`Image::load_sealed`]).
    pub fn seal(self, key: &SealKey, owner: u32, parent: Option<&Image>) -> Result<Self> {
        let parent = match parent {
            None => None,
            Some(p) => Some(p.seal.as_ref().map(|s| s.tag).ok_or_else(|| {
                Error::bad_image(
                    "<parent image>",
                    "not sealed: a sealed image extends only a sealed one",
                )
            })?),
        };
        Ok(self.seal_after(key, owner, parent))
    }

    /// The tag of the seal this sink wrote (once the image is finished and sealed): what the
    /// next image of a chain extends, see [`DirSink::seal_after`].
    pub fn tag(&self) -> Option<[u8; 32]> {
        self.tag
    }

    /// Seals the image like [`DirSink::seal`], extending the sealed image whose seal's tag is
    /// `parent` (`None`: a whole image), for a writer that keeps the tag of the image it wrote
    /// last instead of loading it again.
    pub fn seal_after(mut self, key: &SealKey, owner: u32, parent: Option<[u8; 32]>) -> Self {
        self.sealing = Some(Sealing {
            key: key.clone(),
            owner,
            parent,
            parts: BTreeMap::new(),
        });
        self
    }
}

impl ImageSink for DirSink {
    fn begin(&mut self, part: Part) -> Result<&mut dyn Write> {
        let file = part.file_name();
        let path = self.dir.join(&file);
        let f = create_part(&path, self.replace)?;
        let f = Hashing::new(f, self.sealing.is_some());
        let (_, _, w) = self
            .current
            .insert((path, file, BufWriter::with_capacity(1 << 20, f)));
        Ok(w)
    }

    fn end(&mut self) -> Result<()> {
        if let Some((path, file, mut w)) = self.current.take() {
            w.flush().map_err(|e| Error::io(&path, e))?;
            if let (Some(s), Some(d)) = (&mut self.sealing, w.get_mut().digest()) {
                s.parts.insert(file, d);
            }
        }
        Ok(())
    }

    fn aligned(&self) -> bool {
        true
    }

    fn finish(&mut self) -> Result<()> {
        self.end()?;
        let Some(s) = &self.sealing else {
            return Ok(());
        };
        let (bytes, tag) = Seal::encode(&s.key, s.owner, &s.parts, s.parent)?;
        let path = self.dir.join(SEAL_FILE);
        let mut f = create_part(&path, self.replace)?;
        f.write_all(&bytes).map_err(|e| Error::io(&path, e))?;
        self.tag = Some(tag);
        Ok(())
    }
}

/// Writes all parts, one after the other, to a byte stream.
#[derive(Debug)]
pub struct StreamSink<W: Write> {
    w: W,
}

impl<W: Write> StreamSink<W> {
    /// A sink over `w`.
    pub fn new(w: W) -> Self {
        StreamSink { w }
    }

    /// The stream.
    pub fn into_inner(self) -> W {
        self.w
    }
}

impl<W: Write> ImageSink for StreamSink<W> {
    fn begin(&mut self, _part: Part) -> Result<&mut dyn Write> {
        Ok(&mut self.w)
    }

    fn end(&mut self) -> Result<()> {
        self.w.flush().map_err(|e| Error::io("<stream>", e))
    }

    fn aligned(&self) -> bool {
        false
    }
}

/// Bytes of page data, backed by a mapped part file or by memory read from a stream.
#[derive(Debug, Clone)]
pub(crate) struct Bytes {
    backing: Arc<Backing>,
    off: usize,
    len: usize,
}

#[derive(Debug)]
enum Backing {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    pub(crate) fn as_slice(&self) -> &[u8] {
        let all: &[u8] = match &*self.backing {
            Backing::Map(m) => m,
            Backing::Owned(v) => v,
        };
        &all[self.off..self.off + self.len]
    }

    fn slice(&self, from: usize, len: usize) -> Bytes {
        Bytes {
            backing: self.backing.clone(),
            off: self.off + from,
            len,
        }
    }
}

/// A contiguous piece of memory contents: `data` belongs at `addr`.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    pub(crate) addr: u64,
    pub(crate) data: Bytes,
}

/// A checkpoint image, fully checked, ready to restore.
#[derive(Debug)]
pub struct Image {
    /// What the image holds.
    pub inventory: Inventory,
    /// Objects shared between processes.
    pub shared: Shared,
    /// One manifest per process, in inventory order.
    pub processes: Vec<ProcessImage>,
    pages: HashMap<i32, Vec<Chunk>>,
    shmem: HashMap<u32, Vec<Chunk>>,
    parent: Option<Box<Image>>,
    seal: Option<Seal>,
}

impl Image {
    /// Reads and checks the image in `dir`, and the chain of images it builds on (at most
    /// [`MAX_CHAIN`] images, none twice).
    pub fn load(dir: impl AsRef<Path>) -> Result<Image> {
        Self::load_chain(dir.as_ref(), &mut Vec::new(), None)
    }

    /// Like [`Image::load`], for an image sealed with `key`: every image of the chain must
    /// carry a seal made with `key` for one owner, each part must hold the bytes sealed (as
    /// read for the restore), and each image must extend the parent it was sealed with. An
    /// image not sealed, or altered, is refused, naming the part.
    pub fn load_sealed(dir: impl AsRef<Path>, key: &SealKey) -> Result<Image> {
        Self::load_chain(dir.as_ref(), &mut Vec::new(), Some(key))
    }

    /// The seal the image was verified with ([`Image::load_sealed`]).
    pub fn seal(&self) -> Option<&Seal> {
        self.seal.as_ref()
    }

    /// Loads the image in `dir`, whose children are the directories in `below` (canonical):
    /// a chain that comes back to one of them, or grows past [`MAX_CHAIN`], is refused
    /// instead of recursing for ever.
    fn load_chain(dir: &Path, below: &mut Vec<PathBuf>, key: Option<&SealKey>) -> Result<Image> {
        let name = || dir.display().to_string();
        let canonical = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        if below.contains(&canonical) {
            return Err(Error::bad_image(
                name(),
                "the parent chain comes back to this image",
            ));
        }
        if below.len() >= MAX_CHAIN {
            return Err(Error::bad_image(
                name(),
                format!("parent chain longer than {MAX_CHAIN} images"),
            ));
        }
        let seal = key.map(|k| Seal::read(dir, &name(), k)).transpose()?;
        let mut loader = DirLoader {
            dir,
            seal: seal.as_ref(),
            checked: 0,
        };
        let mut image = build(&mut loader)?;
        if let Some(s) = &seal {
            if loader.checked != s.parts.len() {
                return Err(Error::bad_image(
                    name(),
                    "the seal names parts that are not in the image: refused",
                ));
            }
        }
        image.seal = seal;
        if let Some(p) = &image.inventory.parent {
            let rel = p
                .path
                .as_deref()
                .ok_or_else(|| Error::bad_image(name(), "parent image has no path"))?;
            below.push(canonical);
            let parent = Image::load_chain(&dir.join(rel), below, key)?;
            image.check_sealed_parent(&parent, &name())?;
            image.attach_parent(parent)?;
        }
        image.check_pages()?;
        Ok(image)
    }

    /// Reads and checks an image from a byte stream; `parent` must be the image it extends,
    /// if its inventory names one.
    pub fn read_stream(r: impl Read, parent: Option<Image>) -> Result<Image> {
        let mut loader = StreamLoader {
            r: StreamReader::new(r),
        };
        let mut image = build(&mut loader)?;
        match (image.inventory.parent.is_some(), parent) {
            (true, Some(p)) => image.attach_parent(p)?,
            (true, None) => {
                return Err(Error::bad_image(
                    "<stream>",
                    "image is incremental but no parent image was given",
                ))
            }
            (false, _) => {}
        }
        image.check_pages()?;
        Ok(image)
    }

    /// Writes this image (not its parents) to a sink, e.g. to copy a directory into a stream.
    pub fn write_to(&self, sink: &mut dyn ImageSink) -> Result<()> {
        let align = sink.aligned();
        let io = |e| Error::io("<image output>", e);
        let w = sink.begin(Part::Inventory)?;
        let mut rw = record::RecordWriter::new(w, align);
        rw.meta(Kind::Inventory, &self.inventory).map_err(io)?;
        rw.meta(Kind::Shared, &self.shared).map_err(io)?;
        rw.end().map_err(io)?;
        sink.end()?;
        let mut ids: Vec<_> = self.shmem.keys().copied().collect();
        ids.sort_unstable();
        let w = sink.begin(Part::Shmem)?;
        let mut rw = record::RecordWriter::new(w, align);
        for id in ids {
            for c in &self.shmem[&id] {
                rw.data(Kind::ShmemPages, id as u64, c.addr, &[c.data.as_slice()])
                    .map_err(io)?;
            }
        }
        rw.end().map_err(io)?;
        sink.end()?;
        for p in &self.processes {
            let w = sink.begin(Part::Process(p.pid))?;
            let mut rw = record::RecordWriter::new(w, align);
            rw.meta(Kind::Process, p).map_err(io)?;
            rw.end().map_err(io)?;
            sink.end()?;
            let w = sink.begin(Part::Pages(p.pid))?;
            let mut rw = record::RecordWriter::new(w, align);
            for c in self.pages.get(&p.pid).map(Vec::as_slice).unwrap_or(&[]) {
                rw.data(Kind::Pages, p.pid as u64, c.addr, &[c.data.as_slice()])
                    .map_err(io)?;
            }
            rw.end().map_err(io)?;
            sink.end()?;
        }
        sink.finish()
    }

    /// The image this one extends.
    pub fn parent(&self) -> Option<&Image> {
        self.parent.as_deref()
    }

    /// The manifest of process `pid`.
    pub fn process(&self, pid: i32) -> Option<&ProcessImage> {
        self.processes.iter().find(|p| p.pid == pid)
    }

    /// Total bytes of page data held by this image (not its parents).
    pub fn page_bytes(&self) -> u64 {
        self.pages
            .values()
            .chain(self.shmem.values())
            .flatten()
            .map(|c| c.data.len as u64)
            .sum()
    }

    /// For a sealed image: `parent` is the image it was sealed with, for the same owner.
    fn check_sealed_parent(&self, parent: &Image, name: &str) -> Result<()> {
        let (Some(mine), Some(theirs)) = (&self.seal, &parent.seal) else {
            return Ok(());
        };
        if mine.parent != Some(theirs.tag) || mine.owner != theirs.owner {
            return Err(Error::bad_image(
                name,
                "its parent image is not the one it was sealed with: refused",
            ));
        }
        Ok(())
    }

    fn attach_parent(&mut self, parent: Image) -> Result<()> {
        let want = self.inventory.parent.as_ref().map(|p| p.image_id);
        if want != Some(parent.inventory.image_id) {
            return Err(Error::bad_image(
                "inventory.rec",
                format!(
                    "parent image id {:x} does not match the given parent {:x}",
                    want.unwrap_or(0),
                    parent.inventory.image_id
                ),
            ));
        }
        self.parent = Some(Box::new(parent));
        Ok(())
    }

    /// Checks that every page the manifests promise can be found, in this image or its chain.
    fn check_pages(&self) -> Result<()> {
        for p in &self.processes {
            self.resolve_pages(p.pid)?;
        }
        Ok(())
    }

    /// Memory contents of process `pid`, sorted by address, following the chain.
    pub(crate) fn resolve_pages(&self, pid: i32) -> Result<Vec<Chunk>> {
        let Some(proc_) = self.process(pid) else {
            return Err(Error::bad_image(
                "inventory.rec",
                format!("no process {pid}"),
            ));
        };
        let own = self.pages.get(&pid).map(Vec::as_slice).unwrap_or(&[]);
        let parent_chunks = if proc_.mm.pages.iter().any(|r| r.in_parent) {
            let parent = self.parent.as_deref().ok_or_else(|| {
                Error::bad_image(
                    Part::Process(pid).file_name(),
                    "pages kept in a parent image but the image has no parent",
                )
            })?;
            parent.resolve_pages(pid)?
        } else {
            Vec::new()
        };
        // This image's page records hold the bytes of the runs not in the parent,
        // concatenated in run order; a record may span several runs and a run several records.
        // Each record's addr names the address its first byte belongs to.
        let mut out = Vec::new();
        let mut recs = own.iter();
        let mut cur: Option<(&Chunk, usize)> = None; // record and bytes of it consumed
        let bad = |what: String| Error::bad_image(Part::Pages(pid).file_name(), what);
        for run in &proc_.mm.pages {
            let start = run.start;
            let end = run
                .npages
                .checked_mul(record::PAGE)
                .and_then(|len| start.checked_add(len))
                .ok_or_else(|| {
                    bad(format!(
                        "page run at {start:#x} ends past the address space"
                    ))
                })?;
            if run.cow {
                continue; // the parent process' pages, kept by the restore's fork
            }
            if run.in_parent {
                cut(&parent_chunks, start, end, &mut out).map_err(|a| {
                    Error::bad_image(
                        Part::Process(pid).file_name(),
                        format!("page {a:#x} is in no image of the chain"),
                    )
                })?;
                continue;
            }
            let mut at = start;
            while at < end {
                let (c, used) = match cur {
                    Some((c, used)) if used < c.data.len => (c, used),
                    _ => {
                        let c = recs
                            .next()
                            .ok_or_else(|| bad(format!("page data for {at:#x} missing")))?;
                        if c.addr != at {
                            return Err(bad(format!(
                                "page record at {:#x} where {at:#x} was expected",
                                c.addr
                            )));
                        }
                        (c, 0)
                    }
                };
                let take = ((end - at) as usize).min(c.data.len - used);
                out.push(Chunk {
                    addr: at,
                    data: c.data.slice(used, take),
                });
                at += take as u64;
                cur = Some((c, used + take));
            }
        }
        if cur.is_some_and(|(c, used)| used < c.data.len) || recs.next().is_some() {
            return Err(bad("page data not described by the manifest".into()));
        }
        Ok(out)
    }

    /// Contents of shared memory object `id` (offset, bytes).
    pub(crate) fn shmem_chunks(&self, id: u32) -> &[Chunk] {
        self.shmem.get(&id).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Appends to `out` the parts of sorted `chunks` that cover `[start, end)`; Err(addr) names
/// the first byte not covered.
fn cut(
    chunks: &[Chunk],
    start: u64,
    end: u64,
    out: &mut Vec<Chunk>,
) -> std::result::Result<(), u64> {
    let mut at = start;
    let mut i = chunks.partition_point(|c| c.addr + c.data.len as u64 <= start);
    while at < end {
        let c = chunks.get(i).filter(|c| c.addr <= at).ok_or(at)?;
        let c_end = c.addr + c.data.len as u64;
        let stop = c_end.min(end);
        let from = (at - c.addr) as usize;
        out.push(Chunk {
            addr: at,
            data: c.data.slice(from, (stop - at) as usize),
        });
        at = stop;
        i += 1;
    }
    Ok(())
}

/// Source of parts for [`build`].
trait Loader {
    /// Name for messages.
    fn name(&self, part: Part) -> String;
    /// All records of a part: headers and payload bytes.
    fn part(&mut self, part: Part) -> Result<Vec<(Header, Bytes)>>;
}

struct DirLoader<'a> {
    dir: &'a Path,
    /// The seal every part must match, if the image must be sealed.
    seal: Option<&'a Seal>,
    /// Parts checked against the seal.
    checked: usize,
}

impl Loader for DirLoader<'_> {
    fn name(&self, part: Part) -> String {
        self.dir.join(part.file_name()).display().to_string()
    }

    fn part(&mut self, part: Part) -> Result<Vec<(Header, Bytes)>> {
        let file = part.file_name();
        let path = self.dir.join(&file);
        let mut f = open_part(&path).map_err(|e| Error::io(&path, e))?;
        let meta = f.metadata().map_err(|e| Error::io(&path, e))?;
        if !meta.is_file() {
            return Err(Error::bad_image(
                path.display().to_string(),
                "not a regular file",
            ));
        }
        let len = meta.len();
        // Manifests are read into memory: what is checked against the seal and decoded is
        // then one copy, whatever happens to the file meanwhile. Page data is mapped.
        let backing = if len == 0 || matches!(part, Part::Inventory | Part::Process(_)) {
            let mut v = Vec::new();
            f.read_to_end(&mut v).map_err(|e| Error::io(&path, e))?;
            Backing::Owned(v)
        } else {
            let map = crate::sys::mem::map_image(&f).map_err(|e| Error::io(&path, e))?;
            Backing::Map(map)
        };
        let len = match &backing {
            Backing::Owned(v) => v.len() as u64,
            Backing::Map(m) => m.len() as u64,
        };
        if let Some(seal) = self.seal {
            let bytes: &[u8] = match &backing {
                Backing::Owned(v) => v,
                Backing::Map(m) => m,
            };
            seal.check_part(&file, bytes, &path.display().to_string())?;
            self.checked += 1;
        }
        let backing = Arc::new(backing);
        let all = Bytes {
            backing: backing.clone(),
            off: 0,
            len: len as usize,
        };
        let recs = parse_slice(all.as_slice())
            .map_err(|e| Error::bad_image(path.display().to_string(), e))?;
        Ok(recs
            .into_iter()
            .map(|r| (r.header, all.slice(r.offset, r.header.len as usize)))
            .collect())
    }
}

struct StreamLoader<R: Read> {
    r: StreamReader<R>,
}

impl<R: Read> Loader for StreamLoader<R> {
    fn name(&self, part: Part) -> String {
        format!("<stream>/{}", part.file_name())
    }

    fn part(&mut self, part: Part) -> Result<Vec<(Header, Bytes)>> {
        let mut out = Vec::new();
        loop {
            let (h, payload) = self
                .r
                .next_record()
                .map_err(|e| Error::bad_image(self.name(part), e))?;
            if h.kind == Kind::End {
                return Ok(out);
            }
            let len = payload.len();
            out.push((
                h,
                Bytes {
                    backing: Arc::new(Backing::Owned(payload)),
                    off: 0,
                    len,
                },
            ));
        }
    }
}

fn expect_meta<T: serde::de::DeserializeOwned>(
    name: &str,
    recs: &[(Header, Bytes)],
    idx: usize,
    kind: Kind,
) -> Result<T> {
    let (h, b) = recs
        .get(idx)
        .ok_or_else(|| Error::bad_image(name, format!("missing {kind:?} record")))?;
    if h.kind != kind {
        return Err(Error::bad_image(
            name,
            format!("expected a {kind:?} record, found {:?}", h.kind),
        ));
    }
    decode_meta(b.as_slice()).map_err(|e| Error::bad_image(name, e))
}

fn data_chunks(
    name: &str,
    recs: Vec<(Header, Bytes)>,
    kind: Kind,
    owner: u64,
) -> Result<Vec<Chunk>> {
    recs.into_iter()
        .map(|(h, data)| {
            if h.kind != kind || (kind == Kind::Pages && h.owner != owner) {
                return Err(Error::bad_image(
                    name,
                    format!("unexpected {:?} record for owner {}", h.kind, h.owner),
                ));
            }
            Ok(Chunk { addr: h.addr, data })
        })
        .collect()
}

fn build(l: &mut dyn Loader) -> Result<Image> {
    let name = l.name(Part::Inventory);
    let recs = l.part(Part::Inventory)?;
    let inventory: Inventory = expect_meta(&name, &recs, 0, Kind::Inventory)?;
    let shared: Shared = expect_meta(&name, &recs, 1, Kind::Shared)?;
    if recs.len() != 2 {
        return Err(Error::bad_image(name, "unexpected records after Shared"));
    }
    let name = l.name(Part::Shmem);
    let mut shmem: HashMap<u32, Vec<Chunk>> = HashMap::new();
    for c in l.part(Part::Shmem)? {
        if c.0.kind != Kind::ShmemPages || !shared.shmem.iter().any(|s| s.id as u64 == c.0.owner) {
            return Err(Error::bad_image(
                &name,
                "shared memory record of an unknown object",
            ));
        }
        shmem.entry(c.0.owner as u32).or_default().push(Chunk {
            addr: c.0.addr,
            data: c.1,
        });
    }
    let mut processes = Vec::new();
    let mut pages = HashMap::new();
    for &pid in &inventory.pids {
        let name = l.name(Part::Process(pid));
        let recs = l.part(Part::Process(pid))?;
        let p: ProcessImage = expect_meta(&name, &recs, 0, Kind::Process)?;
        if p.pid != pid || recs.len() != 1 {
            return Err(Error::bad_image(
                name,
                format!("does not describe process {pid}"),
            ));
        }
        check_refs(&name, &p, &shared, inventory.pre_dump)?;
        processes.push(p);
        let name = l.name(Part::Pages(pid));
        let recs = l.part(Part::Pages(pid))?;
        pages.insert(pid, data_chunks(&name, recs, Kind::Pages, pid as u64)?);
    }
    Ok(Image {
        inventory,
        shared,
        processes,
        pages,
        shmem,
        parent: None,
        seal: None,
    })
}

/// Size of a `siginfo_t`, the form pending signals are kept in.
const SIGINFO_LEN: usize = 128;
/// What a pipe holds when its capacity was not changed (`F_GETPIPE_SZ` default).
const DEFAULT_PIPE_CAPACITY: usize = 65536;

/// Checks what restore would otherwise trust about sizes: pending signals are whole
/// `siginfo_t`s, and a pipe's bytes fit in its capacity (writing more into a pipe nobody reads
/// would never return).
fn check_contents(name: &str, p: &ProcessImage, shared: &Shared) -> Result<()> {
    let pending = p
        .signals
        .shared_pending
        .iter()
        .chain(p.threads.iter().flat_map(|t| t.pending.iter()));
    for si in pending {
        if si.len() != SIGINFO_LEN {
            return Err(Error::bad_image(
                name,
                format!("a pending signal of {} bytes, not {SIGINFO_LEN}", si.len()),
            ));
        }
    }
    for (i, pipe) in shared.pipes.iter().enumerate() {
        let room = match pipe.capacity {
            0 => DEFAULT_PIPE_CAPACITY,
            c => c as usize,
        };
        if pipe.data.len() > room {
            return Err(Error::bad_image(
                name,
                format!(
                    "pipe {i} holds {} bytes, more than its capacity {room}",
                    pipe.data.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that the indices a process manifest holds point at existing shared objects.
fn check_refs(name: &str, p: &ProcessImage, shared: &Shared, pre_dump: bool) -> Result<()> {
    for fd in p.fds.iter() {
        let f = shared.files.get(fd.file as usize).ok_or_else(|| {
            Error::bad_image(
                name,
                format!("fd {} refers to unknown file {}", fd.fd, fd.file),
            )
        })?;
        let ok = f.kind.refs_ok(shared);
        if !ok {
            return Err(Error::bad_image(
                name,
                format!("fd {} refers to a missing object", fd.fd),
            ));
        }
    }
    for v in &p.mm.vmas {
        if let VmaKind::SharedAnon { shmem, .. } = v.kind {
            if !shared.shmem.iter().any(|s| s.id == shmem) {
                return Err(Error::bad_image(
                    name,
                    format!("mapping {:#x} refers to unknown shared memory", v.start),
                ));
            }
        }
    }
    check_contents(name, p, shared)?;
    if !pre_dump && p.threads.first().map(|t| t.tid) != Some(p.pid) {
        return Err(Error::bad_image(
            name,
            "first thread is not the main thread",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use record::RecordWriter;

    /// Writes an image of no process into `dir` whose inventory names `parent`.
    fn empty_image(dir: &Path, id: u64, parent: Option<&str>) {
        std::fs::create_dir_all(dir).expect("mkdir");
        let inv = Inventory {
            image_id: id,
            parent: parent.map(|p| ParentRef {
                image_id: id,
                path: Some(p.into()),
            }),
            root_pid: 1,
            pids: Vec::new(),
            kernel: String::new(),
            vdso_crc: 0,
            vdso_block_len: 0,
            pre_dump: true,
            zombies: Vec::new(),
        };
        let mut w = RecordWriter::new(Vec::new(), false);
        w.meta(Kind::Inventory, &inv).expect("inventory");
        w.meta(Kind::Shared, &Shared::default()).expect("shared");
        w.end().expect("end");
        std::fs::write(dir.join("inventory.rec"), w.into_inner()).expect("write");
        let mut w = RecordWriter::new(Vec::new(), false);
        w.end().expect("end");
        std::fs::write(dir.join("shmem.rec"), w.into_inner()).expect("write");
    }

    #[test]
    fn a_parent_chain_that_comes_back_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        empty_image(&d.path().join("a"), 1, None);
        Image::load(d.path().join("a")).expect("an image without parent loads");
        empty_image(&d.path().join("self"), 2, Some("."));
        let err = Image::load(d.path().join("self")).expect_err("self parent");
        assert!(err.to_string().contains("comes back"), "{err}");
        empty_image(&d.path().join("x"), 3, Some("../y"));
        empty_image(&d.path().join("y"), 3, Some("../x"));
        let err = Image::load(d.path().join("x")).expect_err("two images naming each other");
        assert!(err.to_string().contains("comes back"), "{err}");
    }

    /// Copies the image in `from` into `to`, sealed for `owner` on top of `parent`.
    fn seal_copy(from: &Path, to: &Path, key: &SealKey, owner: u32, parent: Option<&Image>) {
        let img = Image::load(from).expect("load");
        let sink = DirSink::new(to).expect("sink").seal(key, owner, parent);
        img.write_to(&mut sink.expect("seal")).expect("write");
    }

    #[test]
    fn a_sealed_image_loads_and_any_flipped_byte_is_refused_naming_the_part() {
        let d = tempfile::tempdir().expect("tempdir");
        let key = SealKey::new([3; 32]);
        empty_image(&d.path().join("plain"), 1, None);
        let sealed = d.path().join("sealed");
        seal_copy(&d.path().join("plain"), &sealed, &key, 1000, None);
        let img = Image::load_sealed(&sealed, &key).expect("sealed image");
        assert_eq!(img.seal().map(|s| s.owner), Some(1000));
        let err = Image::load_sealed(d.path().join("plain"), &key).expect_err("unsealed");
        assert!(err.to_string().contains("not sealed"), "{err}");
        let err = Image::load_sealed(&sealed, &SealKey::new([4; 32])).expect_err("other key");
        assert!(err.to_string().contains("seal does not match"), "{err}");
        for file in ["inventory.rec", "shmem.rec", SEAL_FILE] {
            let path = sealed.join(file);
            let good = std::fs::read(&path).expect("read");
            let mut bad = good.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x40;
            std::fs::write(&path, &bad).expect("write");
            let err = Image::load_sealed(&sealed, &key).expect_err("flipped byte");
            assert!(err.to_string().contains(file), "{file}: {err}");
            std::fs::write(&path, &good).expect("write");
        }
        Image::load_sealed(&sealed, &key).expect("restored bytes load again");
    }

    #[test]
    fn a_sealed_chain_must_keep_the_parent_it_was_sealed_with() {
        let d = tempfile::tempdir().expect("tempdir");
        let key = SealKey::new([5; 32]);
        empty_image(&d.path().join("a"), 1, None);
        empty_image(&d.path().join("b"), 1, Some("../a"));
        let s = d.path().join("s");
        seal_copy(&d.path().join("a"), &s.join("a"), &key, 0, None);
        let parent = Image::load_sealed(s.join("a"), &key).expect("parent");
        seal_copy(&d.path().join("b"), &s.join("b"), &key, 0, Some(&parent));
        let img = Image::load_sealed(s.join("b"), &key).expect("sealed chain");
        assert!(img.parent().is_some());
        // another sealed image in the parent's place
        std::fs::remove_dir_all(s.join("a")).expect("rm");
        seal_copy(&d.path().join("a"), &s.join("a"), &key, 7, None);
        let err = Image::load_sealed(s.join("b"), &key).expect_err("swapped parent");
        assert!(
            err.to_string().contains("not the one it was sealed with"),
            "{err}"
        );
        // an unsealed parent
        std::fs::remove_file(s.join("a").join(SEAL_FILE)).expect("rm");
        let err = Image::load_sealed(s.join("b"), &key).expect_err("unsealed parent");
        assert!(err.to_string().contains("not sealed"), "{err}");
    }

    #[test]
    fn a_fifo_in_place_of_a_part_is_refused_without_waiting() {
        let d = tempfile::tempdir().expect("tempdir");
        empty_image(d.path(), 1, None);
        let inv = d.path().join("inventory.rec");
        std::fs::remove_file(&inv).expect("rm");
        nix::unistd::mkfifo(&inv, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        let err = Image::load(d.path()).expect_err("fifo");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
