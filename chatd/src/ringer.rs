//! Ringing the sender (S107-S115). (Being built.)

/// The rings under way on this process.
pub struct Ringer {}

impl Ringer {
    /// No rings.
    pub fn new() -> Self {
        Self {}
    }
}

impl Default for Ringer {
    fn default() -> Self {
        Self::new()
    }
}
