-- CHmail store, migration 0005 (PostgreSQL): the mall (S201-S219). Companies advertise ads
-- through their hosts; members ask about ads (inquiries) and receive promotions. Times are unix
-- MILLISECONDS. Case-insensitive keys (`name_key`, `category_key`) are lowercased by the store
-- itself, so that both backends compare the same way. Several chatd nodes share these tables:
-- counters move in single statements, promotion mails are claimed with a lease.

-- An advertiser. `name_key` is the lowercased name: an import run twice adds a company once.
CREATE TABLE companies (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT   NOT NULL,
    name_key   TEXT   NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL
);

-- A company's operators; `login` is the host's (lowercased) address and CHmail login. A login is
-- a host of one company only.
CREATE TABLE hosts (
    login      TEXT   PRIMARY KEY,
    company_id BIGINT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX hosts_company ON hosts (company_id, login);

-- An ad. An ad is active while not paused and `starts_ms <= now < ends_ms` (NULL: open ended).
-- `search` is the full-text vector of the title, description and category ('simple': no
-- stemming, no stop words, so that any language's words are found as written).
-- `impressions`, `clicks` and `last_shown_ms` are kept with the ad so that the fair rotation
-- (fewest impressions first, then shown longest ago) is one ordered read.
CREATE TABLE ads (
    id            BIGSERIAL PRIMARY KEY,
    company_id    BIGINT  NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    host_login    TEXT    NOT NULL REFERENCES hosts (login),
    title         TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    price_minor   BIGINT  NOT NULL CHECK (price_minor >= 0),
    currency      TEXT    NOT NULL,
    category      TEXT    NOT NULL,
    category_key  TEXT    NOT NULL,
    starts_ms     BIGINT,
    ends_ms       BIGINT,
    paused        BOOLEAN NOT NULL DEFAULT false,
    created_ms    BIGINT  NOT NULL,
    updated_ms    BIGINT  NOT NULL,
    impressions   BIGINT  NOT NULL DEFAULT 0 CHECK (impressions >= 0),
    clicks        BIGINT  NOT NULL DEFAULT 0 CHECK (clicks >= 0),
    last_shown_ms BIGINT,
    search        tsvector GENERATED ALWAYS AS (
        to_tsvector('simple', title || ' ' || description || ' ' || category)) STORED
);
-- A company's ads, newest first.
CREATE INDEX ads_company ON ads (company_id, created_ms);
-- The storefront: unpaused ads by category, newest first, and the rotation.
CREATE INDEX ads_category ON ads (category_key, created_ms) WHERE NOT paused;
CREATE INDEX ads_rotation ON ads (impressions, last_shown_ms NULLS FIRST, id) WHERE NOT paused;
-- Full-text search.
CREATE INDEX ads_search ON ads USING GIN (search);

-- An ad's pictures, in `position` order; the bytes live here (served with their content type).
CREATE TABLE ad_pictures (
    id           BIGSERIAL PRIMARY KEY,
    ad_id        BIGINT NOT NULL REFERENCES ads (id) ON DELETE CASCADE,
    position     BIGINT NOT NULL,
    content_type TEXT   NOT NULL
        CHECK (content_type IN ('image/png', 'image/jpeg', 'image/gif', 'image/webp')),
    bytes        BYTEA  NOT NULL
);
CREATE INDEX ad_pictures_ad ON ad_pictures (ad_id, position);

-- Impressions and clicks, once per (ad, kind, page view): the primary key makes counting
-- idempotent, and the counters on `ads` move only when a row is inserted.
CREATE TABLE ad_events (
    ad_id   BIGINT NOT NULL REFERENCES ads (id) ON DELETE CASCADE,
    kind    TEXT   NOT NULL CHECK (kind IN ('impression', 'click')),
    view_id TEXT   NOT NULL,
    at_ms   BIGINT NOT NULL,
    PRIMARY KEY (ad_id, kind, view_id)
);
CREATE INDEX ad_events_at ON ad_events (at_ms);

-- A member of the mall. `address` is lowercased and is also the member's CHmail login. Only the
-- argon2id hash of the password is stored. Unconfirmed members (`confirmed_ms` NULL) cannot sign
-- in and get no promotions.
CREATE TABLE members (
    id             BIGSERIAL PRIMARY KEY,
    address        TEXT    NOT NULL UNIQUE,
    name           TEXT    NOT NULL,
    password_hash  TEXT    NOT NULL,
    promotions     BOOLEAN NOT NULL DEFAULT false,
    confirmed_ms   BIGINT,
    created_ms     BIGINT  NOT NULL,
    last_signin_ms BIGINT
);
-- Choosing a promotion's recipients.
CREATE INDEX members_promotions ON members (id) WHERE promotions AND confirmed_ms IS NOT NULL;

-- Single-use links mailed to a member (only the SHA-256 of the token is stored): `confirm` proves
-- the address, `reset` allows a new password. Used tokens keep their row so that the per-account
-- mail limit still counts them.
CREATE TABLE member_tokens (
    token_hash TEXT   PRIMARY KEY,
    member_id  BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    purpose    TEXT   NOT NULL CHECK (purpose IN ('confirm', 'reset')),
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used_ms    BIGINT
);
CREATE INDEX member_tokens_member ON member_tokens (member_id, purpose, created_ms);

-- A product inquiry: the member's question, sent as a chat-capable mail whose room is `room_id`.
CREATE TABLE inquiries (
    id         BIGSERIAL PRIMARY KEY,
    member_id  BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    ad_id      BIGINT NOT NULL REFERENCES ads (id) ON DELETE CASCADE,
    room_id    TEXT   NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    question   TEXT   NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX inquiries_member ON inquiries (member_id, created_ms);
CREATE INDEX inquiries_ad ON inquiries (ad_id, created_ms);

-- A promotion a host wrote for one of their company's ads.
CREATE TABLE promotions (
    id         BIGSERIAL PRIMARY KEY,
    ad_id      BIGINT NOT NULL REFERENCES ads (id) ON DELETE CASCADE,
    host_login TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX promotions_ad ON promotions (ad_id, created_ms);

-- One promotion mail per recipient: `pending` until a chatd node claims it with a lease (owner,
-- until) and queues the mail (`queued`, with its room and the hash of its unsubscribe token), or
-- `skipped` when the member opted out before it went. A deleted member's rows go with them.
CREATE TABLE promotion_recipients (
    promotion_id     BIGINT NOT NULL REFERENCES promotions (id) ON DELETE CASCADE,
    member_id        BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    state            TEXT   NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'queued', 'skipped', 'failed')),
    room_id          TEXT   REFERENCES rooms (id) ON DELETE SET NULL,
    unsubscribe_hash TEXT   UNIQUE,
    lease_owner      TEXT,
    lease_until_ms   BIGINT,
    queued_ms        BIGINT,
    unsubscribed_ms  BIGINT,
    -- Failed attempts so far, and the last error: a mail that keeps failing is given up.
    attempts         BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error       TEXT,
    PRIMARY KEY (promotion_id, member_id)
);
-- Claiming: only pending rows are indexed, so sent history costs the claim nothing.
CREATE INDEX promotion_recipients_pending ON promotion_recipients (promotion_id, member_id)
    WHERE state = 'pending';
CREATE INDEX promotion_recipients_member ON promotion_recipients (member_id);

-- Ending a login's sessions (a new password, a deleted member).
CREATE INDEX sessions_login ON sessions (login);
