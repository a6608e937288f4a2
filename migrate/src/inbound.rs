//! The target side: read the images as they come, restore the last one.

use std::io::Read;
use std::os::fd::RawFd;
use std::path::Path;
use std::time::Instant;

use checkpoint::{Image, RestoreOptions};

use crate::framing::{ChunkReader, FINAL};
use crate::report::Report;
use crate::{io, Result};

/// Reads images from `data` until the final one, then restores it with `stdio` as the tree's
/// outside standard streams. The tree runs when this returns; its root is a child of the caller.
pub fn run(data: impl Read, stdio: [RawFd; 3]) -> Result<Report> {
    let mut r = ChunkReader::new(data);
    let mut parent = None;
    let img = loop {
        let img = Image::read_stream(&mut r, parent.take())?;
        if r.finish_image().map_err(io("read the image stream"))? == FINAL {
            break img;
        }
        parent = Some(img);
    };
    restore(&img, stdio)
}

/// Restores the image in `dir` (a cluster checkpoint) with `stdio` as outside streams.
pub fn restore_dir(dir: &Path, stdio: [RawFd; 3]) -> Result<Report> {
    restore(&Image::load(dir)?, stdio)
}

fn restore(img: &Image, stdio: [RawFd; 3]) -> Result<Report> {
    let t = Instant::now();
    let opts = RestoreOptions {
        stdio: Some(stdio),
        ..Default::default()
    };
    let restored = checkpoint::restore(img, &opts)?;
    Ok(Report::Restored {
        root: restored.root,
        pids: restored.pids,
        micros: t.elapsed().as_micros() as u64,
    })
}
