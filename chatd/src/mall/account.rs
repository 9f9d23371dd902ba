//! Mall members (S203/S205): sign up with an address, a name and a password; confirm the address
//! by a mailed link; sign in and out; reset a forgotten password by mail; the profile page
//! (name, promotion opt-in, my questions, delete my account and my data).
//!
//! | route | what |
//! |---|---|
//! | `GET/POST /mall/signup` | the sign-up form; the post mails a confirm link |
//! | `GET/POST /mall/confirm/{token}` | a page whose button confirms the address (the post uses the link once), signs in and opens `next` |
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
//! each), mails per account (`[mall] mails_per_hour`, counted in the store), failed password
//! checks per client network and per account (`[mall] signins_per_hour`). After signing in,
//! only a path under `/mall` is followed ([`safe_next`]): never another site.
//!
//! Signing up again with the address of an unconfirmed account replaces its name, opt-in and
//! password and mails a new link: the last sign-up wins, so that whoever owns the address can
//! always confirm an account with a password they know. Past `[mall] mails_per_hour` such a
//! sign-up changes nothing. Signing up with the address of a confirmed account changes nothing
//! either; its owner gets a mail saying so, with a link to set a new password.

mod mails;
mod password;
mod profile;
mod reset;

use std::{net::IpAddr, sync::Arc};

use axum::{
    extract::{
        rejection::{FormRejection, PathRejection, QueryRejection},
        DefaultBodyLimit, Path, Query, State,
    },
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::{get, post},
    Extension, Form, Router,
};
use chmail::store::{
    mall::{check_nonempty, MallMember, NewMember, TokenPurpose, MAX_PERSON_NAME_LEN},
    MAX_ADDRESS_LEN,
};
use serde::Deserialize;
use tracing::{debug, info, warn};

pub use mails::{KIND_CONFIRM, KIND_EXISTS, KIND_RESET};
pub use password::{
    check_new_password, hash_password, verify_password, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS,
};

use super::page::{page, viewer, MallPage, Viewer};
use crate::{
    auth::{end_session, hash_token, is_token, start_session},
    client_ip::ClientIp,
    error::AppError,
    limit::{network, RateLimiter},
    state::AppState,
    web::{
        csrf,
        html::{attr, escape},
        html_response, see_other,
    },
};

/// Largest body of a member form: an address, a name and a password, percent-encoded.
pub const MAX_ACCOUNT_FORM_BYTES: usize = 8 * 1024;

/// Longest `next` path followed after signing in.
pub const MAX_NEXT_LEN: usize = 512;

/// The window of the per-network and per-account limits of this part, in ms.
const WINDOW_MS: i64 = 60 * 60 * 1000;

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

/// The limits of the member forms, counted in this process (each chatd node counts on its own).
#[derive(Debug)]
pub struct AccountLimits {
    /// Sign-ups per client network.
    signups: RateLimiter<IpAddr>,
    /// Resend and reset requests per client network.
    mail_requests: RateLimiter<IpAddr>,
    /// Failed password checks per client network.
    failures_by_network: RateLimiter<IpAddr>,
    /// Failed password checks per account (the address typed).
    failures_by_account: RateLimiter<String>,
}

impl AccountLimits {
    /// The limits of `[mall]`.
    pub fn new(mall: &chmail::config::MallConfig) -> Self {
        Self {
            signups: RateLimiter::new(mall.signups_per_hour, WINDOW_MS),
            mail_requests: RateLimiter::new(mall.signups_per_hour, WINDOW_MS),
            failures_by_network: RateLimiter::new(mall.signins_per_hour, WINDOW_MS),
            failures_by_account: RateLimiter::new(mall.signins_per_hour, WINDOW_MS),
        }
    }

    /// Whether `account` may try a password now from `ip` (neither has too many failures).
    fn may_try(&self, ip: Option<IpAddr>, account: &str, now_ms: i64) -> bool {
        self.failures_by_network.would_allow(&net(ip), now_ms)
            && self
                .failures_by_account
                .would_allow(&account.to_owned(), now_ms)
    }

    /// Counts a failed password check of `account` from `ip`.
    fn failed(&self, ip: Option<IpAddr>, account: &str, now_ms: i64) {
        self.failures_by_network.allow(&net(ip), now_ms);
        self.failures_by_account.allow(&account.to_owned(), now_ms);
    }
}

/// The counter key of a client: its network, or one shared key when its address is unknown.
fn net(ip: Option<IpAddr>) -> IpAddr {
    ip.map_or(IpAddr::from([0u8; 4]), network)
}

/// The limits of this router, made from the config on first use (the routes are built before
/// the state is at hand, so the router's extension holds an empty cell).
fn limits(state: &AppState, holder: &LimitsHolder) -> Arc<AccountLimits> {
    holder
        .get_or_init(|| Arc::new(AccountLimits::new(&state.config.mall)))
        .clone()
}

/// Where the limits live: one per router, made from the config on first use.
type LimitsHolder = std::sync::OnceLock<Arc<AccountLimits>>;

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

/// The address typed into a form, checked and lowercased.
///
/// # Errors
/// The sentence to show for a missing or malformed address.
pub fn check_address(typed: &str) -> Result<String, &'static str> {
    let address = typed.trim();
    if address.is_empty() {
        return Err("Please enter your e-mail address.");
    }
    if address.len() > MAX_ADDRESS_LEN {
        return Err("That e-mail address is too long.");
    }
    let malformed = "That does not look like an e-mail address (name@example.com).";
    let (local, domain) = address.rsplit_once('@').ok_or(malformed)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\\\"@".contains(c));
    let domain_ok = domain.contains('.')
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if !local_ok || !domain_ok {
        return Err(malformed);
    }
    Ok(address.to_lowercase())
}

/// A display name typed into a form, trimmed.
///
/// # Errors
/// The sentence to show for a missing, too long or unprintable name.
pub fn check_name(typed: &str) -> Result<String, String> {
    let name = typed.trim();
    if name.chars().any(char::is_control) {
        return Err("Your name cannot contain line breaks or control characters.".into());
    }
    if check_nonempty("name", name, MAX_PERSON_NAME_LEN).is_err() {
        return Err(if name.is_empty() {
            "Please enter your name.".into()
        } else {
            format!("Your name is too long: at most {MAX_PERSON_NAME_LEN} bytes.")
        });
    }
    Ok(name.to_owned())
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

// --- sign-up --------------------------------------------------------------------------------

/// The sign-up form as posted.
#[derive(Debug, Default, Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    /// The checkbox: present (any value) when ticked.
    #[serde(default)]
    promotions: Option<String>,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

/// The sign-up form with `values` (escaped; never the password) and `error`.
fn signup_form(
    state: &AppState,
    form: &FormToken,
    values: &SignupForm,
    next: &str,
    error: Option<&str>,
) -> String {
    let promotions = if values.promotions.is_some() {
        " checked"
    } else {
        ""
    };
    format!(
        "<section class=\"card stack narrow\"><h1>Join {mall}</h1>\
         <p>Members ask shops about their products and chat with them.</p>{error}\
         <form method=\"post\" action=\"/mall/signup\" class=\"stack\" id=\"signup-form\">\
         <label for=\"address\">Your e-mail address</label>\
         <input type=\"email\" id=\"address\" name=\"address\" required maxlength=\"{max_address}\" \
         autocomplete=\"email\" autocapitalize=\"off\" spellcheck=\"false\"{address}>\
         <label for=\"name\">Your name</label>\
         <input type=\"text\" id=\"name\" name=\"name\" required maxlength=\"{max_name}\" \
         autocomplete=\"name\"{name}>\
         <label for=\"password\">A password ({min} to {max} characters)</label>\
         <input type=\"password\" id=\"password\" name=\"password\" required minlength=\"{min}\" \
         maxlength=\"{max}\" autocomplete=\"new-password\">\
         <label class=\"check\"><input type=\"checkbox\" id=\"promotions\" name=\"promotions\" \
         value=\"yes\"{promotions}> Mail me offers from the shops (you can stop them any time)</label>\
         {next}{csrf}<button type=\"submit\" class=\"primary\" id=\"signup\">Join</button></form>\
         <p class=\"muted\">Already a member? <a{signin}>Sign in</a>.</p></section>",
        mall = escape(&state.config.mall.name),
        error = form_error(error),
        max_address = MAX_ADDRESS_LEN,
        address = attr("value", values.address.trim()),
        max_name = MAX_PERSON_NAME_LEN,
        name = attr("value", &values.name),
        min = MIN_PASSWORD_CHARS,
        max = MAX_PASSWORD_CHARS,
        next = next_field(next),
        csrf = form.field(),
        signin = attr("href", &format!("/mall/signin{}", next_query(next))),
    )
}

/// `GET /mall/signup`.
pub async fn signup_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<NextQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let visit = Visit::of(&state, &headers).await?;
    let next = NextQuery::of(query);
    let main = signup_form(&state, &visit.form, &SignupForm::default(), &next, None);
    Ok(visit.respond(&state, StatusCode::OK, "Join", "mall-signup", &main))
}

/// `POST /mall/signup`: checks the input (the form comes back with a message and nothing
/// changes when it is wrong), hashes the password, answers "check your mail", and then creates
/// the account and mails the link (see the module doc for an address already taken).
pub async fn sign_up(
    State(state): State<AppState>,
    Extension(holder): Extension<Arc<LimitsHolder>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    posted: Result<Form<SignupForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(posted) = posted.map_err(bad_form)?;
    csrf::verify(&state, &headers, &posted.csrf)?;
    let visit = Visit::of(&state, &headers).await?;
    let next = safe_next(&posted.next).unwrap_or_default().to_owned();
    let checked = check_address(&posted.address)
        .map_err(str::to_owned)
        .and_then(|address| Ok((address, check_name(&posted.name)?)))
        .and_then(|(address, name)| {
            check_new_password(&posted.password)?;
            Ok((address, name))
        });
    let (address, name) = match checked {
        Ok(ok) => ok,
        Err(message) => {
            let main = signup_form(&state, &visit.form, &posted, &next, Some(&message));
            return Ok(visit.respond(
                &state,
                StatusCode::BAD_REQUEST,
                "Join",
                "mall-signup",
                &main,
            ));
        }
    };
    let limits = limits(&state, &holder);
    if !limits.signups.allow(&net(ip), state.clock.now_ms()) {
        warn!(ip = ?ip, "sign-ups over the per-network limit");
        let main = signup_form(
            &state,
            &visit.form,
            &posted,
            &next,
            Some("Too many sign-ups from your network. Please try again in an hour."),
        );
        return Ok(visit.respond(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            "Join",
            "mall-signup",
            &main,
        ));
    }
    let password_hash = hash_password(&posted.password).await?;
    let member = NewMember {
        address: address.clone(),
        name,
        password_hash,
        promotions: posted.promotions.is_some(),
        created_ms: state.clock.now_ms(),
    };
    tokio::spawn(register(state.clone(), member, next));
    let text = format!(
        "We mailed a link to <strong class=\"address\">{}</strong>. Open it to confirm your \
         address; it works for {} minutes.",
        escape(&address),
        state.config.mall.token_ttl_minutes
    );
    Ok(check_mail(&state, &visit, &text))
}

/// The part of a sign-up that runs after the answer: create the account and mail the confirm
/// link; for a taken address, the module doc's rules. Failures are logged.
async fn register(state: AppState, new: NewMember, next: String) {
    let outcome = async {
        if let Some(member) = state.store_call(state.store.create_member(&new)).await? {
            info!(member = member.id, "member signed up");
            return mails::send_confirm(&state, &member, &next).await;
        }
        let existing = state
            .store_call(state.store.member_by_address(&new.address))
            .await?;
        let Some(member) = existing else {
            return Ok(false);
        };
        if member.confirmed_ms.is_some() {
            debug!(member = member.id, "sign-up with the address of an account");
            return mails::send_exists(&state, &member).await;
        }
        // The limit first: past it nothing changes, not even the password.
        let Some(token) = mails::issue(&state, &member, TokenPurpose::Confirm).await? else {
            return Ok(false);
        };
        let update = state
            .store
            .set_member_password(member.id, &new.password_hash);
        state.store_call(update).await?;
        let update = state
            .store
            .update_member(member.id, &new.name, new.promotions);
        state.store_call(update).await?;
        let member = MallMember {
            name: new.name.clone(),
            promotions: new.promotions,
            ..member
        };
        mails::mail_confirm(&state, &member, &token, &next).await?;
        Ok(true)
    };
    match outcome.await {
        Ok(true) => {}
        Ok(false) => debug!("sign-up mail not sent (limit)"),
        Err(e) => warn!(cause = %e, "sign-up not completed"),
    }
}

// --- confirm --------------------------------------------------------------------------------

/// A form that carries the CSRF token and where to go next.
#[derive(Debug, Default, Deserialize)]
pub struct NextForm {
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

/// `GET /mall/confirm/{token}`: a page whose button confirms (mail scanners fetch links; only
/// the post uses the token). Every well-formed token gets the same page.
pub async fn confirm_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    token: Result<Path<String>, PathRejection>,
    query: Result<Query<NextQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let visit = Visit::of(&state, &headers).await?;
    let token = token.map(|Path(t)| t).unwrap_or_default();
    if !is_token(&token) {
        return Ok(dead_link(&state, &visit));
    }
    let next = NextQuery::of(query);
    let main = format!(
        "<section class=\"card stack narrow\"><h1>Confirm your address</h1>\
         <p>Press the button to confirm your address and sign in.</p>\
         <form method=\"post\"{action} class=\"stack\">{next}{csrf}\
         <button type=\"submit\" id=\"confirm\" class=\"primary\">Confirm and sign in</button>\
         </form></section>",
        action = attr("action", &format!("/mall/confirm/{token}")),
        next = next_field(&next),
        csrf = visit.form.field(),
    );
    Ok(visit.respond(
        &state,
        StatusCode::OK,
        "Confirm your address",
        "mall-confirm",
        &main,
    ))
}

/// `POST /mall/confirm/{token}`: uses the link once, confirms the account, signs in and opens
/// `next` (or the profile).
pub async fn confirm(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    token: Result<Path<String>, PathRejection>,
    posted: Result<Form<NextForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(posted) = posted.map_err(bad_form)?;
    csrf::verify(&state, &headers, &posted.csrf)?;
    let token = token.map(|Path(t)| t).unwrap_or_default();
    let used = if is_token(&token) {
        let now = state.clock.now_ms();
        let token_hash = hash_token(&token);
        let call = state
            .store
            .use_member_token(&token_hash, TokenPurpose::Confirm, now);
        state.store_call(call).await?
    } else {
        None
    };
    let Some(member) = used else {
        let visit = Visit::of(&state, &headers).await?;
        return Ok(dead_link(&state, &visit));
    };
    info!(member = member.id, "member confirmed the address");
    let cookie = sign_member_in(&state, &headers, &member, ip).await?;
    let target = safe_next(&posted.next).unwrap_or("/mall/account?done=welcome");
    Ok(see_other(target, [cookie]))
}

// --- sign-in --------------------------------------------------------------------------------

/// The sign-in form as posted.
#[derive(Debug, Default, Deserialize)]
pub struct SigninForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

/// The sign-in form with the typed address, an error and, for an unconfirmed account, the
/// button that mails a new confirm link.
fn signin_form(
    form: &FormToken,
    address: &str,
    next: &str,
    error: Option<&str>,
    offer_resend: bool,
) -> String {
    let resend = if offer_resend {
        format!(
            "<form method=\"post\" action=\"/mall/resend\" class=\"stack\" id=\"resend-form\">\
             <input type=\"hidden\" name=\"address\"{address}>{next}{csrf}\
             <button type=\"submit\" id=\"resend\">Mail me a new confirm link</button></form>",
            address = attr("value", address),
            next = next_field(next),
            csrf = form.field(),
        )
    } else {
        String::new()
    };
    format!(
        "<section class=\"card stack narrow\"><h1>Sign in</h1>{error}{resend}\
         <form method=\"post\" action=\"/mall/signin\" class=\"stack\" id=\"signin-form\">\
         <label for=\"address\">Your e-mail address</label>\
         <input type=\"email\" id=\"address\" name=\"address\" required maxlength=\"{max_address}\" \
         autocomplete=\"username\" autocapitalize=\"off\" spellcheck=\"false\"{value}>\
         <label for=\"password\">Your password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" required maxlength=\"{max}\" \
         autocomplete=\"current-password\">{next}{csrf}\
         <button type=\"submit\" class=\"primary\" id=\"signin\">Sign in</button></form>\
         <p class=\"muted\"><a href=\"/mall/reset\">Forgot your password?</a> \
         New here? <a{signup}>Join</a>.</p>\
         <p class=\"muted\">A shop's host? <a href=\"/signin\">Sign in with a mailed link</a>.</p>\
         </section>",
        error = form_error(error),
        max_address = MAX_ADDRESS_LEN,
        value = attr("value", address.trim()),
        max = MAX_PASSWORD_CHARS,
        next = next_field(next),
        csrf = form.field(),
        signup = attr("href", &format!("/mall/signup{}", next_query(next))),
    )
}

/// `GET /mall/signin`.
pub async fn signin_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<NextQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let visit = Visit::of(&state, &headers).await?;
    let next = NextQuery::of(query);
    let mut main = signin_form(&visit.form, "", &next, None, false);
    if let Some(member) = &visit.viewer.member {
        main = format!(
            "<p class=\"notice\">You are signed in as <strong class=\"address\">{}</strong>. \
             <a href=\"/mall/account\">Your account</a>.</p>{main}",
            escape(&member.address)
        );
    }
    Ok(visit.respond(&state, StatusCode::OK, "Sign in", "mall-signin", &main))
}

/// `POST /mall/signin`: checks the password (failures count per network and per account),
/// refuses an unconfirmed account with a clear message and a new-link button, and on success
/// signs in and opens `next` (or the profile).
pub async fn sign_in(
    State(state): State<AppState>,
    Extension(holder): Extension<Arc<LimitsHolder>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    posted: Result<Form<SigninForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(posted) = posted.map_err(bad_form)?;
    csrf::verify(&state, &headers, &posted.csrf)?;
    let visit = Visit::of(&state, &headers).await?;
    let next = safe_next(&posted.next).unwrap_or_default().to_owned();
    let again = |status: StatusCode, message: &str, resend: bool| {
        let main = signin_form(&visit.form, &posted.address, &next, Some(message), resend);
        visit.respond(&state, status, "Sign in", "mall-signin", &main)
    };
    let address = posted.address.trim().to_lowercase();
    if address.is_empty() || posted.password.is_empty() {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "Please enter your e-mail address and your password.",
            false,
        ));
    }
    let limits = limits(&state, &holder);
    let now = state.clock.now_ms();
    if !limits.may_try(ip, &address, now) {
        warn!(ip = ?ip, "member sign-ins over the failure limit");
        return Ok(again(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins. Please wait an hour, or set a new password.",
            false,
        ));
    }
    let member = if address.len() <= MAX_ADDRESS_LEN
        && posted.password.chars().count() <= MAX_PASSWORD_CHARS
    {
        state
            .store_call(state.store.member_by_address(&address))
            .await?
    } else {
        None
    };
    let matched = match &member {
        Some(m) => verify_password(&posted.password, &m.password_hash).await?,
        None => {
            password::verify_nothing(&posted.password).await?;
            false
        }
    };
    let Some(member) = member.filter(|_| matched) else {
        limits.failed(ip, &address, now);
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "The e-mail address or the password is wrong.",
            false,
        ));
    };
    if member.confirmed_ms.is_none() {
        return Ok(again(
            StatusCode::FORBIDDEN,
            "Please confirm your address first: open the link we mailed you when you signed up.",
            true,
        ));
    }
    let cookie = sign_member_in(&state, &headers, &member, ip).await?;
    let target = safe_next(&posted.next).unwrap_or("/mall/account");
    Ok(see_other(target, [cookie]))
}

/// The resend form as posted.
#[derive(Debug, Default, Deserialize)]
pub struct AddressForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /mall/resend`: a new confirm link for an unconfirmed account; the same answer for
/// every address.
pub async fn resend(
    State(state): State<AppState>,
    Extension(holder): Extension<Arc<LimitsHolder>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    posted: Result<Form<AddressForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(posted) = posted.map_err(bad_form)?;
    csrf::verify(&state, &headers, &posted.csrf)?;
    let address = check_address(&posted.address).map_err(|m| AppError::BadRequest(m.into()))?;
    if !limits(&state, &holder)
        .mail_requests
        .allow(&net(ip), state.clock.now_ms())
    {
        warn!(ip = ?ip, "confirm link requests over the per-network limit");
        return Err(AppError::TooMany);
    }
    let next = safe_next(&posted.next).unwrap_or_default().to_owned();
    let task_state = state.clone();
    tokio::spawn(async move {
        let state = task_state;
        let member = state
            .store_call(state.store.member_by_address(&address))
            .await;
        let sent = match member {
            Ok(Some(m)) if m.confirmed_ms.is_none() => mails::send_confirm(&state, &m, &next).await,
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            warn!(cause = %e, "confirm link not resent");
        }
    });
    let visit = Visit::of(&state, &headers).await?;
    let text = format!(
        "If this address has an account waiting for confirmation, a new link is on its way. \
         It works for {} minutes.",
        state.config.mall.token_ttl_minutes
    );
    Ok(check_mail(&state, &visit, &text))
}

/// A form that carries only the CSRF token.
#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /mall/signout`: ends the session and deletes its cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(posted) = posted.map_err(bad_form)?;
    csrf::verify(&state, &headers, &posted.csrf)?;
    let cookie = end_session(&state, &headers).await?;
    Ok(see_other("/mall", [cookie]))
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
    fn addresses_are_checked_and_lowercased() {
        assert_eq!(
            check_address(" Ana.Lima@Example.COM "),
            Ok("ana.lima@example.com".into())
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a b@example.com",
            "ana@exa mple.com",
            "<ana@example.com>",
            "ana@-example.com",
            "ana@example..com",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
        assert!(check_address(&format!("{}@example.com", "a".repeat(320))).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(check_name("  Ana Lima "), Ok("Ana Lima".into()));
        assert!(check_name("   ").is_err());
        assert!(check_name("Ana\nBcc: x").is_err());
        assert!(check_name(&"a".repeat(MAX_PERSON_NAME_LEN + 1)).is_err());
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
