//! The host's pages through `app(state).oneshot(request)` over an in-memory store: who may see
//! them, a host of one company against another company's ads, pictures and promotions, the ad
//! form with each bad input, picture uploads checked by content, size and count, the inquiries a
//! host sees, CSRF, and a host's sign-in by mailed link.

mod support;

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    Router,
};
use chatd::{app, auth, AppState};
use chmail::store::{
    mall::{NewInquiry, MAX_PICTURES_PER_AD},
    Store,
};
use support::*;

/// Company A's first host.
const ANA: &str = "ana@alpha.example";
/// Company A's second host.
const AL: &str = "al@alpha.example";
/// Company B's host.
const BEN: &str = "ben@beta.example";

/// A tiny PNG: the signature is what counts.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

/// Two companies with their hosts and one ad each; B's ad has a picture.
struct Mall {
    state: AppState,
    router: Router,
    mails: Mails,
    company_a: i64,
    company_b: i64,
    ad_a: i64,
    ad_b: i64,
    picture_b: i64,
}

async fn mall_with(tweak: impl FnOnce(&mut chmail::Config)) -> Mall {
    let mut config = config();
    tweak(&mut config);
    let (state, mails) = state_with(config).await;
    let store = state.store.clone();
    let now = state.clock.now_ms();
    let (a, _) = store
        .add_company("Alpha Shop", now)
        .await
        .expect("company A");
    let (b, _) = store
        .add_company("Beta Store", now)
        .await
        .expect("company B");
    store.add_host(a.id, ANA, "Ana", now).await.expect("host");
    store.add_host(a.id, AL, "Al", now).await.expect("host");
    store.add_host(b.id, BEN, "Ben", now).await.expect("host");
    let ad_a = store
        .create_ad(a.id, &ad_fields(ANA, "Alpha tea pot"), now)
        .await
        .expect("ad A");
    let ad_b = store
        .create_ad(b.id, &ad_fields(BEN, "Beta kettle"), now)
        .await
        .expect("ad B");
    let picture_b = store
        .add_picture(ad_b, b.id, "image/png", PNG)
        .await
        .expect("picture")
        .expect("room for it");
    Mall {
        router: app(state.clone()),
        state,
        mails,
        company_a: a.id,
        company_b: b.id,
        ad_a,
        ad_b,
        picture_b,
    }
}

async fn mall() -> Mall {
    mall_with(|_| {}).await
}

/// A CSRF token a browser would hold: the same value in the cookie and the form.
const CSRF: &str = "csrfcsrfcsrfcsrfcsrfcsrfcsrfcsrfcsrfcsrfcsr";

impl Mall {
    /// `Cookie` header of a signed-in `login`, with the CSRF cookie.
    async fn cookies(&self, login: &str) -> String {
        let session = session_cookie(&self.state, login).await;
        format!("{session}; chmail_csrf={CSRF}")
    }

    async fn get(&self, path: &str, cookies: &str) -> Page {
        send(&self.router, get(path, cookies)).await
    }

    async fn post(&self, path: &str, cookies: &str, form: &str) -> Page {
        send(&self.router, post_form(path, cookies, form)).await
    }

    async fn ad(&self, id: i64) -> chmail::store::mall::Ad {
        self.state
            .store
            .ad(id)
            .await
            .expect("store")
            .expect("the ad exists")
    }

    async fn ads_of(&self, company: i64) -> Vec<chmail::store::mall::Ad> {
        self.state.store.ads_of(company).await.expect("store")
    }

    /// Uploads `bytes` as file `name` of type `content_type` to ad `id`.
    async fn upload(
        &self,
        id: i64,
        cookies: &str,
        csrf: &str,
        name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Page {
        let boundary = "----hostTestBoundary7MA4YWxk";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"picture\"; \
                 filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut req = Request::post(format!("/mall/host/ads/{id}/pictures"))
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header(header::CONTENT_LENGTH, body.len())
            .header("sec-fetch-site", "same-origin")
            .header(header::COOKIE, cookies)
            .body(Body::from(body))
            .expect("request builds");
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(client()));
        send(&self.router, req).await
    }
}

/// A valid ad form with `change` applied (`name=value` pairs, already encoded).
fn ad_form(change: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("title", "Copper pan".to_owned()),
        ("description", "Hand-hammered.".to_owned()),
        ("price", "49.90".to_owned()),
        ("currency", "EUR".to_owned()),
        ("category", "Kitchen".to_owned()),
        ("starts", String::new()),
        ("ends", String::new()),
        ("host", ANA.to_owned()),
        ("csrf", CSRF.to_owned()),
    ];
    for (name, value) in change {
        for pair in pairs.iter_mut() {
            if pair.0 == *name {
                pair.1 = (*value).to_owned();
            }
        }
    }
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn a_visitor_is_sent_to_sign_in_and_anyone_but_a_host_is_refused() {
    let m = mall().await;
    let visitor = m.get("/mall/host", "").await;
    assert_eq!(visitor.status, StatusCode::SEE_OTHER);
    assert_eq!(visitor.location(), Some("/signin"));

    // A sender of ordinary mail (or a member) is signed in but hosts nothing.
    let alice = m.cookies("alice@a.example").await;
    for path in [
        "/mall/host",
        "/mall/host/ads/new",
        "/mall/host/inquiries",
        "/mall/host/promotions",
        "/mall/host/promotions/new",
    ] {
        let page = m.get(path, &alice).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.body.contains("id=\"not-a-host\""), "{path}");
    }
    let edit = m
        .get(&format!("/mall/host/ads/{}/edit", m.ad_a), &alice)
        .await;
    assert_eq!(edit.status, StatusCode::FORBIDDEN);
    assert!(!edit.body.contains("Alpha tea pot"));

    let before = m.ads_of(m.company_a).await;
    let posted = m.post("/mall/host/ads/new", &alice, &ad_form(&[])).await;
    assert_eq!(posted.status, StatusCode::FORBIDDEN);
    let paused = m
        .post(
            &format!("/mall/host/ads/{}/pause", m.ad_a),
            &alice,
            &format!("csrf={CSRF}"),
        )
        .await;
    assert_eq!(paused.status, StatusCode::FORBIDDEN);
    let upload = m
        .upload(m.ad_a, &alice, CSRF, "a.png", "image/png", PNG)
        .await;
    assert_eq!(upload.status, StatusCode::FORBIDDEN);
    // A visitor's post is refused too (no redirect that could lose the form).
    let anonymous = m
        .post(
            "/mall/host/ads/new",
            &format!("chmail_csrf={CSRF}"),
            &ad_form(&[]),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::FORBIDDEN);
    assert_eq!(m.ads_of(m.company_a).await, before, "nothing changed");
}

#[tokio::test]
async fn a_host_cannot_see_or_change_another_company_s_ads_pictures_or_promotions() {
    let m = mall().await;
    let ana = m.cookies(ANA).await;
    let b_before = m.ad(m.ad_b).await;

    let dashboard = m.get("/mall/host", &ana).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("Alpha tea pot"));
    assert!(dashboard.body.contains("Alpha Shop"));
    assert!(
        !dashboard.body.contains("Beta kettle"),
        "{}",
        dashboard.body
    );

    let edit = m
        .get(&format!("/mall/host/ads/{}/edit", m.ad_b), &ana)
        .await;
    assert_eq!(edit.status, StatusCode::NOT_FOUND);
    assert!(!edit.body.contains("Beta kettle"));
    let missing = m.get("/mall/host/ads/999999/edit", &ana).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.body, edit.body,
        "another company's ad answers as a missing one"
    );

    let changed = m
        .post(
            &format!("/mall/host/ads/{}/edit", m.ad_b),
            &ana,
            &ad_form(&[("title", "Stolen"), ("host", ANA)]),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NOT_FOUND);
    let paused = m
        .post(
            &format!("/mall/host/ads/{}/pause", m.ad_b),
            &ana,
            &format!("csrf={CSRF}"),
        )
        .await;
    assert_eq!(paused.status, StatusCode::NOT_FOUND);
    let upload = m
        .upload(m.ad_b, &ana, CSRF, "p.png", "image/png", PNG)
        .await;
    assert_eq!(upload.status, StatusCode::NOT_FOUND);
    for path in [
        format!("/mall/host/ads/{}/pictures/{}/delete", m.ad_b, m.picture_b),
        // B's picture under A's own ad: the picture must belong to that ad.
        format!("/mall/host/ads/{}/pictures/{}/delete", m.ad_a, m.picture_b),
    ] {
        let deleted = m.post(&path, &ana, &format!("csrf={CSRF}")).await;
        assert_eq!(deleted.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(m.ad(m.ad_b).await, b_before, "B's ad is untouched");

    // A's answering host must be one of A's hosts: Ben cannot be put on A's ad.
    let a_before = m.ad(m.ad_a).await;
    let borrowed = m
        .post(
            &format!("/mall/host/ads/{}/edit", m.ad_a),
            &ana,
            &ad_form(&[("host", BEN)]),
        )
        .await;
    assert_eq!(borrowed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(borrowed.body.contains("id=\"error-host\""));
    assert_eq!(m.ad(m.ad_a).await, a_before);

    // Promotions: B's ad is neither offered nor accepted.
    let form = m
        .get(&format!("/mall/host/promotions/new?ad={}", m.ad_b), &ana)
        .await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("Alpha tea pot"));
    assert!(!form.body.contains("Beta kettle"));
    let promoted = m
        .post(
            "/mall/host/promotions/new",
            &ana,
            &format!("ad={}&subject=Sale&body=Cheap&csrf={CSRF}", m.ad_b),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(promoted.body.contains("id=\"error-ad\""));
    for company in [m.company_a, m.company_b] {
        let promotions = m
            .state
            .store
            .promotions_of_company(company, 10)
            .await
            .expect("store");
        assert!(promotions.is_empty(), "{promotions:?}");
    }
}

#[tokio::test]
async fn a_host_creates_edits_pauses_and_resumes_an_ad() {
    let m = mall().await;
    let ana = m.cookies(ANA).await;
    let form = m.get("/mall/host/ads/new", &ana).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("<option value=\"al@alpha.example\""));
    assert!(!form.body.contains(BEN), "only the company's hosts answer");

    let created = m
        .post(
            "/mall/host/ads/new",
            &ana,
            &ad_form(&[
                ("starts", "2030-01-01"),
                ("ends", "2030-01-31"),
                ("host", AL),
            ]),
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let location = created.location().expect("a location").to_owned();
    let id: i64 = location
        .trim_start_matches("/mall/host/ads/")
        .split('/')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("the new ad's id");
    let ad = m.ad(id).await;
    assert_eq!(ad.company_id, m.company_a);
    assert_eq!(ad.fields.title, "Copper pan");
    assert_eq!(ad.fields.price_minor, 4_990);
    assert_eq!(ad.fields.host_login, AL);
    assert!(ad.fields.starts_ms.is_some() && ad.fields.ends_ms.is_some());

    let page = m.get(&location, &ana).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"saved\""));
    assert!(page.body.contains("value=\"49.90\""));
    assert!(
        page.body.contains("value=\"2030-01-31\""),
        "the last day shows as typed"
    );
    let dashboard = m.get("/mall/host", &ana).await;
    assert!(dashboard
        .body
        .contains(&format!("data-ad=\"{id}\" data-status=\"scheduled\"")));

    let edited = m
        .post(
            &format!("/mall/host/ads/{id}/edit"),
            &ana,
            &ad_form(&[("title", "Copper pan, large"), ("price", "59")]),
        )
        .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.body);
    let ad = m.ad(id).await;
    assert_eq!(ad.fields.title, "Copper pan, large");
    assert_eq!(ad.fields.price_minor, 5_900);
    assert_eq!(ad.fields.starts_ms, None);

    for (action, paused) in [("pause", true), ("resume", false)] {
        let answer = m
            .post(
                &format!("/mall/host/ads/{id}/{action}"),
                &ana,
                &format!("csrf={CSRF}"),
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER);
        assert_eq!(m.ad(id).await.fields.paused, paused, "{action}");
        let dashboard = m.get("/mall/host", &ana).await;
        let status = if paused { "paused" } else { "active" };
        assert!(dashboard
            .body
            .contains(&format!("data-ad=\"{id}\" data-status=\"{status}\"")));
    }
    // A second host of the company manages the same ads.
    let al = m.cookies(AL).await;
    let other = m.get(&format!("/mall/host/ads/{id}/edit"), &al).await;
    assert_eq!(other.status, StatusCode::OK);
}

#[tokio::test]
async fn each_bad_ad_input_is_named_shown_again_and_nothing_is_saved() {
    let m = mall().await;
    let ana = m.cookies(ANA).await;
    let long_title = "x".repeat(201);
    let long_description = "y".repeat(10_001);
    let cases: Vec<(&str, &str, &str)> = vec![
        ("title", "", "Give the ad a title"),
        ("title", &long_title, "The title is too long"),
        (
            "description",
            &long_description,
            "The description is too long",
        ),
        ("price", "ten euros", "The price must be a number"),
        ("price", "1.234", "at most 2 decimals"),
        ("price", "99999999999999", "too large"),
        ("currency", "EURO", "three-letter code"),
        ("category", "  ", "Give the ad a category"),
        ("starts", "next week", "first day as a date"),
        ("ends", "2020-02-30", "last day as a date"),
        (
            "host",
            "mallory@evil.example",
            "one of your shop&#39;s hosts",
        ),
    ];
    let a_before = m.ads_of(m.company_a).await;
    for (field, value, message) in &cases {
        // A title that would be markup comes back escaped with the form.
        let change = [(*field, *value), ("title", "<b>Pan</b>")];
        let change: &[(&str, &str)] = if *field == "title" {
            &change[..1]
        } else {
            &change
        };
        for path in [
            "/mall/host/ads/new".to_owned(),
            format!("/mall/host/ads/{}/edit", m.ad_a),
        ] {
            let page = m.post(&path, &ana, &ad_form(change)).await;
            assert_eq!(
                page.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{field}={value:?} at {path}"
            );
            assert!(
                page.body.contains(&format!("id=\"error-{field}\"")),
                "{field}: no message beside the field at {path}"
            );
            assert!(
                page.body.contains(message),
                "{field}={value:?}: expected {message:?} in {path}"
            );
            assert!(page.body.contains("id=\"form-errors\""));
            if *field != "title" {
                assert!(page.body.contains("value=\"&lt;b&gt;Pan&lt;/b&gt;\""));
                assert!(!page.body.contains("<b>Pan</b>"));
            }
        }
    }
    // The last day before the first: named on the last day.
    let page = m
        .post(
            "/mall/host/ads/new",
            &ana,
            &ad_form(&[("starts", "2030-02-01"), ("ends", "2030-01-01")]),
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("id=\"error-ends\""));
    assert!(page.body.contains("cannot be before the first day"));
    assert_eq!(m.ads_of(m.company_a).await, a_before, "nothing was saved");
}

#[tokio::test]
async fn pictures_are_taken_by_content_within_the_size_and_count_limits() {
    let m = mall_with(|c| c.mall.max_picture_bytes = 4_096).await;
    let ana = m.cookies(ANA).await;

    let ok = m
        .upload(m.ad_a, &ana, CSRF, "pan.png", "image/png", PNG)
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let ad = m.ad(m.ad_a).await;
    assert_eq!(ad.pictures.len(), 1);
    let stored = m
        .state
        .store
        .picture(ad.pictures[0])
        .await
        .expect("store")
        .expect("picture");
    assert_eq!(stored.content_type, "image/png");
    assert_eq!(stored.bytes, PNG);
    let page = m
        .get(&format!("/mall/host/ads/{}/edit", m.ad_a), &ana)
        .await;
    assert!(page
        .body
        .contains(&format!("src=\"/mall/picture/{}\"", ad.pictures[0])));

    // A text file named and labelled as a PNG is refused by its content.
    let text = m
        .upload(
            m.ad_a,
            &ana,
            CSRF,
            "photo.png",
            "image/png",
            b"this is not a picture at all",
        )
        .await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(text.body.contains("id=\"picture-error\""));
    assert!(text.body.contains("not a PNG, JPEG, GIF or WebP picture"));

    // A few bytes that would decode to 60000 x 60000 pixels: refused by the header's size.
    let mut bomb = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bomb.extend(60_000u32.to_be_bytes());
    bomb.extend(60_000u32.to_be_bytes());
    bomb.extend([8, 6, 0, 0, 0]);
    let page = m
        .upload(m.ad_a, &ana, CSRF, "bomb.png", "image/png", &bomb)
        .await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(page.body.contains("too many pixels"), "{}", page.body);
    assert_eq!(m.ad(m.ad_a).await.pictures.len(), 1);

    // Over [mall] max_picture_bytes: refused, whether the body is a little or far too large.
    for size in [4_097, 200_000] {
        let mut big = PNG.to_vec();
        big.resize(size, 0);
        let page = m
            .upload(m.ad_a, &ana, CSRF, "big.png", "image/png", &big)
            .await;
        assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE, "{size} bytes");
        assert!(page.body.contains("too large"), "{size} bytes");
        assert!(
            page.body.contains("4 KB"),
            "{size} bytes: the limit is named"
        );
    }

    // Without the CSRF token: refused, nothing stored.
    let forged = m
        .upload(m.ad_a, &ana, "", "pan.png", "image/png", PNG)
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert_eq!(m.ad(m.ad_a).await.pictures.len(), 1);

    // Up to eight; the ninth is refused.
    for n in 2..=MAX_PICTURES_PER_AD {
        let page = m
            .upload(m.ad_a, &ana, CSRF, &format!("{n}.png"), "image/png", PNG)
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "picture {n}");
    }
    let ninth = m
        .upload(m.ad_a, &ana, CSRF, "9.png", "image/png", PNG)
        .await;
    assert_eq!(ninth.status, StatusCode::CONFLICT);
    assert!(ninth.body.contains("at most 8 pictures"));
    let ad = m.ad(m.ad_a).await;
    assert_eq!(ad.pictures.len(), MAX_PICTURES_PER_AD);
    let full = m
        .get(&format!("/mall/host/ads/{}/edit", m.ad_a), &ana)
        .await;
    assert!(full.body.contains("id=\"pictures-full\""));

    // Deleting one makes room again.
    let deleted = m
        .post(
            &format!(
                "/mall/host/ads/{}/pictures/{}/delete",
                m.ad_a, ad.pictures[0]
            ),
            &ana,
            &format!("csrf={CSRF}"),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(m.ad(m.ad_a).await.pictures.len(), MAX_PICTURES_PER_AD - 1);
}

/// An inquiry of `member` about `ad`, in a room from the member to `host`.
async fn inquiry(
    store: &dyn Store,
    member_id: i64,
    address: &str,
    host: &str,
    ad: i64,
    tag: &str,
    now: i64,
) -> Seeded {
    let seeded = seed_room(
        store,
        address,
        address,
        &room_id(tag),
        "Question",
        &[host],
        &[],
    )
    .await;
    store
        .add_inquiry(&NewInquiry {
            member_id,
            ad_id: ad,
            room_id: seeded.room.clone(),
            question: format!("Is it still there? ({tag})"),
            created_ms: now,
        })
        .await
        .expect("inquiry");
    seeded
}

#[tokio::test]
async fn a_host_sees_only_the_inquiries_and_members_of_their_company() {
    let m = mall().await;
    let store = m.state.store.clone();
    let now = m.state.clock.now_ms();
    let mia = add_member(&*store, "mia@m.example", "Mia Asker", true, true, now).await;
    let noa = add_member(&*store, "noa@n.example", "Noa Other", true, true, now).await;
    let to_a = inquiry(&*store, mia, "mia@m.example", ANA, m.ad_a, "toalpha", now).await;
    inquiry(&*store, noa, "noa@n.example", BEN, m.ad_b, "tobeta", now).await;

    let ana = m.cookies(ANA).await;
    for path in ["/mall/host/inquiries", "/mall/host"] {
        let page = m.get(path, &ana).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(page.body.contains("Mia Asker"), "{path}");
        assert!(page.body.contains("mia@m.example"), "{path}");
        assert!(page.body.contains("(toalpha)"), "{path}");
        assert!(page.body.contains("data-state=\"new\""), "{path}");
        assert!(
            page.body
                .contains(&format!("href=\"/c/{}/{}\"", to_a.port, to_a.room)),
            "{path}: the link to the chat"
        );
        assert!(!page.body.contains("Noa Other"), "{path}");
        assert!(!page.body.contains("noa@n.example"), "{path}");
        assert!(!page.body.contains("(tobeta)"), "{path}");
    }
    let ben = m.cookies(BEN).await;
    let page = m.get("/mall/host/inquiries", &ben).await;
    assert!(page.body.contains("noa@n.example"));
    assert!(!page.body.contains("mia@m.example"));

    // Paging: a bad page number is page 1; a page past the end is empty.
    let bad = m.get("/mall/host/inquiries?page=zero", &ana).await;
    assert_eq!(bad.status, StatusCode::OK);
    assert!(bad.body.contains("mia@m.example"));
    let past = m.get("/mall/host/inquiries?page=2", &ana).await;
    assert!(past.body.contains("id=\"no-inquiries\""));
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused_and_change_nothing() {
    let m = mall().await;
    let ana = m.cookies(ANA).await;
    let without_cookie = ana.replace(&format!("; chmail_csrf={CSRF}"), "");
    let a_before = m.ad(m.ad_a).await;
    let ads_before = m.ads_of(m.company_a).await;
    let forms = [
        ("/mall/host/ads/new".to_owned(), ad_form(&[("csrf", "")])),
        (
            format!("/mall/host/ads/{}/edit", m.ad_a),
            ad_form(&[("title", "Changed"), ("csrf", "")]),
        ),
        (format!("/mall/host/ads/{}/pause", m.ad_a), String::new()),
        (
            "/mall/host/promotions/new".to_owned(),
            format!("ad={}&subject=Sale&body=Now", m.ad_a),
        ),
    ];
    for (path, form) in &forms {
        let page = m.post(path, &ana, form).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{path} without the field"
        );
        // The right field without the cookie is refused as well.
        let with_field = if form.is_empty() {
            format!("csrf={CSRF}")
        } else if form.contains("csrf=") {
            form.replace("csrf=", &format!("csrf={CSRF}"))
        } else {
            format!("{form}&csrf={CSRF}")
        };
        let page = m.post(path, &without_cookie, &with_field).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{path} without the cookie"
        );
    }
    assert_eq!(m.ad(m.ad_a).await, a_before);
    assert_eq!(m.ads_of(m.company_a).await, ads_before);
    let promotions = m
        .state
        .store
        .promotions_of_company(m.company_a, 10)
        .await
        .expect("store");
    assert!(promotions.is_empty());
}

#[tokio::test]
async fn a_host_who_never_sent_mail_gets_a_sign_in_link_and_lands_on_the_shop() {
    let mut m = mall().await;
    assert_eq!(
        auth::known_login(&m.state, " Ana@Alpha.Example ")
            .await
            .expect("look-up"),
        Some(ANA.to_owned())
    );
    assert_eq!(
        auth::known_login(&m.state, "nobody@alpha.example")
            .await
            .expect("look-up"),
        None
    );

    // The form answers a host and an unknown address alike; only the host gets a mail.
    let form = m.get("/signin", "").await;
    let cookie = form.cookie_pair("chmail_csrf").expect("CSRF cookie");
    let token = form.csrf_field().expect("csrf field");
    let unknown = m
        .post(
            "/signin",
            &cookie,
            &format!("address=nobody%40alpha.example&csrf={token}"),
        )
        .await;
    let host = m
        .post(
            "/signin",
            &cookie,
            &format!("address=Ana%40Alpha.example&csrf={token}"),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::OK);
    assert_eq!(host.status, unknown.status);
    assert_eq!(host.body, unknown.body, "no enumeration");
    let mail = m.mails.next().await.expect("a sign-in mail");
    assert_eq!(mail.to, ANA);
    assert!(
        m.mails
            .none_within(std::time::Duration::from_millis(300))
            .await
    );

    let path = auth_path(&mail.text).expect("a sign-in link");
    let signed_in = follow_link(&m.router, &path).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(
        signed_in.location(),
        Some("/mall/host"),
        "a host's sign-in lands on the shop"
    );
    let session = signed_in.cookie_pair("chmail_session").expect("a session");
    let me = m.get("/me", &session).await;
    assert!(
        me.body.contains("href=\"/mall/host\""),
        "/me leads to the shop"
    );
    let shop = m.get("/mall/host", &session).await;
    assert_eq!(shop.status, StatusCode::OK);
    assert!(shop.body.contains("Alpha tea pot"));
}
