//! A node's TOML configuration: parsed and resolved, a bad one is a clear error, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssi_core::config::ConfigLayer;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(layer) = ConfigLayer::from_toml(text, "fuzz.toml".as_ref()) {
            let _ = layer.resolve();
        }
    }
});
