//! The SQL both mall backends share: the column lists and joins that say what an inquiry's
//! "answered" and a promotion's "chatted" mean, written once so that the two stores cannot
//! drift apart. Each list is read by the row function of the same name in each backend.

/// The columns `company_row` reads.
pub(super) const COMPANY_COLS: &str = "id, name, created_ms";

/// The columns `host_row` reads.
pub(super) const HOST_COLS: &str = "login, company_id, name, created_ms";

/// The ads with their company.
pub(super) const AD_FROM: &str = "ads a JOIN companies c ON c.id = a.company_id";

/// The columns `member_row` reads.
pub(super) const MEMBER_COLS: &str =
    "id, address, name, password_hash, promotions, confirmed_ms, created_ms, last_signin_ms";

/// The columns `inquiry_row` reads, from `INQUIRY_FROM`. Answered: someone other than the
/// member (the host) joined the room, or wrote in it (system messages have no author).
pub(super) const INQUIRY_COLS: &str = "i.id, i.member_id, m.name, m.address, i.ad_id, a.title,
    a.host_login, i.room_id, r.port, i.question, i.created_ms,
    EXISTS (SELECT 1 FROM room_participants p
            WHERE p.room_id = i.room_id AND p.address <> m.address
              AND p.joined_at IS NOT NULL)
    OR EXISTS (SELECT 1 FROM messages g
               WHERE g.room_id = i.room_id AND g.author <> '' AND g.author <> m.address)";

/// The inquiries with their member, ad and room.
pub(super) const INQUIRY_FROM: &str = "inquiries i JOIN members m ON m.id = i.member_id
    JOIN ads a ON a.id = i.ad_id JOIN rooms r ON r.id = i.room_id";

/// The columns `promotion_row` reads, from `promotions o JOIN ads a`. Chatted: the
/// recipient joined the room of their mail.
pub(super) const PROMOTION_COLS: &str = "o.id, o.ad_id, a.title, o.host_login, o.subject, o.body,
    o.created_ms,
    (SELECT COUNT(*) FROM promotion_recipients t WHERE t.promotion_id = o.id),
    (SELECT COUNT(*) FROM promotion_recipients t
     WHERE t.promotion_id = o.id AND t.state = 'queued'),
    (SELECT COUNT(*) FROM promotion_recipients t JOIN members m ON m.id = t.member_id
     WHERE t.promotion_id = o.id AND EXISTS (
         SELECT 1 FROM room_participants p
         WHERE p.room_id = t.room_id AND p.address = m.address AND p.joined_at IS NOT NULL)),
    (SELECT COUNT(*) FROM promotion_recipients t
     WHERE t.promotion_id = o.id AND t.unsubscribed_ms IS NOT NULL),
    (SELECT COUNT(*) FROM promotion_recipients t
     WHERE t.promotion_id = o.id AND t.state = 'failed')";
