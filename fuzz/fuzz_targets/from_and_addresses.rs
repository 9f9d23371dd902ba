//! Fuzz target `from_and_addresses`: the body is [`chmail_fuzz::from_and_addresses`], shared with the stable corpus test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chmail_fuzz::from_and_addresses(data));
