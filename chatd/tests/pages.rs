//! The pages through `app(state).oneshot(request)`: the room page and its 404 sameness, escaping,
//! security headers and cookie flags, assets, and the whole sign-in flow with its limits.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use chatd::{app, auth};
use chmail::store::SigninToken;
use support::*;

#[tokio::test]
async fn unknown_rooms_wrong_ports_and_junk_links_get_the_same_404() {
    let (state, _) = state().await;
    let seeded = alice_room(&*state.store).await;
    let router = app(state);
    let ok = send(
        &router,
        get(&format!("/c/{}/{}", seeded.port, seeded.room), ""),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);

    let other_port = if seeded.port == 65535 {
        1
    } else {
        seeded.port + 1
    };
    let paths = [
        format!("/c/{other_port}/{}", seeded.room),
        format!("/c/{}/{}", seeded.port, room_id("nosuchroom")),
        format!("/c/{}/{}", other_port, room_id("nosuchroom")),
        format!("/c/notaport/{}", seeded.room),
        format!("/c/0{}/{}", seeded.port, "x".repeat(300)),
        format!("/c/{}", seeded.port),
        "/no/such/page".to_owned(),
    ];
    let first = send(&router, get(&paths[0], "")).await;
    assert_eq!(first.status, StatusCode::NOT_FOUND);
    for path in &paths[1..] {
        let page = send(&router, get(path, "")).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(page.body, first.body, "{path} answers differently");
        assert_eq!(
            page.header("content-type"),
            first.header("content-type"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_room_page_shows_sender_subject_participants_and_the_controls() {
    let (state, _) = state().await;
    let seeded = alice_room(&*state.store).await;
    let max = state.config.chat.max_message_bytes;
    let router = app(state);
    let page = send(
        &router,
        get(&format!("/c/{}/{}", seeded.port, seeded.room), ""),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    let b = &page.body;
    for needle in [
        "data-page=\"room\"".to_owned(),
        format!("data-port=\"{}\"", seeded.port),
        format!("data-room=\"{}\"", seeded.room),
        "data-sender=\"alice@a.example\"".to_owned(),
        "data-subject=\"Quarterly numbers\"".to_owned(),
        "data-login=\"\"".to_owned(),
        "data-is-sender=\"false\"".to_owned(),
        "id=\"status\"".to_owned(),
        "aria-live=\"polite\"".to_owned(),
        "<ul id=\"participants\">".to_owned(),
        "data-address=\"bob@b.example\"".to_owned(),
        "data-address=\"carol@c.example\"".to_owned(),
        "class=\"unverified\"".to_owned(),
        "<form id=\"whoami\"".to_owned(),
        "<select id=\"as\"".to_owned(),
        "<option value=\"bob@b.example\">".to_owned(),
        "<option value=\"carol@c.example\">".to_owned(),
        "id=\"join\"".to_owned(),
        "id=\"chat-button\"".to_owned(),
        "<ol id=\"messages\"".to_owned(),
        "id=\"older\"".to_owned(),
        "<form id=\"composer\"".to_owned(),
        format!("<textarea id=\"text\" name=\"text\" rows=\"1\" maxlength=\"{max}\""),
        "id=\"opening\"".to_owned(),
        "id=\"scroller\"".to_owned(),
        "id=\"jump\"".to_owned(),
        "id=\"typing\"".to_owned(),
        "id=\"send\"".to_owned(),
        "<script defer src=\"/static/chat.js\"></script>".to_owned(),
        "href=\"/static/chat.css\"".to_owned(),
        "name=\"viewport\"".to_owned(),
    ] {
        assert!(b.contains(&needle), "missing {needle}");
    }
    // The sender is not one of the addresses a recipient can claim.
    assert!(!b.contains("<option value=\"alice@a.example\">"));
}

/// The page names people by the names the mail gave them (and the mall's), says in plain words
/// what they are, and puts the mail that started the chat first: its subject and the start of
/// its text.
#[tokio::test]
async fn the_room_page_shows_names_plain_roles_and_the_mail_that_started_it() {
    use chmail::store::{Participant, Role, Submission};
    let (state, _) = state().await;
    let config = config();
    let store = state.store.clone();
    let company = store.add_company("Tea House", 1).await.expect("company").0;
    store
        .add_host(company.id, "carol@c.example", "Carol", 1)
        .await
        .expect("host");
    let room = room_id("namedroom");
    let grant = store
        .record_submission(&Submission {
            login: "alice@a.example".into(),
            ip: None,
            hostname: None,
            now: 1_714_566_896,
            ports: config.chat.ports,
            reclaim_after: config.chat.reclaim_after(),
            room_id: room.clone(),
            message_id: None,
            subject: Some("Quarterly numbers".into()),
            participants: vec![
                Participant::new("alice@a.example", Role::From).named("Alice Liddell"),
                Participant::new("bob@b.example", Role::To).named("Bob <Baker>"),
                Participant::new("carol@c.example", Role::Cc).named("C. from the mail"),
            ],
            opening: Some("Here are the numbers:\n<b>up</b> 4%".into()),
        })
        .await
        .expect("room stored");
    let router = app(state);
    let page = send(&router, get(&format!("/c/{}/{room}", grant.port), "")).await;
    assert_eq!(page.status, StatusCode::OK);
    let b = &page.body;
    let head = b.split("id=\"people\"").next().unwrap_or_default();
    assert!(
        head.contains("<h1 id=\"title\">Alice Liddell</h1>"),
        "{head}"
    );
    assert!(head.contains("Ring Alice"), "{head}");
    let opening = b
        .split("<article id=\"opening\"")
        .nth(1)
        .and_then(|rest| rest.split("</article>").next())
        .expect("the opening item");
    assert!(opening.contains("Alice Liddell wrote"), "{opening}");
    assert!(opening.contains("Quarterly numbers"), "{opening}");
    assert!(
        opening.contains("Here are the numbers:\n&lt;b&gt;up&lt;/b&gt; 4%"),
        "{opening}"
    );
    // It comes before the messages.
    assert!(b.find("id=\"opening\"") < b.find("id=\"messages\""));
    let people = b
        .split("<ul id=\"participants\">")
        .nth(1)
        .and_then(|rest| rest.split("</ul>").next())
        .expect("the people");
    for needle in [
        "<span class=\"name\">Alice Liddell</span>",
        "wrote the mail",
        "<span class=\"name\">Bob &lt;Baker&gt;</span>",
        "received the mail",
        // The mall's name of a shop's host beats the mail's, and says "shop".
        "<span class=\"name\">Carol from Tea House</span>",
        "<span class=\"what\">shop",
        "not confirmed",
    ] {
        assert!(people.contains(needle), "missing {needle} in {people}");
    }
    assert!(!people.contains("C. from the mail"), "{people}");
    assert!(!people.contains(">SENDER<") && !people.contains(">sender<"));
    assert!(
        b.contains("<option value=\"bob@b.example\">Bob &lt;Baker&gt; (bob@b.example)</option>")
    );
}

/// /me lists the chats a signed-in person was a recipient of too (a shop's host gets the
/// members' questions there), with their unread counts.
#[tokio::test]
async fn me_lists_the_chats_a_person_was_invited_to_with_their_unread_count() {
    let (state, _) = state().await;
    let seeded = alice_room(&*state.store).await;
    add_message(
        &*state.store,
        &seeded.room,
        "alice@a.example",
        "Hello Bob",
        1_714_566_900_000,
    )
    .await;
    let bob = signed_in_cookie(&state, "bob@b.example").await;
    let router = app(state);
    let me = send(&router, get("/me", &bob)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert!(
        me.body.contains(&format!("data-room=\"{}\"", seeded.room)),
        "{}",
        me.body
    );
    assert!(me.body.contains("data-count=\"1\""), "{}", me.body);
}

/// A signed-in recipient is joined as themselves: no address to choose; someone else signed in
/// (not a recipient) still chooses.
#[tokio::test]
async fn a_signed_in_recipient_gets_no_address_to_choose() {
    let (state, _) = state().await;
    let seeded = alice_room(&*state.store).await;
    let bob = signed_in_cookie(&state, "bob@b.example").await;
    let eve = signed_in_cookie(&state, "eve@e.example").await;
    let router = app(state);
    let url = format!("/c/{}/{}", seeded.port, seeded.room);
    let page = send(&router, get(&url, &bob)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("data-recipient=\"bob@b.example\""));
    assert!(!page.body.contains("id=\"whoami\""), "{}", page.body);
    assert!(page.body.contains("href=\"/me\">All your chats"));
    let other = send(&router, get(&url, &eve)).await;
    assert!(other.body.contains("data-recipient=\"\""));
    assert!(other.body.contains("id=\"whoami\""));
}

#[tokio::test]
async fn a_hostile_subject_and_addresses_are_escaped_everywhere() {
    let (state, _) = state().await;
    let evil_subject = "<script>alert(1)</script>\"'&<img src=x onerror=alert(2)>";
    let evil_to = "\"><img src=x onerror=alert(3)>@b.example";
    let evil_from = "x'onmouseover='alert(4)@a.example";
    let seeded = seed_room(
        &*state.store,
        "mallory@a.example",
        evil_from,
        &room_id("evilroom"),
        evil_subject,
        &[evil_to],
        &[],
    )
    .await;
    let cookie = signed_in_cookie(&state, "mallory@a.example").await;
    let router = app(state);
    let room = send(
        &router,
        get(&format!("/c/{}/{}", seeded.port, seeded.room), ""),
    )
    .await;
    let me = send(&router, get("/me", &cookie)).await;
    assert_eq!(room.status, StatusCode::OK);
    assert_eq!(me.status, StatusCode::OK);
    for page in [&room.body, &me.body] {
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("'onmouseover='"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
    }
    assert!(room
        .body
        .contains("data-address=\"&quot;&gt;&lt;img src=x onerror=alert(3)&gt;@b.example\""));
    assert!(room
        .body
        .contains("x&#39;onmouseover=&#39;alert(4)@a.example"));
}

#[tokio::test]
async fn every_response_has_the_security_headers() {
    let (state, _) = state().await;
    let seeded = alice_room(&*state.store).await;
    let router = app(state);
    for path in [
        format!("/c/{}/{}", seeded.port, seeded.room),
        "/c/1/nothing".to_owned(),
        "/signin".to_owned(),
        "/me".to_owned(),
        "/static/chat.css".to_owned(),
        "/auth/nonsense".to_owned(),
        format!("/auth/{}", "A".repeat(43)),
    ] {
        let page = send(&router, get(&path, "")).await;
        let csp = page.header("content-security-policy").unwrap_or_default();
        for part in [
            "default-src 'self'",
            "connect-src 'self' ws: wss:",
            "img-src 'self' data:",
            "media-src 'self' data:",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: CSP {csp:?} lacks {part}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}");
        assert_eq!(
            page.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            page.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        assert_eq!(page.header("x-frame-options"), Some("DENY"), "{path}");
        // No inline script can run under that CSP, so the pages must not rely on any.
        assert!(!page.body.contains("<script>"), "{path}");
    }
}

#[tokio::test]
async fn assets_have_their_types_and_revalidate_by_etag() {
    let (state, _) = state().await;
    let router = app(state);
    for (path, kind) in [
        ("/static/chat.js", "text/javascript"),
        ("/static/me.js", "text/javascript"),
        ("/static/chat.css", "text/css"),
    ] {
        let page = send(&router, get(path, "")).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            page.header("content-type")
                .is_some_and(|t| t.starts_with(kind)),
            "{path}"
        );
        assert_eq!(page.header("cache-control"), Some("no-cache"), "{path}");
        let etag = page.header("etag").unwrap_or_default().to_owned();
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag}");
        let mut again = get(path, "");
        again.headers_mut().insert(
            "if-none-match",
            etag.parse().expect("an ETag is a header value"),
        );
        let cached = send(&router, again).await;
        assert_eq!(cached.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(cached.body.is_empty());
    }
    let missing = send(&router, get("/static/../Cargo.toml", "")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// A session cookie (`name=value`) for `login`, started directly.
async fn signed_in_cookie(state: &chatd::AppState, login: &str) -> String {
    let set = auth::start_session(state, login)
        .await
        .expect("session starts");
    set.split(';').next().unwrap_or_default().to_owned()
}

/// Opens `/signin` and returns the CSRF cookie pair and the form token.
async fn signin_form(router: &axum::Router) -> (String, String) {
    let page = send(router, get("/signin", "")).await;
    assert_eq!(page.status, StatusCode::OK);
    let cookie = page.cookie_pair("chmail_csrf").expect("a CSRF cookie");
    let set = page.set_cookie("chmail_csrf").unwrap_or_default();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let token = page.csrf_field().expect("a csrf field");
    (cookie, token)
}

/// Posts the sign-in form for `address`.
async fn request_link(router: &axum::Router, address: &str) -> support::Page {
    let (cookie, token) = signin_form(router).await;
    send(
        router,
        post_form(
            "/signin",
            &cookie,
            &format!("address={}&csrf={token}", form_encode(address)),
        ),
    )
    .await
}

#[tokio::test]
async fn signing_in_by_mailed_link_sets_a_safe_cookie_and_me_lists_rooms_with_unread_counts() {
    let (state, mut mails) = state().await;
    let seeded = alice_room(&*state.store).await;
    let quiet = seed_room(
        &*state.store,
        "alice@a.example",
        "alice@a.example",
        &room_id("quietroom"),
        "Lunch?",
        &["dave@d.example"],
        &[],
    )
    .await;
    // The sender's own message (writing marks what came before it read) does not count.
    add_message(&*state.store, &seeded.room, "alice@a.example", "mine", 500).await;
    add_message(&*state.store, &seeded.room, "bob@b.example", "hello", 1_000).await;
    add_message(&*state.store, &seeded.room, "carol@c.example", "hi", 2_000).await;
    let store = state.store.clone();
    let router = app(state);

    let me = send(&router, get("/me", "")).await;
    assert_eq!(me.status, StatusCode::SEE_OTHER);
    assert_eq!(me.location(), Some("/signin"));

    let answer = request_link(&router, "Alice@A.example").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer
        .body
        .contains("If this address can sign in, a link is on its way"));

    let mail = mails.next().await.expect("a sign-in mail");
    assert_eq!(mail.to, "alice@a.example");
    let link = auth_path(&mail.text).expect("a link in the mail");
    assert!(
        mail.text.contains(&format!("{ORIGIN}{link}")),
        "{}",
        mail.text
    );

    let followed = follow_link(&router, &link).await;
    assert_eq!(followed.status, StatusCode::SEE_OTHER);
    assert_eq!(followed.location(), Some("/me"));
    let set = followed
        .set_cookie("chmail_session")
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=2592000"] {
        assert!(set.contains(flag), "{set} lacks {flag}");
    }
    assert!(!set.contains("Secure"), "no Secure over http: {set}");
    let cookie = followed.cookie_pair("chmail_session").unwrap_or_default();

    let me = send(&router, get("/me", &cookie)).await;
    assert_eq!(me.status, StatusCode::OK);
    let b = &me.body;
    assert!(b.contains("data-page=\"me\""));
    assert!(b.contains("data-login=\"alice@a.example\""));
    for id in [
        "id=\"status\"",
        "<ul id=\"rooms\">",
        "id=\"ring\"",
        "id=\"ring-text\"",
        "id=\"accept\"",
        "id=\"decline\"",
        "id=\"notify\"",
        "/static/me.js",
    ] {
        assert!(b.contains(id), "missing {id}");
    }
    assert!(b.contains("<section id=\"ring\" class=\"card\" hidden"));
    let busy = format!(
        "<li data-room=\"{}\" data-port=\"{}\"><a href=\"/c/{}/{}\">",
        seeded.room, seeded.port, seeded.port, seeded.room
    );
    assert!(b.contains(&busy), "{b}");
    assert!(b.contains("Quarterly numbers"));
    assert!(
        b.contains("data-count=\"2\" title=\"unread messages\">2</span>"),
        "{b}"
    );
    assert!(b.contains(&format!("data-room=\"{}\"", quiet.room)));
    assert!(b.contains("data-count=\"0\""));

    // The sign-in went into the first table with the client's address.
    let record = store.login("alice@a.example").await.ok().flatten();
    assert_eq!(record.and_then(|r| r.ip), Some(client().ip().to_string()));
}

#[tokio::test]
async fn cookies_are_secure_when_the_public_url_is_https() {
    let mut config = config();
    config.chat.public_url = "https://chat.test".into();
    let (state, _) = state_with(config).await;
    let set = auth::start_session(&state, "alice@a.example")
        .await
        .expect("session starts");
    assert!(set.contains("; Secure"), "{set}");
    let page = send(&app(state), get("/signin", "")).await;
    assert!(page
        .set_cookie("chmail_csrf")
        .is_some_and(|c| c.contains("; Secure")));
}

#[tokio::test]
async fn a_signin_link_works_only_once() {
    let (state, _) = state().await;
    alice_room(&*state.store).await;
    let url = auth::signin_url(&state, "alice@a.example", None)
        .await
        .expect("link made");
    let path = auth_path(&url).expect("an /auth/ link");
    let router = app(state);
    let first = follow_link(&router, &path).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let second = follow_link(&router, &path).await;
    assert_eq!(second.status, StatusCode::NOT_FOUND);
    assert!(second.set_cookie("chmail_session").is_none());
    assert!(second.body.contains("This link no longer works"));
    let junk = send(&router, get("/auth/not-a-token", "")).await;
    assert_eq!(junk.status, StatusCode::NOT_FOUND);
    assert_eq!(junk.body, second.body);
}

#[tokio::test]
async fn opening_a_signin_link_only_asks_and_leaves_it_usable_for_the_button() {
    let (state, _) = state().await;
    alice_room(&*state.store).await;
    let url = auth::signin_url(&state, "alice@a.example", None)
        .await
        .expect("link made");
    let path = auth_path(&url).expect("an /auth/ link");
    let store = state.store.clone();
    let router = app(state);

    // A mail link scanner fetches the link, maybe more than once: a page, no session.
    for _ in 0..2 {
        let scanned = send(&router, get(&path, "")).await;
        assert_eq!(scanned.status, StatusCode::OK);
        assert!(scanned.set_cookie("chmail_session").is_none());
        assert!(scanned.body.contains("data-page=\"signin-confirm\""));
        assert!(scanned.body.contains("Sign in to CHmail"));
        assert!(scanned.body.contains("id=\"signin\""));
        assert!(scanned.csrf_field().is_some());
    }
    let seen = store.login("alice@a.example").await.ok().flatten();
    assert_ne!(
        seen.and_then(|r| r.ip),
        Some(client().ip().to_string()),
        "a GET signs nobody in, not even in the first table"
    );

    // A post without the form's token uses nothing either.
    let forged = send(&router, post_form(&path, "", "csrf=x")).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert!(forged.set_cookie("chmail_session").is_none());

    // The person presses the button later: the link still works, once.
    let followed = follow_link(&router, &path).await;
    assert_eq!(followed.status, StatusCode::SEE_OTHER);
    assert_eq!(followed.location(), Some("/me"));
    let cookie = followed.cookie_pair("chmail_session").expect("a session");
    assert_eq!(
        send(&router, get("/me", &cookie)).await.status,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn a_signin_link_expires_after_its_ttl() {
    let (state, _) = state().await;
    alice_room(&*state.store).await;
    let ttl = state.config.chat.signin_ttl();
    let fresh = auth::signin_url(&state, "alice@a.example", None)
        .await
        .expect("link made");
    let stale = auth::signin_url(&state, "alice@a.example", None)
        .await
        .expect("link made");
    let router = app(state);
    tokio::time::advance(ttl - Duration::from_secs(5)).await;
    let page = follow_link(&router, &auth_path(&fresh).unwrap_or_default()).await;
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "still valid before the TTL"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    let page = follow_link(&router, &auth_path(&stale).unwrap_or_default()).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "expired after the TTL");
    assert!(page.set_cookie("chmail_session").is_none());
}

#[tokio::test]
async fn an_expired_token_in_the_store_signs_nobody_in() {
    let (state, _) = state().await;
    let token = auth::new_token().expect("token");
    let now = state.clock.now_ms();
    state
        .store
        .create_signin_token(
            &auth::hash_token(&token),
            &SigninToken {
                login: "alice@a.example".into(),
                room_id: None,
                created_ms: now - 60_000,
                expires_ms: now - 1,
            },
        )
        .await
        .expect("token stored");
    let page = follow_link(&app(state), &format!("/auth/{token}")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn signin_mails_are_limited_per_login_and_the_answer_never_changes() {
    let mut config = config();
    config.chat.signins_per_hour = 2;
    let (state, mut mails) = state_with(config).await;
    alice_room(&*state.store).await;
    let router = app(state);
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let page = request_link(&router, "alice@a.example").await;
        assert_eq!(page.status, StatusCode::OK);
        bodies.push(page.body);
        // Let the background send finish before the next request is counted.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(mails.next().await.is_some());
    assert!(mails.next().await.is_some());
    assert!(
        mails.none_within(Duration::from_millis(300)).await,
        "a third mail went out"
    );
    let unknown = request_link(&router, "nobody@z.example").await;
    assert_eq!(unknown.status, StatusCode::OK);
    bodies.push(unknown.body);
    assert!(
        mails.none_within(Duration::from_millis(300)).await,
        "mail to an unknown address"
    );
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "answers differ");
}

/// Posts the sign-in form for `address` from the client address `ip`.
async fn request_link_from(router: &axum::Router, address: &str, ip: [u8; 4]) -> support::Page {
    let (cookie, token) = signin_form(router).await;
    let mut req = post_form(
        "/signin",
        &cookie,
        &format!("address={}&csrf={token}", form_encode(address)),
    );
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            ip, 40000,
        ))));
    send(router, req).await
}

#[tokio::test]
async fn a_stranger_asking_for_links_uses_up_their_own_share_not_the_owners() {
    let mut config = config();
    config.chat.signins_per_hour = 2;
    let (state, mut mails) = state_with(config).await;
    alice_room(&*state.store).await;
    let router = app(state);
    for _ in 0..5 {
        request_link_from(&router, "alice@a.example", [203, 0, 113, 1]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(mails.next().await.is_some());
    assert!(mails.next().await.is_some());
    assert!(
        mails.none_within(Duration::from_millis(300)).await,
        "a stranger's network gets its share only"
    );
    let page = request_link_from(&router, "alice@a.example", [192, 0, 2, 7]).await;
    assert_eq!(page.status, StatusCode::OK);
    let mail = mails.next().await.expect("the owner still gets a link");
    assert_eq!(mail.to, "alice@a.example");

    // In all, a login gets SIGNIN_MAIL_NETWORKS times the limit: 8 here, 3 of them sent.
    for n in 2..=4 {
        for _ in 0..2 {
            request_link_from(&router, "alice@a.example", [203, 0, 113, n]).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for _ in 0..5 {
        assert!(mails.next().await.is_some());
    }
    request_link_from(&router, "alice@a.example", [203, 0, 113, 9]).await;
    assert!(
        mails.none_within(Duration::from_millis(300)).await,
        "over the per-login cap"
    );
}

#[tokio::test]
async fn signin_requests_are_limited_per_client_address() {
    let (state, _) = state().await;
    let router = app(state);
    let (cookie, token) = signin_form(&router).await;
    let form = format!("address=someone%40z.example&csrf={token}");
    for i in 0..chatd::limit::SIGNINS_PER_IP {
        let page = send(&router, post_form("/signin", &cookie, &form)).await;
        assert_eq!(page.status, StatusCode::OK, "request {i}");
    }
    let page = send(&router, post_form("/signin", &cookie, &form)).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_login_without_at_signs_in_with_its_address_in_our_domain() {
    let (state, mut mails) = state().await;
    seed_room(
        &*state.store,
        "erin",
        "erin@a.example",
        &room_id("erinsroom"),
        "Hi",
        &["x@x.example"],
        &[],
    )
    .await;
    let router = app(state);
    request_link(&router, "erin@a.example").await;
    let mail = mails.next().await.expect("a sign-in mail");
    assert_eq!(mail.to, "erin@a.example");
}

#[tokio::test]
async fn forms_from_elsewhere_or_without_the_token_are_refused() {
    let (state, mut mails) = state().await;
    alice_room(&*state.store).await;
    let router = app(state);
    let (cookie, token) = signin_form(&router).await;
    let form = format!("address=alice%40a.example&csrf={token}");

    let no_cookie = send(&router, post_form("/signin", "", &form)).await;
    assert_eq!(no_cookie.status, StatusCode::BAD_REQUEST);
    let wrong_token = send(
        &router,
        post_form("/signin", &cookie, "address=alice%40a.example&csrf=x"),
    )
    .await;
    assert_eq!(wrong_token.status, StatusCode::BAD_REQUEST);

    let mut cross_site = post_form("/signin", &cookie, &form);
    cross_site
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().expect("value"));
    assert_eq!(
        send(&router, cross_site).await.status,
        StatusCode::BAD_REQUEST
    );

    let mut other_origin = post_form("/signin", &cookie, &form);
    other_origin.headers_mut().remove("sec-fetch-site");
    other_origin
        .headers_mut()
        .insert("origin", "https://evil.example".parse().expect("value"));
    assert_eq!(
        send(&router, other_origin).await.status,
        StatusCode::BAD_REQUEST
    );

    let mut own_origin = post_form("/signin", &cookie, &form);
    own_origin.headers_mut().remove("sec-fetch-site");
    own_origin
        .headers_mut()
        .insert("origin", ORIGIN.parse().expect("value"));
    assert_eq!(send(&router, own_origin).await.status, StatusCode::OK);
    assert!(
        mails.next().await.is_some(),
        "the accepted post mails a link"
    );
    assert!(mails.none_within(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn oversized_or_malformed_forms_are_refused_with_a_page() {
    let (state, _) = state().await;
    let router = app(state);
    let (cookie, token) = signin_form(&router).await;
    let big = format!("address={}&csrf={token}", "a".repeat(10_000));
    let page = send(&router, post_form("/signin", &cookie, &big)).await;
    assert!(page.status.is_client_error(), "{}", page.status);
    assert!(page.body.contains("<!doctype html>"));
    let long = format!("address={}%40a.example&csrf={token}", "a".repeat(400));
    let page = send(&router, post_form("/signin", &cookie, &long)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_reminder_link_signs_the_sender_straight_into_the_room() {
    let (state, _) = state().await;
    let seeded = alice_room(&*state.store).await;
    let url = auth::signin_url(
        &state,
        &seeded.login,
        Some((seeded.port, seeded.room.as_str())),
    )
    .await
    .expect("link made");
    assert!(url.starts_with(&format!("{ORIGIN}/auth/")));
    let router = app(state);
    let followed = follow_link(&router, &auth_path(&url).unwrap_or_default()).await;
    assert_eq!(followed.status, StatusCode::SEE_OTHER);
    let room_path = format!("/c/{}/{}", seeded.port, seeded.room);
    assert_eq!(followed.location(), Some(room_path.as_str()));
    let cookie = followed.cookie_pair("chmail_session").unwrap_or_default();
    let room = send(&router, get(&room_path, &cookie)).await;
    assert!(room.body.contains("data-login=\"alice@a.example\""));
    assert!(room.body.contains("data-is-sender=\"true\""));
    assert!(!room.body.contains("id=\"whoami\""));
    assert!(!room.body.contains("id=\"chat-button\""));
    assert!(room.body.contains("id=\"composer\""));
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let (state, _) = state().await;
    let session = signed_in_cookie(&state, "alice@a.example").await;
    let router = app(state);
    let me = send(&router, get("/me", &session)).await;
    assert_eq!(me.status, StatusCode::OK);
    let csrf_cookie = me.cookie_pair("chmail_csrf").expect("a CSRF cookie");
    let token = me.csrf_field().expect("a sign-out form");
    let cookies = format!("{session}; {csrf_cookie}");
    let out = send(
        &router,
        post_form("/signout", &cookies, &format!("csrf={token}")),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out
        .set_cookie("chmail_session")
        .is_some_and(|c| c.contains("Max-Age=0")));
    let me = send(&router, get("/me", &session)).await;
    assert_eq!(
        me.status,
        StatusCode::SEE_OTHER,
        "the old cookie no longer works"
    );
}

/// A mail whose From the milter could not read leaves a room without a From participant; its
/// sender is then the address of the login (a bare SASL name gets our domain), and the page and
/// the reminder mail both name that address, as the WebSocket does.
#[tokio::test]
async fn a_room_without_a_from_participant_names_and_mails_the_logins_address() {
    let (state, _) = state().await;
    let config = config();
    let room_id = room_id("nofromroom");
    let grant = state
        .store
        .record_submission(&chmail::store::Submission {
            login: "erin".into(),
            ip: None,
            hostname: None,
            now: 1_714_566_896,
            ports: config.chat.ports,
            reclaim_after: config.chat.reclaim_after(),
            room_id: room_id.clone(),
            message_id: None,
            subject: Some("Hi".into()),
            participants: vec![chmail::store::Participant {
                address: "x@x.example".into(),
                role: chmail::store::Role::To,
                name: None,
            }],
            opening: None,
        })
        .await
        .expect("submission stored");
    let room = state
        .store
        .room(&room_id)
        .await
        .expect("room read")
        .expect("room exists");
    let quoted = chatd::quote::Quoted::default();
    let reminder = chatd::reminder::compose::Reminder {
        caller: "x@x.example",
        origin: chatd::reminder::compose::Origin::Mail,
        occasion: chatd::reminder::compose::Occasion::Waiting,
        quoted: &quoted,
        signin_url: "u",
    };
    let mail = chatd::reminder::compose::reminder_mail(&state.config, &room, 0, &reminder);
    assert_eq!(mail.to, "erin@a.example");
    let router = app(state);
    let page = send(&router, get(&format!("/c/{}/{room_id}", grant.port), "")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("data-sender=\"erin@a.example\""),
        "{}",
        page.body
    );
}

/// Every store call of a page is bounded by `[store] timeout_ms`: a store that does not answer
/// (here: another process holds SQLite's write lock, which the store waits out for its busy
/// time-out of 5 s) gets the "try again" page within the configured time, not after the store's
/// own, longer wait.
#[tokio::test]
async fn a_page_whose_store_hangs_answers_within_the_store_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config();
    config.data_dir = dir.path().to_owned();
    config.store.timeout_ms = 300;
    let store = chmail::open_store(&config.store_url(), 1)
        .await
        .expect("store opens");
    store.migrate().await.expect("migrations apply");
    let db = dir.path().join("chmail.db");
    let (state, _) = state_over(config, store);
    alice_room(&*state.store).await;
    let url = auth::signin_url(&state, "alice@a.example", None)
        .await
        .expect("link made");
    let path = auth_path(&url).expect("an /auth/ link");
    let router = app(state);
    let confirm = send(&router, get(&path, "")).await;
    let cookie = confirm.cookie_pair("chmail_csrf").expect("a CSRF cookie");
    let token = confirm.csrf_field().expect("a csrf field");

    let other = rusqlite::Connection::open(&db).expect("a second connection");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("the write lock");
    let started = std::time::Instant::now();
    let page = send(&router, post_form(&path, &cookie, &format!("csrf={token}"))).await;
    let took = started.elapsed();
    other.execute_batch("ROLLBACK").expect("lock released");
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
}
