//! Several images on one byte stream: each image is a run of chunks `[u32 len][bytes]`, ended
//! by an empty chunk and one byte telling whether more images follow.

use std::io::{self, Read, Write};

/// An image of a pre-copy round: more follow.
pub const ROUND: u8 = 1;
/// The last image: restore it.
pub const FINAL: u8 = 2;
const CHUNK: usize = 1 << 20;

/// Cuts what is written into chunks.
#[derive(Debug)]
pub struct ChunkWriter<W: Write> {
    w: W,
    buf: Vec<u8>,
    /// Bytes written to the stream so far, framing included.
    pub sent: u64,
}

impl<W: Write> ChunkWriter<W> {
    /// A writer over `w`.
    pub fn new(w: W) -> Self {
        ChunkWriter {
            w,
            buf: Vec::with_capacity(CHUNK),
            sent: 0,
        }
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(self.buf.len()).map_err(io::Error::other)?;
        self.w.write_all(&len.to_le_bytes())?;
        self.w.write_all(&self.buf)?;
        self.sent += 4 + self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Ends the current image; `kind` is [`ROUND`] or [`FINAL`].
    pub fn end_image(&mut self, kind: u8) -> io::Result<()> {
        self.emit()?;
        self.w.write_all(&0u32.to_le_bytes())?;
        self.w.write_all(&[kind])?;
        self.sent += 5;
        self.w.flush()
    }
}

impl<W: Write> Write for ChunkWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.w.flush()
    }
}

/// Reads one image at a time: end of file at the end of each image.
#[derive(Debug)]
pub struct ChunkReader<R: Read> {
    r: R,
    left: usize,
    ended: bool,
}

impl<R: Read> ChunkReader<R> {
    /// A reader over `r`.
    pub fn new(r: R) -> Self {
        ChunkReader {
            r,
            left: 0,
            ended: false,
        }
    }

    /// Skips what is left of the current image and returns its kind byte; the reader then
    /// reads the next image.
    pub fn finish_image(&mut self) -> io::Result<u8> {
        io::copy(self, &mut io::sink())?;
        let mut kind = [0u8];
        self.r.read_exact(&mut kind)?;
        self.ended = false;
        match kind[0] {
            ROUND | FINAL => Ok(kind[0]),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown image kind {other} in the stream"),
            )),
        }
    }
}

impl<R: Read> Read for ChunkReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.ended || out.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut len = [0u8; 4];
            self.r.read_exact(&mut len)?;
            self.left = u32::from_le_bytes(len) as usize;
            if self.left == 0 {
                self.ended = true;
                return Ok(0);
            }
        }
        let want = out.len().min(self.left);
        let n = self.r.read(&mut out[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_come_back_one_at_a_time() {
        let mut w = ChunkWriter::new(Vec::new());
        let big = vec![7u8; CHUNK * 2 + 13];
        w.write_all(&big).expect("write");
        w.end_image(ROUND).expect("end");
        w.write_all(b"last").expect("write");
        w.end_image(FINAL).expect("end");
        let total = w.sent;
        let bytes = w.w;
        assert_eq!(total as usize, bytes.len());

        let mut r = ChunkReader::new(&bytes[..]);
        let mut first = Vec::new();
        r.read_to_end(&mut first).expect("read");
        assert_eq!(first, big);
        assert_eq!(r.finish_image().expect("kind"), ROUND);
        let mut head = [0u8; 2];
        r.read_exact(&mut head).expect("part of the second image");
        assert_eq!(&head, b"la");
        // The rest of an image is skipped when its reader stops early.
        assert_eq!(r.finish_image().expect("kind"), FINAL);
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let mut w = ChunkWriter::new(Vec::new());
        w.write_all(b"abcdef").expect("write");
        w.flush().expect("flush");
        let bytes = w.w;
        let mut r = ChunkReader::new(&bytes[..bytes.len() - 2]);
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }
}
