//! Snapshot file decoding on arbitrary bytes, raw and behind a valid magic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz");
    let _ = dialgate::registry::file::decode(data, path);
    let mut framed = b"DGSNAP\x00\x01".to_vec();
    framed.extend_from_slice(data);
    let _ = dialgate::registry::file::decode(&framed, path);
});
