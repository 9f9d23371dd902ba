//! Fuzz target `ws_frame`: the body is [`chmail_fuzz::ws_frame`], shared with the stable corpus test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chmail_fuzz::ws_frame(data));
