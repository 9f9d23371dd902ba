//! An ad's pictures: the upload (multipart, checked by content, size and count) and deleting one.

use std::fmt::Write as _;

use axum::{
    body::Body,
    extract::{
        rejection::{FormRejection, PathRejection},
        FromRequest, Multipart, Path, Request, State,
    },
    http::{header, HeaderMap, StatusCode},
    response::Response,
    Form,
};
use chmail::store::mall::{Ad, MAX_PICTURES_PER_AD, MAX_PICTURE_LEN};
use tracing::info;

use super::{
    ads::{edit_ad_response, EditNotes},
    bad_form,
    form::{AdForm, FieldErrors},
    host_view, own_ad_and_hosts, HostView, TokenForm, UPLOAD_OVERHEAD,
};
use crate::{
    error::AppError,
    state::AppState,
    web::{
        csrf,
        html::{attr, escape},
        see_other,
    },
};

/// The pictures of `ad`, each with a Delete button, and the upload form while there is room.
pub(super) fn pictures_html(
    state: &AppState,
    hv: &HostView,
    ad: &Ad,
    error: Option<&str>,
) -> String {
    let mut items = String::new();
    for (n, pid) in ad.pictures.iter().enumerate() {
        let _ = write!(
            items,
            "<li{data}><img{src}{alt} loading=\"lazy\">\
             <form method=\"post\"{action}>{csrf}<button type=\"submit\">Delete</button></form></li>",
            data = attr("data-picture", &pid.to_string()),
            src = attr("src", &format!("/mall/picture/{pid}")),
            alt = attr("alt", &format!("Picture {} of {}", n + 1, ad.fields.title)),
            action = attr(
                "action",
                &format!("/mall/host/ads/{}/pictures/{pid}/delete", ad.id)
            ),
            csrf = hv.csrf_field(),
        );
    }
    let error = error.map_or_else(String::new, |m| {
        format!(
            "<p class=\"error\" id=\"picture-error\" role=\"alert\">{}</p>",
            escape(m)
        )
    });
    let max = picture_limit(state);
    let upload = if ad.pictures.len() < MAX_PICTURES_PER_AD {
        format!(
            "<form method=\"post\"{action} enctype=\"multipart/form-data\" class=\"stack\">{csrf}\
             <label for=\"picture\">Add a picture</label>\
             <input type=\"file\" id=\"picture\" name=\"picture\" \
             accept=\"image/png,image/jpeg,image/gif,image/webp\" required>\
             <p class=\"hint\">PNG, JPEG, GIF or WebP, at most {size}.</p>\
             <button type=\"submit\">Upload</button></form>",
            action = attr("action", &format!("/mall/host/ads/{}/pictures", ad.id)),
            csrf = hv.csrf_field(),
            size = format_size(max),
        )
    } else {
        format!(
            "<p class=\"muted\" id=\"pictures-full\">An ad holds at most {MAX_PICTURES_PER_AD} \
             pictures. Delete one to add another.</p>"
        )
    };
    format!(
        "<section class=\"card stack\" id=\"pictures\"><h2>Pictures ({n} of {MAX_PICTURES_PER_AD})</h2>\
         {error}<ul class=\"host-pictures\">{items}</ul>{upload}</section>",
        n = ad.pictures.len(),
    )
}

// --- pictures ---------------------------------------------------------------------------------

/// The largest picture taken: `[mall] max_picture_bytes`, within what the store keeps.
fn picture_limit(state: &AppState) -> usize {
    state.config.mall.max_picture_bytes.min(MAX_PICTURE_LEN)
}

/// `bytes` as `2 MB` or `300 KB`.
fn format_size(bytes: usize) -> String {
    const MB: usize = 1024 * 1024;
    if bytes >= MB && bytes % MB == 0 {
        format!("{} MB", bytes / MB)
    } else if bytes >= MB {
        format!("{}.{} MB", bytes / MB, (bytes % MB) * 10 / MB)
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}

/// The parts of an upload form.
#[derive(Debug, Default)]
struct Upload {
    csrf: String,
    picture: Option<Vec<u8>>,
}

/// Reads the multipart body (already bounded) into its CSRF field and its picture.
async fn read_upload(mut multipart: Multipart) -> Option<Upload> {
    let mut upload = Upload::default();
    while let Some(field) = multipart.next_field().await.ok()? {
        match field.name() {
            Some("csrf") => upload.csrf = field.text().await.ok()?,
            Some("picture") => upload.picture = Some(field.bytes().await.ok()?.to_vec()),
            _ => {}
        }
    }
    Some(upload)
}

/// `POST /mall/host/ads/{id}/pictures`: adds a picture to an ad of the host's company.
///
/// The body is read here, up to `[mall] max_picture_bytes` plus [`UPLOAD_OVERHEAD`] (the
/// route's only body limit): a longer one is refused without reading the rest.
pub(super) async fn upload_picture(
    State(state): State<AppState>,
    path: Result<Path<i64>, PathRejection>,
    request: Request,
) -> Result<Response, AppError> {
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    let hv = host_or_return!(state, headers, false);
    let Some((ad, hosts)) = own_ad_and_hosts(&state, &hv.host, path).await? else {
        return Ok(hv.not_found(&state));
    };
    let id = ad.id;
    let refuse = |status: StatusCode, message: String| {
        let notes = EditNotes {
            saved: false,
            picture_error: Some(message),
        };
        edit_ad_response(
            &state,
            &hv,
            &ad,
            &AdForm::of(&ad),
            &FieldErrors::new(),
            &hosts,
            &notes,
            status,
        )
    };
    let max = picture_limit(&state);
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "That picture is too large: at most {} is accepted.",
                format_size(max)
            ),
        )
    };
    let limit = max.saturating_add(UPLOAD_OVERHEAD);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(too_large());
    }
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return Ok(too_large());
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    let unreadable = || {
        refuse(
            StatusCode::BAD_REQUEST,
            "That upload could not be read. Please choose the picture again and press Upload."
                .into(),
        )
    };
    let Ok(multipart) = Multipart::from_request(request, &state).await else {
        return Ok(unreadable());
    };
    let Some(upload) = read_upload(multipart).await else {
        return Ok(unreadable());
    };
    csrf::verify(&state, &headers, &upload.csrf)?;
    let picture = upload.picture.unwrap_or_default();
    if picture.is_empty() {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            "Choose a picture first.".into(),
        ));
    }
    if picture.len() > max {
        return Ok(too_large());
    }
    // By its bytes and its pixels: a small file must not decode to gigabytes in a browser.
    let content_type = match crate::picture::check(&picture) {
        Ok(kind) => kind,
        Err(crate::picture::Refused::NotAPicture) => {
            return Ok(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "That file is not a PNG, JPEG, GIF or WebP picture.".into(),
            ))
        }
        Err(crate::picture::Refused::TooManyPixels) => {
            return Ok(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "That picture has too many pixels (at most 40 megapixels); send a smaller one."
                    .into(),
            ))
        }
    };
    let full = || {
        refuse(
            StatusCode::CONFLICT,
            format!(
                "An ad holds at most {MAX_PICTURES_PER_AD} pictures. Delete one to add another."
            ),
        )
    };
    if ad.pictures.len() >= MAX_PICTURES_PER_AD {
        return Ok(full());
    }
    let add = state
        .store
        .add_picture(id, hv.host.company_id, content_type, &picture);
    // `None`: the ad filled up (or left the company) since it was read.
    let Some(pid) = state.store_call(add).await? else {
        return Ok(full());
    };
    info!(host = %hv.host.login, ad = id, picture = pid, bytes = picture.len(), "picture added");
    Ok(see_other(&format!("/mall/host/ads/{id}/edit#pictures"), []))
}

/// `POST /mall/host/ads/{id}/pictures/{pid}/delete`.
pub(super) async fn delete_picture(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(i64, i64)>, PathRejection>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, AppError> {
    let hv = host_or_return!(state, headers, false);
    let Form(form) = form.map_err(bad_form)?;
    csrf::verify(&state, &headers, &form.csrf)?;
    let Ok(Path((id, pid))) = path else {
        return Ok(hv.not_found(&state));
    };
    let call = state.store.delete_picture(pid, id, hv.host.company_id);
    if !state.store_call(call).await? {
        return Ok(hv.not_found(&state));
    }
    info!(host = %hv.host.login, ad = id, picture = pid, "picture deleted");
    Ok(see_other(&format!("/mall/host/ads/{id}/edit#pictures"), []))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(format_size(2 * 1024 * 1024), "2 MB");
        assert_eq!(format_size(1536 * 1024), "1.5 MB");
        assert_eq!(format_size(300 * 1024), "300 KB");
    }
}
