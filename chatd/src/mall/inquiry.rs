//! Asking about a product (S207-S213): the question form on the product page ([`form_html`]),
//! `POST /mall/ad/{id}/ask` that mails the question to the ad's host as a chat-capable CHmail
//! mail, and `GET /mall/inquiry/{id}`, the member's page that keeps them online and rings when
//! the host presses Chat.
//!
//! The mail goes through [`chatmail::send`] with the member as the CHmail login: the room's
//! sender is the member, the ad's host its `To`. When the host opens the CHmail-Link and presses
//! Chat, chatd rings the member's connections; a member who is away gets the reminder mail, as
//! any sender does (`docs/protocol.md`, "Ringing and reminders").
//!
//! The inquiry page rings with the sender's own script, `/static/me.js`, as every mall page of a
//! signed-in viewer does ([`super::page`]): the page is marked `data-page="me"`, the frame holds
//! the ring box (`#ring`, `#ring-text`, `#accept`, `#decline`) and the page adds `#status` and
//! `#notify`. The script opens the WebSocket with the member's session
//! cookie and sends `watch` (the member is online while the page is open), shows a `ring` with
//! Accept and Decline, and on Accept opens the chat page `/c/{port}/{room}`. One ringing client
//! for senders and members, so a fix to one is a fix to both.
//!
//! Limits: a question is 1 to [`MAX_QUESTION_LEN`] bytes; a member asks at most
//! `[mall] inquiries_per_hour` questions an hour (counted in the store), and one client network
//! at most [`NETWORK_SHARE`] times that (counted in this process).

use crate::room_tag::room_tag;
use std::{
    collections::HashMap,
    fmt::Write as _,
    net::IpAddr,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use axum::{
    extract::{
        rejection::{FormRejection, PathRejection},
        DefaultBodyLimit, Path, State,
    },
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::{get, post},
    Extension, Form, Router,
};
use chmail::store::{
    mall::{Ad, Inquiry, MallMember, NewInquiry, MAX_QUESTION_LEN},
    MAX_PAGE,
};
use serde::Deserialize;
use tracing::{info, warn};

use super::{
    account::{bad_form, form_error, next_query, Visit},
    chatmail::{self, ChatMail},
    page::{page, MallPage, Viewer, WATCH_SCRIPT},
};
use crate::{
    client_ip::ClientIp,
    clock::format_utc_ms,
    error::AppError,
    limit::{network, RateLimiter},
    mail::one_line,
    state::AppState,
    web::{
        csrf,
        html::{attr, escape},
        html_response, see_other,
    },
};

/// The outbox kind of an inquiry mail.
pub const KIND: &str = "inquiry";

/// How many members' worth of questions one client network may ask: a family or an office
/// behind one address asks at once, but one address cannot multiply its budget with many
/// accounts.
pub const NETWORK_SHARE: u32 = 5;

/// Largest body of the question form: the question percent-encoded (up to three bytes per
/// byte) and the token.
pub const MAX_ASK_FORM_BYTES: usize = 3 * MAX_QUESTION_LEN + 1024;

/// Longest ad title quoted in the mail's subject, in characters.
const SUBJECT_TITLE_CHARS: usize = 150;

/// The window of the limits, in ms.
const WINDOW_MS: i64 = 60 * 60 * 1000;

/// The limits of asking, in this process: questions per client network (made from the config
/// on first use), and one question at a time per member, so that a burst of posts cannot all
/// pass the per-member count before any is recorded.
#[derive(Debug, Default)]
pub struct AskLimits {
    network: OnceLock<RateLimiter<IpAddr>>,
    asking: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl AskLimits {
    /// The per-network limiter: `[mall] inquiries_per_hour` times [`NETWORK_SHARE`].
    fn network(&self, per_hour: u32) -> &RateLimiter<IpAddr> {
        self.network
            .get_or_init(|| RateLimiter::new(per_hour.saturating_mul(NETWORK_SHARE), WINDOW_MS))
    }

    /// Waits for `member`'s turn to ask; the turn ends when the value is dropped.
    async fn turn(self: &Arc<Self>, member: i64) -> Turn {
        let lock = {
            // A poisoned lock only means another request panicked mid-update; the map stays
            // usable.
            let mut asking = self.asking.lock().unwrap_or_else(PoisonError::into_inner);
            asking.entry(member).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        Turn {
            limits: self.clone(),
            member,
            lock,
            guard: Some(guard),
        }
    }
}

/// A member's turn to ask ([`AskLimits::turn`]); dropping it ends the turn and forgets the
/// member's lock when nobody else waits for it.
struct Turn {
    limits: Arc<AskLimits>,
    member: i64,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut asking = self
            .limits
            .asking
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Ours and the map's: nobody else holds or waits for it.
        if Arc::strong_count(&self.lock) <= 2 {
            asking.remove(&self.member);
        }
    }
}

/// The routes of this part.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/mall/ad/{id}/ask", post(ask))
        .route("/mall/inquiry/{id}", get(inquiry_page))
        .layer(DefaultBodyLimit::max(MAX_ASK_FORM_BYTES))
        .layer(Extension(Arc::new(AskLimits::default())))
}

/// The question form for the product page of `ad`: for a member a text box and a button; for
/// anyone else links to sign in or join that come back to the product. `csrf` is the page's
/// token ([`crate::web::csrf::form_token`]).
pub fn form_html(state: &AppState, viewer: &Viewer, ad: &Ad, csrf: &str) -> String {
    ask_box(state, viewer, ad, csrf, "", None)
}

/// The question box with the text typed so far and an error.
fn ask_box(
    state: &AppState,
    viewer: &Viewer,
    ad: &Ad,
    csrf: &str,
    question: &str,
    error: Option<&str>,
) -> String {
    let back = format!("/mall/ad/{}", ad.id);
    let Some(member) = &viewer.member else {
        let lead = if viewer.login.is_some() {
            "Join as a member to ask about this product."
        } else {
            "Sign in or join to ask about this product."
        };
        return format!(
            "<div class=\"ask card stack\"><h2>Questions?</h2><p>{lead}</p>\
             <p class=\"row\"><a class=\"button primary\" id=\"ask-join\"{join}>Join</a>\
             <a class=\"button\" id=\"ask-signin\"{signin}>Sign in</a></p></div>",
            join = attr("href", &format!("/mall/signup{}", next_query(&back))),
            signin = attr("href", &format!("/mall/signin{}", next_query(&back))),
        );
    };
    if ad.fields.host_login == member.address {
        return "<div class=\"ask card stack\"><p class=\"muted\">This is your own \
                ad: members' questions about it come to you by mail.</p></div>"
            .to_owned();
    }
    if !ad.is_active(state.clock.now_ms()) {
        return "<div class=\"ask card stack\"><p class=\"muted\">This product is \
                not offered right now.</p></div>"
            .to_owned();
    }
    format!(
        "<div class=\"ask card stack\"><h2>Ask {company}</h2>{error}\
         <form method=\"post\"{action} class=\"stack\" id=\"ask-form\">\
         <label for=\"question\">Your question</label>\
         <textarea id=\"question\" name=\"question\" required rows=\"4\" maxlength=\"{max}\">\
         {question}</textarea>\
         <input type=\"hidden\" name=\"csrf\"{csrf}>\
         <button type=\"submit\" class=\"primary\" id=\"ask-button\">Ask the shop</button></form>\
         <p class=\"muted\">The shop gets your question by mail, with your name and address. \
         Keep the next page open: it rings when the shop wants to chat.</p></div>",
        company = escape(&ad.company_name),
        error = form_error(error),
        action = attr("action", &format!("/mall/ad/{}/ask", ad.id)),
        max = MAX_QUESTION_LEN,
        question = escape(question),
        csrf = attr("value", csrf),
    )
}

/// The question as posted.
#[derive(Debug, Default, Deserialize)]
pub struct AskForm {
    #[serde(default)]
    question: String,
    #[serde(default)]
    csrf: String,
}

/// A question as typed, checked: trimmed, line breaks as `\n`.
///
/// # Errors
/// The sentence to show for an empty, too long or unprintable question.
pub fn check_question(typed: &str) -> Result<String, String> {
    let question = typed.replace("\r\n", "\n").trim().to_owned();
    if question.is_empty() {
        return Err("Please write your question.".into());
    }
    if question.len() > MAX_QUESTION_LEN {
        return Err(format!(
            "Your question is too long: at most {MAX_QUESTION_LEN} bytes."
        ));
    }
    if question
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("Your question contains control characters that cannot be sent.".into());
    }
    Ok(question)
}

/// An ad id as written in a path.
fn parse_id(path: Result<Path<String>, PathRejection>) -> Option<i64> {
    let Path(text) = path.ok()?;
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A mall page that says `text` with `status` (for a missing ad or inquiry).
fn message_page(state: &AppState, visit: &Visit, status: StatusCode, text: &str) -> Response {
    let main = format!(
        "<section class=\"card stack narrow\"><h1>{title}</h1><p>{text}</p>\
         <p><a class=\"button\" href=\"/mall\">Back to the shops</a></p></section>",
        title = escape(status.canonical_reason().unwrap_or("Sorry")),
        text = escape(text),
    );
    visit.respond(state, status, "Sorry", "mall-message", &main)
}

/// `POST /mall/ad/{id}/ask`: a member's question goes to the ad's host as a chat-capable mail;
/// then the member's page for it opens. A bad question comes back with its message and nothing
/// is sent; anyone but a member is sent to sign in and back to the product.
pub async fn ask(
    State(state): State<AppState>,
    Extension(limits): Extension<Arc<AskLimits>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    posted: Result<Form<AskForm>, FormRejection>,
) -> Result<Response, AppError> {
    let ad_id = parse_id(path).ok_or(AppError::NotFound)?;
    let Form(posted) = posted.map_err(bad_form)?;
    csrf::verify(&state, &headers, &posted.csrf)?;
    let visit = Visit::of(&state, &headers).await?;
    let Some(member) = visit.viewer.member.clone() else {
        let back = format!("/mall/ad/{ad_id}");
        return Ok(see_other(&format!("/mall/signin{}", next_query(&back)), []));
    };
    let now = state.clock.now_ms();
    let ad = state.store_call(state.store.ad(ad_id)).await?;
    let Some(ad) = ad.filter(|ad| ad.is_active(now)) else {
        return Ok(message_page(
            &state,
            &visit,
            StatusCode::NOT_FOUND,
            "This product is not offered any more.",
        ));
    };
    let again = |status: StatusCode, message: &str| {
        let main = ask_box(
            &state,
            &visit.viewer,
            &ad,
            &visit.form.token,
            &posted.question,
            Some(message),
        );
        let main = format!(
            "<p class=\"crumbs\"><a{href}>{title}</a></p>{main}",
            href = attr("href", &format!("/mall/ad/{}", ad.id)),
            title = escape(&ad.fields.title),
        );
        visit.respond(&state, status, &ad.fields.title, "mall-ask", &main)
    };
    if ad.fields.host_login == member.address {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "This is your own ad: you cannot ask yourself.",
        ));
    }
    let question = match check_question(&posted.question) {
        Ok(q) => q,
        Err(message) => return Ok(again(StatusCode::BAD_REQUEST, &message)),
    };
    let per_hour = state.config.mall.inquiries_per_hour;
    let _turn = limits.turn(member.id).await;
    let since = now.saturating_sub(WINDOW_MS);
    let asked = state
        .store_call(state.store.count_inquiries(member.id, since))
        .await?;
    let limit = limits.network(per_hour);
    let key = ip.map_or(IpAddr::from([0u8; 4]), network);
    if asked >= per_hour || !limit.would_allow(&key, now) {
        warn!(member = member.id, ip = ?ip, asked, "inquiries over the limit");
        return Ok(again(
            StatusCode::TOO_MANY_REQUESTS,
            "You have asked many questions in the last hour. Please wait a little and ask again.",
        ));
    }
    limit.allow(&key, now);
    let inquiry = send(&state, &member, &ad, &question, ip).await?;
    Ok(see_other(&format!("/mall/inquiry/{inquiry}"), []))
}

/// How the chat names the shop that answers `ad`: "Lena from Tea House" (the host's name and
/// the company), the company alone when the host is unknown.
async fn shop_name(state: &AppState, ad: &Ad) -> String {
    let host = state.store.host(&ad.fields.host_login);
    match state.store_call(host).await {
        Ok(Some(host)) => crate::people::shop_name(&host.name, Some(&ad.company_name)),
        _ => ad.company_name.clone(),
    }
}

/// Mails `question` about `ad` from `member` to the ad's host and records the inquiry.
/// Returns its id.
async fn send(
    state: &AppState,
    member: &MallMember,
    ad: &Ad,
    question: &str,
    ip: Option<IpAddr>,
) -> Result<i64, AppError> {
    let title = one_line(&ad.fields.title, SUBJECT_TITLE_CHARS);
    let url = format!("{}/mall/ad/{}", state.base_url(), ad.id);
    let text = format!(
        "{name} asks about \"{title}\":\n\n{question}\n\nThe product: {url}",
        name = member.name,
    );
    let subject = format!("Question about {title}");
    let sent = chatmail::send(
        state,
        ChatMail {
            kind: KIND,
            login: &member.address,
            name: &member.name,
            to: &ad.fields.host_login,
            to_name: &shop_name(state, ad).await,
            opening: question,
            subject: &subject,
            text: &text,
            client_ip: ip,
            headers: Vec::new(),
        },
    )
    .await?;
    let record = NewInquiry {
        member_id: member.id,
        ad_id: ad.id,
        room_id: sent.room_id.clone(),
        question: question.to_owned(),
        created_ms: state.clock.now_ms(),
    };
    let id = state.store_call(state.store.add_inquiry(&record)).await?;
    state.metrics.inquiry();
    info!(
        inquiry = id,
        member = member.id,
        ad = ad.id,
        room = %room_tag(&sent.room_id),
        "inquiry mailed to the host"
    );
    Ok(id)
}

/// The member's inquiry `id`, if it is theirs (the newest [`MAX_PAGE`] are looked at).
async fn own_inquiry(
    state: &AppState,
    member: &MallMember,
    id: i64,
) -> Result<Option<Inquiry>, AppError> {
    let mine = state
        .store_call(state.store.inquiries_of_member(member.id, MAX_PAGE))
        .await?;
    Ok(mine.into_iter().find(|q| q.id == id))
}

/// `GET /mall/inquiry/{id}`: the member's page for their question. It says the shop got it,
/// shows it, and rings when the host presses Chat (see the module doc). Someone else's inquiry
/// is not found, exactly like a missing one.
pub async fn inquiry_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, AppError> {
    let visit = Visit::of(&state, &headers).await?;
    let id = parse_id(path);
    let Some(member) = visit.viewer.member.clone() else {
        let back = id.map_or_else(|| "/mall".to_owned(), |id| format!("/mall/inquiry/{id}"));
        return Ok(see_other(&format!("/mall/signin{}", next_query(&back)), []));
    };
    let inquiry = match id {
        Some(id) => own_inquiry(&state, &member, id).await?,
        None => None,
    };
    let Some(q) = inquiry else {
        return Ok(message_page(
            &state,
            &visit,
            StatusCode::NOT_FOUND,
            "There is no such question among yours.",
        ));
    };
    let company = state
        .store_call(state.store.ad(q.ad_id))
        .await?
        .map_or_else(|| "the shop".to_owned(), |ad| ad.company_name);
    let mut lead = format!(
        "We mailed your question about <a{href}>{title}</a> to {company} on {when}.",
        href = attr("href", &format!("/mall/ad/{}", q.ad_id)),
        title = escape(&q.ad_title),
        company = escape(&company),
        when = escape(&format_utc_ms(q.created_ms)),
    );
    if q.answered {
        lead.push_str(" The shop has answered: open the chat.");
    }
    let mut main = String::new();
    let _ = write!(
        main,
        "<section class=\"card stack narrow inquiry\"><h1>Your question is with the shop</h1>\
         <p>{lead}</p><blockquote class=\"question\" id=\"question\">{question}</blockquote>\
         <p id=\"status\" role=\"status\" aria-live=\"polite\">Connecting&hellip;</p>\
         <noscript><p class=\"notice\">This page needs JavaScript to ring you.</p></noscript>\
         <p class=\"muted\">Keep this page open: when the shop presses Chat, it rings here. If \
         you are away, we mail you.</p>\
         <div class=\"row\"><a class=\"button\" id=\"open-chat\"{chat}>Open the chat</a>\
         <button type=\"button\" id=\"notify\">Turn on notifications</button></div></section>\n\
         <p class=\"narrow\"><a href=\"/mall/account\">All your questions</a></p>",
        question = escape(&q.question),
        chat = attr("href", &format!("/c/{}/{}", q.port, q.room_id)),
    );
    let html = page(
        &state,
        &visit.viewer,
        &MallPage {
            title: "Your question",
            body_attrs: [
                attr("data-page", "me"),
                attr("data-login", &member.address),
                attr("data-inquiry", &q.id.to_string()),
            ]
            .concat(),
            scripts: &[WATCH_SCRIPT],
            search: "",
            csrf: &visit.form.token,
        },
        &main,
    );
    Ok(html_response(StatusCode::OK, visit.form.set, html))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_trimmed_bounded_and_printable() {
        assert_eq!(
            check_question("  Is it blue?\r\nOr red? "),
            Ok("Is it blue?\nOr red?".into())
        );
        assert!(check_question(" \n ").is_err());
        assert!(check_question(&"a".repeat(MAX_QUESTION_LEN)).is_ok());
        assert!(check_question(&"a".repeat(MAX_QUESTION_LEN + 1)).is_err());
        assert!(check_question("bell\u{7}").is_err());
    }
}
