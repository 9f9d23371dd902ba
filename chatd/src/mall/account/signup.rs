//! Sign-up and confirm: `GET/POST /mall/signup` checks the form, answers "check your mail" and
//! then creates the account (or, for a taken address, follows the rules of the module doc of
//! [`super`]) and mails a confirm link; `GET/POST /mall/confirm/{token}` asks for the password
//! chosen at sign-up, and with the right one uses the link once, confirms the address, signs in
//! and opens `next` (why the password: "Who may set an account's password" in [`super`]).

use std::sync::Arc;

use axum::{
    extract::{
        rejection::{FormRejection, PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{HeaderMap, StatusCode},
    response::Response,
    Extension, Form,
};
use chmail::store::{
    mall::{MallMember, NewMember, TokenPurpose, MAX_PERSON_NAME_LEN},
    MAX_ADDRESS_LEN,
};
use serde::Deserialize;
use tracing::{debug, info, warn};

use super::{
    bad_form, check_address, check_mail, check_name, check_new_password, dead_link, form_error,
    hash_password,
    limits::{limits, net, LimitsHolder},
    mails, next_field, next_query, safe_next, sign_member_in, verify_password, FormToken,
    NextQuery, Visit, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS,
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
        let renew =
            state
                .store
                .renew_signup(member.id, &new.name, &new.password_hash, new.promotions);
        if !state.store_call(renew).await? {
            // Confirmed in between: the account stays as it is (the new token was never
            // mailed); its owner hears of the sign-up.
            debug!(member = member.id, "sign-up with the address of an account");
            return mails::send_exists(&state, &member).await;
        }
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

/// The confirm form as posted: the password chosen at sign-up, where to go next, the CSRF token.
#[derive(Debug, Default, Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

/// What the confirm page says when the password is not the account's.
const NOT_THE_PASSWORD: &str = "That is not the password chosen when this address signed up. \
     If you did not sign up, ignore the mail: without that password nobody can confirm the \
     account. Forgot it? Sign up again with this address; the new link replaces this one.";

/// The confirm page: the password chosen at sign-up and the button.
fn confirm_form(
    state: &AppState,
    visit: &Visit,
    status: StatusCode,
    token: &str,
    next: &str,
    error: Option<&str>,
) -> Response {
    let main = format!(
        "<section class=\"card stack narrow\"><h1>Confirm your address</h1>{error}\
         <p>Enter the password you chose when you signed up, to confirm your address and sign \
         in.</p>\
         <form method=\"post\"{action} class=\"stack\" id=\"confirm-form\">\
         <label for=\"password\">Your password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" required \
         maxlength=\"{max}\" autocomplete=\"current-password\">{next}{csrf}\
         <button type=\"submit\" id=\"confirm\" class=\"primary\">Confirm and sign in</button>\
         </form><p class=\"muted\">If you did not sign up, ignore the mail and this page.</p>\
         </section>",
        error = form_error(error),
        action = attr("action", &format!("/mall/confirm/{token}")),
        max = MAX_PASSWORD_CHARS,
        next = next_field(next),
        csrf = visit.form.field(),
    );
    visit.respond(state, status, "Confirm your address", "mall-confirm", &main)
}

/// `GET /mall/confirm/{token}`: the page that asks for the password (mail scanners fetch links;
/// only the post uses the token). Every well-formed token gets the same page.
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
    Ok(confirm_form(
        &state,
        &visit,
        StatusCode::OK,
        &token,
        &next,
        None,
    ))
}

/// `POST /mall/confirm/{token}`: checks the password against the account's (reserved in the
/// sign-in limits first, as a sign-in), then uses the link once, only while that password is
/// still the account's, confirms the account, signs in and opens `next` (or the profile). A
/// wrong password comes back with its message and leaves the link unused.
pub async fn confirm(
    State(state): State<AppState>,
    Extension(holder): Extension<Arc<LimitsHolder>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    token: Result<Path<String>, PathRejection>,
    posted: Result<Form<ConfirmForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(posted) = posted.map_err(bad_form)?;
    csrf::verify(&state, &headers, &posted.csrf)?;
    let visit = Visit::of(&state, &headers).await?;
    let token = token.map(|Path(t)| t).unwrap_or_default();
    let next = safe_next(&posted.next).unwrap_or_default().to_owned();
    let now = state.clock.now_ms();
    let token_hash = hash_token(&token);
    let pending = if is_token(&token) {
        let call = state
            .store
            .member_of_token(&token_hash, TokenPurpose::Confirm, now);
        state.store_call(call).await?
    } else {
        None
    };
    let Some(pending) = pending else {
        return Ok(dead_link(&state, &visit));
    };
    let again = |status: StatusCode, message: &str| {
        confirm_form(&state, &visit, status, &token, &next, Some(message))
    };
    if posted.password.is_empty() {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "Please enter the password you chose when you signed up.",
        ));
    }
    let limits = limits(&state, &holder);
    let Ok(reservation) = limits.reserve(ip, &pending.address, now) else {
        warn!(ip = ?ip, member = pending.id, "confirm password checks over the failure limit");
        return Ok(again(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong passwords. Please wait an hour, or sign up again.",
        ));
    };
    let matched = if posted.password.chars().count() <= MAX_PASSWORD_CHARS {
        match verify_password(&posted.password, &pending.password_hash).await {
            Ok(matched) => matched,
            Err(AppError::Busy) => {
                limits.give_back(reservation);
                return Ok(again(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &AppError::Busy.public_message(),
                ));
            }
            Err(e) => return Err(e),
        }
    } else {
        false
    };
    if !matched {
        info!(
            member = pending.id,
            "confirm link opened with a wrong password"
        );
        return Ok(again(StatusCode::BAD_REQUEST, NOT_THE_PASSWORD));
    }
    let call = state
        .store
        .confirm_member(&token_hash, &pending.password_hash, now);
    let Some(member) = state.store_call(call).await? else {
        // Used in between, or another sign-up replaced the password just now.
        limits.give_back(reservation);
        return Ok(dead_link(&state, &visit));
    };
    limits.succeeded(reservation, now);
    info!(member = member.id, "member confirmed the address");
    let cookie = sign_member_in(&state, &headers, &member, ip).await?;
    let target = safe_next(&posted.next).unwrap_or("/mall/account?done=welcome");
    Ok(see_other(target, [cookie]))
}
