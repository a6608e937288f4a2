//! The record layer of checkpoint images: one part held in memory, and the same bytes read as
//! a stream, record by record.
#![no_main]

use checkpoint::image::record::{parse_slice, StreamReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_slice(data);
    let mut r = StreamReader::new(data);
    // every record consumes at least its header: this ends
    while r.next_record().is_ok() {}
});
