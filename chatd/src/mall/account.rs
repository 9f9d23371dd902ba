//! Mall members (S203/S205): sign up with an address, a name and a password; confirm the address
//! by a mailed link; sign in and out; reset a forgotten password by mail; the profile page
//! (name, promotion opt-in, my questions, delete my account and my data).
//!
//! | route | what |
//! |---|---|
//! | `GET/POST /mall/signup` | the sign-up form; the post mails a confirm link |
//! | `GET/POST /mall/confirm/{token}` | a page that asks for the password chosen at sign-up; its post checks it, uses the link once, confirms the address, signs in and opens `next` |
//! | `GET/POST /mall/signin` | address and password; an unconfirmed account is told so and offered a new link |
//! | `POST /mall/resend` | a new confirm link |
//! | `POST /mall/signout` | end the session |
//! | `GET/POST /mall/reset` | ask for a link to set a new password ([`reset`]) |
//! | `GET/POST /mall/reset/{token}` | set the new password; every other session ends |
//! | `GET/POST /mall/account` | the profile ([`profile`]) |
//! | `POST /mall/account/delete` | delete the account and its data, with the password |
//!
//! A member's CHmail login is their address: signing in starts an ordinary chatd session
//! ([`start_session`]), so the WebSocket, `/me` and ringing work for members unchanged.
//!
//! What protects the forms: each carries the CSRF token ([`csrf`]); a sign-up, a resend or a
//! reset request answers the same whether or not the address has an account, and does the
//! look-ups and mails after answering (neither the text nor the timing tells who is a member);
//! sign-up, resend and reset requests are limited per client network (`[mall] signups_per_hour`
//! each), mails per account (`[mall] mails_per_hour`, counted in the store), password checks per
//! client network, per account and client network, and per account from unfamiliar networks
//! ([`limits`]); every argon2 hash and check passes one gate per process ([`password`]). After
//! signing in, only a path under `/mall` is followed ([`safe_next`]): never another site.
//!
//! # Who may set an account's password
//!
//! Anyone can sign up with any address, so the sign-up alone proves nothing; the mailed link
//! proves the address. The account is confirmed only by someone who has both: the confirm page
//! asks for the password chosen at sign-up, checks it against the account's hash, and uses the
//! link only while that hash is still the account's ([`MallStore::confirm_member`], one
//! transaction). So a stranger who signs up first with someone else's address cannot have that
//! person confirm the stranger's password (they do not know it), nor can a stranger's later
//! sign-up be confirmed by the owner's earlier link.
//!
//! Signing up again with the address of an unconfirmed account replaces its name, opt-in and
//! password and mails a new link: the last sign-up wins, so that whoever owns the address can
//! always confirm an account with a password they know, even after a stranger signed up with
//! it. Past `[mall] mails_per_hour` such a sign-up changes nothing. Signing up with the address
//! of a confirmed account changes nothing either, even when it was confirmed a moment before
//! ([`MallStore::renew_signup`] changes only an unconfirmed one); its owner gets a mail saying so,
//! with a link to set a new password.
//!
//! [`MallStore::confirm_member`]: chmail::store::mall::MallStore::confirm_member
//! [`MallStore::renew_signup`]: chmail::store::mall::MallStore::renew_signup

mod checks;
mod limits;
mod mails;
mod password;
mod profile;
mod reset;
mod signin;
mod signup;

use std::{net::IpAddr, sync::Arc};

use axum::{
    extract::{
        rejection::{FormRejection, QueryRejection},
        DefaultBodyLimit, Query,
    },
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::{get, post},
    Extension, Router,
};
use chmail::store::mall::MallMember;
use serde::Deserialize;
use tracing::{info, warn};

pub use checks::{check_address, check_name};
pub use limits::AccountLimits;
pub use mails::{KIND_CONFIRM, KIND_EXISTS, KIND_RESET};
pub use password::{
    check_new_password, hash_password, verify_password, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS,
};
pub use signin::{resend, sign_in, sign_out, signin_page, AddressForm, SigninForm, TokenForm};
pub use signup::{confirm, confirm_page, sign_up, signup_page, ConfirmForm, SignupForm};

use super::page::{page, viewer, MallPage, Viewer};
use crate::{
    auth::{end_session, start_session},
    error::AppError,
    state::AppState,
    web::{
        csrf,
        html::{attr, escape},
        html_response,
    },
};
use limits::LimitsHolder;

/// Largest body of a member form: an address, a name and a password, percent-encoded.
pub const MAX_ACCOUNT_FORM_BYTES: usize = 8 * 1024;

/// Longest `next` path followed after signing in.
pub const MAX_NEXT_LEN: usize = 512;

/// The routes of this part.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/mall/signup", get(signup_page).post(sign_up))
        .route("/mall/confirm/{token}", get(confirm_page).post(confirm))
        .route("/mall/signin", get(signin_page).post(sign_in))
        .route("/mall/resend", post(resend))
        .route("/mall/signout", post(sign_out))
        .route("/mall/reset", get(reset::ask_page).post(reset::ask))
        .route(
            "/mall/reset/{token}",
            get(reset::new_password_page).post(reset::set_password),
        )
        .route(
            "/mall/account",
            get(profile::account_page).post(profile::update),
        )
        .route("/mall/account/delete", post(profile::delete))
        .layer(DefaultBodyLimit::max(MAX_ACCOUNT_FORM_BYTES))
        .layer(Extension(Arc::new(LimitsHolder::new())))
}

// --- shared by the pages of this part and of inquiries -------------------------------------

/// A page's CSRF token and the `Set-Cookie` that carries it when the request had none.
#[derive(Debug, Clone)]
pub(crate) struct FormToken {
    /// The token for the hidden `csrf` fields.
    pub token: String,
    /// The cookie to set, when new.
    pub set: Option<String>,
}

impl FormToken {
    /// The token of the request's cookie, or a new one.
    pub fn of(state: &AppState, headers: &HeaderMap) -> Result<Self, AppError> {
        let (token, set) = csrf::form_token(state, headers)?;
        Ok(Self { token, set })
    }

    /// The hidden form field.
    pub fn field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\"{}>",
            attr("value", &self.token)
        )
    }
}

/// What each page of this part needs: who is viewing, and the CSRF token of its forms.
#[derive(Debug, Clone)]
pub(crate) struct Visit {
    /// Who is viewing.
    pub viewer: Viewer,
    /// The token of the page's forms.
    pub form: FormToken,
}

impl Visit {
    /// The viewer and form token of a request.
    pub async fn of(state: &AppState, headers: &HeaderMap) -> Result<Self, AppError> {
        Ok(Self {
            viewer: viewer(state, headers).await?,
            form: FormToken::of(state, headers)?,
        })
    }

    /// A mall page answer: `main` in the layout, `data-page` = `name`, with the CSRF cookie if
    /// new.
    pub fn respond(
        &self,
        state: &AppState,
        status: StatusCode,
        title: &str,
        name: &str,
        main: &str,
    ) -> Response {
        self.respond_searched(state, status, title, name, "", main)
    }

    /// As [`Visit::respond`], with `search` in the search box of the bar.
    pub fn respond_searched(
        &self,
        state: &AppState,
        status: StatusCode,
        title: &str,
        name: &str,
        search: &str,
        main: &str,
    ) -> Response {
        let html = page(
            state,
            &self.viewer,
            &MallPage {
                title,
                body_attrs: attr("data-page", name),
                scripts: &[],
                search,
                csrf: &self.form.token,
            },
            main,
        );
        html_response(status, self.form.set.clone(), html)
    }
}

/// A paragraph with an error for a form (escaped), or nothing.
pub(crate) fn form_error(message: Option<&str>) -> String {
    message.map_or_else(String::new, |m| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m))
    })
}

/// What a malformed or oversized form gets.
pub(crate) fn bad_form(_: FormRejection) -> AppError {
    AppError::BadRequest("That form was not complete or too large. Please try again.".into())
}

/// `next` when it is a safe place to go after signing in: a path of this site under `/mall`
/// (`/mall` or `/mall/...`), at most [`MAX_NEXT_LEN`] bytes, of plain URL characters, without
/// `//`, `..` or an encoded dot (which browsers would resolve out of `/mall`). Anything else,
/// an absolute URL above all, is not followed.
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.len() <= MAX_NEXT_LEN
        && (next == "/mall" || next.starts_with("/mall/") || next.starts_with("/mall?"))
        && next
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/?=&%+".contains(&b))
        && !next.contains("//")
        && !next.contains("..")
        && !next.to_ascii_lowercase().contains("%2e");
    ok.then_some(next)
}

/// `text` percent-encoded for a query value (unreserved characters and `/` stay).
pub(crate) fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `?next=...` for a link, or nothing when `next` is empty.
pub(crate) fn next_query(next: &str) -> String {
    if next.is_empty() {
        String::new()
    } else {
        format!("?next={}", query_value(next))
    }
}

/// The hidden `next` field of a form.
fn next_field(next: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"next\"{}>",
        attr("value", next)
    )
}

/// The `next` of a query string: the safe one, or empty.
#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    /// Where to go after signing in.
    #[serde(default)]
    next: String,
}

impl NextQuery {
    /// The safe `next` of a query (empty when missing, malformed or unsafe).
    pub fn of(query: Result<Query<NextQuery>, QueryRejection>) -> String {
        query
            .ok()
            .and_then(|Query(q)| safe_next(&q.next).map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Signs `member` in on this browser: ends the request's old session, starts one for the
/// member's login (their address), records the sign-in. Returns the `Set-Cookie` value.
async fn sign_member_in(
    state: &AppState,
    headers: &HeaderMap,
    member: &MallMember,
    ip: Option<IpAddr>,
) -> Result<String, AppError> {
    end_session(state, headers).await?;
    let cookie = start_session(state, &member.address).await?;
    let now = state.clock.now_ms();
    state
        .store_call(state.store.member_signed_in(member.id, now))
        .await?;
    state.metrics.signin("mall");
    let ip_text = ip.map(|ip| ip.to_string());
    let record = state
        .store
        .record_login(&member.address, ip_text.as_deref(), None, now / 1000);
    if let Err(e) = state.store_call(record).await {
        warn!(member = member.id, cause = %e, "sign-in not recorded in the first table");
    }
    info!(member = member.id, "member signed in");
    Ok(cookie)
}

/// The page for a confirm or reset link that is unknown, used or expired (one answer for all).
fn dead_link(state: &AppState, visit: &Visit) -> Response {
    let main = format!(
        "<section class=\"card stack narrow\"><h1>This link no longer works</h1>\
         <p>Links we mail work once, for {ttl} minutes.</p>\
         <p><a class=\"button primary\" href=\"/mall/signin\">Sign in</a> \
         <a class=\"button\" href=\"/mall/reset\">Get a new password link</a></p></section>",
        ttl = state.config.mall.token_ttl_minutes,
    );
    visit.respond(
        state,
        StatusCode::NOT_FOUND,
        "Link expired",
        "mall-dead-link",
        &main,
    )
}

/// A "check your mail" page with `text` (already escaped markup).
fn check_mail(state: &AppState, visit: &Visit, text: &str) -> Response {
    let main = format!(
        "<section class=\"card stack narrow\"><h1>Check your mail</h1>\
         <p id=\"status\" role=\"status\">{text}</p>\
         <p class=\"muted\">Nothing came? Look in the spam folder, or try again in a few \
         minutes.</p></section>"
    );
    visit.respond(
        state,
        StatusCode::OK,
        "Check your mail",
        "mall-check-mail",
        &main,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_the_mall_are_followed() {
        for ok in [
            "/mall",
            "/mall/ad/5",
            "/mall/ad/5?v=abc",
            "/mall/search?q=tea+pot",
        ] {
            assert_eq!(safe_next(ok), Some(ok));
        }
        for bad in [
            "",
            "https://evil.example/mall/",
            "//evil.example/mall/",
            "/mall//evil.example",
            "/mallory",
            "/me",
            "/mall/../signin",
            "/mall/%2e%2e/signin",
            "/mall/\\evil",
            "/mall/x\r\nLocation: x",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(
            safe_next(&format!("/mall/{}", "a".repeat(MAX_NEXT_LEN))),
            None
        );
    }

    #[test]
    fn next_is_carried_percent_encoded() {
        assert_eq!(next_query(""), "");
        assert_eq!(
            next_query("/mall/ad/5?v=a&b"),
            "?next=/mall/ad/5%3Fv%3Da%26b"
        );
    }
}
