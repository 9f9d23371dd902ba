//! Promotions on paused time: a host writes one on their page, the worker mails each opted-in,
//! confirmed member their own signed, chat-capable mail, paced by `[mall] promotions_per_minute`;
//! one-click unsubscribe turns the member's opt-in off; the host sees sent, chatted and
//! unsubscribed; and two chatd nodes over one store (one of them having crashed mid-claim) never
//! mail anyone twice.
//!
//! The promotion and outbox workers run in-process, the pages through `app(state).oneshot(..)`
//! and the member's join through a WebSocket session whose hub queue stands in for the socket
//! (sockets and paused time do not mix: see `timing.rs`).

mod common;
mod support;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use axum::{
    body::{to_bytes, Body},
    http::{header, Request, StatusCode},
    Router,
};
use chatd::{
    app, auth,
    hub::{Outbox, Outgoing},
    mail::OutgoingMail,
    mall::promotion,
    outbox,
    ws::session::{Peer, Session},
    AppState,
};
use chmail::{
    header::{ChmailHeader, PublicKey, Signer},
    store::{
        mall::{AdFields, NewPromotion},
        open_store, Store,
    },
};
use chmail_milter::table::SigningTable;
use common::{RecordingMailer, ORIGIN};
use serde_json::{json, Value};
use tokio::{sync::watch, task::JoinHandle};
use tower::ServiceExt as _;

/// The host who promotes.
const HUGO: &str = "hugo@hats.example";
/// The seed of the mall's signing key (the test's own, so it can verify).
const SEED: [u8; 32] = [7; 32];
/// A CSRF token a browser would hold.
const CSRF: &str = "csrfcsrfcsrfcsrfcsrfcsrfcsrfcsrfcsrfcsrfcsr";

struct World {
    state: AppState,
    mailer: Arc<RecordingMailer>,
    router: Router,
    key: PublicKey,
    ad: i64,
    company: i64,
    _dir: tempfile::TempDir,
}

/// The mall's signer: `a.example` is the test config's signing domain, so `mall@a.example` (the
/// default `[mall] from`) is signed with it.
fn signer() -> Signer {
    Signer::from_seed("a.example", "chmail", SEED)
}

/// A chatd state with a signing key, a company with host Hugo and one ad.
async fn world(per_minute: u32) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config();
    config.data_dir = dir.path().to_owned();
    config.mall.promotions_per_minute = per_minute;
    let store = open_store(&config.store_url(), 2).await.expect("store");
    store.migrate().await.expect("migrate");
    let mailer = Arc::new(RecordingMailer::default());
    let mut state = AppState::new(config, store, mailer.clone()).expect("state");
    state.signing = Arc::new(SigningTable::single(signer()));
    let now = state.clock.now_ms();
    let company = support::shop(&*state.store, "Hugo's Hats", HUGO, "Hugo", now).await;
    let fields = AdFields {
        description: "Warm.".into(),
        price_minor: 3_900,
        category: "Hats".into(),
        ..support::ad_fields(HUGO, "Felt hat")
    };
    let ad = state
        .store
        .create_ad(company, &fields, now)
        .await
        .expect("ad");
    World {
        router: app(state.clone()),
        state,
        mailer,
        key: signer().public_key(),
        ad,
        company,
        _dir: dir,
    }
}

/// Adds a member; `confirmed` members have proven their address.
async fn member(store: &dyn Store, address: &str, promotions: bool, confirmed: bool) -> i64 {
    let name = format!("Member {}", &address[..2]);
    support::add_member(
        store,
        address,
        &name,
        promotions,
        confirmed,
        1_700_000_000_000,
    )
    .await
}

/// Runs the promotion worker and the outbox's delivery worker of `state` until `stopped`.
fn workers(state: &AppState, stopped: &watch::Receiver<bool>) -> JoinHandle<()> {
    let promotions = tokio::spawn(promotion::run_worker(state.clone(), stopped.clone()));
    let delivery = tokio::spawn(outbox::run_delivery(state.clone(), stopped.clone()));
    tokio::spawn(async move {
        let (a, b) = tokio::join!(promotions, delivery);
        a.expect("promotion worker ends cleanly");
        b.expect("delivery worker ends cleanly");
    })
}

/// Lets spawned tasks run, then moves time on by `secs`.
async fn pass(secs: u64) {
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// A response read to the end.
struct Answer {
    status: StatusCode,
    body: String,
}

async fn send(router: &Router, req: Request<Body>) -> Answer {
    let response = router.clone().oneshot(req).await.expect("infallible");
    let status = response.status();
    let bytes = to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body reads");
    Answer {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn get(path: &str, cookies: &str) -> Request<Body> {
    let mut b = Request::get(path);
    if !cookies.is_empty() {
        b = b.header(header::COOKIE, cookies);
    }
    b.body(Body::empty()).expect("request")
}

/// A POST as a browser or a mail client sends it: a form body, no Origin check headers needed.
fn post(path: &str, cookies: &str, form: &str) -> Request<Body> {
    let mut b =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if !cookies.is_empty() {
        b = b
            .header(header::COOKIE, cookies)
            .header("sec-fetch-site", "same-origin");
    }
    b.body(Body::from(form.to_owned())).expect("request")
}

/// The value of header `name` of `mail`.
fn header_of<'a>(mail: &'a OutgoingMail, name: &str) -> Option<&'a str> {
    mail.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The mails about promotions (not the sign-in or code mails).
fn promotions_in(mails: &[OutgoingMail]) -> Vec<OutgoingMail> {
    mails
        .iter()
        .filter(|m| header_of(m, "List-Unsubscribe-Post").is_some())
        .cloned()
        .collect()
}

/// The path of the unsubscribe link of a promotion mail, from its List-Unsubscribe.
fn unsubscribe_path(mail: &OutgoingMail) -> String {
    let value = header_of(mail, "List-Unsubscribe").expect("List-Unsubscribe");
    let url = value.trim_start_matches('<').trim_end_matches('>');
    url.strip_prefix(ORIGIN).expect("our URL").to_owned()
}

#[tokio::test(start_paused = true)]
async fn a_promotion_reaches_each_opted_in_member_paced_signed_and_unsubscribable() {
    let w = world(2).await;
    let store = w.state.store.clone();
    let opted_in = ["ida@i.example", "jon@j.example", "kim@k.example"];
    let mut ids = Vec::new();
    for address in opted_in {
        ids.push(member(&*store, address, true, true).await);
    }
    member(&*store, "leo@l.example", false, true).await;
    member(&*store, "max@m.example", true, false).await;

    // Hugo writes the promotion on his page.
    let session = support::session_cookie(&w.state, HUGO).await;
    let cookies = format!("{session}; chmail_csrf={CSRF}");
    let form = send(&w.router, get("/mall/host/promotions/new", &cookies)).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("Felt hat"));
    assert!(
        form.body
            .contains("<strong id=\"audience\">3</strong> members"),
        "the form tells how many members it reaches: {}",
        form.body
    );
    let written = send(
        &w.router,
        post(
            "/mall/host/promotions/new",
            &cookies,
            &format!(
                "ad={}&subject=Hats+for+winter&body=Twenty+percent+off+this+week.&csrf={CSRF}",
                w.ad
            ),
        ),
    )
    .await;
    assert_eq!(written.status, StatusCode::SEE_OTHER, "{}", written.body);
    let promotions = store
        .promotions_of_company(w.company, 10)
        .await
        .expect("store");
    assert_eq!(promotions.len(), 1);
    let p = &promotions[0];
    assert_eq!(p.recipients, 3, "opted in and confirmed only");
    let listed = send(
        &w.router,
        get(&format!("/mall/host/promotions?queued={}", p.id), &cookies),
    )
    .await;
    assert!(
        listed.body.contains("It goes to the 3 members"),
        "{}",
        listed.body
    );

    // Two a minute, at most one saved up: one at once, one at 30 s, one at 60 s.
    let (stop, stopped) = watch::channel(false);
    let worker = workers(&w.state, &stopped);
    pass(5).await;
    assert_eq!(promotions_in(&w.mailer.mails()).len(), 1, "not all at once");
    pass(20).await;
    assert_eq!(promotions_in(&w.mailer.mails()).len(), 1, "paced");
    pass(10).await;
    assert_eq!(promotions_in(&w.mailer.mails()).len(), 2);
    pass(30).await;
    assert_eq!(promotions_in(&w.mailer.mails()).len(), 3);
    pass(120).await;
    let mails = promotions_in(&w.mailer.mails());
    assert_eq!(mails.len(), 3, "nobody twice, nobody else: {mails:#?}");

    let recipients: BTreeSet<&str> = mails.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(recipients, opted_in.into_iter().collect());
    let mut rooms = BTreeSet::new();
    for mail in &mails {
        assert_eq!(mail.subject, "Hats for winter");
        assert!(mail.text.contains("Twenty percent off this week."));
        assert!(mail.text.contains(&format!("{ORIGIN}/mall/ad/{}", w.ad)));
        let from = header_of(mail, "From").expect("From");
        assert!(from.contains("Hugo via CHmail Mall") && from.contains("<mall@a.example>"));
        let value = header_of(mail, "CHmail").expect("a CHmail header");
        let chmail = ChmailHeader::parse(value.as_bytes()).expect("it parses");
        assert!(
            chmail.verify(from, &w.key).is_pass(),
            "the CHmail header verifies against the From"
        );
        assert_eq!(chmail.login, HUGO, "the chat goes back to the host");
        assert_eq!(
            header_of(mail, "CHmail-Link"),
            Some(format!("<{ORIGIN}/c/{}/{}>", chmail.port, chmail.room.as_str()).as_str())
        );
        assert!(header_of(mail, "List-Unsubscribe")
            .is_some_and(|v| v.starts_with(&format!("<{ORIGIN}/mall/unsubscribe/"))));
        assert_eq!(
            header_of(mail, "List-Unsubscribe-Post"),
            Some("List-Unsubscribe=One-Click")
        );
        rooms.insert(chmail.room.as_str().to_owned());
    }
    assert_eq!(rooms.len(), 3, "a room of their own for each member");

    // Ida unsubscribes with her mail client's one-click POST: no cookie, no CSRF token. The
    // page a link scanner fetches changes nothing.
    let ida = mails
        .iter()
        .find(|m| m.to == opted_in[0])
        .expect("Ida's mail");
    let path = unsubscribe_path(ida);
    let page = send(&w.router, get(&path, "")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"unsubscribe\""));
    assert!(
        store
            .member(ids[0])
            .await
            .expect("store")
            .expect("Ida")
            .promotions
    );
    for _ in 0..2 {
        let done = send(&w.router, post(&path, "", "List-Unsubscribe=One-Click")).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
        assert!(done.body.contains("id=\"unsubscribed\""));
    }
    assert!(
        !store
            .member(ids[0])
            .await
            .expect("store")
            .expect("Ida")
            .promotions
    );
    let unknown = send(
        &w.router,
        post(
            &format!("/mall/unsubscribe/{}", auth::new_token().expect("token")),
            "",
            "List-Unsubscribe=One-Click",
        ),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // Jon opens his link and joins the chat.
    let jon = mails
        .iter()
        .find(|m| m.to == opted_in[1])
        .expect("Jon's mail");
    let chmail =
        ChmailHeader::parse(header_of(jon, "CHmail").expect("header").as_bytes()).expect("parses");
    let room_page = send(
        &w.router,
        get(&format!("/c/{}/{}", chmail.port, chmail.room.as_str()), ""),
    )
    .await;
    assert_eq!(room_page.status, StatusCode::OK);
    let (queue, mut inbox) = Outbox::new(64);
    let mut session = Session::new(
        w.state.clone(),
        Peer {
            ip: None,
            login: None,
        },
        queue,
    );
    session.hello();
    session
        .on_text(
            &json!({"type": "join", "v": 1, "port": chmail.port, "room": chmail.room.as_str(), "as": opted_in[1]})
                .to_string(),
        )
        .await;
    let mut frames: Vec<Value> = Vec::new();
    while let Ok(item) = inbox.rx.try_recv() {
        if let Outgoing::Frame(text) = item {
            frames.push(serde_json::from_str(text.as_str()).expect("JSON"));
        }
    }
    let joined = frames
        .iter()
        .find(|f| f["type"] == "joined")
        .unwrap_or_else(|| panic!("Jon joined: {frames:?}"));
    assert_eq!(joined["sender"], HUGO);
    session.close().await;

    // Hugo sees what came of it.
    let p = store
        .promotion(p.id)
        .await
        .expect("store")
        .expect("promotion");
    assert_eq!((p.sent, p.chatted, p.unsubscribed), (3, 1, 1));
    for path in ["/mall/host/promotions", "/mall/host"] {
        let page = send(&w.router, get(path, &cookies)).await;
        for (count, n) in [
            ("sent", 3),
            ("chatted", 1),
            ("unsubscribed", 1),
            ("recipients", 3),
        ] {
            assert!(
                page.body.contains(&format!("data-count=\"{count}\">{n}<")),
                "{path}: {count} = {n}"
            );
        }
        assert!(
            !page.body.contains("ida@i.example"),
            "{path}: recipients stay private"
        );
    }

    let _ = stop.send(true);
    worker.await.expect("workers stop on shutdown");
}

#[tokio::test(start_paused = true)]
async fn two_nodes_and_a_crashed_claim_never_mail_a_member_twice() {
    let w = world(60).await;
    let store = w.state.store.clone();
    let mut addresses = Vec::new();
    for n in 0..7 {
        let address = format!("m{n}@members.example");
        member(&*store, &address, true, true).await;
        addresses.push(address);
    }
    let now = w.state.clock.now_ms();
    let (promotion_id, recipients) = store
        .create_promotion(&NewPromotion {
            ad_id: w.ad,
            host_login: HUGO.into(),
            subject: "Two nodes".into(),
            body: "One mail each.".into(),
            created_ms: now,
        })
        .await
        .expect("store")
        .expect("Hugo's ad");
    assert_eq!(recipients, 7);

    // A node claimed two mails and died before sending them.
    let crashed = store
        .claim_promotion_mails("crashed-node", now, now + 120_000, 2)
        .await
        .expect("claim");
    assert_eq!(crashed.len(), 2);

    // A second chatd over the same store, with its own node id and mailer.
    let mailer2 = Arc::new(RecordingMailer::default());
    let mut second =
        AppState::new((*w.state.config).clone(), store.clone(), mailer2.clone()).expect("state");
    second.signing = Arc::new(SigningTable::single(signer()));
    assert_ne!(second.node, w.state.node);

    let (stop, stopped) = watch::channel(false);
    let first_workers = workers(&w.state, &stopped);
    let second_workers = workers(&second, &stopped);
    let all = || {
        let mut mails = promotions_in(&w.mailer.mails());
        mails.extend(promotions_in(&mailer2.mails()));
        mails
    };
    pass(30).await;
    let sent = all();
    assert_eq!(
        sent.len(),
        5,
        "the crashed node's claims wait for their lease: {sent:#?}"
    );
    let crashed_to: BTreeSet<&str> = crashed.iter().map(|j| j.address.as_str()).collect();
    assert!(sent.iter().all(|m| !crashed_to.contains(m.to.as_str())));

    pass(150).await;
    let sent = all();
    let to: Vec<&str> = sent.iter().map(|m| m.to.as_str()).collect();
    let distinct: BTreeSet<&str> = to.iter().copied().collect();
    assert_eq!(to.len(), 7, "{to:?}");
    assert_eq!(distinct.len(), 7, "nobody twice: {to:?}");
    assert_eq!(
        distinct,
        addresses
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
    );
    let p = store
        .promotion(promotion_id)
        .await
        .expect("store")
        .expect("promotion");
    assert_eq!(p.sent, 7);

    let _ = stop.send(true);
    first_workers.await.expect("first node stops");
    second_workers.await.expect("second node stops");
}

#[tokio::test(start_paused = true)]
async fn a_promotion_mail_that_keeps_failing_is_retried_with_back_off_then_given_up() {
    let mut w = world(60).await;
    // No key signs the mall's From domain: every attempt fails before anything is queued.
    w.state.signing = Arc::new(SigningTable::default());
    let store = w.state.store.clone();
    member(&*store, "ida@i.example", true, true).await;
    let (promotion_id, _) = store
        .create_promotion(&NewPromotion {
            ad_id: w.ad,
            host_login: HUGO.into(),
            subject: "Never sent".into(),
            body: "No key.".into(),
            created_ms: w.state.clock.now_ms(),
        })
        .await
        .expect("store")
        .expect("Hugo's ad");

    let (stop, stopped) = watch::channel(false);
    let running = workers(&w.state, &stopped);
    let claims = |after: i64| {
        let store = store.clone();
        async move {
            store
                .claim_promotion_mails("probe", after, after + 1, 10)
                .await
                .expect("claim")
        }
    };
    // First attempt at once, then after 1, 2, 4 and 8 minutes: five in all, then given up.
    pass(10).await;
    let now = w.state.clock.now_ms();
    assert!(claims(now).await.is_empty(), "waiting for its retry");
    pass(20 * 60).await;
    let counts = store
        .promotion(promotion_id)
        .await
        .expect("read")
        .expect("promotion");
    assert_eq!(
        (counts.sent, counts.failed),
        (0, 1),
        "given up after {} attempts",
        promotion::MAX_ATTEMPTS
    );
    let later = w.state.clock.now_ms() + 3_600_000;
    assert!(claims(later).await.is_empty(), "never claimed again");
    assert!(promotions_in(&w.mailer.mails()).is_empty());

    // The host sees it on the promotions page.
    let session = auth::start_session(&w.state, HUGO).await.expect("session");
    let cookies = format!(
        "{}; chmail_csrf={CSRF}",
        session.split(';').next().unwrap_or_default()
    );
    let page = send(&w.router, get("/mall/host/promotions", &cookies)).await;
    assert!(
        page.body.contains("data-count=\"failed\">1<"),
        "the host's page counts the mail not delivered: {}",
        page.body
    );
    stop.send(true).expect("stop");
    running.await.expect("workers end");
}
