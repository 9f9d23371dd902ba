//! Fuzz target `reply_text`: the body is [`chmail_fuzz::reply_text`], shared with the stable corpus test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chmail_fuzz::reply_text(data));
