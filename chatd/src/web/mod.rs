//! The server-rendered pages and static assets.
//!
//! | route | what |
//! |---|---|
//! | `GET /c/{port}/{room}` | the chat page of a room (the CHmail-Link) ([`room`]) |
//! | `GET /me` | the sender's page: their rooms with unread counts; rings show here ([`me`]) |
//! | `GET /signin`, `POST /signin` | ask for a sign-in link by mail ([`signin`]) |
//! | `GET /auth/{token}` | follow a sign-in link: a page whose button posts it (mail scanners fetch links) |
//! | `POST /auth/{token}` | use the sign-in link once: start a session, open the room or `/me` |
//! | `POST /signout` | end the session |
//! | `POST /c/{port}/{room}/pictures`, `GET /c/{port}/{room}/pictures/{id}` | pictures sent in a chat: upload one (answers its id), show one of the room ([`pictures`]) |
//! | `GET /u/{token}`, `POST /u/{token}` | stop the notification mails of a room: a page with a button; the post (also RFC 8058's one-click, without CSRF token) mutes ([`unsubscribe`]) |
//! | `GET /static/{file}` | `chat.js`, `me.js`, `chat.css`, `mall.css` ([`assets`]) |
//!
//! The mall's pages live under `/mall` ([`crate::mall`]).
//!
//! Every response of chatd (pages, assets, errors, WebSocket upgrades) gets the headers of
//! [`security_headers`]; pages are escaped with [`html::escape`]; form bodies are capped at
//! [`MAX_FORM_BYTES`]; forms are protected as [`csrf`] describes.

pub mod assets;
pub mod csrf;
pub mod html;
pub mod me;
pub mod pictures;
pub mod room;
pub mod signin;
pub mod unsubscribe;

use std::sync::Arc;

use axum::{
    extract::DefaultBodyLimit,
    http::{header, HeaderName, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Extension, Router,
};

use crate::{error::AppError, state::AppState};

/// Largest form body accepted, in bytes: the forms hold an address and a token.
pub const MAX_FORM_BYTES: usize = 4 * 1024;

/// The content security policy of every response: only our own scripts, styles and sockets; no
/// inline script, no framing, no plugins, no `<base>` tricks, forms post only to us.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
     img-src 'self' data:; media-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'; object-src 'none'";

/// The page routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(signin::home))
        .route("/c/{port}/{room}", get(room::room_page))
        .route("/me", get(me::me_page))
        .route(
            "/signin",
            get(signin::signin_page).post(signin::request_link),
        )
        .route(
            "/auth/{token}",
            get(signin::confirm_link).post(signin::use_link),
        )
        .route("/signout", post(signin::sign_out))
        .route(
            "/u/{token}",
            get(unsubscribe::confirm).post(unsubscribe::mute),
        )
        .route("/static/{file}", get(assets::asset))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(Extension(Arc::new(crate::limit::SigninLimiter::new())))
}

/// The answer for any path chatd does not serve: the same page as an unknown room.
pub async fn not_found() -> Response {
    AppError::NotFound.into_response()
}

/// Adds the security headers to a response: the [`CONTENT_SECURITY_POLICY`],
/// `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` (room ids in our URLs are
/// capabilities and must not leak to other sites), `X-Frame-Options: DENY` for browsers without
/// `frame-ancestors`, and `Cache-Control: no-store` unless the handler chose a cache policy.
pub async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// How long a browser that saw chatd over its own TLS keeps to HTTPS for it: a year, as the
/// HSTS preload list asks; without subdomains, which chatd does not speak for.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Adds `Strict-Transport-Security` to a response, when chatd serves TLS itself (`[chat]
/// tls_cert`); behind a TLS proxy the proxy sets it (`contrib/proxy/nginx.conf`).
pub async fn strict_transport(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
    );
    response
}

/// A complete error page with `message` (escaped).
pub fn error_page(status: StatusCode, message: &str) -> String {
    let title = status.canonical_reason().unwrap_or("Error");
    let main = format!(
        "<section class=\"card error-page\"><h1>{title}</h1><p>{msg}</p>\
         <p class=\"muted\">If someone mailed you a chat link, open it exactly as it came.</p></section>",
        title = html::escape(title),
        msg = html::escape(message),
    );
    html::page(
        &html::Page {
            title,
            body_attrs: html::attr("data-page", "error"),
            scripts: &[],
        },
        &main,
    )
}

/// An HTML response with extra headers (such as `Set-Cookie`).
pub(crate) fn html_response(
    status: StatusCode,
    cookies: impl IntoIterator<Item = String>,
    body: String,
) -> Response {
    let mut response = (status, Html(body)).into_response();
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// A `303 See Other` to `location` with extra `Set-Cookie` values.
pub(crate) fn see_other(location: &str, cookies: impl IntoIterator<Item = String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}
