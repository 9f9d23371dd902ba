//! The internet mall (S201-S219), served under `/mall`: a storefront of ads from many companies,
//! members who sign up with a password, product inquiries that go to the ad's host as a
//! chat-capable CHmail mail (the member's page then rings when the host presses Chat), the hosts'
//! pages, and promotions (the roles swapped: a host mails opted-in members).
//!
//! - [`storefront`]: home page with rotated ads, categories, search, product pages, pictures,
//!   impressions and clicks
//! - [`account`]: sign up (confirmed by a mailed link), sign in and out, password reset, profile,
//!   delete my account
//! - [`inquiry`]: asking about a product, and the member's page that rings
//! - [`host`]: the host's pages: their ads (create, edit, pause, pictures), inquiries, chats,
//!   promotions
//! - [`promotion`]: queued, paced promotion mails with one-click unsubscribe
//! - [`page`]: the layout and the viewer (member, host or visitor)
//! - [`housekeeping`]: the hourly prune of per-view ad events and expired member tokens
//! - [`chatmail`]: the one path that sends a signed, chat-capable mail on someone's behalf
//! - [`admin`]: commands that add companies and hosts and import ads; [`demo`]: demo data

pub mod account;
pub mod admin;
pub mod chatmail;
pub mod demo;
pub mod host;
pub mod housekeeping;
pub mod inquiry;
pub mod page;
pub mod promotion;
pub mod storefront;

use axum::Router;

use crate::state::AppState;

/// The mall's routes (all under `/mall`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(storefront::routes())
        .merge(account::routes())
        .merge(inquiry::routes())
        .merge(host::routes())
        .merge(promotion::routes())
}
