//! The mall store's conformance suite: every [`MallStore`] behaviour, run against SQLite and a
//! real PostgreSQL (see [`common`] for where PostgreSQL comes from and when its half is
//! skipped).

#[macro_use]
mod common;

use std::collections::{BTreeSet, HashMap};

use chmail::{
    store::{
        mall::{
            AdFields, AdQuery, Company, NewInquiry, NewMember, NewPromotion, TokenPurpose,
            MAX_IMPRESSION_BATCH, MAX_PICTURES_PER_AD, MAX_PICTURE_LEN, MAX_SEARCH_LEN,
            MAX_TITLE_LEN,
        },
        NewMessage, Participant, Role, Room, Session, StoreError, Via, MAX_PAGE,
    },
    Store,
};
use common::Harness;

/// Fails unless `result` is [`StoreError::Invalid`] whose message names `word`.
#[track_caller]
fn invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, word: &str) {
    match result {
        Err(StoreError::Invalid(msg)) => assert!(
            msg.to_lowercase().contains(&word.to_lowercase()),
            "{msg:?} should name {word:?}"
        ),
        other => panic!("expected Invalid naming {word:?}, got {other:?}"),
    }
}

const ACME_HOST: &str = "shop@acme.example";
const OTHER_HOST: &str = "sales@other.example";
/// A time at which every ad without a period shows.
const NOW: i64 = 1_700_000_000_000;

/// Two companies, each with one host.
struct Shops {
    acme: Company,
    other: Company,
}

async fn shops(s: &dyn Store) -> Shops {
    let (acme, _) = s.add_company("Acme", NOW).await.expect("add Acme");
    let (other, _) = s.add_company("Other Ltd", NOW).await.expect("add Other");
    s.add_host(acme.id, ACME_HOST, "Ann", NOW)
        .await
        .expect("add Acme's host");
    s.add_host(other.id, OTHER_HOST, "Otto", NOW)
        .await
        .expect("add Other's host");
    Shops { acme, other }
}

fn fields(title: &str, category: &str) -> AdFields {
    AdFields {
        host_login: ACME_HOST.into(),
        title: title.into(),
        description: format!("A fine {title}."),
        price_minor: 1_999,
        currency: "EUR".into(),
        category: category.into(),
        starts_ms: None,
        ends_ms: None,
        paused: false,
    }
}

/// Adds an Acme ad created at `created_ms`.
async fn ad(s: &dyn Store, shops: &Shops, title: &str, category: &str, created_ms: i64) -> i64 {
    s.create_ad(shops.acme.id, &fields(title, category), created_ms)
        .await
        .expect("create_ad")
}

fn query(text: &str) -> AdQuery {
    AdQuery {
        text: text.into(),
        category: None,
        now_ms: NOW,
        offset: 0,
        limit: 50,
    }
}

/// The titles of a search's page, in order.
async fn titles(s: &dyn Store, q: &AdQuery) -> Vec<String> {
    s.search_ads(q)
        .await
        .expect("search_ads")
        .ads
        .into_iter()
        .map(|a| a.fields.title)
        .collect()
}

fn new_member(address: &str, promotions: bool) -> NewMember {
    NewMember {
        address: address.into(),
        name: "Mia".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        promotions,
        created_ms: NOW,
    }
}

/// Adds a member, confirmed or not.
async fn member(s: &dyn Store, address: &str, promotions: bool, confirmed: bool) -> i64 {
    let m = s
        .create_member(&new_member(address, promotions))
        .await
        .expect("create_member")
        .expect("a free address");
    if confirmed {
        let hash = format!("confirm-{address}");
        s.create_member_token(&hash, m.id, TokenPurpose::Confirm, NOW, NOW + 60_000)
            .await
            .expect("create_member_token");
        s.use_member_token(&hash, TokenPurpose::Confirm, NOW + 1)
            .await
            .expect("use_member_token")
            .expect("a fresh token");
    }
    m.id
}

/// Creates the room of a mail from `from` to `to`.
async fn room(s: &dyn Store, id: &str, from: &str, to: &str) {
    s.create_room(&Room {
        id: id.into(),
        port: 40_001,
        login: from.into(),
        message_id: None,
        subject: Some("About your ad".into()),
        created: NOW / 1000,
        participants: vec![
            Participant {
                address: from.into(),
                role: Role::From,
                name: None,
            },
            Participant {
                address: to.into(),
                role: Role::To,
                name: None,
            },
        ],
        opening: None,
    })
    .await
    .expect("create_room");
}

/// Writes a message into a room.
async fn say(s: &dyn Store, room_id: &str, author: &str, via: Via, body: &str) {
    s.add_message(&NewMessage {
        room_id: room_id.into(),
        author: author.into(),
        body: body.into(),
        created_ms: NOW,
        via,
        client_id: None,
        picture_id: None,
    })
    .await
    .expect("add_message");
}

async fn session(s: &dyn Store, hash: &str, login: &str) {
    s.create_session(
        hash,
        &Session {
            login: login.into(),
            created_ms: NOW,
            expires_ms: NOW + 3_600_000,
        },
    )
    .await
    .expect("create_session");
}

fn promotion(ad_id: i64, host: &str) -> NewPromotion {
    NewPromotion {
        ad_id,
        host_login: host.into(),
        subject: "Spring sale".into(),
        body: "Everything half price.".into(),
        created_ms: NOW,
    }
}

/// The behaviours every backend must show.
mod behaviour {
    use super::*;

    pub async fn companies_are_added_once_by_case_insensitive_name(h: &Harness) {
        let s = h.fresh().await;
        let (acme, added) = s.add_company("  Acme Tools ", NOW).await.expect("add");
        assert!(added);
        assert_eq!(acme.name, "Acme Tools");
        assert_eq!(acme.created_ms, NOW);
        let (again, added) = s.add_company("ACME tools", NOW + 5).await.expect("again");
        assert!(!added, "the same name in another case is the same company");
        assert_eq!(again, acme);
        let (zeta, _) = s.add_company("zeta", NOW).await.expect("zeta");
        let (beta, _) = s.add_company("Beta", NOW).await.expect("beta");

        assert_eq!(
            s.company(acme.id).await.expect("company"),
            Some(acme.clone())
        );
        assert_eq!(s.company(9_999).await.expect("company"), None);
        assert_eq!(
            s.company_by_name("acme TOOLS").await.expect("by name"),
            Some(acme.clone())
        );
        assert_eq!(s.company_by_name("nobody").await.expect("by name"), None);
        assert_eq!(s.company_by_name("").await.expect("by name"), None);
        assert_eq!(
            s.companies().await.expect("companies"),
            vec![acme, beta, zeta],
            "companies are listed by name, whatever the case"
        );

        invalid(s.add_company("   ", NOW).await, "company name");
        invalid(s.add_company(&"x".repeat(201), NOW).await, "company name");
        invalid(s.add_company("a\0b", NOW).await, "NUL");
    }

    pub async fn a_host_belongs_to_one_company_only(h: &Harness) {
        let s = h.fresh().await;
        let (acme, _) = s.add_company("Acme", NOW).await.expect("acme");
        let (other, _) = s.add_company("Other", NOW).await.expect("other");

        let (host, added) = s
            .add_host(acme.id, " Shop@Acme.Example ", " Ann ", NOW)
            .await
            .expect("add host");
        assert!(added);
        assert_eq!(
            host.login, "shop@acme.example",
            "logins are lowercased addresses"
        );
        assert_eq!(host.name, "Ann");
        assert_eq!(host.company_id, acme.id);

        let (renamed, added) = s
            .add_host(acme.id, "shop@acme.example", "Ann B.", NOW + 1)
            .await
            .expect("rename");
        assert!(
            !added,
            "the same host of the same company is updated, not added"
        );
        assert_eq!(renamed.name, "Ann B.");
        assert_eq!(renamed.created_ms, NOW);

        invalid(
            s.add_host(other.id, "SHOP@acme.example", "Thief", NOW)
                .await,
            "another company",
        );
        invalid(s.add_host(9_999, "x@y.example", "X", NOW).await, "company");
        invalid(s.add_host(acme.id, "  ", "X", NOW).await, "login");
        invalid(
            s.add_host(acme.id, "b@acme.example", " ", NOW).await,
            "name",
        );
        invalid(
            s.add_host(acme.id, "b@acme.example", &"n".repeat(101), NOW)
                .await,
            "name",
        );

        s.add_host(acme.id, "a@acme.example", "Al", NOW)
            .await
            .expect("second host");
        assert_eq!(
            s.host("Shop@ACME.example").await.expect("host"),
            Some(renamed.clone())
        );
        assert_eq!(s.host("nobody@x.example").await.expect("host"), None);
        let logins: Vec<String> = s
            .hosts_of(acme.id)
            .await
            .expect("hosts_of")
            .into_iter()
            .map(|h| h.login)
            .collect();
        assert_eq!(logins, ["a@acme.example", "shop@acme.example"]);
        assert!(s.hosts_of(other.id).await.expect("hosts_of").is_empty());
    }

    pub async fn ads_are_created_updated_and_paused_by_their_company_only(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let mut f = fields(" Tea pot ", "Kitchen");
        f.currency = "eur".into();
        f.host_login = " SHOP@acme.example".into();
        let id = s.create_ad(shops.acme.id, &f, NOW).await.expect("create");
        let stored = s.ad(id).await.expect("ad").expect("the ad");
        assert_eq!(stored.fields.title, "Tea pot");
        assert_eq!(stored.fields.currency, "EUR");
        assert_eq!(stored.fields.host_login, ACME_HOST);
        assert_eq!(stored.company_id, shops.acme.id);
        assert_eq!(stored.company_name, "Acme");
        assert_eq!((stored.created_ms, stored.updated_ms), (NOW, NOW));
        assert_eq!((stored.impressions, stored.clicks), (0, 0));
        assert!(stored.pictures.is_empty());
        assert!(stored.is_active(NOW));

        // Validation, named.
        for (spoil, word) in [
            (
                Box::new(|f: &mut AdFields| f.title = " ".into()) as Box<dyn Fn(&mut AdFields)>,
                "title",
            ),
            (
                Box::new(|f: &mut AdFields| f.title = "t".repeat(MAX_TITLE_LEN + 1)),
                "title",
            ),
            (
                Box::new(|f: &mut AdFields| f.currency = "EURO".into()),
                "currency",
            ),
            (Box::new(|f: &mut AdFields| f.price_minor = -1), "price"),
            (
                Box::new(|f: &mut AdFields| f.category = "".into()),
                "category",
            ),
            (
                Box::new(|f: &mut AdFields| {
                    f.starts_ms = Some(NOW);
                    f.ends_ms = Some(NOW - 1);
                }),
                "end",
            ),
            (
                Box::new(|f: &mut AdFields| f.host_login = OTHER_HOST.into()),
                "host",
            ),
            (
                Box::new(|f: &mut AdFields| f.host_login = "nobody@x.example".into()),
                "host",
            ),
        ] {
            let mut f = fields("Kettle", "Kitchen");
            spoil(&mut f);
            invalid(s.create_ad(shops.acme.id, &f, NOW).await, word);
            invalid(s.update_ad(id, shops.acme.id, &f, NOW).await, word);
        }
        invalid(
            s.create_ad(9_999, &fields("Kettle", "Kitchen"), NOW).await,
            "company",
        );
        assert_eq!(s.ads_of(shops.acme.id).await.expect("ads_of").len(), 1);

        // Another company's ad is not there for them.
        let mut theirs = fields("Stolen", "Kitchen");
        theirs.host_login = OTHER_HOST.into();
        assert!(!s
            .update_ad(id, shops.other.id, &theirs, NOW + 1)
            .await
            .expect("update by another company"));
        assert!(!s
            .set_ad_paused(id, shops.other.id, true)
            .await
            .expect("pause by another company"));
        assert!(!s
            .update_ad(9_999, shops.acme.id, &fields("X", "Y"), NOW)
            .await
            .expect("update a missing ad"));
        let unchanged = s.ad(id).await.expect("ad").expect("the ad");
        assert_eq!(unchanged, stored);

        // The owner changes it.
        let mut newer = fields("Cast iron tea pot", "Kitchen");
        newer.price_minor = 2_500;
        newer.starts_ms = Some(NOW + 10);
        newer.ends_ms = Some(NOW + 20);
        assert!(s
            .update_ad(id, shops.acme.id, &newer, NOW + 5)
            .await
            .expect("update"));
        let updated = s.ad(id).await.expect("ad").expect("the ad");
        assert_eq!(updated.fields, newer);
        assert_eq!((updated.created_ms, updated.updated_ms), (NOW, NOW + 5));
        assert!(!updated.is_active(NOW) && updated.is_active(NOW + 10));

        assert!(s
            .set_ad_paused(id, shops.acme.id, true)
            .await
            .expect("pause"));
        assert!(s.ad(id).await.expect("ad").expect("ad").fields.paused);
        assert!(s
            .set_ad_paused(id, shops.acme.id, false)
            .await
            .expect("resume"));
        assert!(!s.ad(id).await.expect("ad").expect("ad").fields.paused);

        let second = ad(&*s, &shops, "Kettle", "Kitchen", NOW + 100).await;
        let ids: Vec<i64> = s
            .ads_of(shops.acme.id)
            .await
            .expect("ads_of")
            .iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, [second, id], "a company's ads, newest first");
        assert!(s.ads_of(shops.other.id).await.expect("ads_of").is_empty());
        assert_eq!(s.ad(9_999).await.expect("ad"), None);
    }

    pub async fn search_finds_every_word_in_active_ads_with_paging(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        ad(&*s, &shops, "Red tea pot", "Kitchen", NOW - 50).await;
        ad(&*s, &shops, "Blue tea cup", "Kitchen", NOW - 40).await;
        ad(&*s, &shops, "Red bicycle", "Sport", NOW - 30).await;
        ad(&*s, &shops, "Garden chair", "Garden", NOW - 20).await;
        // Not shown: paused, not started, ended.
        let paused = ad(&*s, &shops, "Red tea kettle paused", "Kitchen", NOW - 10).await;
        s.set_ad_paused(paused, shops.acme.id, true)
            .await
            .expect("pause");
        let mut later = fields("Red tea tray later", "Kitchen");
        later.starts_ms = Some(NOW + 1);
        s.create_ad(shops.acme.id, &later, NOW)
            .await
            .expect("later");
        let mut ended = fields("Red tea tray ended", "Kitchen");
        ended.starts_ms = Some(NOW - 100);
        ended.ends_ms = Some(NOW);
        s.create_ad(shops.acme.id, &ended, NOW)
            .await
            .expect("ended");

        let page = s.search_ads(&query("")).await.expect("everything");
        assert_eq!(page.total, 4, "only active ads");
        let all: Vec<&str> = page.ads.iter().map(|a| a.fields.title.as_str()).collect();
        assert_eq!(
            all,
            ["Garden chair", "Red bicycle", "Blue tea cup", "Red tea pot"],
            "newest first without a text"
        );

        let red = titles(&*s, &query("red")).await;
        assert_eq!(
            red.iter().collect::<BTreeSet<_>>(),
            ["Red bicycle".to_owned(), "Red tea pot".to_owned()]
                .iter()
                .collect()
        );
        assert_eq!(
            titles(&*s, &query("  TEA   red ")).await,
            ["Red tea pot"],
            "every word must occur, in any case and order"
        );
        assert_eq!(
            titles(&*s, &query("kitchen")).await.len(),
            2,
            "the category is searched too"
        );
        assert!(titles(&*s, &query("red sofa")).await.is_empty());
        assert!(
            titles(&*s, &query("fine")).await.len() == 4,
            "the description is searched too"
        );

        let mut kitchen = query("");
        kitchen.category = Some(" KITCHEN ".into());
        let page = s.search_ads(&kitchen).await.expect("kitchen");
        assert_eq!(page.total, 2, "category filter, case-insensitive");
        kitchen.text = "red".into();
        assert_eq!(titles(&*s, &kitchen).await, ["Red tea pot"]);

        // Paging: totals stay, pages do not overlap.
        let mut paged = query("");
        paged.limit = 3;
        let first = s.search_ads(&paged).await.expect("page 1");
        paged.offset = 3;
        let second = s.search_ads(&paged).await.expect("page 2");
        assert_eq!((first.total, second.total), (4, 4));
        assert_eq!((first.ads.len(), second.ads.len()), (3, 1));
        assert_eq!(second.ads[0].fields.title, "Red tea pot");
        paged.offset = 10;
        assert!(s
            .search_ads(&paged)
            .await
            .expect("past the end")
            .ads
            .is_empty());
        paged.offset = 0;
        paged.limit = u32::MAX;
        assert_eq!(s.search_ads(&paged).await.expect("capped").ads.len(), 4);

        // Later on, the period decides.
        let mut then = query("tray");
        then.now_ms = NOW - 1;
        assert_eq!(titles(&*s, &then).await, ["Red tea tray ended"]);
        then.now_ms = NOW + 1;
        assert_eq!(titles(&*s, &then).await, ["Red tea tray later"]);

        invalid(
            s.search_ads(&query(&"a".repeat(MAX_SEARCH_LEN + 1))).await,
            "search",
        );
    }

    pub async fn search_takes_percent_underscore_and_operators_literally(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        ad(&*s, &shops, "Tea pot", "Kitchen", NOW - 3).await;
        ad(&*s, &shops, "Cotton shirt 100%", "Clothes", NOW - 2).await;
        ad(&*s, &shops, "Coffee mug", "Kitchen", NOW - 1).await;
        for text in [
            "%",
            "_",
            "t_a",
            "te%",
            "%tea%",
            "\\",
            "'",
            "\"",
            "tea & !pot",
            "(",
            "*",
            ":*",
        ] {
            let found = titles(&*s, &query(text)).await;
            assert!(
                !found.contains(&"Coffee mug".to_owned()),
                "{text:?} is not a wildcard: {found:?}"
            );
        }
        assert!(titles(&*s, &query("t_a")).await.is_empty());
        assert!(titles(&*s, &query("te%")).await.is_empty());
        assert_eq!(titles(&*s, &query("-pot tea")).await.len(), {
            // On PostgreSQL "-pot" is the word "pot"; on SQLite the text "-pot" does not occur.
            usize::from(s.backend() == "postgres")
        });
        assert_eq!(
            titles(&*s, &query("cotton 100%")).await,
            ["Cotton shirt 100%"]
        );
    }

    pub async fn rotation_shows_every_active_ad_equally_often(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let mut active = BTreeSet::new();
        for i in 0..6 {
            active.insert(ad(&*s, &shops, &format!("Ad {i}"), "Things", NOW - 100 + i).await);
        }
        let paused = ad(&*s, &shops, "Paused", "Things", NOW).await;
        s.set_ad_paused(paused, shops.acme.id, true)
            .await
            .expect("pause");
        let other = ad(&*s, &shops, "Elsewhere", "Other", NOW).await;

        // 9 pages of 2 over 6 ads: each ad is shown exactly 3 times.
        let mut shown: HashMap<i64, u32> = HashMap::new();
        for round in 0..9 {
            let now = NOW + round;
            let page = s
                .rotate_ads(Some("things"), now, 2)
                .await
                .expect("rotate_ads");
            assert_eq!(page.len(), 2);
            let ids: Vec<i64> = page.iter().map(|a| a.id).collect();
            assert!(ids.iter().all(|id| active.contains(id)), "{ids:?}");
            for id in &ids {
                *shown.entry(*id).or_default() += 1;
            }
            let counted = s
                .record_impressions(&format!("view-{round}"), &ids, now)
                .await
                .expect("record_impressions");
            assert_eq!(counted, 2);
        }
        assert_eq!(shown.len(), 6, "every active ad had its turn: {shown:?}");
        assert!(shown.values().all(|&n| n == 3), "{shown:?}");

        // The least shown comes first; among equals, the one shown longest ago.
        s.record_impressions("extra", &[other], NOW)
            .await
            .expect("record");
        let ids: Vec<i64> = s
            .rotate_ads(None, NOW + 100, 7)
            .await
            .expect("rotate all")
            .iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids[0], other, "one impression beats three: {ids:?}");
        assert_eq!(ids.len(), 7, "the paused ad is left out");
        assert!(!ids.contains(&paused));
        for id in &active {
            assert_eq!(s.ad(*id).await.expect("ad").expect("ad").impressions, 3);
        }

        // Equal impressions: the ad shown longest ago first, whatever its id.
        let x = ad(&*s, &shops, "X", "Tie", NOW).await;
        let y = ad(&*s, &shops, "Y", "Tie", NOW).await;
        s.record_impressions("tie-1", &[y], NOW + 1)
            .await
            .expect("y");
        s.record_impressions("tie-2", &[x], NOW + 2)
            .await
            .expect("x");
        let tie: Vec<i64> = s
            .rotate_ads(Some("tie"), NOW + 3, 2)
            .await
            .expect("rotate")
            .iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(tie, [y, x]);
        assert_eq!(
            s.ad(x).await.expect("ad").expect("x").impressions,
            1,
            "recorded once"
        );

        // Fewer impressions beat an older showing.
        let many = ad(&*s, &shops, "Many", "Fewer", NOW).await;
        let few = ad(&*s, &shops, "Few", "Fewer", NOW).await;
        for (view, at) in [("f-1", NOW + 1), ("f-2", NOW + 2)] {
            s.record_impressions(view, &[many], at).await.expect("many");
        }
        s.record_impressions("f-3", &[few], NOW + 9)
            .await
            .expect("few");
        let order: Vec<i64> = s
            .rotate_ads(Some("Fewer"), NOW + 10, 2)
            .await
            .expect("rotate")
            .iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(order, [few, many]);
        assert!(s
            .rotate_ads(Some("none"), NOW, 5)
            .await
            .expect("none")
            .is_empty());
    }

    pub async fn categories_count_active_ads_by_case_insensitive_name(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        ad(&*s, &shops, "Pot", "Kitchen", NOW).await;
        ad(&*s, &shops, "Cup", "kitchen", NOW).await;
        ad(&*s, &shops, "Bike", "Sport", NOW).await;
        let paused = ad(&*s, &shops, "Chair", "Garden", NOW).await;
        s.set_ad_paused(paused, shops.acme.id, true)
            .await
            .expect("pause");
        let cats = s.categories(NOW).await.expect("categories");
        assert_eq!(cats.len(), 2, "{cats:?}");
        assert!(cats[0].0.eq_ignore_ascii_case("kitchen"), "{cats:?}");
        assert_eq!(cats[0].1, 2);
        assert_eq!(cats[1], ("Sport".to_owned(), 1));
        assert!(s.categories(0).await.expect("categories").len() == 2);
    }

    pub async fn impressions_and_clicks_count_once_per_view(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let a = ad(&*s, &shops, "A", "Things", NOW).await;
        let b = ad(&*s, &shops, "B", "Things", NOW).await;

        assert_eq!(
            s.record_impressions("v1", &[a, b, a, 9_999], NOW + 1)
                .await
                .expect("record"),
            2,
            "a repeated id and a missing ad count nothing"
        );
        assert_eq!(
            s.record_impressions("v1", &[a, b], NOW + 2)
                .await
                .expect("again"),
            0,
            "the same view counts once"
        );
        assert_eq!(
            s.record_impressions("v2", &[a], NOW + 3).await.expect("v2"),
            1
        );
        assert_eq!(s.record_impressions("v3", &[], NOW).await.expect("none"), 0);
        let ad_a = s.ad(a).await.expect("ad").expect("a");
        assert_eq!(ad_a.impressions, 2);
        assert_eq!(s.ad(b).await.expect("ad").expect("b").impressions, 1);

        assert!(s.record_click("v1", a, NOW + 4).await.expect("click"));
        assert!(!s.record_click("v1", a, NOW + 5).await.expect("again"));
        assert!(s.record_click("v2", a, NOW + 6).await.expect("v2"));
        assert!(!s.record_click("v1", 9_999, NOW).await.expect("missing"));
        let ad_a = s.ad(a).await.expect("ad").expect("a");
        assert_eq!((ad_a.impressions, ad_a.clicks), (2, 2));
        assert_eq!(s.ad(b).await.expect("ad").expect("b").clicks, 0);

        invalid(s.record_impressions("", &[a], NOW).await, "view id");
        invalid(
            s.record_impressions(&"v".repeat(65), &[a], NOW).await,
            "view id",
        );
        invalid(
            s.record_impressions("v9", &vec![a; MAX_IMPRESSION_BATCH + 1], NOW)
                .await,
            "batch",
        );
        invalid(s.record_click("", a, NOW).await, "view id");
    }

    pub async fn pictures_are_checked_limited_and_changed_by_their_company_only(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let a = ad(&*s, &shops, "A", "Things", NOW).await;
        let png = b"\x89PNG\r\n\x1a\n fake".to_vec();

        invalid(
            s.add_picture(a, shops.acme.id, "image/svg+xml", &png).await,
            "type",
        );
        invalid(
            s.add_picture(a, shops.acme.id, "image/png", &[]).await,
            "empty",
        );
        invalid(
            s.add_picture(a, shops.acme.id, "image/png", &vec![0; MAX_PICTURE_LEN + 1])
                .await,
            "bytes",
        );
        assert_eq!(
            s.add_picture(a, shops.other.id, "image/png", &png)
                .await
                .expect("another company"),
            None
        );
        assert_eq!(
            s.add_picture(9_999, shops.acme.id, "image/png", &png)
                .await
                .expect("missing ad"),
            None
        );

        let mut ids = Vec::new();
        for i in 0..MAX_PICTURES_PER_AD {
            let bytes = [png.clone(), vec![u8::try_from(i).expect("small")]].concat();
            let id = s
                .add_picture(a, shops.acme.id, "image/png", &bytes)
                .await
                .expect("add_picture")
                .expect("room for it");
            ids.push(id);
        }
        assert_eq!(
            s.add_picture(a, shops.acme.id, "image/jpeg", &png)
                .await
                .expect("one too many"),
            None
        );
        assert_eq!(s.ad(a).await.expect("ad").expect("a").pictures, ids);

        let first = s.picture(ids[0]).await.expect("picture").expect("stored");
        assert_eq!(first.ad_id, a);
        assert_eq!(first.content_type, "image/png");
        assert_eq!(first.bytes, [png.clone(), vec![0]].concat());
        assert_eq!(s.picture(9_999).await.expect("picture"), None);

        assert!(!s
            .delete_picture(ids[0], a, shops.other.id)
            .await
            .expect("another company"));
        let b = ad(&*s, &shops, "B", "Things", NOW).await;
        assert!(!s
            .delete_picture(ids[0], b, shops.acme.id)
            .await
            .expect("another ad"));
        assert!(s
            .delete_picture(ids[0], a, shops.acme.id)
            .await
            .expect("delete"));
        assert_eq!(s.picture(ids[0]).await.expect("picture"), None);
        let last = s
            .add_picture(a, shops.acme.id, "image/webp", &png)
            .await
            .expect("add")
            .expect("room again");
        let mut expected = ids[1..].to_vec();
        expected.push(last);
        assert_eq!(
            s.ad(a).await.expect("ad").expect("a").pictures,
            expected,
            "a new picture goes last"
        );
    }

    pub async fn members_are_unique_by_address_in_any_case(h: &Harness) {
        let s = h.fresh().await;
        let m = s
            .create_member(&new_member(" Mia@Example.COM ", true))
            .await
            .expect("create")
            .expect("a free address");
        assert_eq!(m.address, "mia@example.com");
        assert_eq!(m.name, "Mia");
        assert!(m.promotions);
        assert_eq!(m.confirmed_ms, None);
        assert_eq!(m.last_signin_ms, None);
        assert_eq!(
            s.create_member(&new_member("MIA@example.com", false))
                .await
                .expect("duplicate"),
            None,
            "the address is taken, whatever the case"
        );
        assert_eq!(s.member(m.id).await.expect("member"), Some(m.clone()));
        assert_eq!(
            s.member_by_address("mia@EXAMPLE.com ")
                .await
                .expect("by address"),
            Some(m.clone())
        );
        assert_eq!(s.member_by_address("x@y.z").await.expect("none"), None);
        assert_eq!(s.member_by_address("").await.expect("none"), None);
        assert_eq!(s.member(9_999).await.expect("none"), None);

        let mut bad = new_member("", false);
        invalid(s.create_member(&bad).await, "address");
        bad = new_member("a@b.c", false);
        bad.name = " ".into();
        invalid(s.create_member(&bad).await, "name");
        bad = new_member("a@b.c", false);
        bad.password_hash = "h".repeat(257);
        invalid(s.create_member(&bad).await, "password hash");

        assert!(s
            .update_member(m.id, " Mia M. ", false)
            .await
            .expect("update"));
        invalid(s.update_member(m.id, "", true).await, "name");
        assert!(!s.update_member(9_999, "X", true).await.expect("missing"));
        s.member_signed_in(m.id, NOW + 7).await.expect("signed in");
        let after = s.member(m.id).await.expect("member").expect("m");
        assert_eq!(after.name, "Mia M.");
        assert!(!after.promotions);
        assert_eq!(after.last_signin_ms, Some(NOW + 7));
    }

    pub async fn a_confirm_link_confirms_only_the_password_hash_it_was_checked_against(
        h: &Harness,
    ) {
        let s = h.fresh().await;
        let id = member(&*s, "mia@example.com", false, false).await;
        let first = new_member("mia@example.com", false).password_hash;
        s.create_member_token("t-1", id, TokenPurpose::Confirm, NOW, NOW + 100)
            .await
            .expect("token");
        let peeked = s
            .member_of_token("t-1", TokenPurpose::Confirm, NOW + 1)
            .await
            .expect("peek")
            .expect("a live token");
        assert_eq!(peeked.password_hash, first);
        assert!(s
            .member_of_token("t-1", TokenPurpose::Reset, NOW + 1)
            .await
            .expect("peek")
            .is_none());
        assert!(s
            .member_of_token("t-1", TokenPurpose::Confirm, NOW + 100)
            .await
            .expect("peek")
            .is_none());

        // Another sign-up replaces the password: the hash checked before no longer confirms.
        assert!(s
            .renew_signup(id, "Mallory", "$argon2id$other", true)
            .await
            .expect("renew"));
        assert!(s
            .confirm_member("t-1", &first, NOW + 2)
            .await
            .expect("confirm")
            .is_none());
        let m = s.member(id).await.expect("member").expect("m");
        assert_eq!(m.confirmed_ms, None);
        assert_eq!((m.name.as_str(), m.promotions), ("Mallory", true));
        assert!(
            s.member_of_token("t-1", TokenPurpose::Confirm, NOW + 3)
                .await
                .expect("peek")
                .is_some(),
            "a refused confirm leaves the token unused"
        );

        let confirmed = s
            .confirm_member("t-1", "$argon2id$other", NOW + 3)
            .await
            .expect("confirm")
            .expect("confirmed");
        assert_eq!(confirmed.confirmed_ms, Some(NOW + 3));
        assert!(s
            .confirm_member("t-1", "$argon2id$other", NOW + 4)
            .await
            .expect("confirm")
            .is_none());

        // A confirmed account is never changed by a sign-up.
        assert!(!s
            .renew_signup(id, "Eve", "$argon2id$eve", false)
            .await
            .expect("renew"));
        let m = s.member(id).await.expect("member").expect("m");
        assert_eq!(m.password_hash, "$argon2id$other");
        assert_eq!(m.name, "Mallory");
        invalid(s.renew_signup(id, "", "$argon2id$x", false).await, "name");
        assert!(!s
            .renew_signup(9_999, "X", "$argon2id$x", false)
            .await
            .expect("missing"));
    }

    pub async fn member_tokens_are_single_use_expire_and_keep_their_purpose(h: &Harness) {
        let s = h.fresh().await;
        let id = member(&*s, "mia@example.com", false, false).await;
        invalid(
            s.create_member_token("t-x", 9_999, TokenPurpose::Confirm, NOW, NOW + 10)
                .await,
            "member",
        );
        invalid(
            s.create_member_token("", id, TokenPurpose::Confirm, NOW, NOW + 10)
                .await,
            "token hash",
        );
        s.create_member_token("t-confirm", id, TokenPurpose::Confirm, NOW, NOW + 100)
            .await
            .expect("confirm token");
        invalid(
            s.create_member_token("t-confirm", id, TokenPurpose::Reset, NOW, NOW + 100)
                .await,
            "token hash",
        );
        s.create_member_token("t-reset", id, TokenPurpose::Reset, NOW, NOW + 100)
            .await
            .expect("reset token");
        s.create_member_token("t-old", id, TokenPurpose::Reset, NOW - 1_000, NOW + 1)
            .await
            .expect("old token");

        assert_eq!(
            s.use_member_token("t-confirm", TokenPurpose::Reset, NOW + 1)
                .await
                .expect("wrong purpose"),
            None
        );
        assert_eq!(
            s.use_member_token("t-reset", TokenPurpose::Reset, NOW + 100)
                .await
                .expect("expired"),
            None,
            "a token expires at expires_ms"
        );
        assert_eq!(
            s.use_member_token("nope", TokenPurpose::Confirm, NOW)
                .await
                .expect("unknown"),
            None
        );
        assert_eq!(
            s.use_member_token("", TokenPurpose::Confirm, NOW)
                .await
                .expect("empty"),
            None
        );

        let confirmed = s
            .use_member_token("t-confirm", TokenPurpose::Confirm, NOW + 5)
            .await
            .expect("use")
            .expect("a valid token, even after the wrong-purpose try");
        assert_eq!(confirmed.id, id);
        assert_eq!(confirmed.confirmed_ms, Some(NOW + 5));
        assert_eq!(
            s.use_member_token("t-confirm", TokenPurpose::Confirm, NOW + 6)
                .await
                .expect("again"),
            None,
            "single use"
        );

        // A second confirm keeps the first time; a reset token confirms nothing.
        s.create_member_token("t-confirm-2", id, TokenPurpose::Confirm, NOW, NOW + 100)
            .await
            .expect("token");
        let again = s
            .use_member_token("t-confirm-2", TokenPurpose::Confirm, NOW + 50)
            .await
            .expect("use")
            .expect("valid");
        assert_eq!(again.confirmed_ms, Some(NOW + 5));
        let other = member(&*s, "otto@example.com", false, false).await;
        s.create_member_token("t-reset-2", other, TokenPurpose::Reset, NOW, NOW + 100)
            .await
            .expect("token");
        let reset = s
            .use_member_token("t-reset-2", TokenPurpose::Reset, NOW + 1)
            .await
            .expect("use")
            .expect("valid");
        assert_eq!((reset.id, reset.confirmed_ms), (other, None));

        // Used and expired tokens still count for the mail limit.
        assert_eq!(
            s.count_member_tokens(id, TokenPurpose::Confirm, NOW)
                .await
                .expect("count"),
            2
        );
        assert_eq!(
            s.count_member_tokens(id, TokenPurpose::Reset, NOW - 1_000)
                .await
                .expect("count"),
            2
        );
        assert_eq!(
            s.count_member_tokens(id, TokenPurpose::Reset, NOW)
                .await
                .expect("count"),
            1
        );
        assert_eq!(
            s.count_member_tokens(9_999, TokenPurpose::Reset, 0)
                .await
                .expect("count"),
            0
        );
    }

    pub async fn a_new_password_ends_the_members_sessions_only(h: &Harness) {
        let s = h.fresh().await;
        let id = member(&*s, "mia@example.com", false, true).await;
        session(&*s, "s-mia-1", "mia@example.com").await;
        session(&*s, "s-mia-2", "mia@example.com").await;
        session(&*s, "s-otto", "otto@example.com").await;
        invalid(s.set_member_password(id, "").await, "password hash");
        assert!(s.session("s-mia-1", NOW).await.expect("session").is_some());

        assert!(s
            .set_member_password(id, "$argon2id$new")
            .await
            .expect("set"));
        assert_eq!(
            s.member(id).await.expect("m").expect("m").password_hash,
            "$argon2id$new"
        );
        assert_eq!(s.session("s-mia-1", NOW).await.expect("session"), None);
        assert_eq!(s.session("s-mia-2", NOW).await.expect("session"), None);
        assert!(
            s.session("s-otto", NOW).await.expect("session").is_some(),
            "other logins stay signed in"
        );
        assert!(!s
            .set_member_password(9_999, "$argon2id$x")
            .await
            .expect("missing"));
    }

    pub async fn deleting_a_member_removes_their_data_and_sessions_but_keeps_rooms(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let a = ad(&*s, &shops, "A", "Things", NOW).await;
        let mia = member(&*s, "mia@example.com", true, true).await;
        let otto = member(&*s, "otto@example.com", true, true).await;
        s.create_member_token("t-mia", mia, TokenPurpose::Reset, NOW, NOW + 100)
            .await
            .expect("token");
        room(&*s, "room-mia", "mia@example.com", ACME_HOST).await;
        s.add_inquiry(&NewInquiry {
            member_id: mia,
            ad_id: a,
            room_id: "room-mia".into(),
            question: "Still there?".into(),
            created_ms: NOW,
        })
        .await
        .expect("inquiry");
        let (promo, recipients) = s
            .create_promotion(&promotion(a, ACME_HOST))
            .await
            .expect("promotion")
            .expect("Acme's ad");
        assert_eq!(recipients, 2);
        session(&*s, "s-mia", "mia@example.com").await;
        session(&*s, "s-otto", "otto@example.com").await;

        assert!(s.delete_member(mia).await.expect("delete"));
        assert!(!s.delete_member(mia).await.expect("again"));
        assert_eq!(s.member(mia).await.expect("member"), None);
        assert_eq!(
            s.member_by_address("mia@example.com")
                .await
                .expect("by address"),
            None
        );
        assert_eq!(
            s.use_member_token("t-mia", TokenPurpose::Reset, NOW)
                .await
                .expect("token"),
            None
        );
        assert!(s
            .inquiries_of_member(mia, 10)
            .await
            .expect("inq")
            .is_empty());
        assert!(s
            .inquiries_of_company(shops.acme.id, 0, 10)
            .await
            .expect("inq")
            .is_empty());
        assert_eq!(s.count_inquiries(mia, 0).await.expect("count"), 0);
        assert_eq!(
            s.promotion(promo).await.expect("p").expect("p").recipients,
            1
        );
        let jobs = s
            .claim_promotion_mails("node", NOW, NOW + 1_000, 10)
            .await
            .expect("claim");
        assert_eq!(
            jobs.iter().map(|j| j.member_id).collect::<Vec<_>>(),
            [otto],
            "no mail for a deleted member"
        );
        assert_eq!(s.session("s-mia", NOW).await.expect("session"), None);
        assert!(s.session("s-otto", NOW).await.expect("session").is_some());
        assert!(
            s.room("room-mia").await.expect("room").is_some(),
            "the host received that mail: the room stays"
        );
        assert!(s.member(otto).await.expect("otto").is_some());
        // The address is free again.
        assert!(s
            .create_member(&new_member("mia@example.com", false))
            .await
            .expect("create")
            .is_some());
    }

    pub async fn inquiries_are_answered_when_the_host_joins_or_writes(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let a = ad(&*s, &shops, "Tea pot", "Kitchen", NOW).await;
        let mut theirs = fields("Bike", "Sport");
        theirs.host_login = OTHER_HOST.into();
        let b = s
            .create_ad(shops.other.id, &theirs, NOW)
            .await
            .expect("other ad");
        let mia = member(&*s, "mia@example.com", false, true).await;
        let otto = member(&*s, "otto@example.com", false, true).await;
        room(&*s, "r1", "mia@example.com", ACME_HOST).await;
        room(&*s, "r2", "mia@example.com", ACME_HOST).await;
        room(&*s, "r3", "otto@example.com", OTHER_HOST).await;
        let ask = |member_id, ad_id, room_id: &str, at| NewInquiry {
            member_id,
            ad_id,
            room_id: room_id.into(),
            question: " Is it cast iron? ".into(),
            created_ms: at,
        };

        let i1 = s
            .add_inquiry(&ask(mia, a, "r1", NOW + 1))
            .await
            .expect("i1");
        let i2 = s
            .add_inquiry(&ask(mia, a, "r2", NOW + 2))
            .await
            .expect("i2");
        let i3 = s
            .add_inquiry(&ask(otto, b, "r3", NOW + 3))
            .await
            .expect("i3");
        let mut empty = ask(mia, a, "r1", NOW);
        empty.question = "  ".into();
        invalid(s.add_inquiry(&empty).await, "question");
        invalid(s.add_inquiry(&ask(9_999, a, "r1", NOW)).await, "member");
        invalid(s.add_inquiry(&ask(mia, 9_999, "r1", NOW)).await, "ad");
        invalid(s.add_inquiry(&ask(mia, a, "nowhere", NOW)).await, "room");

        let acme = s
            .inquiries_of_company(shops.acme.id, 0, 10)
            .await
            .expect("acme's");
        let ids: Vec<i64> = acme.iter().map(|i| i.id).collect();
        assert!(ids.contains(&i1) && ids.contains(&i2) && !ids.contains(&i3));
        assert_eq!(ids[0], i2, "newest first");
        let first = acme.iter().find(|i| i.id == i1).expect("i1");
        assert_eq!(first.question, "Is it cast iron?");
        assert_eq!(first.member_id, mia);
        assert_eq!(first.member_name, "Mia");
        assert_eq!(first.member_address, "mia@example.com");
        assert_eq!((first.ad_id, first.ad_title.as_str()), (a, "Tea pot"));
        assert_eq!(first.host_login, ACME_HOST);
        assert_eq!((first.room_id.as_str(), first.port), ("r1", 40_001));
        assert!(!first.answered);
        let others: Vec<i64> = s
            .inquiries_of_company(shops.other.id, 0, 10)
            .await
            .expect("other's")
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(others, [i3], "a company sees only its own inquiries");
        let paged = s
            .inquiries_of_company(shops.acme.id, 1, 1)
            .await
            .expect("page");
        assert_eq!(paged.len(), 1);
        assert_eq!(paged[0].id, ids[1]);

        // The member joining or writing, or chatd's own notes, are no answer.
        s.join_room("r1", "mia@example.com", NOW + 10)
            .await
            .expect("join")
            .expect("a participant");
        say(&*s, "r1", "mia@example.com", Via::Web, "Hello?").await;
        say(&*s, "r1", "", Via::System, "Nobody answered the ring.").await;
        let answered = |list: Vec<chmail::store::mall::Inquiry>, id| {
            list.iter().find(|i| i.id == id).expect("listed").answered
        };
        assert!(!answered(
            s.inquiries_of_member(mia, 10).await.expect("mia's"),
            i1
        ));

        // The host joins r1; the host writes (by mail) in r2.
        s.join_room("r1", ACME_HOST, NOW + 20)
            .await
            .expect("join")
            .expect("a participant");
        assert!(answered(
            s.inquiries_of_member(mia, 10).await.expect("mia's"),
            i1
        ));
        assert!(!answered(
            s.inquiries_of_member(mia, 10).await.expect("mia's"),
            i2
        ));
        say(&*s, "r2", ACME_HOST, Via::Mail, "Yes, cast iron.").await;
        assert!(answered(
            s.inquiries_of_company(shops.acme.id, 0, 10)
                .await
                .expect("acme's"),
            i2
        ));

        let mine: Vec<i64> = s
            .inquiries_of_member(mia, 10)
            .await
            .expect("mia's")
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(mine, [i2, i1], "a member sees only their own, newest first");
        assert_eq!(s.inquiries_of_member(mia, 1).await.expect("1").len(), 1);
        assert_eq!(s.count_inquiries(mia, NOW + 2).await.expect("count"), 1);
        assert_eq!(s.count_inquiries(mia, 0).await.expect("count"), 2);
        assert_eq!(s.count_inquiries(otto, 0).await.expect("count"), 1);
    }

    pub async fn promotions_go_to_confirmed_members_who_opted_in(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let a = ad(&*s, &shops, "Tea pot", "Kitchen", NOW).await;
        member(&*s, "in@example.com", true, true).await;
        member(&*s, "in2@example.com", true, true).await;
        member(&*s, "out@example.com", false, true).await;
        member(&*s, "unconfirmed@example.com", true, false).await;
        assert_eq!(
            s.promotion_audience().await.expect("audience"),
            2,
            "confirmed members who opted in"
        );

        let mut bad = promotion(a, ACME_HOST);
        bad.subject = " ".into();
        invalid(s.create_promotion(&bad).await, "subject");
        bad = promotion(a, ACME_HOST);
        bad.body = String::new();
        invalid(s.create_promotion(&bad).await, "text");
        invalid(
            s.create_promotion(&promotion(a, "nobody@example.com"))
                .await,
            "not a host",
        );
        assert_eq!(
            s.create_promotion(&promotion(a, OTHER_HOST))
                .await
                .expect("another company's ad"),
            None
        );
        assert_eq!(
            s.create_promotion(&promotion(9_999, ACME_HOST))
                .await
                .expect("missing ad"),
            None
        );

        let (id, recipients) = s
            .create_promotion(&promotion(a, " Shop@Acme.example "))
            .await
            .expect("create")
            .expect("Acme's ad");
        assert_eq!(recipients, 2, "confirmed and opted in only");
        let p = s.promotion(id).await.expect("promotion").expect("stored");
        assert_eq!(p.ad_id, a);
        assert_eq!(p.ad_title, "Tea pot");
        assert_eq!(p.host_login, ACME_HOST);
        assert_eq!(p.subject, "Spring sale");
        assert_eq!(p.body, "Everything half price.");
        assert_eq!(p.created_ms, NOW);
        assert_eq!(
            (p.recipients, p.sent, p.chatted, p.unsubscribed),
            (2, 0, 0, 0)
        );
        assert_eq!(s.promotion(9_999).await.expect("none"), None);

        let mut later = promotion(a, ACME_HOST);
        later.created_ms = NOW + 10;
        let (id2, _) = s
            .create_promotion(&later)
            .await
            .expect("create")
            .expect("Acme's ad");
        let listed: Vec<i64> = s
            .promotions_of_company(shops.acme.id, 10)
            .await
            .expect("list")
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(listed, [id2, id], "newest first");
        assert_eq!(
            s.promotions_of_company(shops.acme.id, 1)
                .await
                .expect("1")
                .len(),
            1
        );
        assert!(s
            .promotions_of_company(shops.other.id, 10)
            .await
            .expect("list")
            .is_empty());
    }

    pub async fn a_failing_promotion_mail_waits_then_is_given_up_and_counted(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let a = ad(&*s, &shops, "Tea pot", "Kitchen", NOW).await;
        let m1 = member(&*s, "m1@example.com", true, true).await;
        let (p, _) = s
            .create_promotion(&promotion(a, ACME_HOST))
            .await
            .expect("promotion")
            .expect("ok");
        let job = s
            .claim_promotion_mails("node-a", NOW, NOW + 1_000, 5)
            .await
            .expect("claim");
        assert_eq!(job.len(), 1);
        assert_eq!(job[0].attempts, 0);

        // Only the lease holder records a failure; the mail then waits until its retry time.
        assert!(!s
            .promotion_mail_failed(p, m1, "node-b", "relay down", Some(NOW + 5_000))
            .await
            .expect("not b's"));
        assert!(s
            .promotion_mail_failed(p, m1, "node-a", "relay down", Some(NOW + 5_000))
            .await
            .expect("a's"));
        assert!(s
            .claim_promotion_mails("node-b", NOW + 4_000, NOW + 9_000, 5)
            .await
            .expect("too early")
            .is_empty());
        let again = s
            .claim_promotion_mails("node-b", NOW + 6_000, NOW + 9_000, 5)
            .await
            .expect("due again");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1, "the failure was counted");

        // Given up: never claimed again, counted as failed, not as sent.
        let long = "x".repeat(5_000);
        assert!(s
            .promotion_mail_failed(p, m1, "node-b", &long, None)
            .await
            .expect("give up"));
        assert!(s
            .claim_promotion_mails("node-c", NOW + 100_000, NOW + 200_000, 5)
            .await
            .expect("nothing")
            .is_empty());
        let counts = s.promotion(p).await.expect("read").expect("promotion");
        assert_eq!((counts.sent, counts.failed), (0, 1));
    }

    pub async fn promotion_mails_are_leased_queued_counted_and_skipped(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let a = ad(&*s, &shops, "Tea pot", "Kitchen", NOW).await;
        let m1 = member(&*s, "m1@example.com", true, true).await;
        let m2 = member(&*s, "m2@example.com", true, true).await;
        let m3 = member(&*s, "m3@example.com", true, true).await;
        let (p1, _) = s
            .create_promotion(&promotion(a, ACME_HOST))
            .await
            .expect("p1")
            .expect("ok");
        let (p2, _) = s
            .create_promotion(&promotion(a, ACME_HOST))
            .await
            .expect("p2")
            .expect("ok");
        invalid(s.claim_promotion_mails("", NOW, NOW + 1, 1).await, "owner");

        // Two owners never get the same mail.
        let first = s
            .claim_promotion_mails("node-a", NOW, NOW + 1_000, 2)
            .await
            .expect("claim a");
        let second = s
            .claim_promotion_mails("node-b", NOW, NOW + 1_000, 10)
            .await
            .expect("claim b");
        let keys = |jobs: &[chmail::store::mall::PromotionJob]| {
            jobs.iter()
                .map(|j| (j.promotion_id, j.member_id))
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&first), [(p1, m1), (p1, m2)], "oldest promotion first");
        assert_eq!(keys(&second), [(p1, m3), (p2, m1), (p2, m2), (p2, m3)]);
        assert_eq!(first[0].address, "m1@example.com");
        assert_eq!(first[0].name, "Mia");
        assert!(s
            .claim_promotion_mails("node-c", NOW + 500, NOW + 1_500, 10)
            .await
            .expect("nothing free")
            .is_empty());

        // Queued by the lease holder only.
        room(&*s, "pr-1", ACME_HOST, "m1@example.com").await;
        invalid(
            s.promotion_mail_queued(p1, m1, "node-a", "pr-1", "", NOW)
                .await,
            "unsubscribe hash",
        );
        assert!(!s
            .promotion_mail_queued(p1, m1, "node-b", "pr-1", "u-1", NOW)
            .await
            .expect("not b's"));
        assert!(s
            .promotion_mail_queued(p1, m1, "node-a", "pr-1", "u-1", NOW + 1)
            .await
            .expect("a's"));
        assert!(!s
            .promotion_mail_queued(p1, m1, "node-a", "pr-1", "u-1", NOW + 2)
            .await
            .expect("twice"));
        let p = s.promotion(p1).await.expect("p").expect("p");
        assert_eq!((p.recipients, p.sent, p.chatted), (3, 1, 0));

        // node-a stalls: its other lease expires and node-c takes the mail.
        let retaken = s
            .claim_promotion_mails("node-c", NOW + 1_001, NOW + 2_000, 10)
            .await
            .expect("reclaim");
        assert_eq!(
            keys(&retaken),
            [(p1, m2), (p1, m3), (p2, m1), (p2, m2), (p2, m3)]
        );
        assert!(!s
            .promotion_mail_queued(p1, m2, "node-a", "pr-1", "u-2", NOW + 1_002)
            .await
            .expect("a lost it"));

        // m3 opts out meanwhile: once the lease is over, their mails are skipped for good.
        s.update_member(m3, "Mia", false).await.expect("opt out");
        let later = s
            .claim_promotion_mails("node-d", NOW + 2_001, NOW + 3_000, 10)
            .await
            .expect("claim");
        assert_eq!(keys(&later), [(p1, m2), (p2, m1), (p2, m2)]);
        s.update_member(m3, "Mia", true)
            .await
            .expect("opt in again");
        assert!(s
            .claim_promotion_mails("node-e", NOW + 3_001, NOW + 4_000, 10)
            .await
            .expect("claim")
            .iter()
            .all(|j| j.member_id != m3));
        assert!(!s
            .promotion_mail_queued(p1, m3, "node-c", "pr-1", "u-3", NOW)
            .await
            .expect("skipped"));

        // Joining the room of the mail counts as a chat.
        s.join_room("pr-1", "m1@example.com", NOW + 5)
            .await
            .expect("join")
            .expect("participant");
        let p = s.promotion(p1).await.expect("p").expect("p");
        assert_eq!(
            (p.recipients, p.sent, p.chatted, p.unsubscribed),
            (3, 1, 1, 0)
        );
        let listed = s
            .promotions_of_company(shops.acme.id, 10)
            .await
            .expect("list");
        assert_eq!(listed.iter().find(|q| q.id == p1), Some(&p));
    }

    pub async fn concurrent_promotion_claims_take_each_mail_exactly_once(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let a = ad(&*s, &shops, "Tea pot", "Kitchen", NOW).await;
        for i in 0..20 {
            member(&*s, &format!("m{i}@example.com"), true, true).await;
        }
        for _ in 0..3 {
            s.create_promotion(&promotion(a, ACME_HOST))
                .await
                .expect("create")
                .expect("ok");
        }
        let mut tasks = Vec::new();
        for n in 0..4 {
            let store = h.fresh().await;
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                // 60 mails in batches of 3: far fewer rounds than this, unless mails come back.
                for _ in 0..100 {
                    let jobs = store
                        .claim_promotion_mails(&format!("node-{n}"), NOW, NOW + 60_000, 3)
                        .await
                        .expect("claim");
                    if jobs.is_empty() {
                        return got;
                    }
                    got.extend(jobs.into_iter().map(|j| (j.promotion_id, j.member_id)));
                }
                panic!("node-{n} kept claiming leased mails");
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("task"));
        }
        let distinct: BTreeSet<_> = all.iter().collect();
        assert_eq!(all.len(), 60, "every mail was claimed");
        assert_eq!(distinct.len(), 60, "and none twice");
    }

    pub async fn unsubscribing_turns_promotions_off_and_counts_once(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let a = ad(&*s, &shops, "Tea pot", "Kitchen", NOW).await;
        let m1 = member(&*s, "m1@example.com", true, true).await;
        let (p, _) = s
            .create_promotion(&promotion(a, ACME_HOST))
            .await
            .expect("p")
            .expect("ok");
        let jobs = s
            .claim_promotion_mails("node", NOW, NOW + 1_000, 10)
            .await
            .expect("claim");
        assert_eq!(jobs.len(), 1);
        room(&*s, "pr-1", ACME_HOST, "m1@example.com").await;
        assert!(s
            .promotion_mail_queued(p, m1, "node", "pr-1", "u-hash-1", NOW)
            .await
            .expect("queued"));

        assert_eq!(
            s.unsubscribe_promotions("unknown", NOW)
                .await
                .expect("unknown"),
            None
        );
        assert_eq!(
            s.unsubscribe_promotions("", NOW).await.expect("empty"),
            None
        );
        assert_eq!(
            s.unsubscribe_promotions("u-hash-1", NOW + 1)
                .await
                .expect("unsubscribe"),
            Some("m1@example.com".to_owned())
        );
        assert!(!s.member(m1).await.expect("m").expect("m").promotions);
        assert_eq!(
            s.unsubscribe_promotions("u-hash-1", NOW + 2)
                .await
                .expect("again"),
            Some("m1@example.com".to_owned()),
            "repeating it answers the same"
        );
        let promo = s.promotion(p).await.expect("p").expect("p");
        assert_eq!((promo.sent, promo.unsubscribed), (1, 1), "counted once");

        // Opted out: the next promotion does not go to them.
        let (_, recipients) = s
            .create_promotion(&promotion(a, ACME_HOST))
            .await
            .expect("p2")
            .expect("ok");
        assert_eq!(recipients, 0);
    }

    pub async fn concurrent_page_views_count_every_impression_without_deadlock(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(ad(&*s, &shops, &format!("Ad {i}"), "Things", NOW).await);
        }
        let mut tasks = Vec::new();
        for n in 0..4_usize {
            let store = h.fresh().await;
            let mut shown = ids.clone();
            if n % 2 == 1 {
                shown.reverse();
            }
            tasks.push(tokio::spawn(async move {
                let mut counted = 0;
                for view in 0..10 {
                    shown.rotate_left(view % 3);
                    counted += store
                        .record_impressions(&format!("view-{n}-{view}"), &shown, NOW + 1)
                        .await
                        .expect("record_impressions");
                    store
                        .record_click(&format!("view-{n}-{view}"), shown[0], NOW + 2)
                        .await
                        .expect("record_click");
                }
                counted
            }));
        }
        let mut counted = 0;
        for task in tasks {
            counted += task.await.expect("task");
        }
        assert_eq!(counted, 4 * 10 * 10);
        let mut impressions = 0;
        let mut clicks = 0;
        for id in &ids {
            let ad = s.ad(*id).await.expect("ad").expect("ad");
            assert_eq!(ad.impressions, 40, "every view showed every ad");
            impressions += ad.impressions;
            clicks += ad.clicks;
        }
        assert_eq!((impressions, clicks), (400, 40));
    }

    pub async fn concurrent_uploads_never_exceed_the_picture_limit(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let a = ad(&*s, &shops, "A", "Things", NOW).await;
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = h.fresh().await;
            let company = shops.acme.id;
            tasks.push(tokio::spawn(async move {
                let mut added = 0;
                for _ in 0..MAX_PICTURES_PER_AD {
                    if store
                        .add_picture(a, company, "image/gif", b"GIF89a")
                        .await
                        .expect("add_picture")
                        .is_some()
                    {
                        added += 1;
                    }
                }
                added
            }));
        }
        let mut added = 0;
        for task in tasks {
            added += task.await.expect("task");
        }
        assert_eq!(added, MAX_PICTURES_PER_AD);
        assert_eq!(
            s.ad(a).await.expect("ad").expect("a").pictures.len(),
            MAX_PICTURES_PER_AD
        );
    }

    pub async fn concurrent_imports_add_a_company_and_a_member_once(h: &Harness) {
        let mut tasks = Vec::new();
        for n in 0..4 {
            let store = h.fresh().await;
            tasks.push(tokio::spawn(async move {
                let name = if n % 2 == 0 { "Acme" } else { "ACME" };
                let (company, added) = store.add_company(name, NOW).await.expect("add");
                let member = store
                    .create_member(&new_member("Mia@example.com", false))
                    .await
                    .expect("create_member");
                (company.id, added, member.is_some())
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("task"));
        }
        let ids: BTreeSet<i64> = results.iter().map(|r| r.0).collect();
        assert_eq!(ids.len(), 1, "{results:?}");
        assert_eq!(results.iter().filter(|r| r.1).count(), 1, "{results:?}");
        assert_eq!(results.iter().filter(|r| r.2).count(), 1, "{results:?}");
    }

    pub async fn pruning_drops_old_events_and_expired_tokens_but_keeps_counts(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let pot = ad(&*s, &shops, "Pot", "Kitchen", NOW).await;
        s.record_impressions("old", &[pot], NOW).await.expect("old");
        assert!(s.record_click("old", pot, NOW).await.expect("click"));
        s.record_impressions("new", &[pot], NOW + 10)
            .await
            .expect("new");
        let m = member(&*s, "ana@example.org", false, false).await;
        s.create_member_token(
            "a".repeat(64).as_str(),
            m,
            TokenPurpose::Reset,
            NOW,
            NOW + 5,
        )
        .await
        .expect("expiring token");
        s.create_member_token(
            "b".repeat(64).as_str(),
            m,
            TokenPurpose::Reset,
            NOW,
            NOW + 50,
        )
        .await
        .expect("living token");

        // Two events (impression and click of view "old") and one expired token go.
        assert_eq!(s.prune_mall(NOW + 6).await.expect("prune"), 3);
        assert_eq!(s.prune_mall(NOW + 6).await.expect("again"), 0);
        let kept = s.ad(pot).await.expect("ad").expect("pot");
        assert_eq!((kept.impressions, kept.clicks), (2, 1), "counters stay");
        // The view still in the table counts once; the pruned one would count again.
        assert_eq!(
            s.record_impressions("new", &[pot], NOW + 11)
                .await
                .expect("new"),
            0
        );
        let living = s
            .use_member_token("b".repeat(64).as_str(), TokenPurpose::Reset, NOW + 20)
            .await
            .expect("use");
        assert!(living.is_some(), "an unexpired token survives pruning");
    }

    pub async fn pages_are_capped(h: &Harness) {
        let s = h.fresh().await;
        let shops = shops(&*s).await;
        let over = usize::try_from(MAX_PAGE).expect("small") + 1;
        for i in 0..over {
            ad(&*s, &shops, &format!("Ad {i}"), "Things", NOW).await;
        }
        let mut all = query("");
        all.limit = u32::MAX;
        let page = s.search_ads(&all).await.expect("search");
        assert_eq!(page.total, u64::try_from(over).expect("small"));
        assert_eq!(
            page.ads.len(),
            over - 1,
            "a page holds at most MAX_PAGE ads"
        );
        assert_eq!(
            s.rotate_ads(None, NOW, u32::MAX)
                .await
                .expect("rotate")
                .len(),
            over - 1
        );
        assert!(s
            .inquiries_of_company(shops.acme.id, u32::MAX, u32::MAX)
            .await
            .expect("far page")
            .is_empty());
    }
}

conformance!(
    companies_are_added_once_by_case_insensitive_name,
    a_host_belongs_to_one_company_only,
    ads_are_created_updated_and_paused_by_their_company_only,
    search_finds_every_word_in_active_ads_with_paging,
    search_takes_percent_underscore_and_operators_literally,
    rotation_shows_every_active_ad_equally_often,
    categories_count_active_ads_by_case_insensitive_name,
    impressions_and_clicks_count_once_per_view,
    pictures_are_checked_limited_and_changed_by_their_company_only,
    members_are_unique_by_address_in_any_case,
    member_tokens_are_single_use_expire_and_keep_their_purpose,
    a_confirm_link_confirms_only_the_password_hash_it_was_checked_against,
    a_new_password_ends_the_members_sessions_only,
    deleting_a_member_removes_their_data_and_sessions_but_keeps_rooms,
    inquiries_are_answered_when_the_host_joins_or_writes,
    promotions_go_to_confirmed_members_who_opted_in,
    promotion_mails_are_leased_queued_counted_and_skipped,
    a_failing_promotion_mail_waits_then_is_given_up_and_counted,
    concurrent_promotion_claims_take_each_mail_exactly_once,
    unsubscribing_turns_promotions_off_and_counts_once,
    concurrent_page_views_count_every_impression_without_deadlock,
    concurrent_uploads_never_exceed_the_picture_limit,
    concurrent_imports_add_a_company_and_a_member_once,
    pruning_drops_old_events_and_expired_tokens_but_keeps_counts,
    pages_are_capped,
);
