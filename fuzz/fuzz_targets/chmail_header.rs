//! Fuzz target `chmail_header`: the body is [`chmail_fuzz::chmail_header`], shared with the stable corpus test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chmail_fuzz::chmail_header(data));
