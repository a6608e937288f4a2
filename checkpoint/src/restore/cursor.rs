//! Where the page records of a process' image go: its runs of pages not kept in a parent
//! image, in the order their bytes come.

use crate::error::{Error, Result};
use crate::image::record::PAGE;
use crate::image::ProcessImage;
use crate::state::memory::ranges::Ranges;

/// The runs of a process' pages that the image carries, in the order their bytes come.
pub(super) struct Cursor {
    /// The process.
    pub pid: i32,
    runs: Ranges,
    i: usize,
    at: u64,
}

impl Cursor {
    /// The runs of `p` whose bytes the image carries.
    pub fn new(p: &ProcessImage) -> Cursor {
        let runs: Ranges =
            p.mm.pages
                .iter()
                .filter(|r| r.has_data())
                .map(|r| (r.start, r.start + r.npages * PAGE))
                .collect();
        let at = runs.first().map_or(0, |r| r.0);
        Cursor {
            pid: p.pid,
            runs,
            i: 0,
            at,
        }
    }

    fn bad(&self, what: String) -> Error {
        Error::bad_image(format!("<stream>/pages-{}.rec", self.pid), what)
    }

    /// Cuts a record's bytes, which start at `addr`, along the runs.
    pub fn take<'d>(&mut self, addr: u64, data: &'d [u8]) -> Result<Vec<(u64, &'d [u8])>> {
        if self.i >= self.runs.len() {
            return Err(self.bad("page data not described by the manifest".into()));
        }
        if addr != self.at {
            return Err(self.bad(format!(
                "page record at {addr:#x} where {:#x} was expected",
                self.at
            )));
        }
        let mut out = Vec::new();
        let mut off = 0usize;
        while off < data.len() {
            let Some(&(_, end)) = self.runs.get(self.i) else {
                return Err(self.bad("page data not described by the manifest".into()));
            };
            let take = ((end - self.at) as usize).min(data.len() - off);
            out.push((self.at, &data[off..off + take]));
            off += take;
            self.at += take as u64;
            if self.at == end {
                self.i += 1;
                self.at = self.runs.get(self.i).map_or(0, |r| r.0);
            }
        }
        Ok(out)
    }

    /// Fails if page data is still missing.
    pub fn finish(&self) -> Result<()> {
        match self.runs.get(self.i) {
            Some(_) => Err(self.bad(format!("page data for {:#x} missing", self.at))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::image::PageRun;

    #[test]
    fn cursor_cuts_records_along_runs() {
        let runs = [
            PageRun {
                start: 0x1000,
                npages: 2,
                in_parent: false,
                cow: false,
            },
            PageRun {
                start: 0x3000,
                npages: 1,
                in_parent: true,
                cow: false,
            },
            PageRun {
                start: 0x5000,
                npages: 3,
                in_parent: false,
                cow: false,
            },
        ];
        let mut c = Cursor {
            pid: 1,
            runs: runs
                .iter()
                .filter(|r| r.has_data())
                .map(|r| (r.start, r.start + r.npages * PAGE))
                .collect(),
            i: 0,
            at: 0x1000,
        };
        let data = vec![7u8; 3 * 4096];
        // one record spanning the first run and the start of the second
        let got = c.take(0x1000, &data).unwrap();
        assert_eq!(
            got.iter().map(|p| (p.0, p.1.len())).collect::<Vec<_>>(),
            vec![(0x1000, 8192), (0x5000, 4096)]
        );
        assert!(c.finish().is_err(), "two pages still missing");
        assert!(c.take(0x7000, &data[..4096]).is_err(), "out of order");
        c.take(0x6000, &data[..8192]).unwrap();
        c.finish().unwrap();
        assert!(
            c.take(0x8000, &data[..4096]).is_err(),
            "beyond the manifest"
        );
    }
}
