//! Sign-in by magic link: `GET /signin` (the form), `POST /signin` (mail a link),
//! `GET /auth/{token}` (a page with a Sign in button), `POST /auth/{token}` (use the link),
//! `POST /signout`.
//!
//! Following a link only shows a page; the button posts it, and only the post uses the
//! single-use token. Mail link scanners (Microsoft Safe Links and the like) fetch every link of a
//! mail before the person clicks; a `GET` that used the token would sign the scanner in and leave
//! the person a dead link. The page is the same for every well-formed token, used or not, so the
//! `GET` needs nothing from the store.
//!
//! `POST /signin` always gives the same answer, fast: the look-up of the login, its limits and
//! queueing the mail run after the response, so neither the text nor the timing says whether an
//! address can sign in. The per-IP limit ([`crate::limit`]) answers `429` before anything else;
//! it says nothing about the address.
//!
//! A login's sign-in mails are limited per login and client network (`[chat] signins_per_hour`,
//! [`crate::limit::ChatLimits::signin_mail`]) and per login in all (that many times
//! [`SIGNIN_MAIL_NETWORKS`], counted in the store). Anyone may ask for anyone's link, so a
//! limit per login alone would let a stranger use up the owner's mails for the hour; counted per
//! network, the stranger uses up their own share, and the owner still gets a link when they ask
//! from their own network, until the cap, which only many networks together reach.

use std::sync::Arc;

use axum::{
    extract::{rejection::FormRejection, rejection::PathRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    Extension, Form,
};
use serde::Deserialize;
use tracing::{debug, info, warn};

use super::{
    csrf,
    html::{attr, escape, page, Page},
};
use crate::{
    auth::{
        end_session, is_token, known_login, login_address, session_login, signin_url,
        start_session, SIGNIN_WINDOW_MS,
    },
    client_ip::ClientIp,
    error::AppError,
    limit::{SigninLimiter, SIGNIN_MAIL_NETWORKS},
    state::AppState,
};

/// The sign-in form as posted.
#[derive(Debug, Deserialize)]
pub struct SigninForm {
    /// The address (or login) typed.
    #[serde(default)]
    address: String,
    /// The CSRF token.
    #[serde(default)]
    csrf: String,
}

/// A form that carries only the CSRF token (`POST /signout`).
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    /// The CSRF token.
    #[serde(default)]
    csrf: String,
}

/// What a malformed or oversized form gets.
fn bad_form(_: FormRejection) -> AppError {
    AppError::BadRequest("That form was not complete or too large. Please try again.".into())
}

/// `GET /`: the sender's page when signed in, else the sign-in form (via `/me`).
pub async fn home() -> Response {
    super::see_other("/me", [])
}

/// `GET /signin`.
pub async fn signin_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let signed_in = session_login(&state, &headers).await;
    let (csrf, set_csrf) = csrf::form_token(&state, &headers)?;
    let already = signed_in.map_or_else(String::new, |login| {
        format!(
            "<p class=\"notice\">You are signed in as <strong class=\"address\">{}</strong>. \
             <a href=\"/me\">Open your chats</a>.</p>",
            escape(&login)
        )
    });
    let main = format!(
        "<section class=\"card stack\"><h1>Sign in to your chats</h1>{already}\
         <p>We mail you a link that signs you in. It works once, for {ttl} minutes.</p>\
         <form method=\"post\" action=\"/signin\" class=\"stack\">\
         <label for=\"address\">Your e-mail address</label>\
         <input type=\"text\" inputmode=\"email\" id=\"address\" name=\"address\" required \
         maxlength=\"{max}\" autocomplete=\"username\" autocapitalize=\"off\" spellcheck=\"false\">\
         <input type=\"hidden\" name=\"csrf\"{csrf}>\
         <button type=\"submit\" class=\"primary\">Mail me a sign-in link</button>\
         </form></section>",
        ttl = state.config.chat.signin_ttl_minutes,
        max = chmail::store::MAX_LOGIN_LEN,
        csrf = attr("value", &csrf),
    );
    let html = page(
        &Page {
            title: "Sign in - CHmail",
            body_attrs: attr("data-page", "signin"),
            scripts: &[],
        },
        &main,
    );
    Ok(super::html_response(StatusCode::OK, set_csrf, html))
}

/// `POST /signin`: mails a sign-in link if the address can sign in; the same answer either way.
pub async fn request_link(
    State(state): State<AppState>,
    Extension(limiter): Extension<Arc<SigninLimiter>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<SigninForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form.map_err(bad_form)?;
    csrf::verify(&state, &headers, &form.csrf)?;
    if !limiter.allow(ip, state.clock.now_ms()) {
        warn!(ip = ?ip, "sign-in requests over the per-IP limit");
        return Err(AppError::TooMany);
    }
    let typed = form.address.trim().to_owned();
    if typed.is_empty()
        || typed.len() > chmail::store::MAX_LOGIN_LEN
        || typed.chars().any(char::is_control)
    {
        return Err(AppError::BadRequest(
            "Please enter the e-mail address you send mail from.".into(),
        ));
    }
    tokio::spawn(mail_link(state.clone(), typed, ip));
    let main = format!(
        "<section class=\"card stack\"><h1>Check your mail</h1>\
         <p id=\"status\" role=\"status\">If this address can sign in, a link is on its way. \
         It works once, for {ttl} minutes.</p>\
         <p class=\"muted\">Nothing came? Check the spam folder, or <a href=\"/signin\">try \
         again</a> in a few minutes.</p></section>",
        ttl = state.config.chat.signin_ttl_minutes,
    );
    let html = page(
        &Page {
            title: "Check your mail - CHmail",
            body_attrs: attr("data-page", "signin-sent"),
            scripts: &[],
        },
        &main,
    );
    Ok(super::html_response(StatusCode::OK, [], html))
}

/// The part of `POST /signin` that runs after the answer: find the login, apply its limits (per
/// client network `ip`, then per login), queue the mail with the link (the outbox delivers it).
/// Failures are logged; the visitor already has their answer.
async fn mail_link(state: AppState, typed: String, ip: Option<std::net::IpAddr>) {
    let login = match known_login(&state, &typed).await {
        Ok(Some(login)) => login,
        Ok(None) => {
            debug!("sign-in asked for an unknown address");
            return;
        }
        Err(e) => {
            warn!(cause = %e, "sign-in look-up failed");
            return;
        }
    };
    let now = state.clock.now_ms();
    if !state.limits.signin_mail(&login, ip, now) {
        warn!(login = %login, ip = ?ip, "sign-in links over the per-network limit; none sent");
        return;
    }
    let since = now.saturating_sub(SIGNIN_WINDOW_MS);
    let count = state.store.count_signin_tokens(&login, since);
    let cap = state
        .config
        .chat
        .signins_per_hour
        .saturating_mul(SIGNIN_MAIL_NETWORKS);
    match state.store_call(count).await {
        Ok(n) if n >= cap => {
            warn!(login = %login, sent = n, "sign-in links over the per-login limit; none sent");
            return;
        }
        Ok(_) => {}
        Err(e) => {
            warn!(login = %login, cause = %e, "sign-in limit look-up failed; none sent");
            return;
        }
    }
    let url = match signin_url(&state, &login, None).await {
        Ok(url) => url,
        Err(e) => {
            warn!(login = %login, cause = %e, "sign-in link not made");
            return;
        }
    };
    let to = login_address(&state.config, &login);
    let mail = crate::mail::signin_mail(&state.config, &to, &url);
    match crate::outbox::queue(&state, &mail, chmail::store::kind::SIGNIN, None).await {
        Ok(_) => info!(login = %login, "sign-in link queued"),
        Err(e) => warn!(login = %login, cause = %e, "sign-in mail not queued"),
    }
}

/// `GET /auth/{token}`: the page with the button that signs in (see the module doc on why a
/// `GET` must not use the token). A token that cannot be one of ours gets the dead-link page.
pub async fn confirm_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    token: Result<Path<String>, PathRejection>,
) -> Result<Response, AppError> {
    let token = token.map(|Path(t)| t).unwrap_or_default();
    if !is_token(&token) {
        return Ok(dead_link());
    }
    let (csrf, set_csrf) = csrf::form_token(&state, &headers)?;
    let main = format!(
        "<section class=\"card stack\"><h1>Sign in to CHmail</h1>\
         <p>Press the button to sign in with the link from your mail.</p>\
         <form method=\"post\"{action} class=\"stack\">\
         <input type=\"hidden\" name=\"csrf\"{csrf}>\
         <button type=\"submit\" id=\"signin\" class=\"primary\">Sign in</button>\
         </form></section>",
        action = attr("action", &format!("/auth/{token}")),
        csrf = attr("value", &csrf),
    );
    let html = page(
        &Page {
            title: "Sign in - CHmail",
            body_attrs: attr("data-page", "signin-confirm"),
            scripts: &[],
        },
        &main,
    );
    Ok(super::html_response(StatusCode::OK, set_csrf, html))
}

/// `POST /auth/{token}`: uses the token once, starts a session and opens the room of the link or
/// `/me`.
pub async fn use_link(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    token: Result<Path<String>, PathRejection>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, AppError> {
    let token = token.map(|Path(t)| t).unwrap_or_default();
    let Form(form) = form.map_err(bad_form)?;
    csrf::verify(&state, &headers, &form.csrf)?;
    let now = state.clock.now_ms();
    let used = if is_token(&token) {
        let hash = crate::auth::hash_token(&token);
        let consume = state.store.consume_signin_token(&hash, now);
        state.store_call(consume).await?
    } else {
        None
    };
    let Some(used) = used else {
        return Ok(dead_link());
    };
    let cookie = start_session(&state, &used.login).await?;
    let ip_text = ip.map(|ip| ip.to_string());
    let record = state.store.record_login(
        &used.login,
        ip_text.as_deref(),
        None,
        state.clock.now_secs(),
    );
    if let Err(e) = state.store_call(record).await {
        warn!(login = %used.login, cause = %e, "sign-in not recorded in the first table");
    }
    info!(login = %used.login, "signed in by link");
    state.metrics.signin("link");
    let mut target = "/me".to_owned();
    if let Some(room_id) = &used.room_id {
        if let Some(room) = state.store_call(state.store.room(room_id)).await? {
            if room.login == used.login {
                target = format!("/c/{}/{}", room.port, room.id);
            }
        }
    }
    if target == "/me" && state.config.mall.enabled && is_host(&state, &used.login).await {
        target = "/mall/host".to_owned();
    }
    Ok(super::see_other(&target, [cookie]))
}

/// Whether `login` is a host of the mall (whose sign-in lands on their shop's page). A store
/// failure answers no: the sender's page is always a fine place to land.
async fn is_host(state: &AppState, login: &str) -> bool {
    match state.store_call(state.store.host(login)).await {
        Ok(host) => host.is_some(),
        Err(e) => {
            warn!(login = %login, cause = %e, "host look-up failed");
            false
        }
    }
}

/// The page for a sign-in link that is unknown, used or expired (one answer for all three).
fn dead_link() -> Response {
    let main = "<section class=\"card stack\"><h1>This link no longer works</h1>\
         <p>Sign-in links work once and only for a short time.</p>\
         <p><a class=\"button primary\" href=\"/signin\">Get a new link</a></p></section>";
    let html = page(
        &Page {
            title: "Link expired - CHmail",
            body_attrs: attr("data-page", "signin-dead"),
            scripts: &[],
        },
        main,
    );
    super::html_response(StatusCode::NOT_FOUND, [], html)
}

/// `POST /signout`: ends the session and deletes its cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form.map_err(bad_form)?;
    csrf::verify(&state, &headers, &form.csrf)?;
    let cookie = end_session(&state, &headers).await?;
    Ok(super::see_other("/signin", [cookie]))
}
