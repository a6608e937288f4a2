//! A whole checkpoint image as a migration target reads it from the network: parsed and
//! checked (manifests, page runs, shared objects), refused with an error if anything is off.
#![no_main]

use checkpoint::Image;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Image::read_stream(data, None);
});
