//! Fuzz target `opening`: the body is [`chmail_fuzz::opening`], shared with the stable corpus test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chmail_fuzz::opening(data));
