//! The reminder schedule and the worker that mails reminders (S117). (Being built.)

use tokio::sync::watch;

use crate::state::AppState;

/// Sends due reminders until `shutdown` turns true.
pub async fn run_worker(_state: AppState, mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
