//! Fuzz target `footer`: the body is [`chmail_fuzz::footer`], shared with the stable corpus test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chmail_fuzz::footer(data));
