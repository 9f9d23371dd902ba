//! Cross-site request forgery protection for the forms (`POST /signin`, `POST /auth/{token}`,
//! `POST /signout`).
//!
//! Two independent checks, both required:
//!
//! 1. **Where the request comes from.** Browsers say so in `Sec-Fetch-Site` (current Chromium,
//!    Firefox and Safari): it must be `same-origin`. Without it, an `Origin` header must equal
//!    the public origin (`state.origin`). Our pages send `Referrer-Policy: no-referrer`, under
//!    which browsers send `Origin: null` on form posts, so `null` (or no `Origin`) is left to
//!    the token.
//! 2. **A token** (double-submit): each page with a form sets the random cookie `chmail_csrf`
//!    (`HttpOnly`, `SameSite=Strict`) and puts the same value in a hidden `csrf` field; a post
//!    counts only when both are present and equal. Another site can neither read the cookie
//!    nor make the browser send a `Strict` cookie, so it cannot build a matching post.

use axum::http::HeaderMap;

use crate::{
    auth::{cookie, is_token, new_token, same_secret, set_cookie},
    error::AppError,
    state::AppState,
};

/// The name of the CSRF cookie.
pub const CSRF_COOKIE: &str = "chmail_csrf";

/// The token for a page's forms, and the `Set-Cookie` value to send when the request had none.
///
/// # Errors
/// When no random token can be made.
pub fn form_token(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, Option<String>), AppError> {
    if let Some(token) = cookie(headers, CSRF_COOKIE).filter(|t| is_token(t)) {
        return Ok((token.to_owned(), None));
    }
    let token = new_token()?;
    let set = set_cookie(state, CSRF_COOKIE, &token, "Strict", None);
    Ok((token, Some(set)))
}

/// Checks a form post: its origin and its `csrf` field against the cookie.
///
/// # Errors
/// [`AppError::BadRequest`] with a sentence that tells the user to
/// reload the page.
pub fn verify(state: &AppState, headers: &HeaderMap, form_token: &str) -> Result<(), AppError> {
    let stale = || {
        AppError::BadRequest(
            "This form has expired or did not come from this site. Please reload the page and \
             try again."
                .into(),
        )
    };
    if !same_origin(state, headers) {
        return Err(stale());
    }
    let cookie = cookie(headers, CSRF_COOKIE).ok_or_else(stale)?;
    if !is_token(cookie) || !same_secret(cookie, form_token) {
        return Err(stale());
    }
    Ok(())
}

/// Check 1 of the module doc.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    match headers.get(axum::http::header::ORIGIN) {
        None => true,
        Some(origin) if origin.as_bytes() == b"null" => true,
        Some(origin) => origin.as_bytes() == state.origin.as_bytes(),
    }
}
