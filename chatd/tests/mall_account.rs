//! The member pages of the mall through `app(state).oneshot(request)`: sign-up with each bad
//! input, the confirm link (single use, expiry), sign-in (wrong password, unconfirmed,
//! rate-limited per network and per account), `next` that never leaves the mall, sign-out, the
//! password reset (the old password and the other sessions end), the profile, deleting the
//! account, CSRF on every form, and that a member never sees another member's question.

mod support;

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header, Request, StatusCode},
    Router,
};
use chatd::{app, auth, AppState};
use chmail::{header::Signer, store::mall::TokenPurpose, Config};
use chmail_milter::SigningTable;
use support::*;

/// The shop's host: the To of every question.
const HOST: &str = "hana@shop.example";
/// A password that passes the rules.
const PASSWORD: &str = "correct horse battery";
/// The CSRF page's complaint.
const STALE: &str = "This form has expired or did not come from this site";

/// A mall over an in-memory store, with a signing key for the inquiry mails.
struct Mall {
    state: AppState,
    router: Router,
    mails: Mails,
}

impl Mall {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = config();
        tweak(&mut config);
        let (mut state, mails) = state_with(config).await;
        state.signing = Arc::new(SigningTable::single(Signer::generate("a.example", "sel1")));
        let router = app(state.clone());
        Self {
            state,
            router,
            mails,
        }
    }

    fn browser(&self) -> Browser {
        self.browser_at([198, 51, 100, 7])
    }

    fn browser_at(&self, ip: [u8; 4]) -> Browser {
        Browser::new(self.router.clone(), ip)
    }

    /// The next mail (up to 5 s).
    async fn mail(&mut self) -> chatd::mail::OutgoingMail {
        self.mails.next().await.expect("a mail arrives")
    }

    /// Whether no mail arrives within half a second.
    async fn no_mail(&mut self) -> bool {
        self.mails.none_within(Duration::from_millis(500)).await
    }

    async fn member(&self, address: &str) -> Option<chmail::store::mall::MallMember> {
        self.state
            .store
            .member_by_address(address)
            .await
            .expect("store answers")
    }

    /// The questions of member `id` (up to 10).
    async fn questions(&self, id: i64) -> Vec<chmail::store::mall::Inquiry> {
        self.state
            .store
            .inquiries_of_member(id, 10)
            .await
            .expect("inquiries")
    }

    /// A confirmed member signed in on a fresh browser.
    async fn join(&mut self, address: &str, name: &str) -> Browser {
        let mut b = self.browser();
        let page = b.sign_up(address, name, PASSWORD, true, "").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let mail = self.mail().await;
        let link = link_path(&mail.text, "/mall/confirm/");
        let done = b.confirm(&link, PASSWORD).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        b
    }

    /// A company with a host and one active ad; the ad's id.
    async fn shop(&self) -> i64 {
        let store = &self.state.store;
        let now = self.state.clock.now_ms();
        let company = shop(&**store, "Tea House", HOST, "Hana", now).await;
        store
            .create_ad(company, &ad_fields(HOST, "Cast iron tea pot"), now)
            .await
            .expect("ad")
    }
}

// --- sign-up and confirm ---------------------------------------------------------------------

#[tokio::test]
async fn signing_up_mails_a_link_whose_button_confirms_signs_in_and_returns_to_the_product() {
    let mut mall = Mall::start(|_| {}).await;
    let ad = mall.shop().await;
    let mut visitor = mall.browser();
    let product = visitor.get(&format!("/mall/ad/{ad}")).await;
    assert_eq!(product.status, StatusCode::OK);
    assert!(
        product
            .body
            .contains(&format!("href=\"/mall/signup?next=/mall/ad/{ad}\"")),
        "the product page sends a visitor to join and back: {}",
        product.body
    );
    assert!(product
        .body
        .contains("Sign in or join to ask about this product"));

    let form = visitor
        .get(&format!("/mall/signup?next=/mall/ad/{ad}"))
        .await;
    assert_eq!(form.status, StatusCode::OK);
    assert_eq!(hidden(&form.body, "next"), Some(format!("/mall/ad/{ad}")));
    let next = format!("/mall/ad/{ad}");
    let page = visitor
        .sign_up(" Ana.Lima@Example.com ", "Ana Lima", PASSWORD, true, &next)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Check your mail"), "{}", page.body);
    assert!(visitor.session().is_none());

    let mail = mall.mail().await;
    assert_eq!(mail.to, "ana.lima@example.com");
    assert!(
        mail.subject.contains("Confirm your address"),
        "{}",
        mail.subject
    );
    let link = link_path(&mail.text, "/mall/confirm/");
    assert!(link.ends_with(&format!("?next=/mall/ad/{ad}")), "{link}");
    assert!(mail
        .html
        .as_deref()
        .is_some_and(|h| h.contains("/mall/confirm/")));
    let member = mall.member("ana.lima@example.com").await.expect("created");
    assert!(member.confirmed_ms.is_none(), "unconfirmed until the link");
    assert!(member.promotions);
    assert_eq!(member.name, "Ana Lima");
    assert!(member.password_hash.starts_with("$argon2id$"));

    // Opening the link only shows the button (mail scanners fetch links).
    let opened = visitor.get(&link).await;
    assert_eq!(opened.status, StatusCode::OK);
    assert!(opened.set_cookie("chmail_session").is_none());
    let still = mall.member("ana.lima@example.com").await.expect("member");
    assert!(still.confirmed_ms.is_none());

    let done = visitor.confirm(&link, PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), Some(format!("/mall/ad/{ad}").as_str()));
    let cookie = done.set_cookie("chmail_session").expect("signed in");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let member = mall.member("ana.lima@example.com").await.expect("member");
    assert!(member.confirmed_ms.is_some());
    assert!(member.last_signin_ms.is_some());

    // Back on the product, the member gets the question form.
    let product = visitor.get(&format!("/mall/ad/{ad}")).await;
    assert!(product.body.contains("id=\"ask-form\""), "{}", product.body);
    assert!(product.body.contains("<textarea"), "{}", product.body);

    // The link works once.
    let mut other = mall.browser();
    let again = other.confirm(&link, PASSWORD).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert!(again.body.contains("This link no longer works"));
    assert!(other.session().is_none());
}

#[tokio::test]
async fn each_bad_sign_up_comes_back_with_its_message_and_the_input_and_creates_nothing() {
    let mut mall = Mall::start(|_| {}).await;
    let long_password = "p".repeat(201);
    let cases: [(&str, &str, &str, &str); 8] = [
        ("", "Ana", PASSWORD, "Please enter your e-mail address."),
        (
            "ana",
            "Ana",
            PASSWORD,
            "does not look like an e-mail address",
        ),
        (
            "ana@example",
            "Ana",
            PASSWORD,
            "does not look like an e-mail address",
        ),
        ("ana@example.com", "  ", PASSWORD, "Please enter your name."),
        (
            "ana@example.com",
            "Ana\r\nBcc: x@example.com",
            PASSWORD,
            "cannot contain line breaks",
        ),
        (
            "ana@example.com",
            &"n".repeat(101),
            PASSWORD,
            "Your name is too long",
        ),
        (
            "ana@example.com",
            "Ana",
            "short pw",
            "at least 10 characters",
        ),
        (
            "ana@example.com",
            "Ana",
            &long_password,
            "at most 200 characters",
        ),
    ];
    for (address, name, password, message) in cases {
        let mut b = mall.browser();
        let page = b.sign_up(address, name, password, false, "").await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{address:?} {name:?}");
        assert!(page.body.contains(message), "{message}: {}", page.body);
        assert!(page.body.contains("id=\"signup-form\""), "the form again");
        assert!(
            !page.body.contains(password) || password.len() < 10,
            "the password is never shown again"
        );
    }
    // The input comes back, escaped.
    let mut b = mall.browser();
    let page = b
        .sign_up("<b>@example.com", "<script>x</script>", "short", false, "")
        .await;
    assert!(
        page.body.contains("value=\"&lt;b&gt;@example.com\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>x"));
    assert!(
        mall.member("ana@example.com").await.is_none(),
        "nothing created"
    );
    assert!(mall.no_mail().await, "nothing mailed");
}

#[tokio::test]
async fn a_taken_address_gets_the_same_answer_and_its_owner_a_mail_saying_so() {
    let mut mall = Mall::start(|_| {}).await;
    let _ana = mall.join("ana@example.com", "Ana").await;
    let before = mall.member("ana@example.com").await.expect("member");

    let mut stranger = mall.browser_at([203, 0, 113, 9]);
    let fresh = stranger
        .sign_up("new@example.com", "New", PASSWORD, false, "")
        .await;
    mall.mail().await;
    let taken = stranger
        .sign_up("ANA@example.com", "Mallory", "another password", false, "")
        .await;
    assert_eq!(taken.status, fresh.status);
    assert!(taken.body.contains("Check your mail"));
    let strip = |body: &str, address: &str| body.replace(address, "ADDRESS");
    assert_eq!(
        strip(&taken.body, "ana@example.com"),
        strip(&fresh.body, "new@example.com"),
        "the answer does not tell whether the address has an account"
    );
    let mail = mall.mail().await;
    assert_eq!(mail.to, "ana@example.com");
    assert!(
        mail.subject.contains("already have an account"),
        "{}",
        mail.subject
    );
    assert!(mail.text.contains("/mall/reset/"), "{}", mail.text);
    let after = mall.member("ana@example.com").await.expect("member");
    assert_eq!(after, before, "nothing about the account changed");
}

#[tokio::test]
async fn signing_up_again_before_confirming_replaces_the_password_and_mails_a_new_link() {
    let mut mall = Mall::start(|_| {}).await;
    let mut b = mall.browser();
    b.sign_up("ana@example.com", "Ana", "first password", false, "")
        .await;
    let first = link_path(&mall.mail().await.text, "/mall/confirm/");
    b.sign_up("ana@example.com", "Ana Lima", PASSWORD, true, "")
        .await;
    let second = link_path(&mall.mail().await.text, "/mall/confirm/");
    assert_ne!(first, second);
    let refused = b.confirm(&first, "first password").await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "the replaced password confirms nothing"
    );
    assert!(
        refused.body.contains("That is not the password"),
        "{}",
        refused.body
    );
    assert!(b.session().is_none());
    let done = b.confirm(&first, PASSWORD).await;
    assert_eq!(
        done.status,
        StatusCode::SEE_OTHER,
        "an earlier link confirms with the last sign-up's password"
    );
    let member = mall.member("ana@example.com").await.expect("member");
    assert_eq!(member.name, "Ana Lima");
    assert!(member.promotions);
    let mut c = mall.browser();
    let old = c.sign_in("ana@example.com", "first password", "").await;
    assert_eq!(old.status, StatusCode::BAD_REQUEST);
    let new = c.sign_in("ana@example.com", PASSWORD, "").await;
    assert_eq!(
        new.status,
        StatusCode::SEE_OTHER,
        "the last sign-up's password"
    );
}

/// Whether `password` opens `address`'s account from a fresh browser on another network.
async fn opens(mall: &Mall, address: &str, password: &str) -> bool {
    let mut b = mall.browser_at([192, 0, 2, 200]);
    let page = b.sign_in(address, password, "").await;
    page.status == StatusCode::SEE_OTHER || b.session().is_some()
}

#[tokio::test]
async fn a_stranger_who_signs_up_first_cannot_have_the_owner_confirm_the_strangers_password() {
    let mut mall = Mall::start(|_| {}).await;
    let mut mallory = mall.browser_at([203, 0, 113, 66]);
    let page = mallory
        .sign_up("ana@example.com", "Ana", "mallorys password", false, "")
        .await;
    assert_eq!(page.status, StatusCode::OK);

    // Ana gets the welcome mail she did not ask for and presses Confirm, typing what she
    // would type: her own password, or nothing.
    let link = link_path(&mall.mail().await.text, "/mall/confirm/");
    let mut ana = mall.browser();
    for typed in ["anas own password", ""] {
        let page = ana.confirm(&link, typed).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
        assert!(ana.session().is_none());
    }
    let member = mall.member("ana@example.com").await.expect("pending");
    assert!(member.confirmed_ms.is_none(), "not confirmed");
    assert!(!opens(&mall, "ana@example.com", "mallorys password").await);

    // Ana signs up herself: the last sign-up wins, and she confirms with her password.
    ana.sign_up("ana@example.com", "Ana", PASSWORD, false, "")
        .await;
    let link = link_path(&mall.mail().await.text, "/mall/confirm/");
    let done = ana.confirm(&link, PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(!opens(&mall, "ana@example.com", "mallorys password").await);
    assert!(opens(&mall, "ana@example.com", PASSWORD).await);
}

#[tokio::test]
async fn the_owners_earlier_link_does_not_confirm_a_strangers_later_password() {
    let mut mall = Mall::start(|_| {}).await;
    let mut ana = mall.browser();
    ana.sign_up("ana@example.com", "Ana", PASSWORD, false, "")
        .await;
    let anas_link = link_path(&mall.mail().await.text, "/mall/confirm/");
    let mut mallory = mall.browser_at([203, 0, 113, 66]);
    mallory
        .sign_up("ana@example.com", "Ana", "mallorys password", false, "")
        .await;
    let mallorys_link = link_path(&mall.mail().await.text, "/mall/confirm/");

    // Ana opens her own, earlier link with her password: it no longer is the account's.
    let page = ana.confirm(&anas_link, PASSWORD).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    let page = ana.confirm(&mallorys_link, PASSWORD).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    let member = mall.member("ana@example.com").await.expect("pending");
    assert!(member.confirmed_ms.is_none());
    assert!(!opens(&mall, "ana@example.com", "mallorys password").await);

    // Signing up again puts her password back; her link then works.
    ana.sign_up("ana@example.com", "Ana", PASSWORD, false, "")
        .await;
    mall.mail().await;
    let done = ana.confirm(&anas_link, PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(!opens(&mall, "ana@example.com", "mallorys password").await);

    // Once confirmed, a sign-up changes nothing.
    mallory
        .sign_up("ana@example.com", "Mallory", "mallorys password", true, "")
        .await;
    let mail = mall.mail().await;
    assert!(
        mail.subject.contains("already have an account"),
        "{}",
        mail.subject
    );
    assert!(!opens(&mall, "ana@example.com", "mallorys password").await);
    assert!(opens(&mall, "ana@example.com", PASSWORD).await);
}

#[tokio::test]
async fn signing_up_again_past_the_mail_limit_changes_nothing() {
    let mut mall = Mall::start(|c| c.mall.mails_per_hour = 1).await;
    let mut b = mall.browser();
    b.sign_up("ana@example.com", "Ana", PASSWORD, false, "")
        .await;
    let link = link_path(&mall.mail().await.text, "/mall/confirm/");
    let again = b
        .sign_up("ana@example.com", "Mallory", "mallorys password", true, "")
        .await;
    assert!(again.body.contains("Check your mail"), "the same answer");
    assert!(mall.no_mail().await, "no second mail within the hour");
    let member = mall.member("ana@example.com").await.expect("member");
    assert_eq!(member.name, "Ana");
    assert!(!member.promotions);
    b.confirm(&link, PASSWORD).await;
    let mut c = mall.browser();
    let page = c.sign_in("ana@example.com", "mallorys password", "").await;
    assert_eq!(
        page.status,
        StatusCode::BAD_REQUEST,
        "the password did not change"
    );
    let page = c.sign_in("ana@example.com", PASSWORD, "").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn sign_ups_are_limited_per_client_network() {
    let mut mall = Mall::start(|c| c.mall.signups_per_hour = 2).await;
    let mut b = mall.browser();
    for n in 0..2 {
        let page = b
            .sign_up(&format!("p{n}@example.com"), "P", PASSWORD, false, "")
            .await;
        assert_eq!(page.status, StatusCode::OK);
        mall.mail().await;
    }
    let page = b.sign_up("p2@example.com", "P", PASSWORD, false, "").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.body.contains("Too many sign-ups"), "{}", page.body);
    assert!(mall.member("p2@example.com").await.is_none());
    let mut elsewhere = mall.browser_at([203, 0, 113, 1]);
    let page = elsewhere
        .sign_up("p3@example.com", "P", PASSWORD, false, "")
        .await;
    assert_eq!(page.status, StatusCode::OK, "another network may");
}

#[tokio::test(start_paused = true)]
async fn a_confirm_link_expires_after_the_token_ttl() {
    let mut mall = Mall::start(|c| c.mall.token_ttl_minutes = 30).await;
    let mut b = mall.browser();
    b.sign_up("ana@example.com", "Ana", PASSWORD, false, "")
        .await;
    let link = link_path(&mall.mail().await.text, "/mall/confirm/");
    tokio::time::advance(Duration::from_secs(30 * 60 + 1)).await;
    let page = b.confirm(&link, PASSWORD).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(b.session().is_none());
    let member = mall.member("ana@example.com").await.expect("member");
    assert!(member.confirmed_ms.is_none());
}

#[tokio::test]
async fn an_expired_or_malformed_confirm_token_confirms_nobody() {
    let mut mall = Mall::start(|_| {}).await;
    let mut b = mall.browser();
    b.sign_up("ana@example.com", "Ana", PASSWORD, false, "")
        .await;
    mall.mail().await;
    let member = mall.member("ana@example.com").await.expect("member");
    let token = auth::new_token().expect("token");
    let now = mall.state.clock.now_ms();
    mall.state
        .store
        .create_member_token(
            &auth::hash_token(&token),
            member.id,
            TokenPurpose::Confirm,
            now - 7_200_000,
            now - 1,
        )
        .await
        .expect("token stored");
    let page = b.confirm(&format!("/mall/confirm/{token}"), PASSWORD).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let junk = b.get("/mall/confirm/not-a-token").await;
    assert_eq!(junk.status, StatusCode::NOT_FOUND);
    let junk = b.post("/mall/confirm/not-a-token", &[("next", "")]).await;
    assert_eq!(junk.status, StatusCode::NOT_FOUND);
    let member = mall.member("ana@example.com").await.expect("member");
    assert!(member.confirmed_ms.is_none());
    assert!(b.session().is_none());
}

// --- sign-in and sign-out --------------------------------------------------------------------

#[tokio::test]
async fn a_wrong_password_or_unknown_address_gets_one_message_and_no_session() {
    let mut mall = Mall::start(|_| {}).await;
    mall.join("ana@example.com", "Ana").await;
    let mut b = mall.browser();
    let wrong = b.sign_in("ana@example.com", "wrong password!", "").await;
    let unknown = b.sign_in("nobody@example.com", PASSWORD, "").await;
    for page in [&wrong, &unknown] {
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page
            .body
            .contains("The e-mail address or the password is wrong."));
        assert!(page.set_cookie("chmail_session").is_none());
    }
    let empty = b.sign_in("", "", "").await;
    assert!(empty
        .body
        .contains("Please enter your e-mail address and your password."));
    let ok = b.sign_in("ANA@example.com ", PASSWORD, "").await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), Some("/mall/account"));
    let account = b.get("/mall/account").await;
    assert_eq!(account.status, StatusCode::OK);
    assert!(account.body.contains("ana@example.com"));
}

#[tokio::test]
async fn an_unconfirmed_account_is_told_so_and_can_get_a_new_link() {
    let mut mall = Mall::start(|_| {}).await;
    let mut b = mall.browser();
    b.sign_up("ana@example.com", "Ana", PASSWORD, false, "")
        .await;
    mall.mail().await;
    let page = b.sign_in("ana@example.com", PASSWORD, "").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.body.contains("Please confirm your address first"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("action=\"/mall/resend\""),
        "{}",
        page.body
    );
    assert!(b.session().is_none());

    let resent = b
        .post(
            "/mall/resend",
            &[("address", "ana@example.com"), ("next", "")],
        )
        .await;
    assert_eq!(resent.status, StatusCode::OK);
    assert!(resent.body.contains("Check your mail"));
    let mail = mall.mail().await;
    assert!(mail.subject.contains("Confirm"));
    let done = b
        .confirm(&link_path(&mail.text, "/mall/confirm/"), PASSWORD)
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), Some("/mall/account?done=welcome"));
    let welcome = b.get("/mall/account?done=welcome").await;
    assert!(welcome.body.contains("Welcome!"));

    // A resend for a confirmed or unknown address answers the same and mails nothing.
    for address in ["ana@example.com", "nobody@example.com"] {
        let page = b
            .post("/mall/resend", &[("address", address), ("next", "")])
            .await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("Check your mail"));
    }
    assert!(mall.no_mail().await);
}

#[tokio::test]
async fn strangers_failing_from_many_networks_do_not_lock_the_owner_out() {
    let mut mall = Mall::start(|c| c.mall.signins_per_hour = 3).await;
    mall.join("ana@example.com", "Ana").await;
    mall.join("bob@example.com", "Bob").await;
    let home = [192, 0, 2, 1];
    let mut owner = mall.browser_at(home);
    let page = owner.sign_in("ana@example.com", PASSWORD, "").await;
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "the owner's usual network"
    );

    // Twenty networks try four wrong passwords each.
    let (mut checked, mut refused) = (0, 0);
    for n in 1..=20 {
        let mut stranger = mall.browser_at([203, 0, 113, n]);
        for _ in 0..4 {
            let page = stranger
                .sign_in("ana@example.com", "wrong password!", "")
                .await;
            match page.status {
                StatusCode::BAD_REQUEST => checked += 1,
                StatusCode::TOO_MANY_REQUESTS => refused += 1,
                other => panic!("{other}: {}", page.body),
            }
        }
    }
    // Three per network, and fifteen (3 x 5) over the networks the account does not know.
    assert_eq!((checked, refused), (15, 65));
    for ip in [[203, 0, 113, 1], [198, 18, 0, 1]] {
        let mut b = mall.browser_at(ip);
        let page = b.sign_in("ana@example.com", PASSWORD, "").await;
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{ip:?}");
        assert!(
            page.body.contains("Too many failed sign-ins"),
            "{}",
            page.body
        );
        assert!(b.session().is_none());
    }

    // The owner, at home, signs in all the same; other accounts are not locked.
    let mut owner = mall.browser_at(home);
    let page = owner.sign_in("ana@example.com", PASSWORD, "").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let mut b = mall.browser_at([198, 18, 0, 1]);
    let page = b.sign_in("bob@example.com", PASSWORD, "").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "other accounts");

    // Per network: three failures over any addresses lock that network.
    let mut third = mall.browser_at([192, 0, 2, 3]);
    for n in 0..3 {
        third
            .sign_in(&format!("guess{n}@example.com"), "guessing...", "")
            .await;
    }
    let page = third.sign_in("bob@example.com", PASSWORD, "").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(third.session().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_sign_ins_are_checked_no_more_than_the_limit() {
    let mut mall = Mall::start(|c| c.mall.signins_per_hour = 20).await;
    mall.join("ana@example.com", "Ana").await;
    let mut first = mall.browser_at([203, 0, 113, 5]);
    first.get("/mall/signin").await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let mut b = mall.browser_at([203, 0, 113, 5]);
            b.cookies = first.cookies.clone();
            tokio::spawn(async move {
                b.sign_in("ana@example.com", "wrong password!", "")
                    .await
                    .status
            })
        })
        .collect();
    let (mut checked, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("the request ends") {
            StatusCode::BAD_REQUEST => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        (checked, refused),
        (20, 80),
        "each check is reserved before the password is compared"
    );
}

#[tokio::test]
async fn next_is_followed_only_within_the_mall() {
    let mut mall = Mall::start(|_| {}).await;
    mall.join("ana@example.com", "Ana").await;
    let cases = [
        ("/mall/ad/7?v=abc", "/mall/ad/7?v=abc"),
        ("https://evil.example/", "/mall/account"),
        ("//evil.example/mall/", "/mall/account"),
        ("/mall//evil.example", "/mall/account"),
        ("/me", "/mall/account"),
        ("/mall/../signin", "/mall/account"),
        ("javascript:alert(1)", "/mall/account"),
    ];
    for (next, expected) in cases {
        let mut b = mall.browser();
        let page = b.sign_in("ana@example.com", PASSWORD, next).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{next}");
        assert_eq!(page.location(), Some(expected), "{next}");
    }
    let mut b = mall.browser();
    let form = b
        .get("/mall/signin?next=https%3A%2F%2Fevil.example%2F")
        .await;
    assert_eq!(hidden(&form.body, "next"), Some(String::new()));
    assert!(!form.body.contains("evil.example"));
}

#[tokio::test]
async fn signing_out_ends_the_session_and_clears_the_cookie() {
    let mut mall = Mall::start(|_| {}).await;
    let mut ana = mall.join("ana@example.com", "Ana").await;
    let old = ana.cookie_header();
    let account = ana.get("/mall/account").await;
    assert!(
        account.body.contains("action=\"/mall/signout\""),
        "the bar's button"
    );
    let page = ana.post("/mall/signout", &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/mall"));
    let cleared = page.set_cookie("chmail_session").expect("cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(ana.session().is_none());
    let page = send(&mall.router, get("/mall/account", &old)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "the old cookie is dead");
    assert_eq!(page.location(), Some("/mall/signin?next=/mall/account"));
}

// --- password reset --------------------------------------------------------------------------

#[tokio::test]
async fn a_reset_sets_a_new_password_ends_the_other_sessions_and_the_old_password() {
    let mut mall = Mall::start(|_| {}).await;
    let mut phone = mall.join("ana@example.com", "Ana").await;
    assert_eq!(phone.get("/mall/account").await.status, StatusCode::OK);

    let mut laptop = mall.browser();
    let form = laptop.get("/mall/reset").await;
    assert!(form.body.contains("id=\"reset-form\""));
    let unknown = laptop
        .post("/mall/reset", &[("address", "nobody@example.com")])
        .await;
    let known = laptop
        .post("/mall/reset", &[("address", "ana@example.com")])
        .await;
    assert_eq!(unknown.status, StatusCode::OK);
    assert_eq!(
        known.body, unknown.body,
        "the same answer for every address"
    );
    let mail = mall.mail().await;
    assert_eq!(mail.to, "ana@example.com");
    assert!(mail.subject.contains("new password"), "{}", mail.subject);
    assert!(mall.no_mail().await, "nothing for the unknown address");
    let link = link_path(&mail.text, "/mall/reset/");

    let page = laptop.get(&link).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"password-form\""));
    let short = laptop.post(&link, &[("password", "too short")]).await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(short.body.contains("at least 10 characters"));
    let done = laptop
        .post(&link, &[("password", "a brand new password")])
        .await;
    assert_eq!(
        done.status,
        StatusCode::SEE_OTHER,
        "the link survived the bad try"
    );
    assert_eq!(done.location(), Some("/mall/account?done=password"));
    let account = laptop.get("/mall/account?done=password").await;
    assert!(account.body.contains("Your new password is set"));

    let phone_page = phone.get("/mall/account").await;
    assert_eq!(
        phone_page.status,
        StatusCode::SEE_OTHER,
        "the other session ended"
    );
    let mut b = mall.browser();
    let old = b.sign_in("ana@example.com", PASSWORD, "").await;
    assert_eq!(
        old.status,
        StatusCode::BAD_REQUEST,
        "the old password stops working"
    );
    let new = b
        .sign_in("ana@example.com", "a brand new password", "")
        .await;
    assert_eq!(new.status, StatusCode::SEE_OTHER);

    let again = mall
        .browser()
        .post(&link, &[("password", "yet another one!")])
        .await;
    assert_eq!(
        again.status,
        StatusCode::NOT_FOUND,
        "a reset link works once"
    );
}

#[tokio::test]
async fn reset_mails_are_limited_per_account() {
    let mut mall = Mall::start(|c| c.mall.mails_per_hour = 2).await;
    mall.join("ana@example.com", "Ana").await;
    let mut b = mall.browser();
    for _ in 0..3 {
        let page = b
            .post("/mall/reset", &[("address", "ana@example.com")])
            .await;
        assert_eq!(page.status, StatusCode::OK);
    }
    mall.mail().await;
    mall.mail().await;
    assert!(mall.no_mail().await, "the third request mails nothing");
}

// --- profile and deletion --------------------------------------------------------------------

#[tokio::test]
async fn the_profile_changes_name_and_opt_in_and_refuses_a_bad_name() {
    let mut mall = Mall::start(|_| {}).await;
    let mut ana = mall.join("ana@example.com", "Ana").await;
    let page = ana.get("/mall/account").await;
    assert!(page.body.contains("value=\"Ana\""));
    assert!(page
        .body
        .contains("id=\"promotions\" name=\"promotions\" value=\"yes\" checked"));

    let saved = ana.post("/mall/account", &[("name", "Ana Lima")]).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    assert_eq!(saved.location(), Some("/mall/account?done=saved"));
    let member = mall.member("ana@example.com").await.expect("member");
    assert_eq!(member.name, "Ana Lima");
    assert!(!member.promotions, "an unticked box turns offers off");

    let bad = ana
        .post("/mall/account", &[("name", ""), ("promotions", "yes")])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("Please enter your name."));
    let member = mall.member("ana@example.com").await.expect("member");
    assert_eq!(member.name, "Ana Lima", "nothing changed");
    assert!(!member.promotions, "nothing changed");

    let visitor = mall.browser().get("/mall/account").await;
    assert_eq!(visitor.status, StatusCode::SEE_OTHER);
    let mut visitor = mall.browser();
    let post = visitor.post("/mall/account", &[("name", "X")]).await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn deleting_the_account_needs_the_password_and_removes_the_data_and_the_session() {
    let mut mall = Mall::start(|_| {}).await;
    let ad = mall.shop().await;
    let mut ana = mall.join("ana@example.com", "Ana").await;
    let asked = ana
        .post(
            &format!("/mall/ad/{ad}/ask"),
            &[("question", "Is it heavy?")],
        )
        .await;
    assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.body);
    let member = mall.member("ana@example.com").await.expect("member");
    let asked = mall.questions(member.id).await;
    assert_eq!(asked.len(), 1);
    let account = ana.get("/mall/account").await;
    assert!(
        account.body.contains("Cast iron tea pot"),
        "my questions are listed"
    );
    let old = ana.cookie_header();

    let wrong = ana
        .post("/mall/account/delete", &[("password", "not my password")])
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.body.contains("That password is wrong"));
    assert!(mall.member("ana@example.com").await.is_some());

    let gone = ana
        .post("/mall/account/delete", &[("password", PASSWORD)])
        .await;
    assert_eq!(gone.status, StatusCode::OK);
    assert!(gone.body.contains("Your account is deleted"));
    assert!(gone
        .set_cookie("chmail_session")
        .is_some_and(|c| c.contains("Max-Age=0")));
    assert!(mall.member("ana@example.com").await.is_none());
    let left = mall.questions(member.id).await;
    assert!(left.is_empty(), "the questions are gone");
    let page = send(&mall.router, get("/mall/account", &old)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "the session is gone");
    let mut b = mall.browser();
    let signin = b.sign_in("ana@example.com", PASSWORD, "").await;
    assert_eq!(signin.status, StatusCode::BAD_REQUEST);
}

// --- protection ------------------------------------------------------------------------------

#[tokio::test]
async fn every_member_form_without_the_csrf_token_is_refused_and_changes_nothing() {
    let mut mall = Mall::start(|_| {}).await;
    let ad = mall.shop().await;
    let mut ana = mall.join("ana@example.com", "Ana").await;
    let token = auth::new_token().expect("token");
    let posts = [
        (
            "/mall/signup".to_owned(),
            "address=new%40example.com&name=New&password=correct+horse+battery".to_owned(),
        ),
        (
            "/mall/signin".to_owned(),
            "address=ana%40example.com&password=correct+horse+battery".to_owned(),
        ),
        (
            "/mall/resend".to_owned(),
            "address=ana%40example.com".to_owned(),
        ),
        (
            "/mall/reset".to_owned(),
            "address=ana%40example.com".to_owned(),
        ),
        (
            format!("/mall/reset/{token}"),
            "password=a+brand+new+password".to_owned(),
        ),
        (format!("/mall/confirm/{token}"), String::new()),
        ("/mall/account".to_owned(), "name=Changed".to_owned()),
        (
            "/mall/account/delete".to_owned(),
            "password=correct+horse+battery".to_owned(),
        ),
        (format!("/mall/ad/{ad}/ask"), "question=Hello%3F".to_owned()),
        ("/mall/signout".to_owned(), String::new()),
    ];
    for (path, body) in &posts {
        for extra in [
            "",
            "&csrf=",
            "&csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let page = ana.post_raw(path, format!("{body}{extra}")).await;
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path} {extra}");
            assert!(page.body.contains(STALE), "{path}: {}", page.body);
        }
    }
    // From another site, even with the right token.
    let csrf = ana.cookies.get("chmail_csrf").cloned().unwrap_or_default();
    let mut req = Request::post("/mall/account")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site")
        .header(header::COOKIE, ana.cookie_header())
        .body(Body::from(format!("name=Changed&csrf={csrf}")))
        .expect("request");
    req.extensions_mut().insert(ConnectInfo(client()));
    let page = send(&mall.router, req).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);

    assert!(mall.member("new@example.com").await.is_none());
    let member = mall.member("ana@example.com").await.expect("not deleted");
    assert_eq!(member.name, "Ana");
    let asked = mall.questions(member.id).await;
    assert!(asked.is_empty());
    assert_eq!(
        ana.get("/mall/account").await.status,
        StatusCode::OK,
        "still signed in"
    );
    assert!(mall.no_mail().await);
}

#[tokio::test]
async fn a_member_cannot_see_another_members_question() {
    let mut mall = Mall::start(|_| {}).await;
    let ad = mall.shop().await;
    let mut ana = mall.join("ana@example.com", "Ana").await;
    let mut bob = mall.join("bob@example.com", "Bob").await;
    let asked = ana
        .post(
            &format!("/mall/ad/{ad}/ask"),
            &[("question", "Secret question of Ana")],
        )
        .await;
    let own = asked.location().expect("the inquiry page").to_owned();
    assert!(own.starts_with("/mall/inquiry/"), "{own}");
    let page = ana.get(&own).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Secret question of Ana"));

    let theirs = bob.get(&own).await;
    let missing = bob.get("/mall/inquiry/999999").await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        theirs.body, missing.body,
        "another member's question looks exactly like a missing one"
    );
    assert!(!theirs.body.contains("Secret question"));
    let account = bob.get("/mall/account").await;
    assert!(!account.body.contains("Cast iron tea pot"));
    assert!(!account.body.contains("ana@example.com"));

    let visitor = mall.browser().get(&own).await;
    assert_eq!(visitor.status, StatusCode::SEE_OTHER);
    assert_eq!(
        visitor.location(),
        Some(format!("/mall/signin?next={own}").as_str())
    );
}

#[tokio::test]
async fn the_member_pages_render_for_a_visitor_and_send_them_to_sign_in_where_needed() {
    let mall = Mall::start(|_| {}).await;
    let mut b = mall.browser();
    for (path, marker) in [
        ("/mall/signup", "id=\"signup-form\""),
        ("/mall/signin", "id=\"signin-form\""),
        ("/mall/reset", "id=\"reset-form\""),
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(page.body.contains(marker), "{path}");
        assert!(page.body.contains("name=\"csrf\""), "{path}");
        assert!(page.header("content-security-policy").is_some(), "{path}");
        assert!(page.body.contains("/static/mall.css"), "{path}");
    }
    for path in ["/mall/reset/short", "/mall/confirm/short"] {
        assert_eq!(b.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let account = b.get("/mall/account").await;
    assert_eq!(account.status, StatusCode::SEE_OTHER);
}

// --- asking about a product --------------------------------------------------------------------

#[tokio::test]
async fn a_bad_question_comes_back_with_its_message_and_the_text_and_nothing_is_sent() {
    let mut mall = Mall::start(|_| {}).await;
    let ad = mall.shop().await;
    let mut ana = mall.join("ana@example.com", "Ana").await;
    let long = "q".repeat(4_001);
    let cases = [
        ("", "Please write your question."),
        (" \r\n\t ", "Please write your question."),
        (long.as_str(), "Your question is too long"),
        ("<b>bold</b> \u{7}", "control characters"),
    ];
    let path = format!("/mall/ad/{ad}/ask");
    for (question, message) in cases {
        let page = ana.post(&path, &[("question", question)]).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{question:?}");
        assert!(page.body.contains(message), "{message}: {}", page.body);
        assert!(page.body.contains("id=\"ask-form\""), "the form again");
    }
    let page = ana.post(&path, &[("question", "<b>bold</b> \u{7}")]).await;
    assert!(
        page.body.contains("&lt;b&gt;bold&lt;/b&gt;"),
        "{}",
        page.body
    );
    let member = mall.member("ana@example.com").await.expect("member");
    let asked = mall.questions(member.id).await;
    assert!(asked.is_empty(), "nothing recorded");
    assert!(mall.no_mail().await, "nothing mailed");
}

#[tokio::test]
async fn a_good_question_is_mailed_to_the_host_and_opens_the_ringing_page() {
    let mut mall = Mall::start(|_| {}).await;
    let ad = mall.shop().await;
    let mut ana = mall.join("ana@example.com", "Ana Lima").await;
    let page = ana
        .post(
            &format!("/mall/ad/{ad}/ask"),
            &[("question", "  Is it heavy?\r\nAnd red?  ")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let location = page.location().expect("the inquiry page").to_owned();
    let mail = mall.mail().await;
    assert_eq!(mail.to, HOST);
    assert_eq!(mail.subject, "Question about Cast iron tea pot");
    assert!(
        mail.text.contains("Is it heavy?\nAnd red?"),
        "{}",
        mail.text
    );
    assert!(mail
        .text
        .contains(&format!("http://chat.test/mall/ad/{ad}")));
    let header = |name: &str| {
        mail.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert!(
        header("From").contains("Ana Lima via CHmail Mall"),
        "{:?}",
        mail.headers
    );
    assert!(
        header("CHmail").contains("l=ana@example.com;"),
        "{:?}",
        mail.headers
    );
    assert!(header("CHmail-Link").starts_with("<http://chat.test/c/"));

    let inquiry = ana.get(&location).await;
    assert_eq!(inquiry.status, StatusCode::OK);
    for needle in [
        "data-page=\"me\"",
        "data-login=\"ana@example.com\"",
        "src=\"/static/me.js\"",
        "id=\"status\"",
        "id=\"ring\"",
        "id=\"ring-text\"",
        "id=\"accept\"",
        "id=\"decline\"",
        "Is it heavy?\nAnd red?",
        "Tea House",
    ] {
        assert!(inquiry.body.contains(needle), "{needle}: {}", inquiry.body);
    }
    let account = ana.get("/mall/account").await;
    assert!(
        account.body.contains(&format!("href=\"{location}\"")),
        "listed on the profile"
    );
}

#[tokio::test]
async fn a_visitor_who_asks_is_sent_to_sign_in_and_comes_back_to_the_product() {
    let mut mall = Mall::start(|_| {}).await;
    let ad = mall.shop().await;
    mall.join("ana@example.com", "Ana").await;
    let mut visitor = mall.browser();
    let page = visitor
        .post(&format!("/mall/ad/{ad}/ask"), &[("question", "Hello?")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let signin = page.location().expect("to the sign-in").to_owned();
    assert_eq!(signin, format!("/mall/signin?next=/mall/ad/{ad}"));
    let form = visitor.get(&signin).await;
    let next = hidden(&form.body, "next").unwrap_or_default();
    let back = visitor.sign_in("ana@example.com", PASSWORD, &next).await;
    assert_eq!(back.location(), Some(format!("/mall/ad/{ad}").as_str()));
    assert!(mall.no_mail().await, "nothing was sent for the visitor");
}

#[tokio::test]
async fn a_paused_unknown_or_own_ad_cannot_be_asked_about() {
    let mut mall = Mall::start(|_| {}).await;
    let ad = mall.shop().await;
    let mut ana = mall.join("ana@example.com", "Ana").await;
    let company = mall
        .state
        .store
        .ad(ad)
        .await
        .expect("store")
        .expect("ad")
        .company_id;
    for path in ["/mall/ad/999999/ask", "/mall/ad/abc/ask", "/mall/ad/-1/ask"] {
        let page = ana.post(path, &[("question", "Hello?")]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
    }
    mall.state
        .store
        .set_ad_paused(ad, company, true)
        .await
        .expect("paused");
    let page = ana
        .post(&format!("/mall/ad/{ad}/ask"), &[("question", "Hello?")])
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("not offered any more"));
    mall.state
        .store
        .set_ad_paused(ad, company, false)
        .await
        .expect("resumed");

    // The host, a member too, sees a note instead of the form and cannot ask themself.
    let mut hana = mall.join(HOST, "Hana").await;
    let product = hana.get(&format!("/mall/ad/{ad}")).await;
    assert!(
        product.body.contains("This is your own ad"),
        "{}",
        product.body
    );
    let page = hana
        .post(&format!("/mall/ad/{ad}/ask"), &[("question", "Hello?")])
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("your own ad"));
    assert!(mall.no_mail().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn questions_are_limited_per_member_per_hour_even_in_a_burst() {
    let mut mall = Mall::start(|c| c.mall.inquiries_per_hour = 2).await;
    let ad = mall.shop().await;
    let mut ana = mall.join("ana@example.com", "Ana").await;
    let path = format!("/mall/ad/{ad}/ask");
    let first = ana.post(&path, &[("question", "First?")]).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    mall.mail().await;

    // Five at once: one more gets through.
    let csrf = ana.cookies.get("chmail_csrf").cloned().unwrap_or_default();
    let burst = (0..5).map(|n| {
        let mut req = Request::post(path.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .header(header::COOKIE, ana.cookie_header())
            .body(Body::from(format!("question=Burst+{n}%3F&csrf={csrf}")))
            .expect("request");
        req.extensions_mut().insert(ConnectInfo(client()));
        send(&mall.router, req)
    });
    let pages = futures_util::future::join_all(burst).await;
    let passed = pages
        .iter()
        .filter(|p| p.status == StatusCode::SEE_OTHER)
        .count();
    assert_eq!(
        passed,
        1,
        "{:?}",
        pages.iter().map(|p| p.status).collect::<Vec<_>>()
    );
    mall.mail().await;

    let last = ana.post(&path, &[("question", "Last?")]).await;
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(last.body.contains("Please wait"), "{}", last.body);
    assert!(last.body.contains("Last?"), "the text comes back");
    assert!(mall.no_mail().await, "two mails only");
}
