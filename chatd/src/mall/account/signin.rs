//! Sign-in, resend and sign-out: `GET/POST /mall/signin` checks the password (an unconfirmed
//! account is told so and offered a new link), `POST /mall/resend` mails a new confirm link,
//! `POST /mall/signout` ends the session.

use std::sync::Arc;

use axum::{
    extract::{
        rejection::{FormRejection, QueryRejection},
        Query, State,
    },
    http::{HeaderMap, StatusCode},
    response::Response,
    Extension, Form,
};
use chmail::store::MAX_ADDRESS_LEN;
use serde::Deserialize;
use tracing::warn;

use super::{
    bad_form, check_address, check_mail, form_error,
    limits::{limits, net, LimitsHolder},
    mails, next_field, next_query, password, safe_next, sign_member_in, verify_password, FormToken,
    NextQuery, Visit, MAX_PASSWORD_CHARS,
};
use crate::{
    auth::end_session,
    client_ip::ClientIp,
    error::AppError,
    state::AppState,
    web::{
        csrf,
        html::{attr, escape},
        see_other,
    },
};

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

/// `POST /mall/signin`: checks the password (each check reserved first in the limits of
/// [`super::limits`]; a correct one gives its reservation back),
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
    let reservation = match limits.reserve(ip, &address, now) {
        Ok(reservation) => reservation,
        Err(refused) => {
            warn!(ip = ?ip, ?refused, "member sign-ins over the failure limit");
            return Ok(again(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins. Please wait an hour, or set a new password.",
                false,
            ));
        }
    };
    let member = if address.len() <= MAX_ADDRESS_LEN
        && posted.password.chars().count() <= MAX_PASSWORD_CHARS
    {
        state
            .store_call(state.store.member_by_address(&address))
            .await?
    } else {
        None
    };
    let checked = match &member {
        Some(m) => verify_password(&posted.password, &m.password_hash).await,
        None => password::verify_nothing(&posted.password)
            .await
            .map(|()| false),
    };
    let matched = match checked {
        Ok(matched) => matched,
        Err(AppError::Busy) => {
            // Not checked: the reservation is given back.
            limits.give_back(reservation);
            return Ok(again(
                StatusCode::SERVICE_UNAVAILABLE,
                &AppError::Busy.public_message(),
                false,
            ));
        }
        Err(e) => return Err(e),
    };
    let Some(member) = member.filter(|_| matched) else {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "The e-mail address or the password is wrong.",
            false,
        ));
    };
    limits.succeeded(reservation, now);
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
