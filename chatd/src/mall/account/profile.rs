//! The member's profile: `GET /mall/account` (name, promotion opt-in, the questions they asked
//! with links to their chats, delete), `POST /mall/account` (change name and opt-in),
//! `POST /mall/account/delete` (with the password: the account and its data go, the session
//! cookie is cleared). Only the member themself sees or changes any of it.

use std::{fmt::Write as _, sync::Arc};

use axum::{
    extract::{
        rejection::{FormRejection, QueryRejection},
        Query, State,
    },
    http::{HeaderMap, StatusCode},
    response::Response,
    Extension, Form,
};
use chmail::store::mall::{MallMember, MAX_PERSON_NAME_LEN};
use serde::Deserialize;
use tracing::{info, warn};

use super::{
    bad_form, check_name, form_error,
    limits::{limits, LimitsHolder},
    reset, verify_password, Visit, MAX_PASSWORD_CHARS,
};
use crate::{
    auth::end_session,
    client_ip::ClientIp,
    clock::format_utc_ms,
    error::AppError,
    mall::page::{page, MallPage, Viewer},
    state::AppState,
    web::{
        csrf,
        html::{attr, escape},
        html_response, see_other,
    },
};

/// Most questions listed on the profile: the newest; older ones stay in the chats.
pub const INQUIRIES_SHOWN: u32 = 100;

/// What the profile page shows besides the member's data.
#[derive(Debug, Default)]
struct Shown<'a> {
    /// A notice at the top (already markup).
    notice: String,
    /// The profile form's error and the values to show again.
    profile_error: Option<(&'a str, &'a str, bool)>,
    /// The delete form's error.
    delete_error: Option<&'a str>,
}

/// The profile page of `member`.
async fn render(
    state: &AppState,
    visit: &Visit,
    member: &MallMember,
    status: StatusCode,
    shown: &Shown<'_>,
) -> Result<Response, AppError> {
    let inquiries = state
        .store_call(state.store.inquiries_of_member(member.id, INQUIRIES_SHOWN))
        .await?;
    let mut list = String::new();
    for q in &inquiries {
        let state_text = if q.answered {
            "<span class=\"badge answered\">answered</span>"
        } else {
            "<span class=\"badge new\">waiting for the shop</span>"
        };
        let _ = write!(
            list,
            "<li{id}><a{page}><span class=\"subject\">{title}</span></a> {state_text}\
             <span class=\"when\">{when}</span> <a class=\"chat-link\"{chat}>Open the chat</a></li>",
            id = attr("data-inquiry", &q.id.to_string()),
            page = attr("href", &format!("/mall/inquiry/{}", q.id)),
            title = escape(&q.ad_title),
            when = escape(&format_utc_ms(q.created_ms)),
            chat = attr("href", &format!("/c/{}/{}", q.port, q.room_id)),
        );
    }
    let questions = if inquiries.is_empty() {
        "<p class=\"muted\" id=\"no-inquiries\">No questions yet. Ask a shop about a product on \
         its page.</p>"
            .to_owned()
    } else {
        format!("<ul id=\"inquiries\" class=\"inquiries\">{list}</ul>")
    };
    let (profile_error, name, promotions) = match shown.profile_error {
        Some((message, name, promotions)) => (Some(message), name, promotions),
        None => (None, member.name.as_str(), member.promotions),
    };
    let main = format!(
        "{notice}<section class=\"card stack narrow\"><h1>Your account</h1>\
         <p class=\"meta\">Signed in as <strong class=\"address\">{address}</strong>.</p>\
         {profile_error}\
         <form method=\"post\" action=\"/mall/account\" class=\"stack\" id=\"profile-form\">\
         <label for=\"name\">Your name</label>\
         <input type=\"text\" id=\"name\" name=\"name\" required maxlength=\"{max_name}\" \
         autocomplete=\"name\"{name}>\
         <label class=\"check\"><input type=\"checkbox\" id=\"promotions\" name=\"promotions\" \
         value=\"yes\"{checked}> Mail me offers from the shops</label>{csrf}\
         <button type=\"submit\" class=\"primary\" id=\"save\">Save</button></form>\
         <p class=\"muted\"><a href=\"/mall/reset\">Change your password</a> (we mail you a \
         link).</p></section>\
         <section class=\"card stack narrow\"><h2>Your questions</h2>{questions}</section>\
         <section class=\"card stack narrow danger-zone\"><h2>Delete my account</h2>\
         <p>This deletes your account, your questions and your offer subscriptions. The shops \
         keep the mails you sent them.</p>{delete_error}\
         <form method=\"post\" action=\"/mall/account/delete\" class=\"stack\" id=\"delete-form\">\
         <label for=\"delete-password\">Your password, to confirm</label>\
         <input type=\"password\" id=\"delete-password\" name=\"password\" required \
         maxlength=\"{max_password}\" autocomplete=\"current-password\">{csrf}\
         <button type=\"submit\" class=\"danger\" id=\"delete\">Delete my account and my data\
         </button></form></section>",
        notice = shown.notice,
        address = escape(&member.address),
        profile_error = form_error(profile_error),
        max_name = MAX_PERSON_NAME_LEN,
        name = attr("value", name),
        checked = if promotions { " checked" } else { "" },
        csrf = visit.form.field(),
        delete_error = form_error(shown.delete_error),
        max_password = MAX_PASSWORD_CHARS,
    );
    Ok(visit.respond(state, status, "Your account", "mall-account", &main))
}

/// The notice of `?done=`.
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    #[serde(default)]
    done: String,
}

/// `GET /mall/account`: the profile, or the sign-in form for anyone but a member.
pub async fn account_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let visit = Visit::of(&state, &headers).await?;
    let Some(member) = visit.viewer.member.clone() else {
        return Ok(see_other("/mall/signin?next=/mall/account", []));
    };
    let notice = match query.map(|Query(q)| q.done).unwrap_or_default().as_str() {
        "saved" => "<p class=\"ok\" role=\"status\">Saved.</p>".to_owned(),
        "welcome" => "<p class=\"ok\" role=\"status\">Welcome! Your address is confirmed \
                      and you are signed in.</p>"
            .to_owned(),
        "password" => reset::done_notice(),
        _ => String::new(),
    };
    let shown = Shown {
        notice,
        ..Shown::default()
    };
    render(&state, &visit, &member, StatusCode::OK, &shown).await
}

/// The profile form as posted.
#[derive(Debug, Default, Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    name: String,
    /// The checkbox: present when ticked.
    #[serde(default)]
    promotions: Option<String>,
    #[serde(default)]
    csrf: String,
}

/// `POST /mall/account`: a bad name comes back with its message and nothing changes.
pub async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Result<Form<ProfileForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(posted) = posted.map_err(bad_form)?;
    csrf::verify(&state, &headers, &posted.csrf)?;
    let visit = Visit::of(&state, &headers).await?;
    let member = visit.viewer.require_member()?.clone();
    let promotions = posted.promotions.is_some();
    let name = match check_name(&posted.name) {
        Ok(name) => name,
        Err(message) => {
            let shown = Shown {
                profile_error: Some((&message, &posted.name, promotions)),
                ..Shown::default()
            };
            return render(&state, &visit, &member, StatusCode::BAD_REQUEST, &shown).await;
        }
    };
    state
        .store_call(state.store.update_member(member.id, &name, promotions))
        .await?;
    info!(member = member.id, promotions, "member profile changed");
    Ok(see_other("/mall/account?done=saved", []))
}

/// The delete form as posted.
#[derive(Debug, Default, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /mall/account/delete`: with the right password, deletes the member and their data
/// (their sessions included) and clears the cookie; a wrong one counts as a failed sign-in.
pub async fn delete(
    State(state): State<AppState>,
    Extension(holder): Extension<Arc<LimitsHolder>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    posted: Result<Form<DeleteForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(posted) = posted.map_err(bad_form)?;
    csrf::verify(&state, &headers, &posted.csrf)?;
    let visit = Visit::of(&state, &headers).await?;
    let member = visit.viewer.require_member()?.clone();
    let limits = limits(&state, &holder);
    let now = state.clock.now_ms();
    let refuse = |message: &'static str, status: StatusCode| {
        let state = state.clone();
        let visit = visit.clone();
        let member = member.clone();
        async move {
            let shown = Shown {
                delete_error: Some(message),
                ..Shown::default()
            };
            render(&state, &visit, &member, status, &shown).await
        }
    };
    let Ok(reservation) = limits.reserve(ip, &member.address, now) else {
        warn!(ip = ?ip, member = member.id, "account deletion over the failure limit");
        return refuse(
            "Too many wrong passwords. Please wait an hour.",
            StatusCode::TOO_MANY_REQUESTS,
        )
        .await;
    };
    let matched = if posted.password.chars().count() > MAX_PASSWORD_CHARS {
        false
    } else {
        match verify_password(&posted.password, &member.password_hash).await {
            Ok(matched) => matched,
            Err(e) => {
                limits.give_back(reservation);
                return Err(e);
            }
        }
    };
    if !matched {
        return refuse(
            "That password is wrong: your account stays.",
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    limits.succeeded(reservation, now);
    state
        .store_call(state.store.delete_member(member.id))
        .await?;
    let cookie = end_session(&state, &headers).await?;
    info!(member = member.id, "member deleted their account");
    let main = format!(
        "<section class=\"card stack narrow\"><h1>Your account is deleted</h1>\
         <p id=\"status\" role=\"status\">We deleted your account and your data at {mall}. \
         Thank you for visiting.</p><p><a class=\"button\" href=\"/mall\">Back to the shops</a>\
         </p></section>",
        mall = escape(&state.config.mall.name),
    );
    let html = page(
        &state,
        &Viewer::default(),
        &MallPage {
            title: "Account deleted",
            body_attrs: attr("data-page", "mall-deleted"),
            ..MallPage::default()
        },
        &main,
    );
    Ok(html_response(StatusCode::OK, [cookie], html))
}
