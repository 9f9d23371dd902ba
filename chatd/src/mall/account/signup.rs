//! Sign-up and confirm: `GET/POST /mall/signup` checks the form, answers "check your mail" and
//! then creates the account (or, for a taken address, follows the rules of the module doc of
//! [`super`]) and mails a confirm link; `GET/POST /mall/confirm/{token}` uses the link once,
//! confirms the address, signs in and opens `next`.

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
    mails, next_field, next_query, safe_next, sign_member_in, FormToken, NextQuery, Visit,
    MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS,
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
