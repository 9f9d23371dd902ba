//! Promotions, the roles of an inquiry swapped: a host's promotion goes to every member who asked
//! for promotions, each in a mail of their own from the host ([`super::chatmail`]), chat-capable
//! back to the host, with a one-click unsubscribe (RFC 8058).
//!
//! [`run_worker`] sends them. It claims pending promotion mails from the store with a lease in
//! the name of this process (`AppState::node`), so that several chatd nodes share the work and
//! no mail is sent twice: a mail is claimed by one node at a time, begun only while the lease
//! has time enough left for all its store calls, and marked queued under that lease. Sending is
//! paced by a token bucket to `[mall] promotions_per_minute` for the process; `0` stops it.
//!
//! `GET /mall/unsubscribe/{token}` shows what the button does (mail scanners fetch every link of
//! a mail, so a `GET` changes nothing); `POST /mall/unsubscribe/{token}` turns the member's
//! promotions off. Like the notification mails' `/u/{token}` ([`crate::web::unsubscribe`]), the
//! post asks for no CSRF token: a mail client's one-click post (`List-Unsubscribe=One-Click`)
//! has none, a forged post can only stop promotions, and the token (256 random bits, the store
//! keeps only its hash) is the capability.

use crate::room_tag::room_tag;
use std::{collections::HashMap, time::Duration};

use axum::{
    extract::{rejection::PathRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::get,
    Router,
};
use chmail::store::mall::PromotionJob;
use tokio::{sync::watch, time::Instant};
use tracing::{debug, info, warn};

use super::{
    chatmail::{self, ChatMail},
    page::{page, viewer, MallPage},
};
use crate::{
    auth::{hash_token, is_token, new_token},
    clock::ms,
    error::AppError,
    state::AppState,
    web::{
        csrf,
        html::{attr, escape},
        html_response,
    },
};

/// The outbox kind of a promotion mail.
pub const KIND: &str = "promotion";

/// How often the worker looks for promotion mails to send when it has none: promotions are not
/// urgent, and each look is a store call.
pub const TICK: Duration = Duration::from_secs(5);

/// Most promotion mails claimed at once (fewer when the pacing allows fewer).
pub const BATCH: u32 = 10;

/// Store calls one promotion mail makes at most (the promotion, its host, the room, the reply
/// address, the outbox, marking it queued), each bounded by `[store] timeout_ms`: what a lease
/// must allow for each mail.
pub const STORE_CALLS_PER_MAIL: u32 = 8;

/// Time a claim allows beyond the store calls of its mails.
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Attempts at one promotion mail before it is given up (counted as failed on the host's page).
pub const MAX_ATTEMPTS: u32 = 5;

/// The wait after the first failed attempt; each further failure doubles it (1, 2, 4, 8
/// minutes), so a relay or store outage of a quarter of an hour loses no promotion mail.
pub const RETRY_FIRST: Duration = Duration::from_secs(60);

/// The routes of the unsubscribe page.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/mall/unsubscribe/{token}",
        get(unsubscribe_page).post(unsubscribe),
    )
}

// --- the worker -------------------------------------------------------------------------------

/// Paces the mails: `per_minute` tokens a minute, at most one second's worth (and at least one)
/// saved up, so that a minute never sees much more than `per_minute` mails, even after a pause.
/// Counted in exact units: a token is [`Bucket::UNIT`] units, and every millisecond adds
/// `per_minute` units.
#[derive(Debug)]
struct Bucket {
    per_minute: u64,
    capacity: u64,
    units: u64,
    at: Instant,
}

impl Bucket {
    /// Units in a token: the milliseconds of a minute, so that `per_minute` units a
    /// millisecond make `per_minute` tokens a minute.
    const UNIT: u64 = 60_000;

    /// A full bucket for `per_minute` (at least 1) mails a minute.
    fn new(per_minute: u32, now: Instant) -> Self {
        let per_minute = u64::from(per_minute.max(1));
        let capacity = per_minute.div_ceil(60) * Self::UNIT;
        Self {
            per_minute,
            capacity,
            units: capacity,
            at: now,
        }
    }

    /// Whole tokens available at `now`.
    fn available(&mut self, now: Instant) -> u32 {
        let elapsed =
            u64::try_from(now.saturating_duration_since(self.at).as_millis()).unwrap_or(u64::MAX);
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(self.per_minute))
            .min(self.capacity);
        self.at = now;
        u32::try_from(self.units / Self::UNIT).unwrap_or(u32::MAX)
    }

    /// Spends one token (callers take only what [`Bucket::available`] gave).
    fn take(&mut self) {
        self.units = self.units.saturating_sub(Self::UNIT);
    }

    /// How long until the next whole token.
    fn wait(&self) -> Duration {
        let missing = Self::UNIT.saturating_sub(self.units);
        Duration::from_millis(missing.div_ceil(self.per_minute))
    }
}

/// Sends queued promotion mails until `shutdown` turns true, paced by
/// `[mall] promotions_per_minute`. A mail that fails is logged and left to be claimed again once
/// its lease has run out. Shutdown is heard between mails, never within one, so that a mail is
/// never left queued but unmarked.
pub async fn run_worker(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let per_minute = state.config.mall.promotions_per_minute;
    if per_minute == 0 {
        info!("[mall] promotions_per_minute is 0: promotion mails are not sent by this process");
        let _ = shutdown.wait_for(|stop| *stop).await;
        return;
    }
    let mut bucket = Bucket::new(per_minute, Instant::now());
    loop {
        if *shutdown.borrow() {
            return;
        }
        let wait = round(&state, &mut bucket, &shutdown).await;
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One claim and its mails; returns how long to wait before the next.
async fn round(
    state: &AppState,
    bucket: &mut Bucket,
    shutdown: &watch::Receiver<bool>,
) -> Duration {
    let allowed = bucket.available(Instant::now()).min(BATCH);
    if allowed == 0 {
        return bucket.wait().max(Duration::from_millis(10));
    }
    let now = state.clock.now_ms();
    let per_mail = state.config.store.timeout() * STORE_CALLS_PER_MAIL;
    let lease_until = now.saturating_add(ms(per_mail * allowed + LEASE_MARGIN));
    let claim = state
        .store
        .claim_promotion_mails(&state.node, now, lease_until, allowed);
    let jobs = match state.store_call(claim).await {
        Ok(jobs) => jobs,
        Err(e) => {
            warn!(cause = %e, "claiming promotion mails failed");
            return TICK;
        }
    };
    if jobs.is_empty() {
        return TICK;
    }
    let full = jobs.len() >= allowed as usize;
    let mut promotions = Promotions::default();
    for job in &jobs {
        if *shutdown.borrow() {
            return Duration::ZERO;
        }
        if state.clock.now_ms().saturating_add(ms(per_mail)) > lease_until {
            // A mail begun now could outlive our claim and overlap another node's: leave it to
            // whoever claims it after the lease.
            debug!(
                promotion = job.promotion_id,
                member = job.member_id,
                "promotion mail left for a new claim"
            );
            continue;
        }
        bucket.take();
        if let Err(e) = send_one(state, job, &mut promotions).await {
            failed(state, job, &e).await;
        }
    }
    if full {
        Duration::ZERO
    } else {
        TICK
    }
}

/// Records that `job` failed with `error`: it waits for a retry with back-off, or after
/// [`MAX_ATTEMPTS`] it is given up. A store failure here leaves the job to its lease.
async fn failed(state: &AppState, job: &PromotionJob, error: &AppError) {
    let attempts = job.attempts.saturating_add(1);
    let retry_at = (attempts < MAX_ATTEMPTS).then(|| {
        let wait = RETRY_FIRST.saturating_mul(1 << (attempts - 1).min(16));
        state.clock.now_ms().saturating_add(ms(wait))
    });
    let detail = error.to_string();
    let record = state.store.promotion_mail_failed(
        job.promotion_id,
        job.member_id,
        &state.node,
        &detail,
        retry_at,
    );
    if let Err(e) = state.store_call(record).await {
        warn!(promotion = job.promotion_id, member = job.member_id, cause = %e,
            "promotion mail failure not recorded; it is tried again after its lease");
    }
    state.metrics.promotion(if retry_at.is_some() {
        "failed"
    } else {
        "given_up"
    });
    match retry_at {
        Some(_) => warn!(promotion = job.promotion_id, member = job.member_id, attempts,
            cause = %detail, "promotion mail not sent; it is tried again later"),
        None => warn!(promotion = job.promotion_id, member = job.member_id, attempts,
            cause = %detail, "promotion mail given up after repeated failures"),
    }
}

/// What a mail needs of its promotion, read once per claim.
#[derive(Debug, Clone)]
struct Letter {
    host_login: String,
    host_name: String,
    ad_id: i64,
    ad_title: String,
    subject: String,
    body: String,
}

/// The promotions of one claim, by id (`None`: gone).
type Promotions = HashMap<i64, Option<Letter>>;

/// The promotion `id` with its host's name, from `cache` or the store.
async fn letter(
    state: &AppState,
    id: i64,
    cache: &mut Promotions,
) -> Result<Option<Letter>, AppError> {
    if let Some(known) = cache.get(&id) {
        return Ok(known.clone());
    }
    let letter = match state.store_call(state.store.promotion(id)).await? {
        None => None,
        Some(p) => {
            let host = state.store_call(state.store.host(&p.host_login)).await?;
            Some(Letter {
                host_name: host.map_or_else(|| p.host_login.clone(), |h| h.name),
                host_login: p.host_login,
                ad_id: p.ad_id,
                ad_title: p.ad_title,
                subject: p.subject,
                body: p.body,
            })
        }
    };
    cache.insert(id, letter.clone());
    Ok(letter)
}

/// Sends one claimed promotion mail and marks it queued.
async fn send_one(
    state: &AppState,
    job: &PromotionJob,
    cache: &mut Promotions,
) -> Result<(), AppError> {
    let Some(letter) = letter(state, job.promotion_id, cache).await? else {
        // Deleted since it was claimed (with its recipients): nothing to send.
        return Ok(());
    };
    let token = new_token()?;
    let base = state.base_url();
    let unsubscribe = format!("{base}/mall/unsubscribe/{token}");
    let text = format!(
        "Hello {name},\n\n{body}\n\n{title}: {base}/mall/ad/{ad}\n\n\
         You get this mail because you asked {mall} for promotions. To get no more: {unsubscribe}",
        name = job.name.trim(),
        body = letter.body.trim_end(),
        title = letter.ad_title,
        ad = letter.ad_id,
        mall = state.config.mall.name,
    );
    let mail = ChatMail {
        kind: KIND,
        login: &letter.host_login,
        name: &letter.host_name,
        to: &job.address,
        to_name: &job.name,
        opening: letter.body.trim(),
        subject: &letter.subject,
        text: &text,
        client_ip: None,
        headers: vec![
            ("List-Unsubscribe".to_owned(), format!("<{unsubscribe}>")),
            (
                "List-Unsubscribe-Post".to_owned(),
                "List-Unsubscribe=One-Click".to_owned(),
            ),
        ],
    };
    let sent = chatmail::send(state, mail).await?;
    state.metrics.promotion("sent");
    let hash = hash_token(&token);
    let queued = state.store.promotion_mail_queued(
        job.promotion_id,
        job.member_id,
        &state.node,
        &sent.room_id,
        &hash,
        state.clock.now_ms(),
    );
    if state.store_call(queued).await? {
        debug!(promotion = job.promotion_id, member = job.member_id, room = %room_tag(&sent.room_id), "promotion mail queued");
    } else {
        warn!(
            promotion = job.promotion_id,
            member = job.member_id,
            "promotion mail queued after our lease ran out; another node may send it too"
        );
    }
    Ok(())
}

// --- unsubscribe ------------------------------------------------------------------------------

/// A mall page for the unsubscribe routes.
async fn render(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    title: &str,
    main: &str,
) -> Result<Response, AppError> {
    let viewer = viewer(state, headers).await?;
    let (csrf, set_csrf) = csrf::form_token(state, headers)?;
    let html = page(
        state,
        &viewer,
        &MallPage {
            title,
            body_attrs: attr("data-page", "mall-unsubscribe"),
            scripts: &[],
            search: "",
            csrf: &csrf,
        },
        main,
    );
    Ok(html_response(status, set_csrf, html))
}

/// The page for a link that is not (or no longer) one of ours.
async fn dead_link(state: &AppState, headers: &HeaderMap) -> Result<Response, AppError> {
    let main = "<section class=\"card stack\"><h1>This link does not work</h1>\
         <p>It is incomplete or not one of ours. To stop promotions, turn them off in \
         <a href=\"/mall/account\">your account</a>.</p></section>";
    render(
        state,
        headers,
        StatusCode::NOT_FOUND,
        "Link not found",
        main,
    )
    .await
}

/// `GET /mall/unsubscribe/{token}`: what the button does, and the button.
async fn unsubscribe_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, AppError> {
    let token = path.map(|Path(t)| t).unwrap_or_default();
    if !is_token(&token) {
        return dead_link(&state, &headers).await;
    }
    let main = format!(
        "<section class=\"card stack\"><h1>No more promotions?</h1>\
         <p>{mall} mails you promotions from its shops because you asked for them. Press the \
         button to get no more.</p>\
         <form method=\"post\"{action} class=\"actions\">\
         <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\" id=\"unsubscribe\" class=\"primary\">Stop promotions</button>\
         </form><p class=\"muted\">Your chats and your account stay as they are. You can turn \
         promotions back on in your account.</p></section>",
        mall = escape(&state.config.mall.name),
        action = attr("action", &format!("/mall/unsubscribe/{token}")),
    );
    render(
        &state,
        &headers,
        StatusCode::OK,
        "No more promotions?",
        &main,
    )
    .await
}

/// `POST /mall/unsubscribe/{token}`: turns the member's promotions off (RFC 8058 one-click, or
/// the page's button). Repeating it answers the same.
async fn unsubscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, AppError> {
    let token = path.map(|Path(t)| t).unwrap_or_default();
    if !is_token(&token) {
        return dead_link(&state, &headers).await;
    }
    let hash = hash_token(&token);
    let call = state
        .store
        .unsubscribe_promotions(&hash, state.clock.now_ms());
    let Some(address) = state.store_call(call).await? else {
        return dead_link(&state, &headers).await;
    };
    info!(address = %address, "promotions turned off by unsubscribe link");
    let main = format!(
        "<section class=\"card stack\"><h1>Done</h1>\
         <p id=\"unsubscribed\"><strong class=\"address\">{a}</strong> gets no more promotions \
         from {mall}.</p><p class=\"muted\">To get them again, turn them on in \
         <a href=\"/mall/account\">your account</a>.</p></section>",
        a = escape(&address),
        mall = escape(&state.config.mall.name),
    );
    render(&state, &headers, StatusCode::OK, "Unsubscribed", &main).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_gives_a_second_s_worth_at_once_then_paces() {
        let start = Instant::now();
        let mut b = Bucket::new(2, start);
        assert_eq!(b.available(start), 1, "one mail at once");
        b.take();
        assert_eq!(b.available(start), 0);
        assert_eq!(b.wait(), Duration::from_secs(30));
        assert_eq!(b.available(start + Duration::from_secs(29)), 0);
        assert_eq!(b.available(start + Duration::from_secs(30)), 1);
        // A long pause saves up no more than the capacity.
        assert_eq!(b.available(start + Duration::from_secs(3_600)), 1);

        let mut fast = Bucket::new(600, start);
        assert_eq!(fast.available(start), 10, "ten a second");
        for _ in 0..10 {
            fast.take();
        }
        assert_eq!(fast.available(start + Duration::from_millis(500)), 5);
    }
}
