//! Pictures in a chat over HTTP (`POST /c/{port}/{room}/pictures`, `GET .../pictures/{id}`):
//! stored and served under their own room only, judged by their bytes and their pixels, bounded
//! in size and per client network, refused from other sites.

mod support;

use axum::{
    body::{to_bytes, Body},
    extract::ConnectInfo,
    http::{header, Request, StatusCode},
};
use chatd::app;
use support::*;
use tower::ServiceExt as _;

/// A real PNG (a demo product picture).
const PNG: &[u8] = include_bytes!("../static/demo/teapot-red.png");

/// A POST of `bytes` to `path` from our own page (or from `origin`).
fn upload(path: &str, bytes: Vec<u8>, origin: &str) -> Request<Body> {
    let mut req = Request::post(path)
        .header(header::CONTENT_TYPE, "image/png")
        .header(header::ORIGIN, origin)
        .body(Body::from(bytes))
        .expect("request builds");
    req.extensions_mut().insert(ConnectInfo(client()));
    req
}

/// The status, content type and body of `req`.
async fn call(router: &axum::Router, req: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let response = router.clone().oneshot(req).await.expect("infallible");
    let status = response.status();
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = to_bytes(response.into_body(), 1 << 24).await.expect("body");
    (status, kind, bytes.to_vec())
}

/// A PNG header claiming `w` x `h` pixels.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    b.extend(w.to_be_bytes());
    b.extend(h.to_be_bytes());
    b.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
    b
}

#[tokio::test]
async fn a_picture_is_stored_and_served_under_its_room_only() {
    let (state, _) = state().await;
    let room = alice_room(&*state.store).await;
    let other = seed_room(
        &*state.store,
        "alice@a.example",
        "alice@a.example",
        &room_id("otherroom"),
        "Other",
        &["bob@b.example"],
        &[],
    )
    .await;
    let router = app(state);
    let base = format!("/c/{}/{}", room.port, room.room);
    let (status, kind, body) = call(
        &router,
        upload(&format!("{base}/pictures"), PNG.to_vec(), ORIGIN),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(kind.starts_with("application/json"));
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let id = answer["id"].as_i64().expect("an id");

    let (status, kind, bytes) = call(&router, get(&format!("{base}/pictures/{id}"), "")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, "image/png");
    assert_eq!(bytes, PNG);
    // Under another room, a wrong port or an unknown id: the same 404 as an unknown room.
    for path in [
        format!("/c/{}/{}/pictures/{id}", other.port, other.room),
        format!("/c/{}/{}/pictures/{id}", room.port + 1, room.room),
        format!("{base}/pictures/{}", id + 99),
        format!("{base}/pictures/x"),
    ] {
        let (status, _, _) = call(&router, get(&path, "")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn only_pictures_of_bounded_size_from_our_pages_are_taken() {
    let mut config = config();
    config.chat.max_picture_bytes = PNG.len() + 10;
    config.chat.pictures_per_hour = 3;
    let (state, _) = state_with(config).await;
    let room = alice_room(&*state.store).await;
    let router = app(state.clone());
    let path = format!("/c/{}/{}/pictures", room.port, room.room);
    let cases: Vec<(Vec<u8>, &str, StatusCode)> = vec![
        (
            b"<svg onload=alert(1)>".to_vec(),
            ORIGIN,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            png_header(60_000, 60_000),
            ORIGIN,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            vec![0x89; PNG.len() + 11],
            ORIGIN,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (PNG.to_vec(), "https://evil.example", StatusCode::FORBIDDEN),
    ];
    for (bytes, origin, expected) in cases {
        let (status, _, body) = call(&router, upload(&path, bytes, origin)).await;
        assert_eq!(status, expected, "{}", String::from_utf8_lossy(&body));
    }
    // The three refusals that reached the limiter count: the next upload is the limit's last.
    let (status, _, _) = call(&router, upload(&path, PNG.to_vec(), ORIGIN)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let unknown = format!("/c/{}/nosuchroom/pictures", room.port);
    let (status, _, _) = call(&router, upload(&unknown, PNG.to_vec(), ORIGIN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Pictures off.
    let mut config = support::config();
    config.chat.max_picture_bytes = 0;
    let (state, _) = state_with(config).await;
    let room = alice_room(&*state.store).await;
    let router = app(state);
    let path = format!("/c/{}/{}/pictures", room.port, room.room);
    let (status, _, _) = call(&router, upload(&path, PNG.to_vec(), ORIGIN)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let page = send(&router, get(&format!("/c/{}/{}", room.port, room.room), "")).await;
    assert!(!page.body.contains("id=\"picture\""), "no picture button");
}
