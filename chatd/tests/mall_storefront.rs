//! The storefront over HTTP (`app(state).oneshot(request)`): the home page with rotated ads and
//! categories, category pages, search with paging, product pages, pictures, impressions and
//! clicks counted once per view, inactive ads, and escaping.
//!
//! Search and rotation run on SQLite and on a real PostgreSQL (a fresh schema per test, from
//! `CHMAIL_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`); without
//! PostgreSQL those halves say SKIPPED, except under `CI=true`, where they fail.

mod support;

use std::{collections::HashSet, sync::Arc};

use axum::{http::StatusCode, Router};
use chatd::{app, AppState};
use chmail::{
    store::mall::{AdFields, MAX_SEARCH_LEN},
    Config, Store,
};
use support::*;
use tower::ServiceExt as _;

/// A demo picture: a real PNG.
const PNG: &[u8] = include_bytes!("../static/demo/mugs.png");

/// The shop's host.
const HOST: &str = "anna@shop.example";
/// The host's display name, the only thing of the host a visitor sees.
const HOST_NAME: &str = "Anna from the Shop";

// --- a shop ------------------------------------------------------------------------------------

/// A state over `store` with `[mall] page_size` = `page_size`, and its router.
fn mall(store: Arc<dyn Store>, page_size: u32) -> (AppState, Router) {
    let mut config: Config = config();
    config.mall.page_size = page_size;
    let (state, _mails) = state_over(config, store);
    let router = app(state.clone());
    (state, router)
}

fn ad(host: &str, title: &str, description: &str, category: &str) -> AdFields {
    AdFields {
        host_login: host.into(),
        title: title.into(),
        description: description.into(),
        price_minor: 1250,
        currency: "EUR".into(),
        category: category.into(),
        starts_ms: None,
        ends_ms: None,
        paused: false,
    }
}

async fn create(store: &dyn Store, company: i64, fields: &AdFields) -> i64 {
    store.create_ad(company, fields, 1).await.expect("ad")
}

async fn impressions(store: &dyn Store, id: i64) -> i64 {
    store.ad(id).await.expect("read").expect("ad").impressions
}

async fn clicks(store: &dyn Store, id: i64) -> i64 {
    store.ad(id).await.expect("read").expect("ad").clicks
}

/// The view ids of the product links of a page.
fn views(body: &str) -> HashSet<String> {
    body.split("?v=")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The ad ids a listing links to, in page order (the cards' `data-ad`).
fn listed(body: &str) -> Vec<i64> {
    body.split("data-ad=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect()
}

// --- the home page and categories --------------------------------------------------------------

#[tokio::test]
async fn home_lists_the_active_ads_with_categories_and_counts_impressions_once_per_view() {
    let db = Db::sqlite().await;
    let s = &*db.store;
    let company = shop(s, "Corner Shop", HOST, HOST_NAME, 1).await;
    let teapot = create(s, company, &ad(HOST, "Teapot", "Cast iron.", "Kitchen")).await;
    let mugs = create(s, company, &ad(HOST, "Mugs", "Two of them.", "Kitchen")).await;
    let lamp = create(s, company, &ad(HOST, "Lamp", "Warm light.", "Home")).await;
    let mut paused = ad(HOST, "Paused sofa", "Not now.", "Home");
    paused.paused = true;
    let sofa = create(s, company, &paused).await;
    let (_, router) = mall(db.store.clone(), 24);

    let page = send(&router, get("/mall", "")).await;
    assert_eq!(page.status, StatusCode::OK);
    for title in ["Teapot", "Mugs", "Lamp"] {
        assert!(page.body.contains(title), "{title} is listed");
    }
    assert!(
        !page.body.contains("Paused sofa"),
        "a paused ad is not listed"
    );
    assert!(page
        .body
        .contains("href=\"/mall/category/Kitchen\">Kitchen <span class=\"count\">2</span>"));
    assert!(page
        .body
        .contains("href=\"/mall/category/Home\">Home <span class=\"count\">1</span>"));
    assert!(page.body.contains("/static/mall.css"));
    let first = views(&page.body);
    assert_eq!(first.len(), 1, "one view id for the whole page: {first:?}");
    for id in [teapot, mugs, lamp] {
        assert_eq!(impressions(s, id).await, 1, "ad {id} counted once");
    }
    assert_eq!(impressions(s, sofa).await, 0);

    // The same view recorded again counts nothing; a new page view counts again.
    let view = first.iter().next().expect("a view id").clone();
    let again = s
        .record_impressions(&view, &[teapot, mugs, lamp], 5)
        .await
        .expect("recorded");
    assert_eq!(again, 0, "a view counts each ad once");
    let page = send(&router, get("/mall", "")).await;
    let second = views(&page.body);
    assert_eq!(second.len(), 1);
    assert_ne!(second, first, "each page view has its own id");
    for id in [teapot, mugs, lamp] {
        assert_eq!(impressions(s, id).await, 2);
    }
}

#[tokio::test]
async fn an_empty_mall_says_so() {
    let db = Db::sqlite().await;
    let (_, router) = mall(db.store.clone(), 24);
    let page = send(&router, get("/mall", "")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("There are no products yet"));
}

#[tokio::test]
async fn a_category_page_shows_its_ads_rotated_or_paged_and_an_unknown_one_is_404() {
    let db = Db::sqlite().await;
    let s = &*db.store;
    let company = shop(s, "Corner Shop", HOST, HOST_NAME, 1).await;
    let mut kitchen = Vec::new();
    for title in ["Teapot", "Mugs", "Kettle"] {
        kitchen.push(create(s, company, &ad(HOST, title, "For tea.", "Kitchen")).await);
    }
    let lamp = create(s, company, &ad(HOST, "Lamp", "Light.", "Home")).await;
    let (_, router) = mall(db.store.clone(), 2);

    let page = send(&router, get("/mall/category/kitchen", "")).await;
    assert_eq!(page.status, StatusCode::OK, "category names ignore case");
    assert!(page.body.contains("<h1>Kitchen</h1>"));
    let shown = listed(&page.body);
    assert_eq!(shown.len(), 2, "a page holds [mall] page_size ads");
    assert!(shown.iter().all(|id| kitchen.contains(id)));
    assert!(!shown.contains(&lamp));
    assert!(page.body.contains("href=\"/mall/category/Kitchen?page=1\""));

    let page1 = send(&router, get("/mall/category/Kitchen?page=1", "")).await;
    let page2 = send(&router, get("/mall/category/Kitchen?page=2", "")).await;
    assert_eq!(page2.status, StatusCode::OK);
    let mut all = listed(&page1.body);
    all.extend(listed(&page2.body));
    all.sort_unstable();
    let mut expected = kitchen.clone();
    expected.sort_unstable();
    assert_eq!(all, expected, "the pages together list the category once");
    assert!(page1
        .body
        .contains("href=\"/mall/category/Kitchen?page=2\""));

    for path in ["/mall/category/Garden", "/mall/category/%3Cscript%3E"] {
        let page = send(&router, get(path, "")).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.body.contains("nothing in this category"));
    }
}

// --- search and rotation, on both backends ------------------------------------------------------

async fn search_finds_by_word_and_pages(store: Arc<dyn Store>) {
    let s = &*store;
    let company = shop(s, "Trail Shop", HOST, HOST_NAME, 1).await;
    let mut lanterns = Vec::new();
    for n in 1..=5 {
        let id = create(
            s,
            company,
            &ad(
                HOST,
                &format!("Camping lantern {n}"),
                "Bright and light.",
                "Outdoor",
            ),
        )
        .await;
        lanterns.push(id);
    }
    let in_text = create(
        s,
        company,
        &ad(HOST, "Tent", "Comes with a small lantern hook.", "Outdoor"),
    )
    .await;
    let _other = create(s, company, &ad(HOST, "Teapot", "Cast iron.", "Kitchen")).await;
    let (_, router) = mall(store.clone(), 4);

    let page1 = send(&router, get("/mall/search?q=Lantern", "")).await;
    assert_eq!(page1.status, StatusCode::OK);
    assert!(
        page1.body.contains("6 products"),
        "five titles and one description match"
    );
    assert!(
        page1.body.contains("value=\"Lantern\""),
        "the search box keeps the text"
    );
    let first = listed(&page1.body);
    assert_eq!(first.len(), 4, "[mall] page_size a page");
    assert!(page1
        .body
        .contains("href=\"/mall/search?q=Lantern&amp;page=2\""));
    let page2 = send(&router, get("/mall/search?q=Lantern&page=2", "")).await;
    let second = listed(&page2.body);
    assert_eq!(second.len(), 2);
    let mut all: Vec<i64> = first.iter().chain(second.iter()).copied().collect();
    all.sort_unstable();
    let mut expected = lanterns.clone();
    expected.push(in_text);
    expected.sort_unstable();
    assert_eq!(all, expected, "the pages list every match once");
    for id in &all {
        assert_eq!(
            impressions(s, *id).await,
            1,
            "each search page counts its ads"
        );
    }

    let both = send(&router, get("/mall/search?q=lantern+hook", "")).await;
    assert_eq!(listed(&both.body), vec![in_text], "every word must match");

    let none = send(&router, get("/mall/search?q=submarine", "")).await;
    assert_eq!(none.status, StatusCode::OK);
    assert!(listed(&none.body).is_empty());
    assert!(none.body.contains("Nothing matches"));

    let literal = send(
        &router,
        get("/mall/search?q=%25%27%22%28%29%3A*%26%7C%21", ""),
    )
    .await;
    assert_eq!(
        literal.status,
        StatusCode::OK,
        "search syntax is taken literally"
    );

    let beyond = send(&router, get("/mall/search?q=lantern&page=9", "")).await;
    assert_eq!(beyond.status, StatusCode::OK);
    assert!(listed(&beyond.body).is_empty());
}

async fn rotation_gives_every_active_ad_its_turn(store: Arc<dyn Store>) {
    let s = &*store;
    let company = shop(s, "Corner Shop", HOST, HOST_NAME, 1).await;
    let mut ids = Vec::new();
    for n in 1..=6 {
        ids.push(
            create(
                s,
                company,
                &ad(HOST, &format!("Thing {n}"), "A thing.", "Things"),
            )
            .await,
        );
    }
    let (_, router) = mall(store.clone(), 2);
    let mut seen = HashSet::new();
    for round in 0..3 {
        let page = send(&router, get("/mall", "")).await;
        let shown = listed(&page.body);
        assert_eq!(shown.len(), 2, "round {round}");
        for id in shown {
            assert!(
                seen.insert(id),
                "ad {id} shown again before the others had a turn"
            );
        }
    }
    assert_eq!(seen.len(), 6, "three pages of two showed all six");
    for id in &ids {
        assert_eq!(impressions(s, *id).await, 1);
    }
    // The fourth page starts the next round: again ads shown once, not twice.
    let page = send(&router, get("/mall", "")).await;
    for id in listed(&page.body) {
        assert_eq!(impressions(s, id).await, 2);
    }
}

#[tokio::test]
async fn search_finds_by_word_and_pages_on_sqlite() {
    search_finds_by_word_and_pages(Db::sqlite().await.store.clone()).await;
}

#[tokio::test]
async fn search_finds_by_word_and_pages_on_postgres() {
    let Some(db) = Db::postgres("mall_sf").await else {
        return;
    };
    search_finds_by_word_and_pages(db.store.clone()).await;
}

#[tokio::test]
async fn rotation_gives_every_active_ad_its_turn_on_sqlite() {
    rotation_gives_every_active_ad_its_turn(Db::sqlite().await.store.clone()).await;
}

#[tokio::test]
async fn rotation_gives_every_active_ad_its_turn_on_postgres() {
    let Some(db) = Db::postgres("mall_sf").await else {
        return;
    };
    rotation_gives_every_active_ad_its_turn(db.store.clone()).await;
}

#[tokio::test]
async fn an_empty_search_lists_every_active_ad() {
    let db = Db::sqlite().await;
    let s = &*db.store;
    let company = shop(s, "Corner Shop", HOST, HOST_NAME, 1).await;
    let a = create(s, company, &ad(HOST, "Teapot", "Cast iron.", "Kitchen")).await;
    let b = create(s, company, &ad(HOST, "Lamp", "Light.", "Home")).await;
    let (_, router) = mall(db.store.clone(), 24);
    for path in ["/mall/search", "/mall/search?q=", "/mall/search?q=+++"] {
        let page = send(&router, get(path, "")).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(page.body.contains("All products"), "{path}");
        let mut shown = listed(&page.body);
        shown.sort_unstable();
        assert_eq!(shown, vec![a, b], "{path}");
    }
}

#[tokio::test]
async fn an_oversize_search_is_refused_with_a_clear_message() {
    let db = Db::sqlite().await;
    let (_, router) = mall(db.store.clone(), 24);
    let longest = "a".repeat(MAX_SEARCH_LEN);
    let ok = send(&router, get(&format!("/mall/search?q={longest}"), "")).await;
    assert_eq!(ok.status, StatusCode::OK, "{MAX_SEARCH_LEN} bytes are fine");

    let too_long = "a".repeat(MAX_SEARCH_LEN + 1);
    let page = send(&router, get(&format!("/mall/search?q={too_long}"), "")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body.contains("Your search is too long"),
        "{}",
        page.body
    );
    assert!(page.body.contains("at most 200 bytes"));
    assert!(
        page.body.contains("class=\"mall\""),
        "a mall page, not a bare error"
    );

    // Multi-byte letters count by their bytes: 101 two-byte letters are too long.
    let umlauts = "%C3%BC".repeat(101);
    let page = send(&router, get(&format!("/mall/search?q={umlauts}"), "")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_bad_page_number_is_refused_with_a_message() {
    let db = Db::sqlite().await;
    let (_, router) = mall(db.store.clone(), 24);
    for page_no in ["0", "-1", "two", "99999999999"] {
        let page = send(
            &router,
            get(&format!("/mall/search?q=x&page={page_no}"), ""),
        )
        .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "page={page_no}");
        assert!(page.body.contains("page number"), "page={page_no}");
    }
}

// --- product pages, clicks, pictures -----------------------------------------------------------

#[tokio::test]
async fn the_product_page_shows_price_pictures_description_and_the_hosts_name_only() {
    let db = Db::sqlite().await;
    let s = &*db.store;
    let company = shop(s, "Corner Shop", HOST, HOST_NAME, 1).await;
    let mut fields = ad(
        HOST,
        "Celadon cup",
        "Hand-thrown.\nEvery cup differs.\n\nWash by hand.",
        "Kitchen",
    );
    fields.price_minor = 35_000;
    fields.currency = "KRW".into();
    let cup = create(s, company, &fields).await;
    let p1 = s
        .add_picture(cup, company, "image/png", PNG)
        .await
        .expect("stored")
        .expect("added");
    let p2 = s
        .add_picture(cup, company, "image/png", PNG)
        .await
        .expect("stored")
        .expect("added");
    let teapot = create(s, company, &ad(HOST, "Teapot", "Iron.", "Kitchen")).await;
    let (_, router) = mall(db.store.clone(), 24);

    let page = send(&router, get(&format!("/mall/ad/{cup}"), "")).await;
    assert_eq!(page.status, StatusCode::OK);
    let b = &page.body;
    assert!(b.contains("<h1>Celadon cup</h1>"));
    assert!(
        b.contains("<p class=\"price\">₩35,000</p>"),
        "KRW has no decimals"
    );
    assert!(b.contains("<p>Hand-thrown.<br>Every cup differs.</p><p>Wash by hand.</p>"));
    assert!(b.contains(&format!("src=\"/mall/picture/{p1}\"")));
    assert!(b.contains(&format!("src=\"/mall/picture/{p2}\"")));
    assert!(
        b.contains("href=\"#picture-2\""),
        "thumbnails lead to each picture"
    );
    assert!(b.contains("Corner Shop"));
    assert!(b.contains(HOST_NAME), "the host's display name is shown");
    assert!(!b.contains(HOST), "never the host's address");
    assert!(b.contains("href=\"/mall/category/Kitchen\""));
    assert!(
        b.contains("<section class=\"inquiry-slot\" id=\"ask\""),
        "the slot for the inquiry form"
    );
    assert!(b.contains("More in Kitchen"));
    assert_eq!(
        listed(b),
        vec![teapot],
        "related ads, without the product itself"
    );

    let euro = send(&router, get(&format!("/mall/ad/{teapot}"), "")).await;
    assert!(euro.body.contains("<p class=\"price\">€12.50</p>"));

    for path in ["/mall/ad/999999", "/mall/ad/abc", "/mall/ad/-1"] {
        let page = send(&router, get(path, "")).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn a_click_is_counted_once_per_view() {
    let db = Db::sqlite().await;
    let s = &*db.store;
    let company = shop(s, "Corner Shop", HOST, HOST_NAME, 1).await;
    let teapot = create(s, company, &ad(HOST, "Teapot", "Iron.", "Kitchen")).await;
    let (_, router) = mall(db.store.clone(), 24);

    let home = send(&router, get("/mall", "")).await;
    let view = views(&home.body).into_iter().next().expect("a view id");
    let link = format!("/mall/ad/{teapot}?v={view}");
    assert!(home.body.contains(&link), "the listing links with its view");
    for _ in 0..3 {
        let page = send(&router, get(&link, "")).await;
        assert_eq!(page.status, StatusCode::OK);
    }
    assert_eq!(
        clicks(s, teapot).await,
        1,
        "reloading counts no more clicks"
    );

    let other = send(&router, get("/mall", "")).await;
    let view2 = views(&other.body).into_iter().next().expect("a view id");
    send(&router, get(&format!("/mall/ad/{teapot}?v={view2}"), "")).await;
    assert_eq!(clicks(s, teapot).await, 2, "another view counts again");

    send(&router, get(&format!("/mall/ad/{teapot}"), "")).await;
    let junk = "x".repeat(100);
    for v in ["", "%3Cscript%3E", junk.as_str()] {
        let page = send(&router, get(&format!("/mall/ad/{teapot}?v={v}"), "")).await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "a junk view id is ignored: {v}"
        );
    }
    assert_eq!(clicks(s, teapot).await, 2, "no view, no click");
}

#[tokio::test(start_paused = true)]
async fn housekeeping_forgets_week_old_views_but_keeps_the_counts() {
    let db = Db::sqlite().await;
    let s = &*db.store;
    let company = shop(s, "Corner Shop", HOST, HOST_NAME, 1).await;
    let teapot = create(s, company, &ad(HOST, "Teapot", "Iron.", "Kitchen")).await;
    let (state, router) = mall(db.store.clone(), 24);
    let home = send(&router, get("/mall", "")).await;
    let view = views(&home.body).into_iter().next().expect("a view id");
    let link = format!("/mall/ad/{teapot}?v={view}");
    send(&router, get(&link, "")).await;

    // Within the week the view is remembered: its click counted once.
    chatd::mall::housekeeping::prune(&state).await;
    send(&router, get(&link, "")).await;
    assert_eq!(clicks(s, teapot).await, 1);

    // A week later the view's rows are gone; the counters stay.
    tokio::time::advance(chatd::mall::housekeeping::KEEP + std::time::Duration::from_secs(60))
        .await;
    chatd::mall::housekeeping::prune(&state).await;
    assert_eq!(
        (impressions(s, teapot).await, clicks(s, teapot).await),
        (1, 1)
    );
    send(&router, get(&link, "")).await;
    assert_eq!(clicks(s, teapot).await, 2, "a forgotten view counts anew");
}

#[tokio::test]
async fn an_inactive_ad_is_not_found_for_visitors_and_shown_to_its_own_hosts() {
    let db = Db::sqlite().await;
    let s = &*db.store;
    let company = shop(s, "Corner Shop", HOST, HOST_NAME, 1).await;
    let _rival = shop(s, "Rival Shop", "rick@rival.example", "Rick", 1).await;
    let now = chatd::clock::Clock::new().now_ms();
    let mut paused = ad(HOST, "Paused sofa", "Later.", "Home");
    paused.paused = true;
    let mut future = ad(HOST, "Future chair", "Soon.", "Home");
    future.starts_ms = Some(now + 86_400_000);
    let mut past = ad(HOST, "Old table", "Gone.", "Home");
    past.starts_ms = Some(now - 2 * 86_400_000);
    past.ends_ms = Some(now - 86_400_000);
    let ids = [
        create(s, company, &paused).await,
        create(s, company, &future).await,
        create(s, company, &past).await,
    ];
    let (state, router) = mall(db.store.clone(), 24);
    let home = send(&router, get("/mall", "")).await;
    assert!(listed(&home.body).is_empty(), "inactive ads are not listed");

    let own = session_cookie(&state, HOST).await;
    let rival = session_cookie(&state, "rick@rival.example").await;
    for id in ids {
        let path = format!("/mall/ad/{id}?v=someview");
        let visitor = send(&router, get(&path, "")).await;
        assert_eq!(
            visitor.status,
            StatusCode::NOT_FOUND,
            "ad {id} for a visitor"
        );
        assert!(visitor.body.contains("not in the mall"));
        let other = send(&router, get(&path, &rival)).await;
        assert_eq!(
            other.status,
            StatusCode::NOT_FOUND,
            "ad {id} for another company"
        );
        let host = send(&router, get(&path, &own)).await;
        assert_eq!(host.status, StatusCode::OK, "ad {id} for its own host");
        assert!(host.body.contains("not showing in the mall now"));
        assert_eq!(clicks(s, id).await, 0, "no clicks on inactive ads");
    }
}

#[tokio::test]
async fn pictures_are_served_with_their_type_nosniff_and_a_day_of_cache() {
    let db = Db::sqlite().await;
    let s = &*db.store;
    let company = shop(s, "Corner Shop", HOST, HOST_NAME, 1).await;
    let teapot = create(s, company, &ad(HOST, "Teapot", "Iron.", "Kitchen")).await;
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    let png_id = s
        .add_picture(teapot, company, "image/png", PNG)
        .await
        .expect("stored")
        .expect("added");
    let gif_id = s
        .add_picture(teapot, company, "image/gif", gif)
        .await
        .expect("stored")
        .expect("added");
    let (_, router) = mall(db.store.clone(), 24);

    let page = send(&router, get(&format!("/mall/picture/{png_id}"), "")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("content-type"), Some("image/png"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("public, max-age=86400"));
    let response = router
        .clone()
        .oneshot(get(&format!("/mall/picture/{png_id}"), ""))
        .await
        .expect("infallible");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    assert_eq!(&bytes[..], PNG, "the bytes as stored");

    let page = send(&router, get(&format!("/mall/picture/{gif_id}"), "")).await;
    assert_eq!(page.header("content-type"), Some("image/gif"));

    for path in ["/mall/picture/99999", "/mall/picture/x", "/mall/picture/"] {
        let page = send(&router, get(path, "")).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn hostile_titles_companies_and_categories_are_escaped_everywhere() {
    let db = Db::sqlite().await;
    let s = &*db.store;
    let company = shop(
        s,
        "<b>Evil & Co</b>",
        HOST,
        "<img src=x onerror=alert(2)>",
        1,
    )
    .await;
    let title = "<script>alert(1)</script>";
    let id = create(
        s,
        company,
        &ad(
            HOST,
            title,
            "<script>alert(3)</script>\n\"quoted\"",
            "<i>Tricks</i>",
        ),
    )
    .await;
    let (_, router) = mall(db.store.clone(), 24);
    let pages = [
        "/mall".to_owned(),
        "/mall/search?q=%3Cscript%3E".to_owned(),
        "/mall/category/%3Ci%3ETricks%3C%2Fi%3E".to_owned(),
        format!("/mall/ad/{id}"),
    ];
    for path in &pages {
        let page = send(&router, get(path, "")).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        let b = &page.body;
        assert!(!b.contains("<script>"), "{path} has a raw script tag");
        assert!(!b.contains("<b>Evil"), "{path}");
        assert!(!b.contains("<i>Tricks"), "{path}");
        assert!(!b.contains("<img src=x"), "{path}");
        assert!(
            b.contains("&lt;script&gt;") || b.contains("&lt;i&gt;Tricks"),
            "{path} shows the text escaped"
        );
    }
    let product = send(&router, get(&format!("/mall/ad/{id}"), "")).await;
    assert!(product
        .body
        .contains("<h1>&lt;script&gt;alert(1)&lt;/script&gt;</h1>"));
    assert!(product.body.contains("&quot;quoted&quot;"));
    assert!(product
        .body
        .contains("href=\"/mall/category/%3Ci%3ETricks%3C%2Fi%3E\""));
}

#[tokio::test]
async fn mall_pages_carry_the_security_headers_and_the_stylesheet_is_served() {
    let db = Db::sqlite().await;
    let (_, router) = mall(db.store.clone(), 24);
    let page = send(&router, get("/mall", "")).await;
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(
        page.set_cookie("chmail_csrf").is_some(),
        "the bar's forms get a token"
    );
    assert!(!page.body.contains("style="), "no inline styles");
    assert!(!page.body.contains("<script>"), "no inline scripts");

    let css = send(&router, get("/static/mall.css", "")).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.body.contains(".products"));
}

// --- reachable while browsing ------------------------------------------------------------------

#[tokio::test]
async fn a_signed_in_members_mall_pages_keep_them_reachable_and_link_to_their_chats() {
    const MEMBER: &str = "ana@member.example";
    let db = Db::sqlite().await;
    let (state, router) = mall(db.store.clone(), 24);
    let store = &*db.store;
    let company = shop(store, "Tea House", HOST, HOST_NAME, 1).await;
    let id = create(
        store,
        company,
        &ad(HOST, "Tea pot", "Holds a litre.", "Kitchen"),
    )
    .await;
    add_member(store, MEMBER, "Ana", false, true, 1).await;
    // The member's question, with two answers of the shop's that the member has not read, and
    // another question that nobody answered.
    let answered = seed_room(
        store,
        MEMBER,
        MEMBER,
        &room_id("answered"),
        "Question about Tea pot",
        &[HOST],
        &[],
    )
    .await;
    seed_room(
        store,
        MEMBER,
        MEMBER,
        &room_id("unanswered"),
        "Question about Tea pot",
        &[HOST],
        &[],
    )
    .await;
    add_message(store, &answered.room, HOST, "Yes, a litre.", 1_000).await;
    add_message(store, &answered.room, HOST, "Lid included.", 2_000).await;
    let cookie = session_cookie(&state, MEMBER).await;

    for path in [
        "/mall".to_owned(),
        format!("/mall/ad/{id}"),
        "/mall/search?q=tea".to_owned(),
        "/mall/account".to_owned(),
    ] {
        let page = send(&router, get(&path, &cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        let body = &page.body;
        assert_eq!(
            body.matches("src=\"/static/me.js\"").count(),
            1,
            "{path} loads the watching script once: {body}"
        );
        for needle in [
            " data-watch=\"\"".to_owned(),
            format!(" data-login=\"{MEMBER}\""),
            "<a id=\"my-chats\" href=\"/me\">".to_owned(),
            "data-count=\"2\"".to_owned(),
            format!("data-rooms=\"{}=2\"", answered.room),
            ">2</span>".to_owned(),
        ] {
            assert!(body.contains(&needle), "{path} lacks {needle}: {body}");
        }
        assert_eq!(body.matches("id=\"ring\"").count(), 1, "{path}: {body}");
        for id in ["ring-text", "accept", "decline"] {
            assert!(body.contains(&format!("id=\"{id}\"")), "{path} lacks #{id}");
        }
    }

    // A visitor is not watched and has no chats.
    let visitor = send(&router, get("/mall", "")).await;
    for absent in ["me.js", "my-chats", "id=\"ring\"", "data-watch"] {
        assert!(
            !visitor.body.contains(absent),
            "a visitor's page has {absent}"
        );
    }

    // And /me leads back to the mall.
    let me = send(&router, get("/me", &cookie)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert!(
        me.body.contains("id=\"to-mall\" href=\"/mall\""),
        "{}",
        me.body
    );
}

#[tokio::test]
async fn a_host_browsing_the_mall_is_watched_too_with_an_empty_badge_when_nothing_is_unread() {
    let db = Db::sqlite().await;
    let (state, router) = mall(db.store.clone(), 24);
    shop(&*db.store, "Tea House", HOST, HOST_NAME, 1).await;
    let cookie = session_cookie(&state, HOST).await;
    let page = send(&router, get("/mall", &cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("src=\"/static/me.js\""), "{}", page.body);
    assert!(page.body.contains("href=\"/mall/host\""), "{}", page.body);
    assert!(
        page.body
            .contains("class=\"unread-total zero\" data-count=\"0\" data-rooms=\"\""),
        "{}",
        page.body
    );
}
