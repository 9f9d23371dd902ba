//! Who is online (S113). (Being built.)

use chmail::config::ChatConfig;

/// The logins with live connections on this process.
pub struct Presence {}

impl Presence {
    /// Nobody online.
    pub fn new(_config: &ChatConfig) -> Self {
        Self {}
    }
}
