//! The static assets (`/static/chat.js`, `/static/me.js`, `/static/chat.css`, and the mall's
//! `/static/mall.css`), embedded in the binary so chatd is one file to install.
//!
//! Each answer carries a strong `ETag` (a hash of the content) and `Cache-Control: no-cache`:
//! browsers keep the file and revalidate it with `If-None-Match`, getting `304 Not Modified`
//! until a new chatd ships a new file. No build step, no versioned names.

use std::sync::LazyLock;

use axum::{
    extract::Path,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

use crate::error::AppError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Every file served under `/static/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "chat.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../static/chat.js"),
    },
    Asset {
        name: "me.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../static/me.js"),
    },
    Asset {
        name: "chat.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../static/chat.css"),
    },
    Asset {
        name: "mall.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../static/mall.css"),
    },
];

/// The ETag of each asset, in the order of [`ASSETS`].
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.body.as_bytes());
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
        .collect()
});

/// `GET /static/{file}`.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, AppError> {
    let (index, asset) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, a)| a.name == file)
        .ok_or(AppError::NotFound)?;
    let etag = ETAGS.get(index).map(String::as_str).unwrap_or_default();
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let etag = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if fresh {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag), cache]).into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::ETAG, etag),
            cache,
        ],
        asset.body,
    )
        .into_response())
}
