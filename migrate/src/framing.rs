//! The data stream between the two migration helpers: encrypted, authenticated frames on the
//! TCP connection the daemons opened (TLS between their node certificates) and handed over.
//!
//! ```text
//!  frame   [kind u8][length u32 LE][payload, encrypted][tag: 16 bytes]
//!  seal    AES-256-GCM(key, nonce = direction u32 BE | frame number u64 BE,
//!                      associated data = kind | length)
//!
//!  source -> target   Data* RoundEnd   (one pre-copy image)   ... Data* FinalEnd
//!  target -> source   Prepared (it holds the tree)  or  Failed (one line)
//! ```
//! The key is exported by both daemons from their TLS session (RFC 8446 section 7.5; it never
//! crosses the network), so the stream continues that session's protection: nobody without
//! it reads a page, and each direction numbers its frames in the nonce, so a frame altered,
//! dropped, replayed, reflected or moved is detected. Frames carry up to [`FRAME`] bytes of
//! image data: one seal (done in place), one header and one `write` per MiB.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

/// How long the helpers let the data stream stand still (nothing read, or nothing taken by
/// the peer) before they give up on the migration: a stopped or cut-off peer fails it
/// instead of hanging it.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes a read or write on socket `conn` that moves nothing for `stall` fail (see
/// [`STALL_TIMEOUT`]); the frame readers and writers then say that the stream stalled.
pub fn limit_stalls(conn: impl AsFd, stall: Duration) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let tv = nix::sys::time::TimeVal::new(
        i64::try_from(stall.as_secs()).unwrap_or(i64::MAX),
        i64::from(stall.subsec_micros()),
    );
    setsockopt(&conn, sockopt::ReceiveTimeout, &tv)?;
    setsockopt(&conn, sockopt::SendTimeout, &tv)?;
    Ok(())
}

/// A timed-out read or write (see [`limit_stalls`]) said plainly.
fn stalled(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            "the data stream stalled: the other node sent or took nothing for too long",
        ),
        _ => e,
    }
}

/// Image data bytes per frame.
pub const FRAME: usize = 1 << 20;
/// Largest payload a reader accepts.
const MAX_PAYLOAD: usize = 16 << 20;
const TAG_LEN: usize = 16;
const HEAD_LEN: usize = 5;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Bytes of the current image.
    Data = 1,
    /// The image of a pre-copy round is complete; more follow.
    RoundEnd = 2,
    /// The last image is complete: restore it.
    FinalEnd = 3,
    /// The target holds the whole tree, restored and stopped, waiting for the source's
    /// decision (payload: the restore's time in microseconds, u64 little-endian).
    Prepared = 4,
    /// The target failed (payload: one line saying why); it has undone what it did.
    Failed = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Data,
            2 => Kind::RoundEnd,
            3 => Kind::FinalEnd,
            4 => Kind::Prepared,
            5 => Kind::Failed,
            _ => return None,
        })
    }
}

/// Which way frames go (part of every tag, so that a frame cannot be reflected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the source helper to the target helper.
    ToTarget,
    /// From the target helper back to the source helper.
    ToSource,
}

impl Direction {
    /// The first four bytes of every nonce in this direction: the two directions share the
    /// key, never a nonce.
    fn nonce_prefix(self) -> [u8; 4] {
        match self {
            Direction::ToTarget => 1u32.to_be_bytes(),
            Direction::ToSource => 2u32.to_be_bytes(),
        }
    }
}

/// The AEAD state of one direction: key and frame counter.
struct Sealer {
    key: LessSafeKey,
    dir: Direction,
    seq: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({:?}, frame {})", self.dir, self.seq)
    }
}

impl Sealer {
    fn new(key: &[u8; 32], dir: Direction) -> Sealer {
        let key = UnboundKey::new(&AES_256_GCM, key)
            .unwrap_or_else(|_| unreachable!("32 bytes is an AES-256 key"));
        Sealer {
            key: LessSafeKey::new(key),
            dir,
            seq: 0,
        }
    }

    /// The nonce of the next frame; each is used once, as the frame number only grows.
    fn next_nonce(&mut self) -> Nonce {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.dir.nonce_prefix());
        n[4..].copy_from_slice(&self.seq.to_be_bytes());
        self.seq += 1;
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypts the next frame's `payload` in place; its tag.
    fn seal(&mut self, head: &[u8], payload: &mut [u8]) -> io::Result<[u8; TAG_LEN]> {
        let nonce = self.next_nonce();
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(head), payload)
            .map_err(|_| io::Error::other("cannot encrypt a frame"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Checks and decrypts the next frame's `sealed` payload (tag last) in place; the
    /// plaintext's length.
    fn open(&mut self, head: &[u8], sealed: &mut [u8]) -> io::Result<usize> {
        let nonce = self.next_nonce();
        self.key
            .open_in_place(nonce, Aad::from(head), sealed)
            .map(|plain| plain.len())
            .map_err(|_| bad("frame failed authentication (wrong key, or altered)".into()))
    }
}

/// Writes frames; as a [`Write`], cuts what it is given into data frames.
#[derive(Debug)]
pub struct FrameWriter<W: Write> {
    w: W,
    sealer: Sealer,
    /// Header room, then the pending data payload.
    buf: Vec<u8>,
    /// Bytes written to the stream so far, framing included.
    pub sent: u64,
}

impl<W: Write> FrameWriter<W> {
    /// A writer of frames going `dir`, authenticated with `key`.
    pub fn new(w: W, key: &[u8; 32], dir: Direction) -> Self {
        let mut buf = Vec::with_capacity(HEAD_LEN + FRAME + TAG_LEN);
        buf.resize(HEAD_LEN, 0);
        FrameWriter {
            w,
            sealer: Sealer::new(key, dir),
            buf,
            sent: 0,
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &W {
        &self.w
    }

    /// Sends the pending data as one frame.
    fn emit_data(&mut self) -> io::Result<()> {
        if self.buf.len() == HEAD_LEN {
            return Ok(());
        }
        let len = u32::try_from(self.buf.len() - HEAD_LEN).map_err(io::Error::other)?;
        self.buf[0] = Kind::Data as u8;
        self.buf[1..HEAD_LEN].copy_from_slice(&len.to_le_bytes());
        let (head, payload) = self.buf.split_at_mut(HEAD_LEN);
        let tag = self.sealer.seal(head, payload)?;
        self.buf.extend_from_slice(&tag);
        self.w.write_all(&self.buf).map_err(stalled)?;
        self.sent += self.buf.len() as u64;
        self.buf.truncate(HEAD_LEN);
        Ok(())
    }

    /// Sends a frame of `kind` with `payload` (after the pending data).
    pub fn send(&mut self, kind: Kind, payload: &[u8]) -> io::Result<()> {
        self.emit_data()?;
        let len = u32::try_from(payload.len()).map_err(io::Error::other)?;
        let mut head = [0u8; HEAD_LEN];
        head[0] = kind as u8;
        head[1..].copy_from_slice(&len.to_le_bytes());
        let mut frame = Vec::with_capacity(HEAD_LEN + payload.len() + TAG_LEN);
        frame.extend_from_slice(&head);
        frame.extend_from_slice(payload);
        let tag = self.sealer.seal(&head, &mut frame[HEAD_LEN..])?;
        frame.extend_from_slice(&tag);
        self.w.write_all(&frame).map_err(stalled)?;
        self.sent += frame.len() as u64;
        self.w.flush()
    }

    /// Ends the current image: `kind` is [`Kind::RoundEnd`] or [`Kind::FinalEnd`].
    pub fn end_image(&mut self, kind: Kind) -> io::Result<()> {
        self.send(kind, &[])
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = HEAD_LEN + FRAME - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == HEAD_LEN + FRAME {
            self.emit_data()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit_data()?;
        self.w.flush()
    }
}

/// Reads frames, checking each tag; as a [`Read`], gives the data of the current image and
/// then end of file at its end.
#[derive(Debug)]
pub struct FrameReader<R: Read> {
    r: R,
    sealer: Sealer,
    payload: Vec<u8>,
    /// Bytes of `payload` already read out.
    used: usize,
    /// The frame that ended the current image, once it came.
    ended: Option<Kind>,
    /// Bytes read from the stream so far, framing included.
    pub received: u64,
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl<R: Read> FrameReader<R> {
    /// A reader of frames coming `dir`, authenticated with `key`.
    pub fn new(r: R, key: &[u8; 32], dir: Direction) -> Self {
        FrameReader {
            r,
            sealer: Sealer::new(key, dir),
            payload: Vec::new(),
            used: 0,
            ended: None,
            received: 0,
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &R {
        &self.r
    }

    /// Reads the next frame into `self.payload`; its kind.
    fn next_frame(&mut self) -> io::Result<Kind> {
        let mut head = [0u8; HEAD_LEN];
        self.r.read_exact(&mut head).map_err(stalled)?;
        let kind =
            Kind::from_u8(head[0]).ok_or_else(|| bad(format!("unknown frame kind {}", head[0])))?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(bad(format!("frame of {len} bytes is too large")));
        }
        self.payload.resize(len + TAG_LEN, 0);
        self.r.read_exact(&mut self.payload).map_err(stalled)?;
        let plain = self.sealer.open(&head, &mut self.payload)?;
        self.payload.truncate(plain);
        self.received += (HEAD_LEN + len + TAG_LEN) as u64;
        self.used = 0;
        Ok(kind)
    }

    /// Skips what is left of the current image and returns the kind of frame that ended it;
    /// the reader then reads the next image.
    pub fn finish_image(&mut self) -> io::Result<Kind> {
        io::copy(self, &mut io::sink())?;
        self.ended
            .take()
            .ok_or_else(|| bad("image not ended".into()))
    }

    /// The next frame that is not image data: its kind and payload (data frames before it are
    /// an error).
    pub fn recv(&mut self) -> io::Result<(Kind, Vec<u8>)> {
        match self.next_frame()? {
            Kind::Data => Err(bad("unexpected image data".into())),
            k => Ok((k, std::mem::take(&mut self.payload))),
        }
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.used == self.payload.len() {
            if self.ended.is_some() {
                return Ok(0);
            }
            match self.next_frame() {
                Ok(Kind::Data) => {}
                Ok(k @ (Kind::RoundEnd | Kind::FinalEnd)) => {
                    self.payload.clear();
                    self.ended = Some(k);
                    return Ok(0);
                }
                Ok(Kind::Failed) => {
                    let why = String::from_utf8_lossy(&self.payload).into_owned();
                    return Err(io::Error::other(format!("the source failed: {why}")));
                }
                Ok(k) => return Err(bad(format!("unexpected {k:?} frame in an image"))),
                Err(e) => return Err(e),
            }
        }
        let n = out.len().min(self.payload.len() - self.used);
        out[..n].copy_from_slice(&self.payload[self.used..self.used + n]);
        self.used += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn images_and_answers_come_back_one_at_a_time() {
        let mut w = FrameWriter::new(Vec::new(), &KEY, Direction::ToTarget);
        let big: Vec<u8> = (0..FRAME * 2 + 13).map(|i| i as u8).collect();
        w.write_all(&big).expect("write");
        w.end_image(Kind::RoundEnd).expect("end");
        w.write_all(b"last").expect("write");
        w.end_image(Kind::FinalEnd).expect("end");
        let total = w.sent;
        let bytes = w.w;
        assert_eq!(total as usize, bytes.len());

        let mut r = FrameReader::new(&bytes[..], &KEY, Direction::ToTarget);
        let mut first = Vec::new();
        r.read_to_end(&mut first).expect("read");
        assert_eq!(first, big);
        assert_eq!(r.finish_image().expect("kind"), Kind::RoundEnd);
        let mut head = [0u8; 2];
        r.read_exact(&mut head).expect("part of the second image");
        assert_eq!(&head, b"la");
        // the rest of an image is skipped when its reader stops early
        assert_eq!(r.finish_image().expect("kind"), Kind::FinalEnd);
        assert_eq!(r.received, total);

        let mut back = FrameWriter::new(Vec::new(), &KEY, Direction::ToSource);
        back.send(Kind::Failed, b"no room").expect("send");
        let bytes = back.w;
        let mut r = FrameReader::new(&bytes[..], &KEY, Direction::ToSource);
        assert_eq!(r.recv().expect("recv"), (Kind::Failed, b"no room".to_vec()));
    }

    #[test]
    fn image_bytes_are_not_in_clear_on_the_stream() {
        let secret = b"page content: the user's password".repeat(100);
        let mut w = FrameWriter::new(Vec::new(), &KEY, Direction::ToTarget);
        w.write_all(&secret).expect("write");
        w.end_image(Kind::FinalEnd).expect("end");
        let wire = w.w;
        assert!(!wire.windows(13).any(|win| win == b"page content:"));
        let mut r = FrameReader::new(&wire[..], &KEY, Direction::ToTarget);
        let mut back = Vec::new();
        r.read_to_end(&mut back).expect("read");
        assert_eq!(back, secret);
    }

    #[test]
    fn altered_reflected_reordered_or_truncated_frames_are_refused() {
        let mut w = FrameWriter::new(Vec::new(), &KEY, Direction::ToTarget);
        w.write_all(b"abcdef").expect("write");
        w.end_image(Kind::FinalEnd).expect("end");
        let good = w.w;
        let read = |bytes: &[u8], key: &[u8; 32], dir| {
            let mut r = FrameReader::new(bytes, key, dir);
            let mut out = Vec::new();
            r.read_to_end(&mut out).and_then(|_| r.finish_image())
        };
        assert_eq!(
            read(&good, &KEY, Direction::ToTarget).expect("good"),
            Kind::FinalEnd
        );
        let mut altered = good.clone();
        altered[7] ^= 1;
        assert!(read(&altered, &KEY, Direction::ToTarget).is_err());
        assert!(
            read(&good, &[8; 32], Direction::ToTarget).is_err(),
            "wrong key"
        );
        assert!(read(&good, &KEY, Direction::ToSource).is_err(), "reflected");
        // the end frame alone, moved to the front: its frame number is wrong
        let data_len = HEAD_LEN + 6 + TAG_LEN;
        assert!(read(&good[data_len..], &KEY, Direction::ToTarget).is_err());
        assert!(read(&good[..good.len() - 3], &KEY, Direction::ToTarget).is_err());
    }
}
