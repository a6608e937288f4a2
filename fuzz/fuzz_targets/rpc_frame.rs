//! Frames a daemon reads from another over TLS: whatever the bytes, decoding returns a value
//! or an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::wire::decode;

fuzz_target!(|data: &[u8]| {
    let _ = decode::<RpcRequest>(data, "fuzz");
    let _ = decode::<RpcResponse>(data, "fuzz");
});
