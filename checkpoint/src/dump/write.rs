//! Writing a collected image to a sink: inventory and shared objects, shared memory, then each
//! process' manifest and pages (copied out of the process as they are written).

use std::io::Write;

use super::collect::TreeImage;
use crate::error::{Error, Result};
use crate::image::record::{Kind, RecordWriter};
use crate::image::{ImageSink, Part};
use crate::progress::{Meter, Progress};
use crate::state::memory::pages;

fn io(e: std::io::Error) -> Error {
    Error::io("<image output>", e)
}

/// Writes one part: `fill` writes its records, then the END record closes it. The bytes of
/// the parts of page data (shared memory, a process' pages) count on `meter`.
fn part<T>(
    sink: &mut dyn ImageSink,
    which: Part,
    meter: &mut Meter,
    fill: impl FnOnce(&mut RecordWriter<&mut dyn Write>) -> Result<T>,
) -> Result<T> {
    let align = sink.aligned();
    let counted = matches!(which, Part::Shmem | Part::Pages(_));
    let out = {
        let mut metered;
        let w: &mut dyn Write = if counted {
            metered = meter.writer(sink.begin(which)?);
            &mut metered
        } else {
            sink.begin(which)?
        };
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
/// sees them). `progress` is told the bytes written out of the pages and shared memory
/// to write.
pub(super) fn image(
    t: &TreeImage,
    sink: &mut dyn ImageSink,
    pre_dump: bool,
    progress: Option<&Progress>,
) -> Result<u64> {
    let shmem_total: u64 = if pre_dump {
        0
    } else {
        t.shared.shmem.iter().map(|s| s.size).sum()
    };
    let pages_total: u64 = t
        .procs
        .iter()
        .flat_map(|c| c.plan.to_write.iter().map(|&(s, e)| e - s))
        .sum();
    let mut meter = Meter::start(progress, shmem_total + pages_total);
    let m = &mut meter;
    part(sink, Part::Inventory, m, |rw| {
        rw.meta(Kind::Inventory, &t.inventory).map_err(io)?;
        rw.meta(Kind::Shared, &t.shared).map_err(io)
    })?;
    // Shared memory is not tracked page by page: the final image holds it whole, so a
    // pre-dump only lists the objects.
    let mut page_bytes = part(sink, Part::Shmem, m, |rw| {
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
        part(sink, Part::Process(pid), m, |rw| {
            rw.meta(Kind::Process, &c.image).map_err(io)
        })?;
        page_bytes += part(sink, Part::Pages(pid), m, |rw| {
            pages::write_pages(pid, &c.plan.to_write, rw, pre_dump)
        })?;
    }
    sink.finish()?;
    meter.finish();
    Ok(page_bytes)
}
