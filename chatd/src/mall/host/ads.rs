//! Creating and editing an ad, and pausing or resuming it.

use axum::{
    extract::{
        rejection::{FormRejection, PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{HeaderMap, StatusCode},
    response::Response,
    Form,
};
use chmail::store::{mall::Ad, mall::Host, StoreError};
use serde::Deserialize;
use tracing::info;

use super::{
    ad_status, bad_form,
    form::{ad_form_html, parse_ad, AdForm, FieldErrors},
    host_view, own_ad_and_hosts,
    pictures::pictures_html,
    HostView, TokenForm,
};
use crate::{
    error::AppError,
    mall::storefront,
    state::AppState,
    web::{
        csrf,
        html::{attr, escape},
        see_other,
    },
};

// --- ads: new and edit ------------------------------------------------------------------------

/// The new-ad page, with `errors` when a post failed.
fn new_ad_response(
    state: &AppState,
    hv: &HostView,
    form: &AdForm,
    errors: &FieldErrors,
    hosts: &[Host],
) -> Response {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let main = format!(
        "<section class=\"card stack\"><h1>New ad</h1>{form}</section>",
        form = ad_form_html(hv, "/mall/host/ads/new", form, errors, hosts, "Save the ad"),
    );
    hv.render(state, status, "New ad", "host-ad-new", &main)
}

/// `GET /mall/host/ads/new`.
pub(super) async fn new_ad_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let hv = host_or_return!(state, headers, true);
    let hosts = state
        .store_call(state.store.hosts_of(hv.host.company_id))
        .await?;
    Ok(new_ad_response(
        &state,
        &hv,
        &AdForm::blank(&hv.host),
        &FieldErrors::new(),
        &hosts,
    ))
}

/// `POST /mall/host/ads/new`: saves the ad and opens it for pictures, or shows the form again.
pub(super) async fn create_ad(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<AdForm>, FormRejection>,
) -> Result<Response, AppError> {
    let hv = host_or_return!(state, headers, false);
    let Form(form) = form.map_err(bad_form)?;
    csrf::verify(&state, &headers, &form.csrf)?;
    let hosts = state
        .store_call(state.store.hosts_of(hv.host.company_id))
        .await?;
    let fields = match parse_ad(&form, &hosts, false) {
        Ok(fields) => fields,
        Err(errors) => return Ok(new_ad_response(&state, &hv, &form, &errors, &hosts)),
    };
    let now = state.clock.now_ms();
    let create = state.store.create_ad(hv.host.company_id, &fields, now);
    let id = match state.store_call(create).await {
        Ok(id) => id,
        Err(AppError::Store(StoreError::Invalid(m))) => {
            let errors = vec![("form", m)];
            return Ok(new_ad_response(&state, &hv, &form, &errors, &hosts));
        }
        Err(e) => return Err(e),
    };
    info!(host = %hv.host.login, ad = id, "ad created");
    Ok(see_other(&format!("/mall/host/ads/{id}/edit?saved=1"), []))
}

/// What the edit page shows besides the form.
#[derive(Debug, Default)]
pub(super) struct EditNotes {
    /// The form was just saved.
    pub(super) saved: bool,
    /// What went wrong with a picture upload.
    pub(super) picture_error: Option<String>,
}

/// The edit page of `ad`: the form (with `errors` when a post failed) and the pictures.
#[allow(clippy::too_many_arguments)] // the parts of one page
pub(super) fn edit_ad_response(
    state: &AppState,
    hv: &HostView,
    ad: &Ad,
    form: &AdForm,
    errors: &FieldErrors,
    hosts: &[Host],
    notes: &EditNotes,
    status: StatusCode,
) -> Response {
    let now = state.clock.now_ms();
    let (st, label) = ad_status(ad, now);
    let saved = if notes.saved {
        "<p class=\"notice\" id=\"saved\" role=\"status\">Saved.</p>"
    } else {
        ""
    };
    let (action, button) = if ad.fields.paused {
        ("resume", "Resume")
    } else {
        ("pause", "Pause")
    };
    let form_html = ad_form_html(
        hv,
        &format!("/mall/host/ads/{}/edit", ad.id),
        form,
        errors,
        hosts,
        "Save changes",
    );
    let main = format!(
        "<section class=\"card stack\"><div class=\"host-item\"><h1>{title}</h1>\
         <span class=\"badge {st}\">{label}</span></div>{saved}\
         <p class=\"meta\"><span data-count=\"impressions\">{impressions}</span> impressions \
         &middot; <span data-count=\"clicks\">{clicks}</span> clicks &middot; <a{view}>View in \
         the mall</a></p>\
         <form method=\"post\"{pause} class=\"inline\">{csrf}<button type=\"submit\">{button}</button></form>\
         </section>\n<section class=\"card stack\"><h2>The ad</h2>{form_html}</section>\n{pictures}",
        title = escape(&ad.fields.title),
        impressions = ad.impressions,
        clicks = ad.clicks,
        view = attr("href", &storefront::ad_path(ad.id, None)),
        pause = attr("action", &format!("/mall/host/ads/{}/{action}", ad.id)),
        csrf = hv.csrf_field(),
        pictures = pictures_html(state, hv, ad, notes.picture_error.as_deref()),
    );
    hv.render(state, status, &ad.fields.title, "host-ad-edit", &main)
}

/// Query of the edit page.
#[derive(Debug, Default, Deserialize)]
pub(super) struct EditQuery {
    /// Set after a save.
    saved: Option<String>,
}

/// `GET /mall/host/ads/{id}/edit`.
pub(super) async fn edit_ad_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<i64>, PathRejection>,
    query: Result<Query<EditQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let hv = host_or_return!(state, headers, true);
    let Some((ad, hosts)) = own_ad_and_hosts(&state, &hv.host, path).await? else {
        return Ok(hv.not_found(&state));
    };
    let notes = EditNotes {
        saved: query.is_ok_and(|Query(q)| q.saved.is_some()),
        picture_error: None,
    };
    Ok(edit_ad_response(
        &state,
        &hv,
        &ad,
        &AdForm::of(&ad),
        &FieldErrors::new(),
        &hosts,
        &notes,
        StatusCode::OK,
    ))
}

/// `POST /mall/host/ads/{id}/edit`: saves the changes, or shows the form again.
pub(super) async fn update_ad(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<i64>, PathRejection>,
    form: Result<Form<AdForm>, FormRejection>,
) -> Result<Response, AppError> {
    let hv = host_or_return!(state, headers, false);
    let Form(form) = form.map_err(bad_form)?;
    csrf::verify(&state, &headers, &form.csrf)?;
    let Some((ad, hosts)) = own_ad_and_hosts(&state, &hv.host, path).await? else {
        return Ok(hv.not_found(&state));
    };
    let id = ad.id;
    let show_again = |errors: FieldErrors| {
        edit_ad_response(
            &state,
            &hv,
            &ad,
            &form,
            &errors,
            &hosts,
            &EditNotes::default(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    };
    let fields = match parse_ad(&form, &hosts, ad.fields.paused) {
        Ok(fields) => fields,
        Err(errors) => return Ok(show_again(errors)),
    };
    let now = state.clock.now_ms();
    let update = state.store.update_ad(id, hv.host.company_id, &fields, now);
    match state.store_call(update).await {
        Ok(true) => {}
        Ok(false) => return Ok(hv.not_found(&state)),
        Err(AppError::Store(StoreError::Invalid(m))) => {
            return Ok(show_again(vec![("form", m)]));
        }
        Err(e) => return Err(e),
    }
    info!(host = %hv.host.login, ad = id, "ad changed");
    Ok(see_other(&format!("/mall/host/ads/{id}/edit?saved=1"), []))
}

/// `POST /mall/host/ads/{id}/pause`.
pub(super) async fn pause_ad(
    state: State<AppState>,
    headers: HeaderMap,
    path: Result<Path<i64>, PathRejection>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, AppError> {
    set_paused(state, headers, path, form, true).await
}

/// `POST /mall/host/ads/{id}/resume`.
pub(super) async fn resume_ad(
    state: State<AppState>,
    headers: HeaderMap,
    path: Result<Path<i64>, PathRejection>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, AppError> {
    set_paused(state, headers, path, form, false).await
}

/// Pauses or resumes an ad of the host's company, then shows the dashboard at it.
async fn set_paused(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<i64>, PathRejection>,
    form: Result<Form<TokenForm>, FormRejection>,
    paused: bool,
) -> Result<Response, AppError> {
    let hv = host_or_return!(state, headers, false);
    let Form(form) = form.map_err(bad_form)?;
    csrf::verify(&state, &headers, &form.csrf)?;
    let Ok(Path(id)) = path else {
        return Ok(hv.not_found(&state));
    };
    let call = state.store.set_ad_paused(id, hv.host.company_id, paused);
    if !state.store_call(call).await? {
        return Ok(hv.not_found(&state));
    }
    info!(host = %hv.host.login, ad = id, paused, "ad paused or resumed");
    Ok(see_other(&format!("/mall/host#ad-{id}"), []))
}
