//! Writing a promotion, and the list of the company's promotions with what came of them.

use std::fmt::Write as _;

use axum::{
    extract::{
        rejection::{FormRejection, QueryRejection},
        Query, State,
    },
    http::{HeaderMap, StatusCode},
    response::Response,
    Form,
};
use chmail::store::{
    mall::{NewPromotion, Promotion, MAX_PROMOTION_BODY_LEN, MAX_PROMOTION_SUBJECT_LEN},
    StoreError,
};
use serde::Deserialize;
use tracing::info;

use super::{
    ad_status, bad_form,
    form::{check_line, check_text, error_for, FieldErrors},
    host_view, own_ad, HostView, PROMOTIONS_SHOWN,
};
use crate::{
    clock::format_utc_ms,
    error::AppError,
    state::AppState,
    web::{
        csrf,
        html::{attr, escape},
        see_other,
    },
};

/// Promotions as a list with their counts; `queued` is marked as just written.
pub(super) fn promotion_list(promotions: &[Promotion], queued: Option<i64>) -> String {
    if promotions.is_empty() {
        return "<p class=\"muted\" id=\"no-promotions\">No promotions yet.</p>".to_owned();
    }
    let mut items = String::new();
    for p in promotions {
        let fresh = if queued == Some(p.id) {
            " class=\"fresh\""
        } else {
            ""
        };
        let _ = write!(
            items,
            "<li{fresh}{id}{data}><div class=\"host-item\"><strong>{subject}</strong>\
             <span class=\"when\">{when}</span></div>\
             <p class=\"meta\">For <a{ad}>{title}</a></p>\
             <dl class=\"counts\">\
             <div><dt>Sent</dt><dd data-count=\"sent\">{sent}</dd></div>\
             <div><dt>Of</dt><dd data-count=\"recipients\">{recipients}</dd></div>\
             <div><dt>Chatted</dt><dd data-count=\"chatted\">{chatted}</dd></div>\
             <div><dt>Unsubscribed</dt><dd data-count=\"unsubscribed\">{unsubscribed}</dd></div>\
             {failed}</dl></li>",
            id = attr("id", &format!("promotion-{}", p.id)),
            data = attr("data-promotion", &p.id.to_string()),
            subject = escape(&p.subject),
            when = escape(&format_utc_ms(p.created_ms)),
            ad = attr("href", &format!("/mall/host/ads/{}/edit", p.ad_id)),
            title = escape(&p.ad_title),
            sent = p.sent,
            recipients = p.recipients,
            chatted = p.chatted,
            unsubscribed = p.unsubscribed,
            failed = if p.failed == 0 {
                String::new()
            } else {
                format!(
                    "<div><dt>Not delivered</dt><dd data-count=\"failed\">{}</dd></div>",
                    p.failed
                )
            },
        );
    }
    format!("<ul class=\"host-list\" id=\"promotions\">{items}</ul>")
}

// --- promotions -------------------------------------------------------------------------------

/// Query of the promotions pages.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PromotionQuery {
    /// The promotion just written (on the list).
    queued: Option<String>,
    /// The ad to preselect (on the form).
    ad: Option<String>,
}

/// `GET /mall/host/promotions`: the company's promotions and their counts.
pub(super) async fn promotions_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<PromotionQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let hv = host_or_return!(state, headers, true);
    let call = state
        .store
        .promotions_of_company(hv.host.company_id, PROMOTIONS_SHOWN);
    let promotions = state.store_call(call).await?;
    let queued = query
        .ok()
        .and_then(|Query(q)| q.queued)
        .and_then(|q| q.parse::<i64>().ok());
    let notice = queued
        .and_then(|id| promotions.iter().find(|p| p.id == id))
        .map_or_else(String::new, |p| {
            let whom = match p.recipients {
                0 => "No member has asked for promotions yet, so it goes to nobody.".to_owned(),
                1 => "It goes to the 1 member who asked for promotions.".to_owned(),
                n => format!("It goes to the {n} members who asked for promotions."),
            };
            format!(
                "<p class=\"notice\" id=\"queued\" role=\"status\">Your promotion is queued. \
                 {whom} Mails go out a few every minute.</p>"
            )
        });
    let main = format!(
        "<section class=\"card stack\"><h1>Promotions</h1>{notice}\
         <p class=\"meta\">Sent: mails queued so far. Chatted: members who opened the chat from \
         their mail. Unsubscribed: members who asked for no more promotions from it.</p>\
         {list}<div class=\"actions\"><a class=\"button primary\" \
         href=\"/mall/host/promotions/new\">New promotion</a>\
         <a href=\"/mall/host\">Back to your shop</a></div></section>",
        list = promotion_list(&promotions, queued),
    );
    Ok(hv.render(
        &state,
        StatusCode::OK,
        "Promotions",
        "host-promotions",
        &main,
    ))
}

/// The promotion form as posted.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct PromotionForm {
    /// The ad's id.
    #[serde(default)]
    ad: String,
    /// The subject.
    #[serde(default)]
    subject: String,
    /// The text.
    #[serde(default)]
    body: String,
    /// The CSRF token.
    #[serde(default)]
    csrf: String,
}

/// The new-promotion page, with `errors` when a post failed.
async fn new_promotion_response(
    state: &AppState,
    hv: &HostView,
    form: &PromotionForm,
    errors: &FieldErrors,
) -> Result<Response, AppError> {
    let ads = state
        .store_call(state.store.ads_of(hv.host.company_id))
        .await?;
    let audience = state.store_call(state.store.promotion_audience()).await?;
    let now = state.clock.now_ms();
    let error = |name: &str| {
        error_for(errors, name).map_or_else(String::new, |m| {
            format!(
                "<p class=\"error\"{id}>{m}</p>",
                id = attr("id", &format!("error-{name}")),
                m = escape(m)
            )
        })
    };
    let mut options = String::new();
    for ad in &ads {
        let (_, label) = ad_status(ad, now);
        let selected = if form.ad.trim() == ad.id.to_string() {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            options,
            "<option{value}{selected}>{title} ({label})</option>",
            value = attr("value", &ad.id.to_string()),
            title = escape(&ad.fields.title),
        );
    }
    let reach = format!(
        "It goes to the <strong id=\"audience\">{audience}</strong> {members} who asked for \
         promotions, each in a mail of their own.",
        members = if audience == 1 { "member" } else { "members" }
    );
    let summary = if errors.is_empty() {
        String::new()
    } else {
        "<p class=\"error\" role=\"alert\" id=\"form-errors\">Please correct the fields \
         marked below. Nothing was sent.</p>"
            .to_owned()
    };
    let form_html = if ads.is_empty() {
        "<p class=\"muted\" id=\"no-ads\">Write an ad first: a promotion is about one of your \
         ads. <a href=\"/mall/host/ads/new\">New ad</a></p>"
            .to_owned()
    } else {
        format!(
            "<form method=\"post\" action=\"/mall/host/promotions/new\" class=\"stack\" novalidate>{csrf}\
             <div class=\"field\"><label for=\"ad\">The ad</label>\
             <select id=\"ad\" name=\"ad\">{options}</select>{ad_error}</div>\
             <div class=\"field\"><label for=\"subject\">Subject</label>\
             <input type=\"text\" id=\"subject\" name=\"subject\" required{max_subject}{subject}>{subject_error}</div>\
             <div class=\"field\"><label for=\"body\">Text</label>\
             <textarea id=\"body\" name=\"body\" rows=\"8\" required{max_body}>{body}</textarea>\
             <p class=\"hint\">A link to the ad and a link to chat with you are added below it.</p>\
             {body_error}</div>\
             <div class=\"actions\"><button type=\"submit\" class=\"primary\">Send the promotion</button>\
             <a href=\"/mall/host\">Cancel</a></div></form>",
            csrf = hv.csrf_field(),
            ad_error = error("ad"),
            max_subject = attr("maxlength", &MAX_PROMOTION_SUBJECT_LEN.to_string()),
            subject = attr("value", &form.subject),
            subject_error = error("subject"),
            max_body = attr("maxlength", &MAX_PROMOTION_BODY_LEN.to_string()),
            body = escape(&form.body),
            body_error = error("body"),
        )
    };
    let main = format!(
        "<section class=\"card stack\"><h1>New promotion</h1>\
         <p id=\"reach\">{reach}</p>{summary}{general}{form_html}</section>",
        general = error("form"),
    );
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(hv.render(state, status, "New promotion", "host-promotion-new", &main))
}

/// `GET /mall/host/promotions/new?ad=ID`.
pub(super) async fn new_promotion_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<PromotionQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let hv = host_or_return!(state, headers, true);
    let form = PromotionForm {
        ad: query.ok().and_then(|Query(q)| q.ad).unwrap_or_default(),
        ..PromotionForm::default()
    };
    new_promotion_response(&state, &hv, &form, &FieldErrors::new()).await
}

/// `POST /mall/host/promotions/new`: records the promotion and its recipients (the worker of
/// [`super::promotion`] mails them, paced), or shows the form again.
pub(super) async fn create_promotion(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<PromotionForm>, FormRejection>,
) -> Result<Response, AppError> {
    let hv = host_or_return!(state, headers, false);
    let Form(form) = form.map_err(bad_form)?;
    csrf::verify(&state, &headers, &form.csrf)?;
    let mut errors = FieldErrors::new();
    let ad = match form.ad.trim().parse::<i64>() {
        Ok(id) => own_ad(&state, &hv.host, id).await?,
        Err(_) => None,
    };
    if ad.is_none() {
        errors.push(("ad", "Choose one of your ads.".into()));
    }
    let subject = form.subject.trim();
    check_line(
        &mut errors,
        ("subject", "The subject"),
        subject,
        MAX_PROMOTION_SUBJECT_LEN,
        "Give the promotion a subject.",
    );
    let body = form.body.trim();
    check_text(
        &mut errors,
        ("body", "The text"),
        body,
        MAX_PROMOTION_BODY_LEN,
        Some("Write the text of the promotion."),
    );
    let Some(ad) = ad.filter(|_| errors.is_empty()) else {
        return new_promotion_response(&state, &hv, &form, &errors).await;
    };
    let promotion = NewPromotion {
        ad_id: ad.id,
        host_login: hv.host.login.clone(),
        subject: subject.to_owned(),
        body: body.to_owned(),
        created_ms: state.clock.now_ms(),
    };
    let created = match state
        .store_call(state.store.create_promotion(&promotion))
        .await
    {
        Ok(created) => created,
        Err(AppError::Store(StoreError::Invalid(m))) => {
            let errors = vec![("form", m)];
            return new_promotion_response(&state, &hv, &form, &errors).await;
        }
        Err(e) => return Err(e),
    };
    let Some((id, recipients)) = created else {
        return Ok(hv.not_found(&state));
    };
    info!(host = %hv.host.login, ad = ad.id, promotion = id, recipients, "promotion queued");
    Ok(see_other(
        &format!("/mall/host/promotions?queued={id}#promotion-{id}"),
        [],
    ))
}
