//! Fan-out of frames to the connections of each room. (Being built.)

use chmail::config::ChatConfig;

/// The rooms of this process and their connections.
pub struct Hub {}

impl Hub {
    /// An empty hub.
    pub fn new(_config: &ChatConfig) -> Self {
        Self {}
    }
}
