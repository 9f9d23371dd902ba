//! The mails of the member accounts: the confirm link of a sign-up, the reset link of a
//! forgotten password, and the note to someone who signs up again with the address of an account
//! they already have. Each carries a single-use token of [`TokenPurpose`] (the store keeps only
//! its SHA-256), valid for `[mall] token_ttl_minutes`; at most `[mall] mails_per_hour` tokens of
//! one purpose go to one account an hour ([`MallStore::count_member_tokens`]). They are queued in
//! the outbox like every other mail of chatd.
//!
//! [`MallStore::count_member_tokens`]: chmail::store::mall::MallStore::count_member_tokens

use chmail::store::mall::{MallMember, TokenPurpose};
use tracing::{info, warn};

use crate::{
    auth::{hash_token, new_token},
    clock::ms,
    error::AppError,
    mail::{message_id, OutgoingMail},
    state::AppState,
    web::html::escape,
};

/// The outbox kind of a confirm mail.
pub const KIND_CONFIRM: &str = "mall-confirm";
/// The outbox kind of a reset mail.
pub const KIND_RESET: &str = "mall-reset";
/// The outbox kind of the note that an address already has an account (it holds a reset link).
pub const KIND_EXISTS: &str = "mall-account-exists";

/// The window of `[mall] mails_per_hour`, in ms.
const MAIL_WINDOW_MS: i64 = 60 * 60 * 1000;

/// Held while a token is counted and recorded, so that a burst of requests for one account
/// cannot all pass the count before any is recorded (in this process; such mails are rare, so
/// one lock for all accounts costs nothing).
static ISSUING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Mails `member` a link that confirms their address and signs them in, then opens `next` (a
/// safe local path, or empty for the default). Returns false when the account got
/// `[mall] mails_per_hour` confirm links in the last hour (none is sent then).
///
/// # Errors
/// When no token can be made or the store fails.
pub async fn send_confirm(
    state: &AppState,
    member: &MallMember,
    next: &str,
) -> Result<bool, AppError> {
    let Some(token) = issue(state, member, TokenPurpose::Confirm).await? else {
        return Ok(false);
    };
    mail_confirm(state, member, &token, next).await?;
    Ok(true)
}

/// Mails `member` the confirm link of `token` (made by [`issue`]), which then opens `next`.
///
/// # Errors
/// When the store fails.
pub async fn mail_confirm(
    state: &AppState,
    member: &MallMember,
    token: &str,
    next: &str,
) -> Result<(), AppError> {
    let mut url = format!("{}/mall/confirm/{token}", state.base_url());
    if !next.is_empty() {
        url.push_str("?next=");
        url.push_str(&super::query_value(next));
    }
    let mall = &state.config.mall.name;
    let ttl = state.config.mall.token_ttl_minutes;
    let mail = compose(
        state,
        KIND_CONFIRM,
        member,
        token,
        &format!("Confirm your address for {mall}"),
        &format!(
            "Welcome to {mall}, {name}!\n\nPlease confirm your address with this link; it also \
             signs you in. It works once, for {ttl} minutes:\n\n{url}\n\nIf you did not sign up, \
             ignore this mail: without the link the account stays unconfirmed.",
            name = member.name,
        ),
        &format!(
            "<p>Welcome to {mall}, {name}!</p><p>Please confirm your address with this button; \
             it also signs you in.</p>{button}<p style=\"color:#5f6b7a;font-size:0.9em\">It works \
             once, for {ttl} minutes. If you did not sign up, ignore this mail: without the link \
             the account stays unconfirmed.</p>",
            mall = escape(mall),
            name = escape(&member.name),
            button = button(&url, "Confirm my address"),
        ),
    );
    queue(state, &mail, KIND_CONFIRM, member).await
}

/// Mails `member` a link to set a new password. False when over `[mall] mails_per_hour`.
///
/// # Errors
/// When no token can be made or the store fails.
pub async fn send_reset(state: &AppState, member: &MallMember) -> Result<bool, AppError> {
    let Some(token) = issue(state, member, TokenPurpose::Reset).await? else {
        return Ok(false);
    };
    let url = format!("{}/mall/reset/{token}", state.base_url());
    let mall = &state.config.mall.name;
    let ttl = state.config.mall.token_ttl_minutes;
    let mail = compose(
        state,
        KIND_RESET,
        member,
        &token,
        &format!("Set a new password for {mall}"),
        &format!(
            "Hello {name},\n\nsomeone (we hope you) asked to set a new password for your account \
             at {mall}. Choose one here; the link works once, for {ttl} minutes:\n\n{url}\n\n\
             If it was not you, ignore this mail: your password stays as it is.",
            name = member.name,
        ),
        &format!(
            "<p>Hello {name},</p><p>someone (we hope you) asked to set a new password for your \
             account at {mall}.</p>{button}<p style=\"color:#5f6b7a;font-size:0.9em\">The link \
             works once, for {ttl} minutes. If it was not you, ignore this mail: your password \
             stays as it is.</p>",
            mall = escape(mall),
            name = escape(&member.name),
            button = button(&url, "Set a new password"),
        ),
    );
    queue(state, &mail, KIND_RESET, member).await?;
    Ok(true)
}

/// Tells `member` that someone signed up with their address, which already has an account: a
/// link to sign in and a reset link for a forgotten password (counted as a reset mail). False
/// when over `[mall] mails_per_hour`.
///
/// # Errors
/// When no token can be made or the store fails.
pub async fn send_exists(state: &AppState, member: &MallMember) -> Result<bool, AppError> {
    let Some(token) = issue(state, member, TokenPurpose::Reset).await? else {
        return Ok(false);
    };
    let signin = format!("{}/mall/signin", state.base_url());
    let reset = format!("{}/mall/reset/{token}", state.base_url());
    let mall = &state.config.mall.name;
    let ttl = state.config.mall.token_ttl_minutes;
    let mail = compose(
        state,
        KIND_EXISTS,
        member,
        &token,
        &format!("You already have an account at {mall}"),
        &format!(
            "Hello {name},\n\nsomeone (we hope you) tried to sign up at {mall} with this \
             address, which already has an account. Sign in here:\n\n{signin}\n\nForgot your \
             password? Set a new one with this link (it works once, for {ttl} minutes):\n\n\
             {reset}\n\nIf it was not you, ignore this mail: nothing has changed.",
            name = member.name,
        ),
        &format!(
            "<p>Hello {name},</p><p>someone (we hope you) tried to sign up at {mall} with this \
             address, which already has an account.</p>{button}<p>Forgot your password? \
             <a href=\"{reset}\">Set a new one</a> (the link works once, for {ttl} minutes).</p>\
             <p style=\"color:#5f6b7a;font-size:0.9em\">If it was not you, ignore this mail: \
             nothing has changed.</p>",
            mall = escape(mall),
            name = escape(&member.name),
            button = button(&signin, "Sign in"),
            reset = escape(&reset),
        ),
    );
    queue(state, &mail, KIND_EXISTS, member).await?;
    Ok(true)
}

/// A fresh token of `purpose` for `member`, recorded (hashed) in the store; `None` when the
/// account got `[mall] mails_per_hour` of them in the last hour.
///
/// # Errors
/// When no token can be made or the store fails.
pub async fn issue(
    state: &AppState,
    member: &MallMember,
    purpose: TokenPurpose,
) -> Result<Option<String>, AppError> {
    let _issuing = ISSUING.lock().await;
    let now = state.clock.now_ms();
    let since = now.saturating_sub(MAIL_WINDOW_MS);
    let sent = state
        .store_call(state.store.count_member_tokens(member.id, purpose, since))
        .await?;
    if sent >= state.config.mall.mails_per_hour {
        warn!(member = member.id, %purpose, sent, "member mails over the per-account limit; none sent");
        return Ok(None);
    }
    let token = new_token()?;
    let expires = now.saturating_add(ms(state.config.mall.token_ttl()));
    let hash = hash_token(&token);
    let create = state
        .store
        .create_member_token(&hash, member.id, purpose, now, expires);
    state.store_call(create).await?;
    Ok(Some(token))
}

/// The mail to `member` with a text and an HTML part; its Message-ID is made from the token.
fn compose(
    state: &AppState,
    kind: &str,
    member: &MallMember,
    token: &str,
    subject: &str,
    text: &str,
    html: &str,
) -> OutgoingMail {
    let mall = &state.config.mall.name;
    OutgoingMail {
        to: member.address.clone(),
        subject: subject.to_owned(),
        text: format!("{text}\n\n-- \n{mall}\n"),
        html: Some(format!(
            "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5;\
             color:#1d2330\">{html}<p style=\"color:#5f6b7a;font-size:0.85em\">{m}</p>\
             </body></html>",
            m = escape(mall)
        )),
        message_id: message_id(&state.config, kind, &[&member.address, token]),
        headers: Vec::new(),
    }
}

/// A button-like link for a mail's HTML part.
fn button(url: &str, label: &str) -> String {
    format!(
        "<p><a href=\"{u}\" style=\"display:inline-block;background:#2563eb;color:#fff;\
         padding:0.6em 1.2em;border-radius:999px;text-decoration:none;font-weight:600\">{l}</a></p>",
        u = escape(url),
        l = escape(label),
    )
}

async fn queue(
    state: &AppState,
    mail: &OutgoingMail,
    kind: &str,
    member: &MallMember,
) -> Result<(), AppError> {
    crate::outbox::queue(state, mail, kind, None).await?;
    info!(member = member.id, kind, "member mail queued");
    Ok(())
}
