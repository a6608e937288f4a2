//! The manifests of a checkpoint image (inventory, shared objects, one process), decoded from
//! a record payload: a value or an error, never a panic.
#![no_main]

use checkpoint::image::record::decode_meta;
use checkpoint::image::{Inventory, ProcessImage, Shared};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_meta::<Inventory>(data);
    let _ = decode_meta::<Shared>(data);
    let _ = decode_meta::<ProcessImage>(data);
});
