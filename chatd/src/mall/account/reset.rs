//! A forgotten password: `GET/POST /mall/reset` mails a link to set a new one (the same answer
//! whether or not the address has an account; an unconfirmed account gets its confirm link
//! instead), `GET /mall/reset/{token}` shows the form, `POST /mall/reset/{token}` uses the link
//! once, sets the password, ends every session of the member and signs this browser in.

use std::sync::Arc;

use axum::{
    extract::{
        rejection::{FormRejection, PathRejection},
        Path, State,
    },
    http::{HeaderMap, StatusCode},
    response::Response,
    Extension, Form,
};
use chmail::store::{mall::TokenPurpose, MAX_ADDRESS_LEN};
use serde::Deserialize;
use tracing::{debug, info, warn};

use super::{
    bad_form, check_address, check_mail, check_new_password, dead_link, form_error, hash_password,
    limits::{limits, net, LimitsHolder},
    mails, sign_member_in, FormToken, Visit, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS,
};
use crate::{
    auth::{hash_token, is_token},
    client_ip::ClientIp,
    error::AppError,
    state::AppState,
    web::{
        csrf,
        html::{attr, escape},
        see_other,
    },
};

/// The request form as posted.
#[derive(Debug, Default, Deserialize)]
pub struct AskForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    csrf: String,
}

/// The form that asks for a link.
fn ask_form(form: &FormToken, address: &str, error: Option<&str>) -> String {
    format!(
        "<section class=\"card stack narrow\"><h1>Forgot your password?</h1>\
         <p>We mail you a link to set a new one.</p>{error}\
         <form method=\"post\" action=\"/mall/reset\" class=\"stack\" id=\"reset-form\">\
         <label for=\"address\">Your e-mail address</label>\
         <input type=\"email\" id=\"address\" name=\"address\" required maxlength=\"{max}\" \
         autocomplete=\"email\" autocapitalize=\"off\" spellcheck=\"false\"{value}>{csrf}\
         <button type=\"submit\" class=\"primary\" id=\"reset\">Mail me a link</button></form>\
         </section>",
        error = form_error(error),
        max = MAX_ADDRESS_LEN,
        value = attr("value", address.trim()),
        csrf = form.field(),
    )
}

/// `GET /mall/reset`.
pub async fn ask_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let visit = Visit::of(&state, &headers).await?;
    let main = ask_form(&visit.form, "", None);
    Ok(visit.respond(&state, StatusCode::OK, "New password", "mall-reset", &main))
}

/// `POST /mall/reset`: answers at once; the look-up and the mail follow.
pub async fn ask(
    State(state): State<AppState>,
    Extension(holder): Extension<Arc<LimitsHolder>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    posted: Result<Form<AskForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(posted) = posted.map_err(bad_form)?;
    csrf::verify(&state, &headers, &posted.csrf)?;
    let visit = Visit::of(&state, &headers).await?;
    let address = match check_address(&posted.address) {
        Ok(address) => address,
        Err(message) => {
            let main = ask_form(&visit.form, &posted.address, Some(message));
            return Ok(visit.respond(
                &state,
                StatusCode::BAD_REQUEST,
                "New password",
                "mall-reset",
                &main,
            ));
        }
    };
    if !limits(&state, &holder)
        .mail_requests
        .allow(&net(ip), state.clock.now_ms())
    {
        warn!(ip = ?ip, "reset requests over the per-network limit");
        let main = ask_form(
            &visit.form,
            &posted.address,
            Some("Too many requests from your network. Please try again in an hour."),
        );
        return Ok(visit.respond(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            "New password",
            "mall-reset",
            &main,
        ));
    }
    tokio::spawn(mail_link(state.clone(), address));
    let text = format!(
        "If an account uses this address, a link to set a new password is on its way. It \
         works once, for {} minutes.",
        state.config.mall.token_ttl_minutes
    );
    Ok(check_mail(&state, &visit, &text))
}

/// The part of a reset request that runs after the answer.
async fn mail_link(state: AppState, address: String) {
    let outcome = async {
        let member = state
            .store_call(state.store.member_by_address(&address))
            .await?;
        match member {
            None => {
                debug!("reset asked for an unknown address");
                Ok(false)
            }
            // The confirm link is what such an account needs first; a reset would not sign in.
            Some(m) if m.confirmed_ms.is_none() => mails::send_confirm(&state, &m, "").await,
            Some(m) => mails::send_reset(&state, &m).await,
        }
    };
    if let Err(e) = outcome.await {
        warn!(cause = %e, "reset link not mailed");
    }
}

/// The new password as posted.
#[derive(Debug, Default, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// The form for the new password.
fn password_form(form: &FormToken, token: &str, error: Option<&str>) -> String {
    format!(
        "<section class=\"card stack narrow\"><h1>Choose a new password</h1>{error}\
         <form method=\"post\"{action} class=\"stack\" id=\"password-form\">\
         <label for=\"password\">New password ({min} to {max} characters)</label>\
         <input type=\"password\" id=\"password\" name=\"password\" required minlength=\"{min}\" \
         maxlength=\"{max}\" autocomplete=\"new-password\">{csrf}\
         <button type=\"submit\" class=\"primary\" id=\"save-password\">Save and sign in</button>\
         </form><p class=\"muted\">Saving signs you out everywhere else.</p></section>",
        error = form_error(error),
        action = attr("action", &format!("/mall/reset/{token}")),
        min = MIN_PASSWORD_CHARS,
        max = MAX_PASSWORD_CHARS,
        csrf = form.field(),
    )
}

/// `GET /mall/reset/{token}`: the form (the link is used only by the post).
pub async fn new_password_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    token: Result<Path<String>, PathRejection>,
) -> Result<Response, AppError> {
    let visit = Visit::of(&state, &headers).await?;
    let token = token.map(|Path(t)| t).unwrap_or_default();
    if !is_token(&token) {
        return Ok(dead_link(&state, &visit));
    }
    let main = password_form(&visit.form, &token, None);
    Ok(visit.respond(
        &state,
        StatusCode::OK,
        "New password",
        "mall-new-password",
        &main,
    ))
}

/// `POST /mall/reset/{token}`: a bad password comes back with its message (the link stays
/// unused); otherwise the link is used, the password set (every session of the member ends) and
/// this browser signed in.
pub async fn set_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    token: Result<Path<String>, PathRejection>,
    posted: Result<Form<PasswordForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(posted) = posted.map_err(bad_form)?;
    csrf::verify(&state, &headers, &posted.csrf)?;
    let token = token.map(|Path(t)| t).unwrap_or_default();
    if !is_token(&token) {
        let visit = Visit::of(&state, &headers).await?;
        return Ok(dead_link(&state, &visit));
    }
    if let Err(message) = check_new_password(&posted.password) {
        let visit = Visit::of(&state, &headers).await?;
        let main = password_form(&visit.form, &token, Some(&message));
        return Ok(visit.respond(
            &state,
            StatusCode::BAD_REQUEST,
            "New password",
            "mall-new-password",
            &main,
        ));
    }
    let hash = hash_password(&posted.password).await?;
    let now = state.clock.now_ms();
    let token_hash = hash_token(&token);
    let call = state
        .store
        .use_member_token(&token_hash, TokenPurpose::Reset, now);
    let Some(member) = state.store_call(call).await? else {
        let visit = Visit::of(&state, &headers).await?;
        return Ok(dead_link(&state, &visit));
    };
    state
        .store_call(state.store.set_member_password(member.id, &hash))
        .await?;
    info!(
        member = member.id,
        "member set a new password; other sessions ended"
    );
    let cookie = sign_member_in(&state, &headers, &member, ip).await?;
    Ok(see_other("/mall/account?done=password", [cookie]))
}

/// The notice of the profile page after a reset.
pub fn done_notice() -> String {
    format!(
        "<p class=\"ok\" role=\"status\">{}</p>",
        escape("Your new password is set. Every other device was signed out.")
    )
}
