//! The inquiries members sent to the host's company.

use std::fmt::Write as _;

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chmail::store::mall::Inquiry;
use serde::Deserialize;

use super::{host_view, INQUIRIES_PER_PAGE, QUESTION_PREVIEW_CHARS};
use crate::{
    clock::format_utc_ms,
    error::AppError,
    state::AppState,
    web::html::{attr, escape},
};

/// Inquiries as a list: who asked (name and address), about what, new or answered, and the
/// link to the chat.
pub(super) fn inquiry_list(inquiries: &[Inquiry]) -> String {
    if inquiries.is_empty() {
        return "<p class=\"muted\" id=\"no-inquiries\">No inquiries yet.</p>".to_owned();
    }
    let mut items = String::new();
    for i in inquiries {
        let (state, label) = if i.answered {
            ("answered", "Answered")
        } else {
            ("new", "New")
        };
        let question: String = i.question.chars().take(QUESTION_PREVIEW_CHARS).collect();
        let more = if question.len() < i.question.len() {
            "&hellip;"
        } else {
            ""
        };
        let _ = write!(
            items,
            "<li class=\"inquiry\"{id}{st}><div class=\"host-item\"><span><strong>{name}</strong> \
             <span class=\"address\">{address}</span></span>\
             <span class=\"badge {state}\">{label}</span></div>\
             <p class=\"meta\">About <a{ad}>{title}</a> &middot; {when} &middot; to {to}</p>\
             <p class=\"question\">{question}{more}</p>\
             <p><a class=\"button primary\"{chat}>Open the chat</a></p></li>",
            id = attr("data-inquiry", &i.id.to_string()),
            st = attr("data-state", state),
            name = escape(&i.member_name),
            address = escape(&i.member_address),
            ad = attr("href", &format!("/mall/host/ads/{}/edit", i.ad_id)),
            title = escape(&i.ad_title),
            when = escape(&format_utc_ms(i.created_ms)),
            to = escape(&i.host_login),
            question = escape(&question),
            chat = attr("href", &format!("/c/{}/{}", i.port, i.room_id)),
        );
    }
    format!("<ul class=\"host-list\" id=\"inquiries\">{items}</ul>")
}

// --- inquiries --------------------------------------------------------------------------------

/// Query of the inquiries page.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PageQuery {
    /// The page number, from 1.
    page: Option<String>,
}

/// `GET /mall/host/inquiries?page=N`: the company's inquiries, newest first.
pub(super) async fn inquiries_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let hv = host_or_return!(state, headers, true);
    let page_no = query
        .ok()
        .and_then(|Query(q)| q.page)
        .and_then(|p| p.trim().parse::<u32>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1)
        .min(u32::MAX / INQUIRIES_PER_PAGE);
    let offset = (page_no - 1) * INQUIRIES_PER_PAGE;
    // One more than a page: whether a next page exists.
    let call = state
        .store
        .inquiries_of_company(hv.host.company_id, offset, INQUIRIES_PER_PAGE + 1);
    let mut inquiries = state.store_call(call).await?;
    let more = inquiries.len() > INQUIRIES_PER_PAGE as usize;
    inquiries.truncate(INQUIRIES_PER_PAGE as usize);
    let mut nav = String::new();
    if page_no > 1 {
        let _ = write!(
            nav,
            "<a rel=\"prev\"{}>Newer</a>",
            attr(
                "href",
                &format!("/mall/host/inquiries?page={}", page_no - 1)
            )
        );
    }
    if more {
        let _ = write!(
            nav,
            "<a rel=\"next\"{}>Older</a>",
            attr(
                "href",
                &format!("/mall/host/inquiries?page={}", page_no + 1)
            )
        );
    }
    let main = format!(
        "<section class=\"card stack\"><h1>Inquiries</h1>\
         <p class=\"meta\">Questions members asked about your ads, newest first (page {page_no}).\
         </p>{list}<nav class=\"pager\">{nav}</nav>\
         <p><a href=\"/mall/host\">Back to your shop</a></p></section>",
        list = inquiry_list(&inquiries),
    );
    Ok(hv.render(&state, StatusCode::OK, "Inquiries", "host-inquiries", &main))
}
