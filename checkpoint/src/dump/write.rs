//! Writing a collected image to a sink: inventory and shared objects, shared memory, then each
//! process' manifest and pages (copied out of the process as they are written).

use std::io::Write;

use super::collect::TreeImage;
use crate::error::{Error, Result};
use crate::image::record::{Kind, RecordWriter};
use crate::image::{ImageSink, Part};
use crate::state::memory::pages;

fn io(e: std::io::Error) -> Error {
    Error::io("<image output>", e)
}

/// Writes one part: `fill` writes its records, then the END record closes it.
fn part<T>(
    sink: &mut dyn ImageSink,
    which: Part,
    fill: impl FnOnce(&mut RecordWriter<&mut dyn Write>) -> Result<T>,
) -> Result<T> {
    let align = sink.aligned();
    let out = {
        let w = sink.begin(which)?;
        let mut rw = RecordWriter::new(w, align);
        let out = fill(&mut rw)?;
        rw.end().map_err(io)?;
        out
    };
    sink.end()?;
    Ok(out)
}

/// Writes the image; returns the bytes of page data written. A pre-dump lets the tree run
/// meanwhile: pages that change or go away during the copy are tolerated (the next image
/// sees them).
pub(super) fn image(t: &TreeImage, sink: &mut dyn ImageSink, pre_dump: bool) -> Result<u64> {
    part(sink, Part::Inventory, |rw| {
        rw.meta(Kind::Inventory, &t.inventory).map_err(io)?;
        rw.meta(Kind::Shared, &t.shared).map_err(io)
    })?;
    // Shared memory is not tracked page by page: the final image holds it whole, so a
    // pre-dump only lists the objects.
    let mut page_bytes = part(sink, Part::Shmem, |rw| {
        let mut n = 0;
        if !pre_dump {
            for s in &t.shmem {
                n += s.write(rw)?;
            }
        }
        Ok(n)
    })?;
    for c in &t.procs {
        let pid = c.image.pid;
        part(sink, Part::Process(pid), |rw| {
            rw.meta(Kind::Process, &c.image).map_err(io)
        })?;
        page_bytes += part(sink, Part::Pages(pid), |rw| {
            pages::write_pages(pid, &c.plan.to_write, rw, pre_dump)
        })?;
    }
    Ok(page_bytes)
}
