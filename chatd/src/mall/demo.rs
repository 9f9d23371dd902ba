//! Demo data for the mall, so that a newcomer sees a living mall at once: four companies, each
//! with a host, 24 ads with pictures (drawn by `static/demo/make_pictures.py`), a demo member
//! who wants promotions and a demo host who can sign in with a password.
//!
//! The ads come from `static/demo/ads.csv` through the same import as `chatd mall import-ads`;
//! the CSV and its pictures are embedded in the binary, so `chatd mall demo` and
//! `chatd quickstart --demo` work from an installed chatd too.

use std::fmt::Write as _;

use chmail::store::{
    mall::{NewMember, TokenPurpose},
    Store,
};

use super::admin::{self, ImportReport, MallAdminError};
use crate::auth::{hash_token, new_token};

/// The password of the demo accounts (printed on the console; change or delete them before
/// opening the mall to the public).
pub const DEMO_PASSWORD: &str = "demo-password";

/// The demo member: confirmed and opted in to promotions.
pub const DEMO_MEMBER: &str = "member@example.com";

/// The demo host: a host of the first company, and a member too, so that they sign in with
/// [`DEMO_PASSWORD`] instead of a mailed link.
pub const DEMO_HOST: &str = "host@shop.example";

/// The demo companies and their hosts (login, display name).
pub const COMPANIES: [(&str, &str, &str); 4] = [
    ("Nordlicht Home", DEMO_HOST, "Mia Lindqvist"),
    ("Trailhead Outfitters", "trail@shop.example", "Sam Okafor"),
    ("Pixel & Pulse", "pixel@shop.example", "Jun Park"),
    ("Green Thumb Garden", "garden@shop.example", "Lucía Moreno"),
];

/// The demo ads, in the CSV format of `chatd mall import-ads`.
pub const ADS_CSV: &str = include_str!("../../static/demo/ads.csv");

/// The pictures `ADS_CSV` names.
const PICTURES: &[(&str, &[u8])] = &[
    (
        "backpack-green.png",
        include_bytes!("../../static/demo/backpack-green.png"),
    ),
    (
        "backpack-orange.png",
        include_bytes!("../../static/demo/backpack-orange.png"),
    ),
    (
        "birdhouse.png",
        include_bytes!("../../static/demo/birdhouse.png"),
    ),
    (
        "blanket.png",
        include_bytes!("../../static/demo/blanket.png"),
    ),
    ("bonsai.png", include_bytes!("../../static/demo/bonsai.png")),
    (
        "bottle-plum.png",
        include_bytes!("../../static/demo/bottle-plum.png"),
    ),
    (
        "bottle-teal.png",
        include_bytes!("../../static/demo/bottle-teal.png"),
    ),
    ("camera.png", include_bytes!("../../static/demo/camera.png")),
    ("clock.png", include_bytes!("../../static/demo/clock.png")),
    (
        "compass.png",
        include_bytes!("../../static/demo/compass.png"),
    ),
    (
        "controller.png",
        include_bytes!("../../static/demo/controller.png"),
    ),
    (
        "ereader.png",
        include_bytes!("../../static/demo/ereader.png"),
    ),
    (
        "headphones-black.png",
        include_bytes!("../../static/demo/headphones-black.png"),
    ),
    (
        "headphones-white.png",
        include_bytes!("../../static/demo/headphones-white.png"),
    ),
    ("lamp.png", include_bytes!("../../static/demo/lamp.png")),
    (
        "lantern.png",
        include_bytes!("../../static/demo/lantern.png"),
    ),
    ("mugs.png", include_bytes!("../../static/demo/mugs.png")),
    ("pot.png", include_bytes!("../../static/demo/pot.png")),
    (
        "seedlings.png",
        include_bytes!("../../static/demo/seedlings.png"),
    ),
    (
        "smartwatch.png",
        include_bytes!("../../static/demo/smartwatch.png"),
    ),
    (
        "speaker.png",
        include_bytes!("../../static/demo/speaker.png"),
    ),
    (
        "succulent.png",
        include_bytes!("../../static/demo/succulent.png"),
    ),
    (
        "sunglasses.png",
        include_bytes!("../../static/demo/sunglasses.png"),
    ),
    (
        "tea-cup.png",
        include_bytes!("../../static/demo/tea-cup.png"),
    ),
    (
        "teapot-iron.png",
        include_bytes!("../../static/demo/teapot-iron.png"),
    ),
    (
        "teapot-red.png",
        include_bytes!("../../static/demo/teapot-red.png"),
    ),
    ("tent.png", include_bytes!("../../static/demo/tent.png")),
    (
        "watering-can.png",
        include_bytes!("../../static/demo/watering-can.png"),
    ),
];

/// How long the one-time confirm token of a demo member lasts: it is used at once.
const CONFIRM_TTL_MS: i64 = 60_000;

/// What [`load`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoReport {
    /// Companies added (the others existed).
    pub companies_added: usize,
    /// The import of the ads.
    pub ads: ImportReport,
    /// The demo accounts added (the others existed and were left as they are).
    pub members_added: Vec<&'static str>,
}

/// Loads the demo data into `store`: the companies and hosts, the ads (an ad whose company has
/// one with the same title is skipped, so loading twice adds nothing), and the demo member and
/// host accounts, confirmed, with [`DEMO_PASSWORD`]. Existing accounts are not touched.
///
/// # Errors
/// When the store fails or a password cannot be hashed.
pub async fn load(
    store: &dyn Store,
    max_picture_bytes: usize,
    now_ms: i64,
) -> Result<DemoReport, MallAdminError> {
    let mut companies_added = 0;
    for (company, login, name) in COMPANIES {
        let (c, added) = store.add_company(company, now_ms).await?;
        companies_added += usize::from(added);
        store.add_host(c.id, login, name, now_ms).await?;
    }
    let load_picture = |name: &str| -> Result<Vec<u8>, String> {
        PICTURES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| bytes.to_vec())
            .ok_or_else(|| format!("picture {name:?} is not among the demo pictures"))
    };
    let ads = admin::import_ads(store, ADS_CSV, &load_picture, max_picture_bytes, now_ms).await?;
    let mut members_added = Vec::new();
    let accounts = [
        (DEMO_MEMBER, "Demo Member", true),
        (DEMO_HOST, COMPANIES[0].2, false),
    ];
    for (address, name, promotions) in accounts {
        if add_member(store, address, name, promotions, now_ms).await? {
            members_added.push(address);
        }
    }
    Ok(DemoReport {
        companies_added,
        ads,
        members_added,
    })
}

/// [`load`], only when the store has no companies yet (a fresh mall); `None` otherwise.
///
/// # Errors
/// As [`load`].
pub async fn load_if_empty(
    store: &dyn Store,
    max_picture_bytes: usize,
    now_ms: i64,
) -> Result<Option<DemoReport>, MallAdminError> {
    if !store.companies().await?.is_empty() {
        return Ok(None);
    }
    load(store, max_picture_bytes, now_ms).await.map(Some)
}

/// Adds a confirmed member with [`DEMO_PASSWORD`]; false when the address is taken.
async fn add_member(
    store: &dyn Store,
    address: &str,
    name: &str,
    promotions: bool,
    now_ms: i64,
) -> Result<bool, MallAdminError> {
    let password_hash = crate::mall::account::hash_password(DEMO_PASSWORD)
        .await
        .map_err(|e| MallAdminError::Invalid(format!("cannot hash the demo password: {e}")))?;
    let member = NewMember {
        address: address.to_owned(),
        name: name.to_owned(),
        password_hash,
        promotions,
        created_ms: now_ms,
    };
    let Some(member) = store.create_member(&member).await? else {
        return Ok(false);
    };
    // Confirming goes through a token, as the mailed link would: the one path that confirms.
    let token = new_token().map_err(|e| MallAdminError::Invalid(e.to_string()))?;
    let hash = hash_token(&token);
    store
        .create_member_token(
            &hash,
            member.id,
            TokenPurpose::Confirm,
            now_ms,
            now_ms + CONFIRM_TTL_MS,
        )
        .await?;
    store
        .use_member_token(&hash, TokenPurpose::Confirm, now_ms)
        .await?;
    Ok(true)
}

/// What the console says after loading: what was added, where to look, how to sign in.
pub fn console_text(report: Option<&DemoReport>, base_url: &str) -> String {
    let mut out = String::new();
    match report {
        None => out.push_str(
            "The mall has companies already: the demo data was not loaded (`chatd mall demo` \
             loads it into any store).\n",
        ),
        Some(r) => {
            let before = if r.ads.skipped.is_empty() {
                String::new()
            } else {
                format!(" ({} were there already)", r.ads.skipped.len())
            };
            let _ = writeln!(
                out,
                "Demo data: {} ads added with {} pictures{before}, from {} companies.",
                r.ads.added.len(),
                r.ads.pictures,
                COMPANIES.len()
            );
            if !r.ads.bad.is_empty() {
                out.push_str(&r.ads.text());
            }
        }
    }
    let _ = writeln!(out, "The mall:      {base_url}/mall");
    let _ = writeln!(
        out,
        "Demo member:   {DEMO_MEMBER} / {DEMO_PASSWORD} (sign in at {base_url}/mall/signin)"
    );
    let _ = writeln!(
        out,
        "Demo host:     {DEMO_HOST} / {DEMO_PASSWORD} ({}, at {base_url}/mall/host)",
        COMPANIES[0].0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_picture_the_csv_names_is_embedded_and_a_png() {
        let records = admin::parse_csv(ADS_CSV);
        let header = &records[0].fields;
        let column = header
            .iter()
            .position(|h| h == "pictures")
            .expect("a pictures column");
        let mut named = 0;
        for record in &records[1..] {
            assert_eq!(record.error, None, "line {}", record.line);
            for name in record.fields[column].split('|') {
                let (_, bytes) = PICTURES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .unwrap_or_else(|| panic!("{name} is not embedded"));
                assert_eq!(
                    super::super::storefront::picture_type(bytes),
                    Some("image/png")
                );
                named += 1;
            }
        }
        assert_eq!(named, PICTURES.len(), "every embedded picture is used");
        assert!(records.len() > 20, "at least 20 ads");
    }
}
