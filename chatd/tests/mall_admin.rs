//! The mall's admin commands: adding companies and hosts, importing ads from CSV (bad rows
//! reported by line, good rows kept, nothing imported twice), the demo data, and the real
//! `chatd` binary running them.

mod support;

use std::{path::Path, process::Command, sync::Arc};

use chatd::mall::{
    admin::{self, MallAdminError},
    demo,
};
use chmail::Store;
use support::memory_store;

/// A demo picture: a real PNG.
const PNG: &[u8] = include_bytes!("../static/demo/teapot-iron.png");
const MAX_PICTURE: usize = 2 * 1024 * 1024;
const NOW: i64 = 1_750_000_000_000;

/// A store with "Corner Shop" (host anna@corner.example) and "Rival" (host rick@rival.example).
async fn shops() -> Arc<dyn Store> {
    let store = memory_store().await;
    admin::add_company(&*store, "Corner Shop", NOW)
        .await
        .expect("company");
    admin::add_company(&*store, "Rival", NOW)
        .await
        .expect("company");
    admin::add_host(
        &*store,
        "Corner Shop",
        "anna@corner.example",
        Some("Anna"),
        NOW,
    )
    .await
    .expect("host");
    admin::add_host(&*store, "Rival", "rick@rival.example", None, NOW)
        .await
        .expect("host");
    store
}

#[tokio::test]
async fn add_company_adds_a_name_once_and_refuses_an_empty_one() {
    let store = memory_store().await;
    let first = admin::add_company(&*store, "Corner Shop", NOW)
        .await
        .expect("added");
    assert!(first.starts_with("added company"), "{first}");
    let again = admin::add_company(&*store, "  corner shop ", NOW)
        .await
        .expect("found");
    assert!(again.contains("exists already"), "{again}");
    assert_eq!(store.companies().await.expect("listed").len(), 1);
    let err = admin::add_company(&*store, "   ", NOW)
        .await
        .expect_err("empty");
    assert!(matches!(err, MallAdminError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn add_host_needs_a_company_an_address_and_one_company_per_login() {
    let store = shops().await;
    let host = store
        .host("rick@rival.example")
        .await
        .expect("read")
        .expect("a host");
    assert_eq!(host.name, "rick", "the name defaults to the local part");

    let renamed = admin::add_host(&*store, "Rival", "Rick@Rival.example", Some("Rick R."), NOW)
        .await
        .expect("updated");
    assert!(renamed.contains("updated"), "{renamed}");
    let host = store.host("rick@rival.example").await.expect("read");
    assert_eq!(host.map(|h| h.name).as_deref(), Some("Rick R."));

    let cases = [
        ("Nobody Inc", "x@y.example", "no company named"),
        ("Corner Shop", "not-an-address", "is not an address"),
        (
            "Corner Shop",
            "rick@rival.example",
            "already a host of \"Rival\"",
        ),
    ];
    for (company, login, says) in cases {
        let err = admin::add_host(&*store, company, login, None, NOW)
            .await
            .expect_err(login);
        assert!(err.to_string().contains(says), "{login}: {err}");
    }
    let rick = store.host("rick@rival.example").await.expect("read");
    assert_eq!(
        rick.map(|h| h.company_id),
        Some(host_company(&*store, "Rival").await),
        "a refused move changes nothing"
    );
}

async fn host_company(store: &dyn Store, name: &str) -> i64 {
    store
        .company_by_name(name)
        .await
        .expect("read")
        .expect("company")
        .id
}

/// Writes `csv` and the pictures it names into a fresh directory; returns it and the CSV path.
fn files(csv: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("pics")).expect("mkdir");
    std::fs::write(dir.path().join("pics/teapot.png"), PNG).expect("write");
    std::fs::write(dir.path().join("pics/side.png"), PNG).expect("write");
    std::fs::write(dir.path().join("pics/fake.png"), b"<svg onload=alert(1)>").expect("write");
    let path = dir.path().join("ads.csv");
    std::fs::write(&path, csv).expect("write");
    (dir, path)
}

/// Good rows at lines 2, 3-5 (a quoted multi-line description), 6 and 7; bad rows at the
/// others, one reason each.
const MIXED_CSV: &str = "\u{feff}company,host,title,description,price,currency,category,pictures,starts,ends\r
Corner Shop,anna@corner.example,Cast iron teapot,Keeps tea hot.,39.00,EUR,Kitchen,pics/teapot.png|pics/side.png,,\r
Corner Shop,Anna@Corner.example,\"Mugs, set of two\",\"Two mugs.
Dishwasher safe, \"\"really\"\".
\",24.5,eur,Kitchen,,2025-01-01,2030-12-31\r
Corner Shop,anna@corner.example,Celadon cup,Hand-thrown.,35000,KRW,Kitchen,pics/teapot.png,2025-06-01T09:00:00+02:00,\r
Rival,rick@rival.example,Lamp,Warm light.,59,USD,Home,,,\r
Nobody Inc,anna@corner.example,Ghost,Boo.,1.00,EUR,Home,,,\r
Corner Shop,rick@rival.example,Stolen lamp,Not his.,1.00,EUR,Home,,,\r
Corner Shop,anna@corner.example,Cheap pot,Bad price.,\"12,50\",EUR,Kitchen,,,\r
Corner Shop,anna@corner.example,Euro pot,Bad currency.,12.50,EURO,Kitchen,,,\r
Corner Shop,anna@corner.example,Fake picture,Not an image.,1.00,EUR,Kitchen,pics/fake.png,,\r
Corner Shop,anna@corner.example,Lost picture,Missing file.,1.00,EUR,Kitchen,pics/missing.png,,\r
Corner Shop,anna@corner.example,Short row,1.00,EUR\r
Corner Shop,anna@corner.example,Bad \"quote,x,1.00,EUR,Kitchen,,,\r
Corner Shop,anna@corner.example,Backwards,Ends first.,1.00,EUR,Kitchen,,2025-06-02,2025-06-01\r
Corner Shop,anna@corner.example,,No title.,1.00,EUR,Kitchen,,,\r
Corner Shop,anna@corner.example,Won half,Half a won.,100.5,KRW,Kitchen,,,\r
Corner Shop,anna@corner.example,Someday,Bad date.,1.00,EUR,Kitchen,,tomorrow,\r
";

#[tokio::test]
async fn import_keeps_the_good_rows_and_reports_each_bad_one_by_line() {
    let store = shops().await;
    let (_dir, path) = files(MIXED_CSV);
    let report = admin::import_ads_file(&*store, &path, MAX_PICTURE, NOW)
        .await
        .expect("imported");
    assert_eq!(report.added.len(), 4, "{}", report.text());
    assert_eq!(report.pictures, 3);
    assert!(report.skipped.is_empty());
    let expected: [(usize, &str); 12] = [
        (8, "no company named \"Nobody Inc\""),
        (9, "is not a host of \"Corner Shop\""),
        (10, "price \"12,50\""),
        (11, "three-letter code"),
        (12, "not a PNG, JPEG, GIF or WebP"),
        (13, "pics/missing.png"),
        (14, "has 5 fields, the header has 10"),
        (15, "quote"),
        (16, "end must be after the start"),
        (17, "title is empty"),
        (18, "whole number in KRW"),
        (19, "\"tomorrow\" is not a date"),
    ];
    let bad: Vec<(usize, &str)> = report
        .bad
        .iter()
        .map(|n| (n.line, n.reason.as_str()))
        .collect();
    assert_eq!(bad.len(), 12, "{bad:#?}");
    for ((line, says), (got_line, reason)) in expected.iter().zip(&bad) {
        assert_eq!(got_line, line, "{reason}");
        assert!(
            reason.contains(says),
            "line {line}: {reason:?} should say {says:?}"
        );
    }
    let text = report.text();
    assert!(text.contains("line 8: no company named"), "{text}");
    assert!(text
        .ends_with("imported 4 ads with 3 pictures; 0 skipped (imported before); 12 bad rows\n"));

    let corner = host_company(&*store, "Corner Shop").await;
    let ads = store.ads_of(corner).await.expect("listed");
    assert_eq!(ads.len(), 3, "the bad rows added nothing");
    let find = |title: &str| {
        ads.iter()
            .find(|a| a.fields.title == title)
            .unwrap_or_else(|| panic!("{title} imported"))
    };
    let teapot = find("Cast iron teapot");
    assert_eq!(teapot.fields.price_minor, 3900);
    assert_eq!(teapot.pictures.len(), 2);
    let picture = store
        .picture(teapot.pictures[0])
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(picture.content_type, "image/png");
    assert_eq!(picture.bytes, PNG);
    let mugs = find("Mugs, set of two");
    assert_eq!(
        mugs.fields.description,
        "Two mugs.\nDishwasher safe, \"really\"."
    );
    assert_eq!(mugs.fields.price_minor, 2450);
    assert_eq!(mugs.fields.currency, "EUR");
    assert_eq!(mugs.fields.host_login, "anna@corner.example");
    assert_eq!(
        mugs.fields.starts_ms,
        Some(1_735_689_600_000),
        "2025-01-01 00:00 UTC"
    );
    assert_eq!(
        mugs.fields.ends_ms,
        Some(1_924_992_000_000),
        "the end date is the last day shown: 2031-01-01 00:00 UTC"
    );
    let cup = find("Celadon cup");
    assert_eq!(cup.fields.price_minor, 35_000);
    assert_eq!(cup.fields.starts_ms, Some(1_748_761_200_000), "07:00 UTC");
    let rival = host_company(&*store, "Rival").await;
    assert_eq!(store.ads_of(rival).await.expect("listed").len(), 1);
}

#[tokio::test]
async fn importing_the_same_file_again_adds_nothing_twice() {
    let store = shops().await;
    let (_dir, path) = files(MIXED_CSV);
    let first = admin::import_ads_file(&*store, &path, MAX_PICTURE, NOW)
        .await
        .expect("imported");
    let second = admin::import_ads_file(&*store, &path, MAX_PICTURE, NOW)
        .await
        .expect("imported");
    assert!(second.added.is_empty(), "{}", second.text());
    assert_eq!(second.pictures, 0);
    assert_eq!(second.skipped.len(), first.added.len());
    assert!(second.skipped[0]
        .reason
        .contains("already has an ad titled"));
    assert_eq!(second.bad.len(), first.bad.len(), "bad rows stay bad");
    let corner = host_company(&*store, "Corner Shop").await;
    assert_eq!(store.ads_of(corner).await.expect("listed").len(), 3);
}

#[tokio::test]
async fn a_picture_over_the_limit_makes_its_row_bad() {
    let store = shops().await;
    let csv = "company,host,title,description,price,currency,category,pictures\n\
               Corner Shop,anna@corner.example,Teapot,Hot.,1.00,EUR,Kitchen,pics/teapot.png\n";
    let (_dir, path) = files(csv);
    let report = admin::import_ads_file(&*store, &path, PNG.len() - 1, NOW)
        .await
        .expect("read");
    assert!(report.added.is_empty());
    assert_eq!(report.bad.len(), 1);
    assert_eq!(report.bad[0].line, 2);
    assert!(
        report.bad[0].reason.contains("at most"),
        "{:?}",
        report.bad[0]
    );
}

#[tokio::test]
async fn a_file_with_a_wrong_header_or_encoding_imports_nothing() {
    let store = shops().await;
    let cases: [(&[u8], &str); 4] = [
        (b"", "empty"),
        (
            b"company,host,title,description,price,currency,category,colour\n",
            "unknown column \"colour\"",
        ),
        (
            b"company,host,title,price,currency,category\nCorner Shop,anna@corner.example,T,1,EUR,K\n",
            "lacks the column(s) description",
        ),
        (b"company,host\n\xff\xfe\n", "not UTF-8"),
    ];
    for (bytes, says) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ads.csv");
        std::fs::write(&path, bytes).expect("write");
        let err = admin::import_ads_file(&*store, &path, MAX_PICTURE, NOW)
            .await
            .expect_err(says);
        assert!(err.to_string().contains(says), "{err}");
    }
    let missing =
        admin::import_ads_file(&*store, Path::new("/nonexistent/ads.csv"), MAX_PICTURE, NOW)
            .await
            .expect_err("missing");
    assert!(matches!(missing, MallAdminError::Io { .. }), "{missing:?}");
    let corner = host_company(&*store, "Corner Shop").await;
    assert!(store.ads_of(corner).await.expect("listed").is_empty());
}

#[tokio::test]
async fn the_demo_loads_20_ads_with_pictures_and_confirmed_accounts_once() {
    let store = memory_store().await;
    let report = demo::load_if_empty(&*store, MAX_PICTURE, NOW)
        .await
        .expect("loaded")
        .expect("an empty mall gets the demo");
    assert!(report.ads.bad.is_empty(), "{}", report.ads.text());
    assert!(report.ads.added.len() >= 20, "{}", report.ads.text());
    assert_eq!(report.companies_added, demo::COMPANIES.len());
    for id in &report.ads.added {
        let ad = store.ad(*id).await.expect("read").expect("stored");
        assert!(ad.is_active(NOW), "{} shows", ad.fields.title);
        assert!(!ad.pictures.is_empty(), "{} has a picture", ad.fields.title);
    }
    let categories = store.categories(NOW).await.expect("read");
    assert!(categories.len() >= 4, "{categories:?}");

    let member = store
        .member_by_address(demo::DEMO_MEMBER)
        .await
        .expect("read")
        .expect("the demo member");
    assert!(member.confirmed_ms.is_some(), "confirmed");
    assert!(member.promotions, "opted in to promotions");
    assert!(
        chatd::mall::account::verify_password(demo::DEMO_PASSWORD, &member.password_hash)
            .await
            .expect("verified"),
        "the printed password works"
    );
    assert!(member.password_hash.starts_with("$argon2id$"));
    let host = store
        .host(demo::DEMO_HOST)
        .await
        .expect("read")
        .expect("the demo host");
    let host_member = store
        .member_by_address(demo::DEMO_HOST)
        .await
        .expect("read")
        .expect("the demo host signs in with a password");
    assert!(host_member.confirmed_ms.is_some());
    assert!(!host_member.promotions);
    assert_eq!(
        store
            .company(host.company_id)
            .await
            .expect("read")
            .map(|c| c.name)
            .as_deref(),
        Some(demo::COMPANIES[0].0)
    );
    assert!(
        demo::load_if_empty(&*store, MAX_PICTURE, NOW)
            .await
            .expect("checked")
            .is_none(),
        "a mall with companies is left alone"
    );
    let again = demo::load(&*store, MAX_PICTURE, NOW).await.expect("loaded");
    assert!(again.ads.added.is_empty(), "loading twice adds no ads");
    assert!(again.members_added.is_empty(), "nor accounts");
    let text = demo::console_text(Some(&report), "http://localhost:8080");
    assert!(text.contains("http://localhost:8080/mall\n"), "{text}");
    assert!(
        text.contains("member@example.com / demo-password"),
        "{text}"
    );
}

/// Runs the built `chatd` with a data directory and no config file.
fn chatd(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(args)
        .env_remove("CHMAIL_CONFIG")
        .env("CHMAIL_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("chatd runs")
}

#[tokio::test]
async fn the_chatd_binary_adds_a_company_and_host_and_imports_ads() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = chatd(data.path(), &["mall", "add-company", "Corner Shop"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("added company"));
    let out = chatd(
        data.path(),
        &[
            "mall",
            "add-host",
            "--company",
            "Corner Shop",
            "anna@corner.example",
            "--name",
            "Anna",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = chatd(
        data.path(),
        &["mall", "add-host", "--company", "Nobody", "x@y.example"],
    );
    assert!(!out.status.success(), "a missing company fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no company named"));

    let csv = "company,host,title,description,price,currency,category,pictures\n\
               Corner Shop,anna@corner.example,Teapot,Hot.,39.00,EUR,Kitchen,pics/teapot.png\n\
               Corner Shop,anna@corner.example,Bad pot,Oops.,cheap,EUR,Kitchen,\n";
    let (_files, path) = files(csv);
    let path = path.to_string_lossy().into_owned();
    let out = chatd(data.path(), &["mall", "import-ads", &path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad row makes the status 1: {out:?}"
    );
    assert!(stdout.contains("line 3: price \"cheap\""), "{stdout}");
    assert!(stdout.contains("imported 1 ad with 1 picture"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 bad rows were not imported"));

    let url = format!("sqlite://{}", data.path().join("chmail.db").display());
    let store = chmail::open_store(&url, 1).await.expect("opens");
    let company = host_company(&*store, "Corner Shop").await;
    let ads = store.ads_of(company).await.expect("listed");
    assert_eq!(ads.len(), 1);
    assert_eq!(ads[0].fields.title, "Teapot");
    assert_eq!(ads[0].pictures.len(), 1);
}

#[tokio::test]
async fn the_chatd_binary_loads_the_demo() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = chatd(data.path(), &["mall", "demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("Demo data: 24 ads added with 28 pictures"),
        "{stdout}"
    );
    assert!(stdout.contains("/mall\n"), "{stdout}");
}
