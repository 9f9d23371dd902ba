//! [`AppError`]: a failure in a handler. The user sees a clear, generic page or JSON; the detail
//! is logged once.

use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use chmail::store::StoreError;
use tracing::warn;

/// What went wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Nothing here (also: a room under the wrong port: the same answer, no oracle).
    #[error("not found")]
    NotFound,
    /// The request is malformed or over a limit; the text is safe to show.
    #[error("{0}")]
    BadRequest(String),
    /// Sign-in needed or not allowed.
    #[error("forbidden")]
    Forbidden,
    /// Too many requests; try later.
    #[error("too many requests")]
    TooMany,
    /// Too much of a costly kind of work is waiting (password checks); try again shortly.
    #[error("busy")]
    Busy,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Anything else that is our fault.
    #[error("internal: {0}")]
    Internal(String),
}

/// The result of a handler.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

impl AppError {
    fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Forbidden => StatusCode::FORBIDDEN,
            AppError::TooMany => StatusCode::TOO_MANY_REQUESTS,
            AppError::Store(StoreError::Invalid(_)) => StatusCode::BAD_REQUEST,
            AppError::Busy | AppError::Store(_) | AppError::Internal(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The sentence a user sees.
    pub fn public_message(&self) -> String {
        match self {
            AppError::NotFound => "This chat does not exist, or the link is incomplete.".into(),
            AppError::BadRequest(text) => text.clone(),
            AppError::Forbidden => "Please sign in to see this page.".into(),
            AppError::TooMany => "Too many requests. Please wait a little and try again.".into(),
            AppError::Store(StoreError::Invalid(_)) => "That request is not valid.".into(),
            AppError::Busy => {
                "Many people are signing in right now. Please try again in a few seconds.".into()
            }
            AppError::Store(_) | AppError::Internal(_) => {
                "The chat server has a problem right now. Please try again in a minute.".into()
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            warn!(cause = %self, "request failed");
        }
        let page = crate::web::error_page(status, &self.public_message());
        (status, Html(page)).into_response()
    }
}
