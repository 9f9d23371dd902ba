//! Fuzz target `ads_csv`: the body is [`chmail_fuzz::ads_csv`], shared with the stable corpus test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chmail_fuzz::ads_csv(data));
