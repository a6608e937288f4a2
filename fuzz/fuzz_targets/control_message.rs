//! Messages the daemon reads from any local user on its control socket (and the CLI from the
//! daemon): decoding never panics or hangs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssi_core::control::{ControlRequest, ControlResponse};
use ssi_core::wire::decode;

fuzz_target!(|data: &[u8]| {
    let _ = decode::<ControlRequest>(data, "fuzz");
    let _ = decode::<ControlResponse>(data, "fuzz");
});
