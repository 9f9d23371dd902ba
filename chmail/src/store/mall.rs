//! The mall side of the store (S201-S219): companies and their hosts, ads with pictures, ad
//! events, members, product inquiries and promotions.
//!
//! The store stores, counts and claims; chatd decides. Passwords reach the store only as argon2id
//! hashes and tokens only as SHA-256 hashes, both made by chatd. Times are unix **milliseconds**.
//! Addresses compare trimmed and lowercased, as participants are stored; a host's login and a
//! member's CHmail login are their addresses. Promotion mails are claimed with a lease so that
//! several chatd nodes can send one promotion without sending any mail twice.

use std::{fmt, str::FromStr};

use super::{check_text, Result, StoreError};

/// Longest company name, in bytes.
pub const MAX_COMPANY_NAME_LEN: usize = 200;
/// Longest display name of a host or member, in bytes.
pub const MAX_PERSON_NAME_LEN: usize = 100;
/// Longest ad title, in bytes.
pub const MAX_TITLE_LEN: usize = 200;
/// Longest ad description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 10_000;
/// Longest category name, in bytes.
pub const MAX_CATEGORY_LEN: usize = 64;
/// Highest price accepted, in minor units (cents): ten billion in any currency.
pub const MAX_PRICE_MINOR: i64 = 1_000_000_000_000;
/// Most pictures one ad holds.
pub const MAX_PICTURES_PER_AD: usize = 8;
/// Largest picture accepted by the store, in bytes; chatd's own limit may be lower.
pub const MAX_PICTURE_LEN: usize = 4 * 1024 * 1024;
/// Longest search text, in bytes; a longer one is refused by chatd before it reaches the store.
pub const MAX_SEARCH_LEN: usize = 200;
/// Longest inquiry question, in bytes.
pub const MAX_QUESTION_LEN: usize = 4_000;
/// Longest promotion subject, in bytes.
pub const MAX_PROMOTION_SUBJECT_LEN: usize = 200;
/// Longest promotion text, in bytes.
pub const MAX_PROMOTION_BODY_LEN: usize = 10_000;
/// Longest password hash (a PHC string), in bytes.
pub const MAX_PASSWORD_HASH_LEN: usize = 256;
/// Most ad ids one [`MallStore::record_impressions`] call takes: more than any page shows.
pub const MAX_IMPRESSION_BATCH: usize = 200;
/// Longest view id (a random token chatd makes per rendered page), in bytes.
pub const MAX_VIEW_ID_LEN: usize = 64;

/// An advertiser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Company {
    /// Its id.
    pub id: i64,
    /// Its name (unique, compared case-insensitively).
    pub name: String,
    /// When it was added (ms).
    pub created_ms: i64,
}

/// An operator of a company: a CHmail login who answers for the company's ads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The login, which is the host's address (lowercased); unique across companies.
    pub login: String,
    /// The company.
    pub company_id: i64,
    /// The display name.
    pub name: String,
    /// When the host was added (ms).
    pub created_ms: i64,
}

/// The fields of an ad that its host writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdFields {
    /// The host who answers for the ad: must be a host of the ad's company.
    pub host_login: String,
    /// A short title (1 to [`MAX_TITLE_LEN`] bytes).
    pub title: String,
    /// The description (up to [`MAX_DESCRIPTION_LEN`] bytes; plain text).
    pub description: String,
    /// The price in minor units (cents), 0 to [`MAX_PRICE_MINOR`].
    pub price_minor: i64,
    /// An ISO 4217 code: three ASCII capital letters (`EUR`, `USD`, `KRW`).
    pub currency: String,
    /// The category (1 to [`MAX_CATEGORY_LEN`] bytes), compared case-insensitively.
    pub category: String,
    /// The ad shows from this time on (ms); `None`: at once.
    pub starts_ms: Option<i64>,
    /// The ad shows until this time (ms, exclusive); `None`: no end. Must be after `starts_ms`.
    pub ends_ms: Option<i64>,
    /// A paused ad does not show, whatever its period.
    pub paused: bool,
}

/// An ad as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ad {
    /// Its id.
    pub id: i64,
    /// The advertiser.
    pub company_id: i64,
    /// The advertiser's name.
    pub company_name: String,
    /// What the host wrote.
    pub fields: AdFields,
    /// Its pictures' ids, in display order.
    pub pictures: Vec<i64>,
    /// Impressions counted (one per view that showed it).
    pub impressions: i64,
    /// Clicks counted (one per view whose link was followed).
    pub clicks: i64,
    /// When it was created (ms).
    pub created_ms: i64,
    /// When its fields last changed (ms).
    pub updated_ms: i64,
}

impl Ad {
    /// Whether the ad shows at `now_ms`: not paused and inside its period.
    pub fn is_active(&self, now_ms: i64) -> bool {
        !self.fields.paused
            && self.fields.starts_ms.is_none_or(|s| s <= now_ms)
            && self.fields.ends_ms.is_none_or(|e| now_ms < e)
    }
}

/// A picture of an ad. chatd checks the bytes (a PNG, JPEG, GIF or WebP by its content) and
/// its size before it stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Its id.
    pub id: i64,
    /// The ad.
    pub ad_id: i64,
    /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
    pub content_type: String,
    /// The file (at most [`MAX_PICTURE_LEN`] bytes).
    pub bytes: Vec<u8>,
}

/// A search among the active ads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdQuery {
    /// Words to look for in titles, descriptions and categories (PostgreSQL full-text search;
    /// on SQLite every word must occur, case-insensitively). Empty: every active ad.
    pub text: String,
    /// Only this category (case-insensitive), when set.
    pub category: Option<String>,
    /// The time that decides which ads are active (ms).
    pub now_ms: i64,
    /// Rows to skip.
    pub offset: u32,
    /// Rows to return (cut to [`super::MAX_PAGE`]).
    pub limit: u32,
}

/// One page of a search and how many ads matched in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdPage {
    /// The ads of this page: best match first for a text search, newest first otherwise.
    pub ads: Vec<Ad>,
    /// How many active ads matched.
    pub total: u64,
}

/// A new member, as the sign-up form gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    /// The address (stored lowercased; unique).
    pub address: String,
    /// The display name (1 to [`MAX_PERSON_NAME_LEN`] bytes).
    pub name: String,
    /// The argon2id hash of the password, a PHC string.
    pub password_hash: String,
    /// Whether the member wants promotions.
    pub promotions: bool,
    /// When they signed up (ms).
    pub created_ms: i64,
}

/// A member of the mall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MallMember {
    /// Its id.
    pub id: i64,
    /// The address (lowercased): also the member's CHmail login.
    pub address: String,
    /// The display name.
    pub name: String,
    /// The argon2id hash of the password.
    pub password_hash: String,
    /// Whether the member wants promotions.
    pub promotions: bool,
    /// When the address was confirmed by a mailed link (ms); unconfirmed members cannot sign in.
    pub confirmed_ms: Option<i64>,
    /// When they signed up (ms).
    pub created_ms: i64,
    /// When they last signed in (ms).
    pub last_signin_ms: Option<i64>,
}

/// What a member token proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// The member owns the address (the sign-up link).
    Confirm,
    /// The member may set a new password (the reset link).
    Reset,
}

impl TokenPurpose {
    /// The name stored: `confirm` or `reset`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Confirm => "confirm",
            TokenPurpose::Reset => "reset",
        }
    }
}

impl fmt::Display for TokenPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TokenPurpose {
    type Err = StoreError;

    /// Parses `confirm` or `reset`.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for anything else.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "confirm" => Ok(TokenPurpose::Confirm),
            "reset" => Ok(TokenPurpose::Reset),
            _ => Err(StoreError::Invalid(format!(
                "token purpose {s:?} is not confirm or reset"
            ))),
        }
    }
}

/// A product inquiry to record: the room was already created by
/// [`super::Store::record_submission`] with the member as sender and the host as `To`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInquiry {
    /// The member who asks.
    pub member_id: i64,
    /// The ad asked about.
    pub ad_id: i64,
    /// The chat room of the inquiry mail.
    pub room_id: String,
    /// The question (1 to [`MAX_QUESTION_LEN`] bytes).
    pub question: String,
    /// When it was asked (ms).
    pub created_ms: i64,
}

/// A product inquiry as a host or its member sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inquiry {
    /// Its id.
    pub id: i64,
    /// The member who asked.
    pub member_id: i64,
    /// The member's display name.
    pub member_name: String,
    /// The member's address.
    pub member_address: String,
    /// The ad.
    pub ad_id: i64,
    /// The ad's title.
    pub ad_title: String,
    /// The host the ad names.
    pub host_login: String,
    /// The chat room.
    pub room_id: String,
    /// The room's chat port (for its link).
    pub port: u16,
    /// The question.
    pub question: String,
    /// When it was asked (ms).
    pub created_ms: i64,
    /// Whether the host answered: joined the room or wrote in it (by chat or by mail).
    pub answered: bool,
}

/// A promotion a host writes for one of their company's ads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPromotion {
    /// The ad promoted: its company must be the host's.
    pub ad_id: i64,
    /// The host who sends it (the chat goes back to them).
    pub host_login: String,
    /// The subject (1 to [`MAX_PROMOTION_SUBJECT_LEN`] bytes).
    pub subject: String,
    /// The text (1 to [`MAX_PROMOTION_BODY_LEN`] bytes).
    pub body: String,
    /// When it was written (ms).
    pub created_ms: i64,
}

/// A promotion and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// Its id.
    pub id: i64,
    /// The ad.
    pub ad_id: i64,
    /// The ad's title.
    pub ad_title: String,
    /// The sender.
    pub host_login: String,
    /// The subject.
    pub subject: String,
    /// The text.
    pub body: String,
    /// When it was written (ms).
    pub created_ms: i64,
    /// Members it goes to (those opted in and confirmed when it was written).
    pub recipients: u64,
    /// Mails queued so far.
    pub sent: u64,
    /// Recipients who opened the chat (joined the room of their mail).
    pub chatted: u64,
    /// Recipients who unsubscribed through this promotion's mail.
    pub unsubscribed: u64,
    /// Mails given up after repeated failures.
    pub failed: u64,
}

/// One promotion mail to send, claimed with a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionJob {
    /// The promotion.
    pub promotion_id: i64,
    /// The member.
    pub member_id: i64,
    /// The member's address.
    pub address: String,
    /// The member's display name.
    pub name: String,
    /// Failed attempts at this mail so far ([`MallStore::promotion_mail_failed`]).
    pub attempts: u32,
}

/// The mall's tables, over one backend.
///
/// Every method that takes a host's login or a member's id for a change checks ownership in the
/// same statement: a host can change only their company's ads, a member only their own data.
/// Such a call answers `false`/`None` for someone else's row, exactly as for a missing one.
#[async_trait::async_trait]
pub trait MallStore: Send + Sync {
    // --- companies and hosts -------------------------------------------------------------

    /// Adds a company, or returns the one with the same name (case-insensitive), so that an
    /// import run twice adds it once. The boolean is true when this call added it.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an empty or too long name; otherwise a backend error.
    async fn add_company(&self, name: &str, now_ms: i64) -> Result<(Company, bool)>;

    /// The company `id`.
    ///
    /// # Errors
    /// A backend error.
    async fn company(&self, id: i64) -> Result<Option<Company>>;

    /// The company named `name` (case-insensitive).
    ///
    /// # Errors
    /// A backend error.
    async fn company_by_name(&self, name: &str) -> Result<Option<Company>>;

    /// Every company, by name.
    ///
    /// # Errors
    /// A backend error.
    async fn companies(&self) -> Result<Vec<Company>>;

    /// Adds `login` as a host of `company_id`, or updates the name of the same host of the same
    /// company. The boolean is true when this call added it.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad login or name, a missing company, or a login that is
    /// already a host of another company; otherwise a backend error.
    async fn add_host(
        &self,
        company_id: i64,
        login: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<(Host, bool)>;

    /// The host `login`, if it is one.
    ///
    /// # Errors
    /// A backend error.
    async fn host(&self, login: &str) -> Result<Option<Host>>;

    /// The hosts of a company, by login.
    ///
    /// # Errors
    /// A backend error.
    async fn hosts_of(&self, company_id: i64) -> Result<Vec<Host>>;

    // --- ads, pictures and their events ----------------------------------------------------

    /// Adds an ad of `company_id`.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad field (the message names it), a missing company or a
    /// host who is not the company's; otherwise a backend error.
    async fn create_ad(&self, company_id: i64, fields: &AdFields, now_ms: i64) -> Result<i64>;

    /// Replaces the fields of ad `id` if it belongs to `company_id`; false when it does not (or
    /// does not exist).
    ///
    /// # Errors
    /// As [`create_ad`](MallStore::create_ad).
    async fn update_ad(
        &self,
        id: i64,
        company_id: i64,
        fields: &AdFields,
        now_ms: i64,
    ) -> Result<bool>;

    /// Pauses or resumes ad `id` if it belongs to `company_id`.
    ///
    /// # Errors
    /// A backend error.
    async fn set_ad_paused(&self, id: i64, company_id: i64, paused: bool) -> Result<bool>;

    /// The ad `id`, active or not.
    ///
    /// # Errors
    /// A backend error.
    async fn ad(&self, id: i64) -> Result<Option<Ad>>;

    /// Every ad of a company (active or not), newest first.
    ///
    /// # Errors
    /// A backend error.
    async fn ads_of(&self, company_id: i64) -> Result<Vec<Ad>>;

    /// Searches the active ads.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a text longer than [`MAX_SEARCH_LEN`]; otherwise a backend
    /// error. Characters with a meaning to the search engine are taken literally.
    async fn search_ads(&self, query: &AdQuery) -> Result<AdPage>;

    /// Up to `limit` active ads for a page, rotated fairly: those shown least so far first
    /// (fewest impressions; ties broken by the ad shown longest ago, then by id), so that every
    /// active ad gets its turn as impressions are counted.
    ///
    /// # Errors
    /// A backend error.
    async fn rotate_ads(&self, category: Option<&str>, now_ms: i64, limit: u32) -> Result<Vec<Ad>>;

    /// The categories with active ads and how many each has, by name.
    ///
    /// # Errors
    /// A backend error.
    async fn categories(&self, now_ms: i64) -> Result<Vec<(String, u64)>>;

    /// Counts one impression for each of `ad_ids` shown by the page view `view_id`: an ad shown
    /// twice by one view, or a view recorded twice, counts once. Returns how many were counted.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad view id or more than [`MAX_IMPRESSION_BATCH`] ids;
    /// otherwise a backend error. Ids of missing ads are skipped.
    async fn record_impressions(&self, view_id: &str, ad_ids: &[i64], now_ms: i64) -> Result<u64>;

    /// Counts a click on `ad_id` from the page view `view_id`, once per (view, ad). True when
    /// this call counted it.
    ///
    /// # Errors
    /// As [`record_impressions`](MallStore::record_impressions).
    async fn record_click(&self, view_id: &str, ad_id: i64, now_ms: i64) -> Result<bool>;

    /// Adds a picture at the end of ad `ad_id`'s pictures if the ad belongs to `company_id` and
    /// has fewer than [`MAX_PICTURES_PER_AD`]; `None` otherwise.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an empty or too large picture or an unknown content type;
    /// otherwise a backend error.
    async fn add_picture(
        &self,
        ad_id: i64,
        company_id: i64,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Option<i64>>;

    /// Removes picture `id` of ad `ad_id` if the ad belongs to `company_id`.
    ///
    /// # Errors
    /// A backend error.
    async fn delete_picture(&self, id: i64, ad_id: i64, company_id: i64) -> Result<bool>;

    /// The picture `id`.
    ///
    /// # Errors
    /// A backend error.
    async fn picture(&self, id: i64) -> Result<Option<Picture>>;

    // --- members ---------------------------------------------------------------------------

    /// Adds a member; `None` when the address is taken (by a member, confirmed or not).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad field; otherwise a backend error.
    async fn create_member(&self, member: &NewMember) -> Result<Option<MallMember>>;

    /// The member `id`.
    ///
    /// # Errors
    /// A backend error.
    async fn member(&self, id: i64) -> Result<Option<MallMember>>;

    /// The member with this address (compared lowercased).
    ///
    /// # Errors
    /// A backend error.
    async fn member_by_address(&self, address: &str) -> Result<Option<MallMember>>;

    /// Records a single-use token (its hash) for member `member_id`, valid until `expires_ms`.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad hash or a missing member; otherwise a backend error.
    async fn create_member_token(
        &self,
        token_hash: &str,
        member_id: i64,
        purpose: TokenPurpose,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<()>;

    /// Uses the token once: the member it belongs to when it exists, has this purpose, has not
    /// expired and was not used; `None` otherwise. Using a confirm token also confirms the
    /// member (`confirmed_ms`), in the same transaction, without asking for the password: the
    /// confirm page uses [`MallStore::confirm_member`] instead; this is for the demo and tests.
    ///
    /// # Errors
    /// A backend error.
    async fn use_member_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now_ms: i64,
    ) -> Result<Option<MallMember>>;

    /// The member a live token of `purpose` belongs to (it exists, has not expired and was not
    /// used), without using it: the confirm page checks the typed password against the
    /// member's hash before it calls [`MallStore::confirm_member`].
    ///
    /// # Errors
    /// A backend error.
    async fn member_of_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now_ms: i64,
    ) -> Result<Option<MallMember>>;

    /// Uses a confirm token once and confirms its member, only while the member's password
    /// hash is still `password_hash` (the hash the confirming person's password was checked
    /// against): a sign-up that replaced the password in between makes it refuse. Both in one
    /// transaction. The member when confirmed; `None` when the token is unknown, used, expired
    /// or the password hash changed (the token stays unused then).
    ///
    /// # Errors
    /// A backend error.
    async fn confirm_member(
        &self,
        token_hash: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<Option<MallMember>>;

    /// A new sign-up for the address of the unconfirmed member `member_id`: replaces their
    /// name, password hash and promotion opt-in, only while the member is unconfirmed. False
    /// (and nothing changed) when the member is confirmed or gone: a sign-up never changes a
    /// confirmed account, even one confirmed a moment before.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad name or hash; otherwise a backend error.
    async fn renew_signup(
        &self,
        member_id: i64,
        name: &str,
        password_hash: &str,
        promotions: bool,
    ) -> Result<bool>;

    /// How many tokens of `purpose` member `member_id` was given since `since_ms` (the mail
    /// rate limit per account).
    ///
    /// # Errors
    /// A backend error.
    async fn count_member_tokens(
        &self,
        member_id: i64,
        purpose: TokenPurpose,
        since_ms: i64,
    ) -> Result<u32>;

    /// Sets a member's password hash and ends all their sessions (a reset signs out everywhere).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad hash; otherwise a backend error.
    async fn set_member_password(&self, member_id: i64, password_hash: &str) -> Result<bool>;

    /// Changes a member's display name and promotion opt-in.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad name; otherwise a backend error.
    async fn update_member(&self, member_id: i64, name: &str, promotions: bool) -> Result<bool>;

    /// Records a sign-in.
    ///
    /// # Errors
    /// A backend error.
    async fn member_signed_in(&self, member_id: i64, now_ms: i64) -> Result<()>;

    /// Deletes a member and their data: the member row, their tokens, their inquiries, their
    /// promotion recipient rows and the sessions of their login. The chat rooms of their mails
    /// stay (the hosts received those mails), but the member's address is no longer a member.
    ///
    /// # Errors
    /// A backend error.
    async fn delete_member(&self, member_id: i64) -> Result<bool>;

    // --- inquiries -------------------------------------------------------------------------

    /// Records an inquiry.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad question, a missing member, ad or room; otherwise a
    /// backend error.
    async fn add_inquiry(&self, inquiry: &NewInquiry) -> Result<i64>;

    /// The inquiries to the hosts of `company_id`, newest first, with paging.
    ///
    /// # Errors
    /// A backend error.
    async fn inquiries_of_company(
        &self,
        company_id: i64,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<Inquiry>>;

    /// The inquiries of member `member_id`, newest first.
    ///
    /// # Errors
    /// A backend error.
    async fn inquiries_of_member(&self, member_id: i64, limit: u32) -> Result<Vec<Inquiry>>;

    /// How many inquiries member `member_id` made since `since_ms` (the limit per account).
    ///
    /// # Errors
    /// A backend error.
    async fn count_inquiries(&self, member_id: i64, since_ms: i64) -> Result<u32>;

    // --- promotions ------------------------------------------------------------------------

    /// Records a promotion and, in the same transaction, its recipients: every confirmed member
    /// who opted in at that moment. Returns the promotion's id and its number of recipients.
    /// `None` when the ad is not of the host's company.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad subject or text or a login that is not a host;
    /// otherwise a backend error.
    async fn create_promotion(&self, promotion: &NewPromotion) -> Result<Option<(i64, u64)>>;

    /// How many members a promotion written now would go to: the confirmed members who opted in.
    ///
    /// # Errors
    /// A backend error.
    async fn promotion_audience(&self) -> Result<u64>;

    /// The promotions of the hosts of `company_id`, newest first, with their counts.
    ///
    /// # Errors
    /// A backend error.
    async fn promotions_of_company(&self, company_id: i64, limit: u32) -> Result<Vec<Promotion>>;

    /// The promotion `id`.
    ///
    /// # Errors
    /// A backend error.
    async fn promotion(&self, id: i64) -> Result<Option<Promotion>>;

    /// Claims up to `limit` unsent promotion mails (oldest promotion first) for `owner` until
    /// `lease_until_ms`. Recipients who opted out or were deleted since are skipped for good.
    ///
    /// # Errors
    /// A backend error.
    async fn claim_promotion_mails(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<PromotionJob>>;

    /// Marks a claimed promotion mail as queued: its room and the hash of its unsubscribe token.
    /// False when `owner` no longer holds the lease (another node took it).
    ///
    /// # Errors
    /// A backend error.
    async fn promotion_mail_queued(
        &self,
        promotion_id: i64,
        member_id: i64,
        owner: &str,
        room_id: &str,
        unsubscribe_hash: &str,
        now_ms: i64,
    ) -> Result<bool>;

    /// Deletes ad events (the per-view rows that make counting idempotent; the counters on the
    /// ads stay) with `at_ms < before_ms`, and member tokens that expired before `before_ms`.
    /// Returns how many rows went. A click from a page view older than that counts again, so
    /// prune well after any page is still open (chatd keeps a week).
    ///
    /// # Errors
    /// A backend error.
    async fn prune_mall(&self, before_ms: i64) -> Result<u64>;

    /// Records a failed attempt at a claimed promotion mail (its `attempts` grow by one and
    /// `error` is kept, cut to a thousand bytes): with `retry_at_ms` the mail waits until then,
    /// without it the mail is given up for good (counted as failed). False when `owner` no
    /// longer holds the lease.
    ///
    /// # Errors
    /// A backend error.
    async fn promotion_mail_failed(
        &self,
        promotion_id: i64,
        member_id: i64,
        owner: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<bool>;

    /// One-click unsubscribe from a promotion mail: turns the member's opt-in off and counts the
    /// unsubscribe on that promotion. The member's address when the token was known (repeating
    /// it is harmless and answers the same), `None` otherwise.
    ///
    /// # Errors
    /// A backend error.
    async fn unsubscribe_promotions(
        &self,
        unsubscribe_hash: &str,
        now_ms: i64,
    ) -> Result<Option<String>>;
}

/// Checks the fields of an ad, trimming the texts and uppercasing the currency. The host's
/// company is checked by the backend.
///
/// # Errors
/// [`StoreError::Invalid`] naming the first bad field.
pub fn check_ad_fields(fields: &AdFields) -> Result<AdFields> {
    let mut f = fields.clone();
    f.host_login = f.host_login.trim().to_lowercase();
    f.title = f.title.trim().to_owned();
    f.description = f.description.trim().to_owned();
    f.category = f.category.trim().to_owned();
    f.currency = f.currency.trim().to_ascii_uppercase();
    check_nonempty("title", &f.title, MAX_TITLE_LEN)?;
    check_text("description", &f.description, MAX_DESCRIPTION_LEN)?;
    check_nonempty("category", &f.category, MAX_CATEGORY_LEN)?;
    if f.currency.len() != 3 || !f.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(StoreError::Invalid(
            "currency must be three letters (EUR, USD, KRW)".into(),
        ));
    }
    if !(0..=MAX_PRICE_MINOR).contains(&f.price_minor) {
        return Err(StoreError::Invalid(format!(
            "price must be between 0 and {MAX_PRICE_MINOR} minor units"
        )));
    }
    if let (Some(s), Some(e)) = (f.starts_ms, f.ends_ms) {
        if e <= s {
            return Err(StoreError::Invalid(
                "the end must be after the start".into(),
            ));
        }
    }
    Ok(f)
}

/// Rejects an empty (after trimming) or too long text.
///
/// # Errors
/// [`StoreError::Invalid`] naming `what`.
pub fn check_nonempty(what: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(StoreError::Invalid(format!("{what} is empty")));
    }
    check_text(what, value, max)
}

/// The picture types the mall serves.
pub const PICTURE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// A company name as stored and its case-insensitive key.
pub(crate) fn normalize_company_name(name: &str) -> Result<(String, String)> {
    let name = name.trim();
    check_nonempty("company name", name, MAX_COMPANY_NAME_LEN)?;
    Ok((name.to_owned(), name.to_lowercase()))
}

/// A host's or member's display name as stored (trimmed).
pub(crate) fn normalize_person_name(name: &str) -> Result<String> {
    let name = name.trim();
    check_nonempty("name", name, MAX_PERSON_NAME_LEN)?;
    Ok(name.to_owned())
}

/// A category as compared: trimmed and lowercased.
pub(crate) fn category_key(category: &str) -> String {
    category.trim().to_lowercase()
}

/// What a text search on SQLite looks in: the lowercased title, description and category.
pub(crate) fn search_text(fields: &AdFields) -> String {
    format!(
        "{}\n{}\n{}",
        fields.title, fields.description, fields.category
    )
    .to_lowercase()
}

/// The lowercased, distinct words of a search text.
///
/// # Errors
/// [`StoreError::Invalid`] for a text longer than [`MAX_SEARCH_LEN`].
pub(crate) fn search_words(text: &str) -> Result<Vec<String>> {
    check_text("search text", text, MAX_SEARCH_LEN)?;
    let mut words: Vec<String> = Vec::new();
    for word in text.to_lowercase().split_whitespace() {
        if !words.iter().any(|w| w == word) {
            words.push(word.to_owned());
        }
    }
    Ok(words)
}

/// Checks a page view id.
pub(crate) fn check_view_id(view_id: &str) -> Result<()> {
    check_nonempty("view id", view_id, MAX_VIEW_ID_LEN)
}

/// The distinct ad ids of one [`MallStore::record_impressions`] call, in increasing order.
pub(crate) fn impression_batch(view_id: &str, ad_ids: &[i64]) -> Result<Vec<i64>> {
    check_view_id(view_id)?;
    if ad_ids.len() > MAX_IMPRESSION_BATCH {
        return Err(StoreError::Invalid(format!(
            "{} ads in one impression batch, more than {MAX_IMPRESSION_BATCH}",
            ad_ids.len()
        )));
    }
    let mut ids = ad_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Checks a picture before it is stored.
pub(crate) fn check_picture(content_type: &str, bytes: &[u8]) -> Result<()> {
    if !PICTURE_TYPES.contains(&content_type) {
        return Err(StoreError::Invalid(format!(
            "picture type {content_type:?} is not one of {}",
            PICTURE_TYPES.join(", ")
        )));
    }
    if bytes.is_empty() {
        return Err(StoreError::Invalid("picture is empty".into()));
    }
    if bytes.len() > MAX_PICTURE_LEN {
        return Err(StoreError::Invalid(format!(
            "picture is {} bytes, more than {MAX_PICTURE_LEN}",
            bytes.len()
        )));
    }
    Ok(())
}

/// Checks a password hash.
pub(crate) fn check_password_hash(hash: &str) -> Result<()> {
    check_nonempty("password hash", hash, MAX_PASSWORD_HASH_LEN)
}

/// A new member as stored: address lowercased, name trimmed.
pub(crate) fn normalize_member(member: &NewMember) -> Result<NewMember> {
    let address = super::chat::normalize_address("address", &member.address)?;
    let name = normalize_person_name(&member.name)?;
    check_password_hash(&member.password_hash)?;
    Ok(NewMember {
        address,
        name,
        ..member.clone()
    })
}

/// An inquiry as stored: the question trimmed.
pub(crate) fn normalize_inquiry(inquiry: &NewInquiry) -> Result<NewInquiry> {
    let question = inquiry.question.trim();
    check_nonempty("question", question, MAX_QUESTION_LEN)?;
    super::chat::check_room_id(&inquiry.room_id)?;
    Ok(NewInquiry {
        question: question.to_owned(),
        ..inquiry.clone()
    })
}

/// A promotion as stored: the host's login lowercased, subject and text trimmed.
pub(crate) fn normalize_promotion(promotion: &NewPromotion) -> Result<NewPromotion> {
    let host_login = super::chat::normalize_address("host login", &promotion.host_login)?;
    let subject = promotion.subject.trim();
    check_nonempty("subject", subject, MAX_PROMOTION_SUBJECT_LEN)?;
    let body = promotion.body.trim();
    check_nonempty("text", body, MAX_PROMOTION_BODY_LEN)?;
    Ok(NewPromotion {
        host_login,
        subject: subject.to_owned(),
        body: body.to_owned(),
        ..promotion.clone()
    })
}

/// Checks what [`MallStore::promotion_mail_queued`] records.
pub(crate) fn check_queued(owner: &str, room_id: &str, unsubscribe_hash: &str) -> Result<()> {
    super::chat::check_owner(owner)?;
    super::chat::check_room_id(room_id)?;
    super::chat::check_hash("unsubscribe hash", unsubscribe_hash)
}

/// A stored count as the `u64` of the interface.
pub(crate) fn to_total(n: i64) -> Result<u64> {
    u64::try_from(n)
        .map_err(|_| StoreError::Backend(format!("count {n} in the database is out of range")))
}

/// Picture ids read back as `id,id,..` (SQLite's `group_concat`).
pub(crate) fn parse_ids(list: Option<&str>) -> Result<Vec<i64>> {
    list.unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| StoreError::Backend(format!("picture id {s:?} is not a number")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> AdFields {
        AdFields {
            host_login: " Shop@Example.com ".into(),
            title: " Tea pot ".into(),
            description: "Cast iron.".into(),
            price_minor: 2_500,
            currency: "eur".into(),
            category: "Kitchen".into(),
            starts_ms: None,
            ends_ms: None,
            paused: false,
        }
    }

    #[test]
    fn ad_fields_are_trimmed_and_the_currency_uppercased() {
        let f = check_ad_fields(&fields()).unwrap();
        assert_eq!(f.title, "Tea pot");
        assert_eq!(f.currency, "EUR");
        assert_eq!(f.host_login, "shop@example.com");
    }

    #[test]
    fn bad_ad_fields_are_named() {
        type Spoil = fn(&mut AdFields);
        let cases: [(Spoil, &str); 5] = [
            (|f| f.title = "  ".into(), "title"),
            (|f| f.currency = "EURO".into(), "currency"),
            (|f| f.price_minor = -1, "price"),
            (|f| f.category = String::new(), "category"),
            (
                |f| {
                    f.starts_ms = Some(10);
                    f.ends_ms = Some(10);
                },
                "end",
            ),
        ];
        for (spoil, word) in cases {
            let mut f = fields();
            spoil(&mut f);
            let err = check_ad_fields(&f).unwrap_err().to_string();
            assert!(err.contains(word), "{err} should name {word}");
        }
    }

    #[test]
    fn an_ad_is_active_inside_its_period_unless_paused() {
        let mut ad = Ad {
            id: 1,
            company_id: 1,
            company_name: "Shop".into(),
            fields: fields(),
            pictures: vec![],
            impressions: 0,
            clicks: 0,
            created_ms: 0,
            updated_ms: 0,
        };
        ad.fields.starts_ms = Some(100);
        ad.fields.ends_ms = Some(200);
        assert!(!ad.is_active(99));
        assert!(ad.is_active(100));
        assert!(!ad.is_active(200));
        ad.fields.paused = true;
        assert!(!ad.is_active(150));
    }

    #[test]
    fn token_purposes_round_trip() {
        for p in [TokenPurpose::Confirm, TokenPurpose::Reset] {
            assert_eq!(p.as_str().parse::<TokenPurpose>().unwrap(), p);
        }
        assert!("other".parse::<TokenPurpose>().is_err());
    }
}
