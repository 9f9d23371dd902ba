//! The host's pages under `/mall/host`: a host of a company manages their company's ads (create,
//! edit, pause and resume, pictures), sees the inquiries members sent and the chats under way,
//! and writes promotions (and sees what came of them).
//!
//! | route | what |
//! |---|---|
//! | `GET /mall/host` | the dashboard: ads with their status and counts, recent inquiries, open chats, promotions |
//! | `GET`, `POST /mall/host/ads/new` | a new ad |
//! | `GET`, `POST /mall/host/ads/{id}/edit` | change an ad; its pictures |
//! | `POST /mall/host/ads/{id}/pause`, `/resume` | take an ad off the storefront, or back |
//! | `POST /mall/host/ads/{id}/pictures` | upload a picture (multipart) |
//! | `POST /mall/host/ads/{id}/pictures/{pid}/delete` | remove a picture |
//! | `GET /mall/host/inquiries` | every inquiry to the company, paged |
//! | `GET /mall/host/promotions` | the company's promotions with their counts |
//! | `GET`, `POST /mall/host/promotions/new` | write a promotion |
//!
//! Who may do what. Every route answers only a signed-in host: a visitor who opens a page is
//! sent to `/signin`; anyone else gets 403. A host acts for their company: an ad or picture of
//! another company answers exactly as a missing one (404), and every change passes the host's
//! company to the store, which checks it in the same statement. Members appear here only through
//! the inquiries they sent to this company.
//!
//! Every form carries the CSRF token ([`csrf`]). Each field is checked with a message beside it;
//! a form with an error is shown again with what was typed, and nothing is saved. Form bodies
//! are capped at [`MAX_FORM_BYTES`], a picture upload at `[mall] max_picture_bytes` plus
//! [`UPLOAD_OVERHEAD`]; a picture is taken by its content (its magic bytes,
//! [`storefront::picture_type`]), never by its name.
//!
//! This file holds the routes, the check of who is asking and the dashboard; the parts:
//! `form` (the ad form and its checks), `ads` (new, edit, pause, resume), `pictures`,
//! `inquiries`, `promotions`.

use std::fmt::Write as _;

use axum::{
    extract::{rejection::PathRejection, DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::{get, post},
    Router,
};
use chmail::store::mall::{Ad, Host, Inquiry};
use serde::Deserialize;

use super::{
    account::bad_form,
    page::{page, viewer, MallPage, Viewer},
    storefront,
};
use crate::{
    clock::format_utc_ms,
    error::AppError,
    state::AppState,
    web::{
        csrf,
        html::{attr, escape},
        html_response, see_other,
    },
};

/// Largest form body accepted, in bytes: an ad's description or a promotion's text (10,000
/// bytes each) percent-encoded, with room to spare.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// What an upload may carry beyond the picture itself: the multipart boundaries and part
/// headers and the CSRF field, a few hundred bytes in practice.
pub const UPLOAD_OVERHEAD: usize = 16 * 1024;

/// Inquiries and promotions on the dashboard: the latest, with a link to all of them.
pub const RECENT: u32 = 10;

/// Inquiries per page of `/mall/host/inquiries`.
pub const INQUIRIES_PER_PAGE: u32 = 25;

/// Promotions listed on `/mall/host/promotions`.
pub const PROMOTIONS_SHOWN: u32 = 100;

/// Rooms of the host's own mails looked at for the open chats: a promotion makes one room per
/// member, and the newest are the ones to answer.
pub const ROOMS_LOOKED_AT: u32 = 200;

/// The longest piece of a question shown on a list; the chat has the whole of it.
const QUESTION_PREVIEW_CHARS: usize = 280;

/// Milliseconds in a day: dates on the forms are whole days in UTC.
const DAY_MS: i64 = 86_400_000;

/// The routes of the host's pages.
pub fn routes() -> Router<AppState> {
    let forms = Router::new()
        .route("/mall/host", get(dashboard))
        .route(
            "/mall/host/ads/new",
            get(ads::new_ad_page).post(ads::create_ad),
        )
        .route(
            "/mall/host/ads/{id}/edit",
            get(ads::edit_ad_page).post(ads::update_ad),
        )
        .route("/mall/host/ads/{id}/pause", post(ads::pause_ad))
        .route("/mall/host/ads/{id}/resume", post(ads::resume_ad))
        .route(
            "/mall/host/ads/{id}/pictures/{pid}/delete",
            post(pictures::delete_picture),
        )
        .route("/mall/host/inquiries", get(inquiries::inquiries_page))
        .route("/mall/host/promotions", get(promotions::promotions_page))
        .route(
            "/mall/host/promotions/new",
            get(promotions::new_promotion_page).post(promotions::create_promotion),
        )
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES));
    // The upload reads its body itself, bounded by `[mall] max_picture_bytes` (see
    // `upload_picture`): no fixed limit here.
    let uploads = Router::new()
        .route(
            "/mall/host/ads/{id}/pictures",
            post(pictures::upload_picture),
        )
        .layer(DefaultBodyLimit::disable());
    forms.merge(uploads)
}

// --- who is asking --------------------------------------------------------------------------

/// A signed-in host, with the CSRF token for their page's forms.
struct HostView {
    viewer: Viewer,
    host: Host,
    csrf: String,
    set_csrf: Option<String>,
}

impl HostView {
    /// A mall page for this host around `main`.
    fn render(
        &self,
        state: &AppState,
        status: StatusCode,
        title: &str,
        name: &str,
        main: &str,
    ) -> Response {
        render(
            state,
            &self.viewer,
            &self.csrf,
            self.set_csrf.clone(),
            status,
            title,
            name,
            main,
        )
    }

    /// The answer for an ad or picture that is missing or not this company's: the same for both.
    fn not_found(&self, state: &AppState) -> Response {
        self.render(
            state,
            StatusCode::NOT_FOUND,
            "Not found",
            "host-not-found",
            "<section class=\"card stack\"><h1>No such ad</h1>\
             <p>Your shop has no ad or picture at this address.</p>\
             <p><a href=\"/mall/host\">Back to your shop</a></p></section>",
        )
    }

    /// A hidden field with the CSRF token.
    fn csrf_field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\"{}>",
            attr("value", &self.csrf)
        )
    }
}

/// A mall page around `main`.
#[allow(clippy::too_many_arguments)] // the parts of one page; a struct would only rename them
fn render(
    state: &AppState,
    viewer: &Viewer,
    csrf: &str,
    set_csrf: Option<String>,
    status: StatusCode,
    title: &str,
    name: &str,
    main: &str,
) -> Response {
    let html = page(
        state,
        viewer,
        &MallPage {
            title,
            body_attrs: attr("data-page", name),
            scripts: &[],
            search: "",
            csrf,
        },
        main,
    );
    html_response(status, set_csrf, html)
}

/// The signed-in host of the request, or the answer for anyone else: a visitor opening a page
/// (`is_get`) is sent to `/signin`; a member, a sender or a visitor's post gets 403.
async fn host_view(
    state: &AppState,
    headers: &HeaderMap,
    is_get: bool,
) -> Result<Result<HostView, Response>, AppError> {
    let viewer = viewer(state, headers).await?;
    let (csrf, set_csrf) = csrf::form_token(state, headers)?;
    let Some(host) = viewer.host.clone() else {
        if is_get && viewer.login.is_none() {
            return Ok(Err(see_other("/signin", [])));
        }
        let main = "<section class=\"card stack\" id=\"not-a-host\"><h1>For hosts only</h1>\
             <p>These pages are for the people who run the shops of the mall. Hosts sign in \
             with a link mailed to their address.</p>\
             <p><a href=\"/signin\">Sign in as a host</a> &middot; <a href=\"/mall\">Back to the \
             mall</a></p></section>";
        return Ok(Err(render(
            state,
            &viewer,
            &csrf,
            set_csrf,
            StatusCode::FORBIDDEN,
            "For hosts only",
            "host-forbidden",
            main,
        )));
    };
    Ok(Ok(HostView {
        viewer,
        host,
        csrf,
        set_csrf,
    }))
}

/// The signed-in host, or returns the answer for anyone else from the handler. Defined before
/// the parts' `mod` lines so that they can use it.
macro_rules! host_or_return {
    ($state:expr, $headers:expr, $is_get:expr) => {
        match host_view(&$state, &$headers, $is_get).await? {
            Ok(view) => view,
            Err(response) => return Ok(response),
        }
    };
}

mod ads;
mod form;
mod inquiries;
mod pictures;
mod promotions;

use inquiries::inquiry_list;
use promotions::promotion_list;

/// Ad `id` if it is one of `host`'s company's; `None` for a missing ad and for another
/// company's alike.
async fn own_ad(state: &AppState, host: &Host, id: i64) -> Result<Option<Ad>, AppError> {
    let ad = state.store_call(state.store.ad(id)).await?;
    Ok(ad.filter(|ad| ad.company_id == host.company_id))
}

/// The ad named by `path` if it is one of `host`'s company's, with the hosts of that company
/// (the choices of the ad form); `None` for a malformed id, a missing ad and another company's
/// alike.
async fn own_ad_and_hosts(
    state: &AppState,
    host: &Host,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Option<(Ad, Vec<Host>)>, AppError> {
    let Ok(Path(id)) = path else {
        return Ok(None);
    };
    let Some(ad) = own_ad(state, host, id).await? else {
        return Ok(None);
    };
    let hosts = state
        .store_call(state.store.hosts_of(host.company_id))
        .await?;
    Ok(Some((ad, hosts)))
}

/// A form that carries only the CSRF token.
#[derive(Debug, Deserialize)]
struct TokenForm {
    /// The CSRF token.
    #[serde(default)]
    csrf: String,
}

// --- the dashboard --------------------------------------------------------------------------

/// Where an ad stands at `now_ms`, as a class name and a label.
fn ad_status(ad: &Ad, now_ms: i64) -> (&'static str, &'static str) {
    let f = &ad.fields;
    if f.ends_ms.is_some_and(|e| e <= now_ms) {
        ("ended", "Ended")
    } else if f.paused {
        ("paused", "Paused")
    } else if f.starts_ms.is_some_and(|s| now_ms < s) {
        ("scheduled", "Scheduled")
    } else {
        ("active", "Active")
    }
}

/// `GET /mall/host`: the host's dashboard.
async fn dashboard(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let hv = host_or_return!(state, headers, true);
    let company_id = hv.host.company_id;
    let company = state.store_call(state.store.company(company_id)).await?;
    let ads = state.store_call(state.store.ads_of(company_id)).await?;
    let inquiries = state
        .store_call(state.store.inquiries_of_company(company_id, 0, RECENT))
        .await?;
    let promotions = state
        .store_call(state.store.promotions_of_company(company_id, RECENT))
        .await?;
    let rooms = state
        .store_call(state.store.rooms_of_login(&hv.host.login, ROOMS_LOOKED_AT))
        .await?;
    let now = state.clock.now_ms();

    let mut ad_items = String::new();
    for ad in &ads {
        ad_items.push_str(&ad_item(&hv, ad, now));
    }
    let ads_html = if ads.is_empty() {
        "<p class=\"muted\" id=\"no-ads\">No ads yet. <a href=\"/mall/host/ads/new\">Write your \
         first ad</a>.</p>"
            .to_owned()
    } else {
        format!("<ul class=\"host-list\" id=\"ads\">{ad_items}</ul>")
    };

    let mut chats = String::new();
    for i in inquiries.iter().filter(|i| i.answered) {
        let _ = write!(
            chats,
            "<li><a{href}>{name} about {title}</a><span class=\"when\">{when}</span></li>",
            href = attr("href", &format!("/c/{}/{}", i.port, i.room_id)),
            name = escape(&i.member_name),
            title = escape(&i.ad_title),
            when = escape(&format_utc_ms(i.created_ms)),
        );
    }
    for r in rooms.iter().filter(|r| r.last_message_ms.is_some()) {
        let subject = r
            .subject
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or("(no subject)");
        let zero = if r.unread == 0 { " zero" } else { "" };
        let _ = write!(
            chats,
            "<li><a{href}>{subject}</a><span class=\"when\">{when}</span>\
             <span class=\"unread{zero}\"{count} title=\"unread messages\">{unread}</span></li>",
            href = attr("href", &format!("/c/{}/{}", r.port, r.room_id)),
            subject = escape(subject),
            when = escape(&format_utc_ms(r.last_message_ms.unwrap_or_default())),
            count = attr("data-count", &r.unread.to_string()),
            unread = r.unread,
        );
    }
    let chats_html = if chats.is_empty() {
        "<p class=\"muted\">No chats under way. When a member asks about an ad, or answers a \
         promotion, the chat shows here.</p>"
            .to_owned()
    } else {
        format!("<ul class=\"host-list\" id=\"chats\">{chats}</ul>")
    };

    let company_name = company.map_or_else(|| "Your shop".to_owned(), |c| c.name);
    let main = format!(
        "<section class=\"card stack host-head\"><h1>{company}</h1>\
         <p class=\"meta\">Signed in as <strong class=\"address\">{login}</strong>. Keep \
         <a href=\"/me\">your chats page</a> open to be rung when a member answers a \
         promotion.</p>{stats}\
         <div class=\"actions\"><a class=\"button primary\" href=\"/mall/host/ads/new\">New ad</a>\
         <a class=\"button\" href=\"/mall/host/promotions/new\">New promotion</a>\
         <a class=\"button\" href=\"/mall/host/inquiries\">All inquiries</a></div></section>\n\
         <section class=\"card stack\"><h2>Your ads</h2>{ads_html}</section>\n\
         <section class=\"card stack\"><h2>Recent inquiries</h2>{inquiries}\
         <p><a href=\"/mall/host/inquiries\">All inquiries</a></p></section>\n\
         <section class=\"card stack\"><h2>Open chats</h2>{chats_html}</section>\n\
         <section class=\"card stack\"><h2>Promotions</h2>{promotions}\
         <p><a href=\"/mall/host/promotions\">All promotions</a> &middot; \
         <a href=\"/mall/host/promotions/new\">New promotion</a></p></section>\n",
        company = escape(&company_name),
        login = escape(&hv.host.login),
        stats = stats(&ads, &inquiries, now),
        inquiries = inquiry_list(&inquiries),
        promotions = promotion_list(&promotions, None),
    );
    Ok(hv.render(&state, StatusCode::OK, "Your shop", "host-dashboard", &main))
}

/// The dashboard's figures: active ads, impressions and clicks of all ads, and the recent
/// inquiries not answered yet.
fn stats(ads: &[Ad], recent: &[Inquiry], now_ms: i64) -> String {
    let active = ads.iter().filter(|ad| ad.is_active(now_ms)).count();
    let impressions: i64 = ads.iter().map(|ad| ad.impressions).sum();
    let clicks: i64 = ads.iter().map(|ad| ad.clicks).sum();
    let new = recent.iter().filter(|i| !i.answered).count();
    format!(
        "<div class=\"stats\" id=\"stats\">\
         <div class=\"stat\"><strong>{active}</strong> active ads</div>\
         <div class=\"stat\"><strong>{impressions}</strong> impressions</div>\
         <div class=\"stat\"><strong>{clicks}</strong> clicks</div>\
         <div class=\"stat\"><strong>{new}</strong> new inquiries</div></div>"
    )
}

/// One ad on the dashboard: its first picture, status, counts and the pause or resume button.
fn ad_item(hv: &HostView, ad: &Ad, now_ms: i64) -> String {
    let (status, label) = ad_status(ad, now_ms);
    let (action, button) = if ad.fields.paused {
        ("resume", "Resume")
    } else {
        ("pause", "Pause")
    };
    let thumb = ad.pictures.first().map_or_else(
        || "<span class=\"host-thumb no-picture\" aria-hidden=\"true\"></span>".to_owned(),
        |pid| {
            format!(
                "<img class=\"host-thumb\" alt=\"\" loading=\"lazy\"{}>",
                attr("src", &format!("/mall/picture/{pid}"))
            )
        },
    );
    let pictures = match ad.pictures.len() {
        1 => "1 picture".to_owned(),
        n => format!("{n} pictures"),
    };
    format!(
        "<li{id}{data}{st} class=\"host-ad\">{thumb}<div class=\"stack\"><div class=\"host-item\">\
         <a class=\"title\"{edit}>{title}</a>\
         <span class=\"badge {status}\">{label}</span></div>\
         <p class=\"meta\">{category} &middot; {price} &middot; \
         <span data-count=\"impressions\">{impressions}</span> impressions &middot; \
         <span data-count=\"clicks\">{clicks}</span> clicks &middot; {pictures}</p>\
         <div class=\"actions\"><a class=\"button\"{edit}>Edit</a>\
         <a class=\"button\"{promote}>Promote</a>\
         <form method=\"post\"{form_action} class=\"inline\">{csrf}\
         <button type=\"submit\">{button}</button></form>\
         <a{view}>View in the mall</a></div></div></li>",
        id = attr("id", &format!("ad-{}", ad.id)),
        data = attr("data-ad", &ad.id.to_string()),
        st = attr("data-status", status),
        edit = attr("href", &format!("/mall/host/ads/{}/edit", ad.id)),
        title = escape(&ad.fields.title),
        category = escape(&ad.fields.category),
        price = escape(&storefront::format_price(
            ad.fields.price_minor,
            &ad.fields.currency
        )),
        impressions = ad.impressions,
        clicks = ad.clicks,
        promote = attr("href", &format!("/mall/host/promotions/new?ad={}", ad.id)),
        form_action = attr("action", &format!("/mall/host/ads/{}/{action}", ad.id)),
        csrf = hv.csrf_field(),
        view = attr("href", &storefront::ad_path(ad.id, None)),
    )
}
