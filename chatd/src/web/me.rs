//! `GET /me`: the sender's page. It lists the rooms of the mails they sent, newest first, with
//! unread counts; while it is open the sender is online, and a ring shows here with Accept and
//! Decline (`static/me.js` drives it over the WebSocket and relies on the ids written here). A
//! room whose reminder mail could not be delivered says so. With the mall on, it links to the
//! mall, whose pages link back here and keep the login online as well.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};

use chmail::store::{kind, MailScope, RoomSummary};

use super::html::{attr, escape, page, Page};
use crate::{
    auth::{login_address, session_login},
    clock::format_utc_ms,
    error::AppError,
    state::AppState,
};

/// Most rooms listed on the page: enough for months of mail; older rooms stay reachable by their
/// links.
pub const ROOMS_SHOWN: u32 = 200;

/// Most failed mails looked at for the page's notes: the latest failures are the ones to tell.
pub const FAILED_LOOKED_AT: u32 = 50;

/// The chats of `login`, the latest activity first, at most [`ROOMS_SHOWN`]: the rooms of the
/// mails it sent and those it was a To or Cc recipient of (a shop's host gets the members'
/// questions), each with its unread count.
///
/// # Errors
/// A store failure.
pub async fn chats_of(state: &AppState, login: &str) -> Result<Vec<RoomSummary>, AppError> {
    let mut rooms = state
        .store_call(state.store.rooms_of_login(login, ROOMS_SHOWN))
        .await?;
    let address = login_address(&state.config, login);
    let invited = state
        .store_call(state.store.rooms_of_recipient(&address, ROOMS_SHOWN))
        .await?;
    let mut seen: HashSet<String> = rooms.iter().map(|r| r.room_id.clone()).collect();
    rooms.extend(
        invited
            .into_iter()
            .filter(|r| seen.insert(r.room_id.clone())),
    );
    rooms.sort_by_key(|r| {
        std::cmp::Reverse(
            r.last_message_ms
                .unwrap_or_else(|| r.created.saturating_mul(1000)),
        )
    });
    rooms.truncate(ROOMS_SHOWN as usize);
    Ok(rooms)
}

/// `GET /me`: the page, or a redirect to `/signin` without a session.
pub async fn me_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some(login) = session_login(&state, &headers).await else {
        return Ok(super::see_other("/signin", []));
    };
    let rooms = chats_of(&state, &login).await?;
    let to = login_address(&state.config, &login);
    let mut failed: HashMap<String, i64> = HashMap::new();
    let failed_mail = state
        .store
        .failed_mail(MailScope::Recipient(&to), FAILED_LOOKED_AT);
    for f in state.store_call(failed_mail).await? {
        if let (kind::REMINDER, Some(room)) = (f.mail.kind.as_str(), f.mail.room_id) {
            let when = f.failed_ms.unwrap_or_default();
            failed.entry(room).or_insert(when);
        }
    }
    let (csrf, set_csrf) = super::csrf::form_token(&state, &headers)?;
    // A host of the mall signs in here too: their shop's pages are one click away. A failed
    // look-up only hides the link.
    let host = if state.config.mall.enabled {
        state
            .store_call(state.store.host(&login))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(cause = %e, "host look-up failed; no shop link on /me");
                None
            })
    } else {
        None
    };
    let shop = if host.is_some() {
        "<a class=\"button\" id=\"my-shop\" href=\"/mall/host\">Your shop</a>"
    } else {
        ""
    };
    // The mall keeps the login online and rung on its pages too (`crate::mall::page`).
    let mall = if state.config.mall.enabled {
        format!(
            "<a class=\"button\" id=\"to-mall\" href=\"/mall\">{}</a>",
            escape(&state.config.mall.name)
        )
    } else {
        String::new()
    };

    let mut items = String::new();
    for r in &rooms {
        let subject = r
            .subject
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or("(no subject)");
        let when = r
            .last_message_ms
            .unwrap_or_else(|| r.created.saturating_mul(1000));
        let zero = if r.unread == 0 { " zero" } else { "" };
        let note = failed.get(&r.room_id).map_or_else(String::new, |&t| {
            format!(
                "<span class=\"mail-failed\">A reminder mail to you could not be delivered \
                 ({}).</span>",
                escape(&format_utc_ms(t))
            )
        });
        let _ = write!(
            items,
            "<li{room}{port}><a{href}><span class=\"subject\">{subject}{note}</span>\
             <span class=\"when\">{when}</span>\
             <span class=\"unread{zero}\"{count} title=\"unread messages\">{unread}</span></a></li>",
            room = attr("data-room", &r.room_id),
            port = attr("data-port", &r.port.to_string()),
            href = attr("href", &format!("/c/{}/{}", r.port, r.room_id)),
            subject = escape(subject),
            when = escape(&format_utc_ms(when)),
            count = attr("data-count", &r.unread.to_string()),
            unread = r.unread,
        );
    }
    let empty = if rooms.is_empty() {
        "<p class=\"muted\" id=\"no-rooms\">No chats yet. Every mail you send from now on \
         opens one here.</p>"
    } else {
        ""
    };
    let main = format!(
        "<p id=\"status\" role=\"status\" aria-live=\"polite\">Connecting&hellip;</p>\n\
         <noscript><p class=\"notice\">This page needs JavaScript to ring you.</p></noscript>\n\
         <section id=\"ring\" class=\"card\" hidden aria-live=\"assertive\">\
         <p id=\"ring-text\"></p>\
         <div class=\"row\"><button type=\"button\" id=\"accept\">Accept</button>\
         <button type=\"button\" id=\"decline\">Decline</button></div></section>\n\
         <section class=\"card\"><div class=\"row\"><h1>Your chats</h1></div>\
         <p class=\"meta\">Signed in as <strong class=\"address\">{login}</strong>. Keep this \
         page open to be rung when someone wants to chat.</p>\
         <div class=\"row\">{shop}{mall}<button type=\"button\" id=\"notify\">Turn on notifications</button>\
         <form method=\"post\" action=\"/signout\">{csrf}\
         <button type=\"submit\" class=\"link-button\">Sign out</button></form></div></section>\n\
         <section class=\"card\"><ul id=\"rooms\">{items}</ul>{empty}</section>\n",
        login = escape(&login),
        csrf = format_args!(
            "<input type=\"hidden\" name=\"csrf\"{}>",
            attr("value", &csrf)
        ),
    );
    let html = page(
        &Page {
            title: "Your chats - CHmail",
            body_attrs: [attr("data-page", "me"), attr("data-login", &login)].concat(),
            scripts: &["/static/me.js"],
        },
        &main,
    );
    Ok(super::html_response(StatusCode::OK, set_csrf, html))
}
