//! The mall side of the embedded store: [`MallStore`] for [`SqliteStore`].
//!
//! Every write runs in a `BEGIN IMMEDIATE` transaction, so that two processes on one file never
//! interleave a check and the write that depends on it (the host is the company's, the ad has
//! room for another picture, the token is unused, the promotion mail is still leased). A text
//! search looks for every word in a lowercased copy of the ad's texts with `instr`, so that
//! `%`, `_` and any other character of the input are taken literally.

use rusqlite::{types::Value, Connection, ErrorCode, OptionalExtension, Row, Transaction};

use super::{
    chat::{check_hash, check_owner, normalize_address, page, to_count},
    mail_loop::clean_error,
    mall::{
        category_key, check_ad_fields, check_password_hash, check_picture, check_queued,
        check_view_id, impression_batch, normalize_company_name, normalize_inquiry,
        normalize_member, normalize_person_name, normalize_promotion, parse_ids, search_text,
        search_words, to_total, Ad, AdFields, AdPage, AdQuery, Company, Host, Inquiry, MallMember,
        MallStore, NewInquiry, NewMember, NewPromotion, Picture, Promotion, PromotionJob,
        TokenPurpose, MAX_PICTURES_PER_AD,
    },
    mall_sql::{
        AD_FROM, COMPANY_COLS, HOST_COLS, INQUIRY_COLS, INQUIRY_FROM, MEMBER_COLS, PROMOTION_COLS,
    },
    sqlite::{backend, SqliteStore},
    sqlite_chat::{query_all, write},
    Result, StoreError,
};

/// The columns [`ad_row`] reads, from [`AD_FROM`].
const AD_COLS: &str = "a.id, a.company_id, c.name, a.host_login, a.title, a.description,
    a.price_minor, a.currency, a.category, a.starts_ms, a.ends_ms, a.paused,
    (SELECT group_concat(p.id, ',' ORDER BY p.position, p.id) FROM ad_pictures p
     WHERE p.ad_id = a.id),
    a.impressions, a.clicks, a.created_ms, a.updated_ms";
/// Whether ad `a` shows at `?1`.
const ACTIVE: &str = "a.paused = 0 AND (a.starts_ms IS NULL OR a.starts_ms <= ?1)
    AND (a.ends_ms IS NULL OR ?1 < a.ends_ms)";

/// A company, from [`COMPANY_COLS`].
fn company_row(r: &Row<'_>) -> rusqlite::Result<Company> {
    Ok(Company {
        id: r.get(0)?,
        name: r.get(1)?,
        created_ms: r.get(2)?,
    })
}

/// A host, from [`HOST_COLS`].
fn host_row(r: &Row<'_>) -> rusqlite::Result<Host> {
    Ok(Host {
        login: r.get(0)?,
        company_id: r.get(1)?,
        name: r.get(2)?,
        created_ms: r.get(3)?,
    })
}

/// An ad with its picture ids still as stored, from [`AD_COLS`].
fn ad_row(r: &Row<'_>) -> rusqlite::Result<(Ad, Option<String>)> {
    Ok((
        Ad {
            id: r.get(0)?,
            company_id: r.get(1)?,
            company_name: r.get(2)?,
            fields: AdFields {
                host_login: r.get(3)?,
                title: r.get(4)?,
                description: r.get(5)?,
                price_minor: r.get(6)?,
                currency: r.get(7)?,
                category: r.get(8)?,
                starts_ms: r.get(9)?,
                ends_ms: r.get(10)?,
                paused: r.get(11)?,
            },
            pictures: Vec::new(),
            impressions: r.get(13)?,
            clicks: r.get(14)?,
            created_ms: r.get(15)?,
            updated_ms: r.get(16)?,
        },
        r.get(12)?,
    ))
}

/// Reads ads with [`AD_COLS`].
fn query_ads<P: rusqlite::Params>(c: &Connection, sql: &str, params: P) -> Result<Vec<Ad>> {
    query_all(c, sql, params, ad_row)?
        .into_iter()
        .map(|(mut ad, pictures)| {
            ad.pictures = parse_ids(pictures.as_deref())?;
            Ok(ad)
        })
        .collect()
}

/// A member, from [`MEMBER_COLS`].
fn member_row(r: &Row<'_>) -> rusqlite::Result<MallMember> {
    Ok(MallMember {
        id: r.get(0)?,
        address: r.get(1)?,
        name: r.get(2)?,
        password_hash: r.get(3)?,
        promotions: r.get(4)?,
        confirmed_ms: r.get(5)?,
        created_ms: r.get(6)?,
        last_signin_ms: r.get(7)?,
    })
}

/// An inquiry, from [`INQUIRY_COLS`].
fn inquiry_row(r: &Row<'_>) -> rusqlite::Result<Inquiry> {
    Ok(Inquiry {
        id: r.get(0)?,
        member_id: r.get(1)?,
        member_name: r.get(2)?,
        member_address: r.get(3)?,
        ad_id: r.get(4)?,
        ad_title: r.get(5)?,
        host_login: r.get(6)?,
        room_id: r.get(7)?,
        port: r.get(8)?,
        question: r.get(9)?,
        created_ms: r.get(10)?,
        answered: r.get(11)?,
    })
}

/// A promotion, from [`PROMOTION_COLS`].
fn promotion_row(r: &Row<'_>) -> rusqlite::Result<Promotion> {
    Ok(Promotion {
        id: r.get(0)?,
        ad_id: r.get(1)?,
        ad_title: r.get(2)?,
        host_login: r.get(3)?,
        subject: r.get(4)?,
        body: r.get(5)?,
        created_ms: r.get(6)?,
        recipients: count_at(r, 7)?,
        sent: count_at(r, 8)?,
        chatted: count_at(r, 9)?,
        unsubscribed: count_at(r, 10)?,
        failed: count_at(r, 11)?,
    })
}

/// A count read as the `u64` of the interface.
fn count_at(r: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let n: i64 = r.get(i)?;
    u64::try_from(n).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(i, n))
}

/// Whether `sql` (a `SELECT EXISTS ..`) holds.
fn exists<P: rusqlite::Params>(c: &Connection, sql: &str, params: P) -> Result<bool> {
    c.query_row(sql, params, |r| r.get(0)).map_err(backend)
}

/// Fails with [`StoreError::Invalid`] unless company `company_id` exists and `host` is one of
/// its hosts.
fn require_company_host(tx: &Connection, company_id: i64, host: &str) -> Result<()> {
    if !exists(
        tx,
        "SELECT EXISTS (SELECT 1 FROM companies WHERE id = ?1)",
        [company_id],
    )? {
        return Err(StoreError::Invalid(format!("unknown company {company_id}")));
    }
    if !exists(
        tx,
        "SELECT EXISTS (SELECT 1 FROM hosts WHERE login = ?1 AND company_id = ?2)",
        (host, company_id),
    )? {
        return Err(StoreError::Invalid(format!(
            "host {host:?} is not a host of this company"
        )));
    }
    Ok(())
}

/// Maps a uniqueness violation to [`StoreError::Invalid`] with `message`.
fn taken(message: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation => {
            StoreError::Invalid(message.into())
        }
        _ => backend(e),
    }
}

/// A count as the `u32` of the interface.
fn count32<P: rusqlite::Params>(c: &Connection, sql: &str, params: P) -> Result<u32> {
    to_count(c.query_row(sql, params, |r| r.get(0)).map_err(backend)?)
}

/// Counts one event of `kind` per (ad, view); moves the ad's counter when it is new.
fn record_event(
    tx: &Transaction<'_>,
    kind: &str,
    view_id: &str,
    ad_id: i64,
    now_ms: i64,
) -> Result<bool> {
    let inserted = tx
        .execute(
            "INSERT INTO ad_events (ad_id, kind, view_id, at_ms)
             SELECT id, ?2, ?3, ?4 FROM ads WHERE id = ?1
             ON CONFLICT DO NOTHING",
            (ad_id, kind, view_id, now_ms),
        )
        .map_err(backend)?;
    if inserted == 0 {
        return Ok(false);
    }
    let sql = if kind == "impression" {
        "UPDATE ads SET impressions = impressions + 1,
             last_shown_ms = max(COALESCE(last_shown_ms, ?2), ?2) WHERE id = ?1"
    } else {
        "UPDATE ads SET clicks = clicks + 1 WHERE id = ?1"
    };
    let mut stmt = tx.prepare_cached(sql).map_err(backend)?;
    if kind == "impression" {
        stmt.execute((ad_id, now_ms)).map_err(backend)?;
    } else {
        stmt.execute([ad_id]).map_err(backend)?;
    }
    Ok(true)
}

/// The member `id`.
fn member_in(c: &Connection, id: i64) -> Result<Option<MallMember>> {
    c.query_row(
        &format!("SELECT {MEMBER_COLS} FROM members WHERE id = ?1"),
        [id],
        member_row,
    )
    .optional()
    .map_err(backend)
}

/// The promotion `id`.
fn promotion_in(c: &Connection, id: i64) -> Result<Option<Promotion>> {
    c.query_row(
        &format!(
            "SELECT {PROMOTION_COLS} FROM promotions o JOIN ads a ON a.id = o.ad_id
             WHERE o.id = ?1"
        ),
        [id],
        promotion_row,
    )
    .optional()
    .map_err(backend)
}

/// The single-statement calls: each runs on the connection off the async threads.
impl SqliteStore {
    /// Reads the row of `sql`, if any, with `read`.
    async fn fetch_opt<T, P>(
        &self,
        sql: impl AsRef<str> + Send + 'static,
        params: P,
        read: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>>
    where
        T: Send + 'static,
        P: rusqlite::Params + Send + 'static,
    {
        self.run(move |c| {
            c.query_row(sql.as_ref(), params, read)
                .optional()
                .map_err(backend)
        })
        .await
    }

    /// Reads every row of `sql` with `read`.
    async fn fetch_all<T, P>(
        &self,
        sql: impl AsRef<str> + Send + 'static,
        params: P,
        read: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>>
    where
        T: Send + 'static,
        P: rusqlite::Params + Send + 'static,
    {
        self.run(move |c| query_all(c, sql.as_ref(), params, read))
            .await
    }

    /// Runs `sql` in a write transaction; whether it touched exactly one row.
    async fn change_one<P>(&self, sql: &'static str, params: P) -> Result<bool>
    where
        P: rusqlite::Params + Send + 'static,
    {
        self.run(move |c| {
            let changed = write(c, |tx| tx.execute(sql, params).map_err(backend))?;
            Ok(changed == 1)
        })
        .await
    }

    /// Runs `sql`, which changes a member and returns their address, and ends the sessions of
    /// that address, in one transaction. False when no member matched.
    async fn change_member_ending_sessions<P>(&self, sql: &'static str, params: P) -> Result<bool>
    where
        P: rusqlite::Params + Send + 'static,
    {
        self.run(move |c| {
            write(c, |tx| {
                let address: Option<String> = tx
                    .query_row(sql, params, |r| r.get(0))
                    .optional()
                    .map_err(backend)?;
                let Some(address) = address else {
                    return Ok(false);
                };
                tx.execute("DELETE FROM sessions WHERE login = ?1", [&address])
                    .map_err(backend)?;
                Ok(true)
            })
        })
        .await
    }
}

#[async_trait::async_trait]
impl MallStore for SqliteStore {
    async fn add_company(&self, name: &str, now_ms: i64) -> Result<(Company, bool)> {
        let (name, key) = normalize_company_name(name)?;
        self.run(move |c| {
            write(c, |tx| {
                let added = tx
                    .query_row(
                        &format!(
                            "INSERT INTO companies (name, name_key, created_ms) VALUES (?1, ?2, ?3)
                             ON CONFLICT (name_key) DO NOTHING RETURNING {COMPANY_COLS}"
                        ),
                        (&name, &key, now_ms),
                        company_row,
                    )
                    .optional()
                    .map_err(backend)?;
                if let Some(company) = added {
                    return Ok((company, true));
                }
                let company = tx
                    .query_row(
                        &format!("SELECT {COMPANY_COLS} FROM companies WHERE name_key = ?1"),
                        [&key],
                        company_row,
                    )
                    .map_err(backend)?;
                Ok((company, false))
            })
        })
        .await
    }

    async fn company(&self, id: i64) -> Result<Option<Company>> {
        self.fetch_opt(
            format!("SELECT {COMPANY_COLS} FROM companies WHERE id = ?1"),
            [id],
            company_row,
        )
        .await
    }

    async fn company_by_name(&self, name: &str) -> Result<Option<Company>> {
        let Ok((_, key)) = normalize_company_name(name) else {
            return Ok(None);
        };
        self.fetch_opt(
            format!("SELECT {COMPANY_COLS} FROM companies WHERE name_key = ?1"),
            [key],
            company_row,
        )
        .await
    }

    async fn companies(&self) -> Result<Vec<Company>> {
        self.fetch_all(
            format!("SELECT {COMPANY_COLS} FROM companies ORDER BY name_key, id"),
            [],
            company_row,
        )
        .await
    }

    async fn add_host(
        &self,
        company_id: i64,
        login: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<(Host, bool)> {
        let login = normalize_address("host login", login)?;
        let name = normalize_person_name(name)?;
        self.run(move |c| {
            write(c, |tx| {
                if !exists(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM companies WHERE id = ?1)",
                    [company_id],
                )? {
                    return Err(StoreError::Invalid(format!("unknown company {company_id}")));
                }
                let current: Option<i64> = tx
                    .query_row(
                        "SELECT company_id FROM hosts WHERE login = ?1",
                        [&login],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                match current {
                    Some(other) if other != company_id => Err(StoreError::Invalid(format!(
                        "{login:?} is already a host of another company"
                    ))),
                    Some(_) => {
                        let host = tx
                            .query_row(
                                &format!(
                                    "UPDATE hosts SET name = ?2 WHERE login = ?1
                                     RETURNING {HOST_COLS}"
                                ),
                                (&login, &name),
                                host_row,
                            )
                            .map_err(backend)?;
                        Ok((host, false))
                    }
                    None => {
                        let host = tx
                            .query_row(
                                &format!(
                                    "INSERT INTO hosts (login, company_id, name, created_ms)
                                     VALUES (?1, ?2, ?3, ?4) RETURNING {HOST_COLS}"
                                ),
                                (&login, company_id, &name, now_ms),
                                host_row,
                            )
                            .map_err(backend)?;
                        Ok((host, true))
                    }
                }
            })
        })
        .await
    }

    async fn host(&self, login: &str) -> Result<Option<Host>> {
        let Ok(login) = normalize_address("host login", login) else {
            return Ok(None);
        };
        self.fetch_opt(
            format!("SELECT {HOST_COLS} FROM hosts WHERE login = ?1"),
            [login],
            host_row,
        )
        .await
    }

    async fn hosts_of(&self, company_id: i64) -> Result<Vec<Host>> {
        self.fetch_all(
            format!("SELECT {HOST_COLS} FROM hosts WHERE company_id = ?1 ORDER BY login"),
            [company_id],
            host_row,
        )
        .await
    }

    async fn create_ad(&self, company_id: i64, fields: &AdFields, now_ms: i64) -> Result<i64> {
        let f = check_ad_fields(fields)?;
        self.run(move |c| {
            write(c, |tx| {
                require_company_host(tx, company_id, &f.host_login)?;
                tx.query_row(
                    "INSERT INTO ads (company_id, host_login, title, description, price_minor,
                         currency, category, category_key, search_text, starts_ms, ends_ms,
                         paused, created_ms, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)
                     RETURNING id",
                    rusqlite::params![
                        company_id,
                        &f.host_login,
                        &f.title,
                        &f.description,
                        f.price_minor,
                        &f.currency,
                        &f.category,
                        category_key(&f.category),
                        search_text(&f),
                        f.starts_ms,
                        f.ends_ms,
                        f.paused,
                        now_ms,
                    ],
                    |r| r.get(0),
                )
                .map_err(backend)
            })
        })
        .await
    }

    async fn update_ad(
        &self,
        id: i64,
        company_id: i64,
        fields: &AdFields,
        now_ms: i64,
    ) -> Result<bool> {
        let f = check_ad_fields(fields)?;
        self.run(move |c| {
            write(c, |tx| {
                if !exists(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM ads WHERE id = ?1 AND company_id = ?2)",
                    (id, company_id),
                )? {
                    return Ok(false);
                }
                require_company_host(tx, company_id, &f.host_login)?;
                let changed = tx
                    .execute(
                        "UPDATE ads SET host_login = ?3, title = ?4, description = ?5,
                             price_minor = ?6, currency = ?7, category = ?8, category_key = ?9,
                             search_text = ?10, starts_ms = ?11, ends_ms = ?12, paused = ?13,
                             updated_ms = ?14
                         WHERE id = ?1 AND company_id = ?2",
                        rusqlite::params![
                            id,
                            company_id,
                            &f.host_login,
                            &f.title,
                            &f.description,
                            f.price_minor,
                            &f.currency,
                            &f.category,
                            category_key(&f.category),
                            search_text(&f),
                            f.starts_ms,
                            f.ends_ms,
                            f.paused,
                            now_ms,
                        ],
                    )
                    .map_err(backend)?;
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn set_ad_paused(&self, id: i64, company_id: i64, paused: bool) -> Result<bool> {
        self.change_one(
            "UPDATE ads SET paused = ?3 WHERE id = ?1 AND company_id = ?2",
            (id, company_id, paused),
        )
        .await
    }

    async fn ad(&self, id: i64) -> Result<Option<Ad>> {
        self.run(move |c| {
            let ads = query_ads(
                c,
                &format!("SELECT {AD_COLS} FROM {AD_FROM} WHERE a.id = ?1"),
                [id],
            )?;
            Ok(ads.into_iter().next())
        })
        .await
    }

    async fn ads_of(&self, company_id: i64) -> Result<Vec<Ad>> {
        self.run(move |c| {
            query_ads(
                c,
                &format!(
                    "SELECT {AD_COLS} FROM {AD_FROM} WHERE a.company_id = ?1
                     ORDER BY a.created_ms DESC, a.id DESC"
                ),
                [company_id],
            )
        })
        .await
    }

    async fn search_ads(&self, query: &AdQuery) -> Result<AdPage> {
        let words = search_words(&query.text)?;
        let category = query.category.as_deref().map(category_key);
        let (now_ms, offset, limit) = (query.now_ms, i64::from(query.offset), page(query.limit));
        self.run(move |c| {
            // ?1 now, ?2 category, ?3.. the words (at most MAX_SEARCH_LEN / 2 of them).
            let mut filter = format!("{ACTIVE} AND (?2 IS NULL OR a.category_key = ?2)");
            let mut params: Vec<Value> = vec![Value::Integer(now_ms), category.into()];
            for word in words {
                params.push(Value::Text(word));
                filter.push_str(&format!(" AND instr(a.search_text, ?{}) > 0", params.len()));
            }
            let total: i64 = c
                .query_row(
                    &format!("SELECT COUNT(*) FROM ads a WHERE {filter}"),
                    rusqlite::params_from_iter(&params),
                    |r| r.get(0),
                )
                .map_err(backend)?;
            let (lim, off) = (params.len() + 1, params.len() + 2);
            params.push(Value::Integer(limit));
            params.push(Value::Integer(offset));
            let ads = query_ads(
                c,
                &format!(
                    "SELECT {AD_COLS} FROM {AD_FROM} WHERE {filter}
                     ORDER BY a.created_ms DESC, a.id DESC LIMIT ?{lim} OFFSET ?{off}"
                ),
                rusqlite::params_from_iter(&params),
            )?;
            Ok(AdPage {
                ads,
                total: to_total(total)?,
            })
        })
        .await
    }

    async fn rotate_ads(&self, category: Option<&str>, now_ms: i64, limit: u32) -> Result<Vec<Ad>> {
        let category = category.map(category_key);
        self.run(move |c| {
            query_ads(
                c,
                &format!(
                    "SELECT {AD_COLS} FROM {AD_FROM}
                     WHERE {ACTIVE} AND (?2 IS NULL OR a.category_key = ?2)
                     ORDER BY a.impressions, a.last_shown_ms NULLS FIRST, a.id LIMIT ?3"
                ),
                (now_ms, &category, page(limit)),
            )
        })
        .await
    }

    async fn categories(&self, now_ms: i64) -> Result<Vec<(String, u64)>> {
        self.run(move |c| {
            let rows = query_all(
                c,
                &format!(
                    "SELECT min(a.category), COUNT(*) FROM ads a WHERE {ACTIVE}
                     GROUP BY a.category_key ORDER BY a.category_key"
                ),
                [now_ms],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )?;
            rows.into_iter()
                .map(|(name, n)| Ok((name, to_total(n)?)))
                .collect()
        })
        .await
    }

    async fn record_impressions(&self, view_id: &str, ad_ids: &[i64], now_ms: i64) -> Result<u64> {
        let ids = impression_batch(view_id, ad_ids)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let view_id = view_id.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                let mut counted = 0;
                for id in ids {
                    if record_event(tx, "impression", &view_id, id, now_ms)? {
                        counted += 1;
                    }
                }
                Ok(counted)
            })
        })
        .await
    }

    async fn record_click(&self, view_id: &str, ad_id: i64, now_ms: i64) -> Result<bool> {
        check_view_id(view_id)?;
        let view_id = view_id.to_owned();
        self.run(move |c| write(c, |tx| record_event(tx, "click", &view_id, ad_id, now_ms)))
            .await
    }

    async fn add_picture(
        &self,
        ad_id: i64,
        company_id: i64,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Option<i64>> {
        check_picture(content_type, bytes)?;
        let (content_type, bytes) = (content_type.to_owned(), bytes.to_vec());
        self.run(move |c| {
            write(c, |tx| {
                if !exists(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM ads WHERE id = ?1 AND company_id = ?2)",
                    (ad_id, company_id),
                )? {
                    return Ok(None);
                }
                let (held, next): (i64, i64) = tx
                    .query_row(
                        "SELECT COUNT(*), COALESCE(MAX(position) + 1, 0) FROM ad_pictures
                         WHERE ad_id = ?1",
                        [ad_id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .map_err(backend)?;
                if usize::try_from(held).unwrap_or(usize::MAX) >= MAX_PICTURES_PER_AD {
                    return Ok(None);
                }
                let id = tx
                    .query_row(
                        "INSERT INTO ad_pictures (ad_id, position, content_type, bytes)
                         VALUES (?1, ?2, ?3, ?4) RETURNING id",
                        (ad_id, next, &content_type, &bytes),
                        |r| r.get(0),
                    )
                    .map_err(backend)?;
                Ok(Some(id))
            })
        })
        .await
    }

    async fn delete_picture(&self, id: i64, ad_id: i64, company_id: i64) -> Result<bool> {
        self.change_one(
            "DELETE FROM ad_pictures WHERE id = ?1 AND ad_id = ?2
             AND EXISTS (SELECT 1 FROM ads WHERE id = ?2 AND company_id = ?3)",
            (id, ad_id, company_id),
        )
        .await
    }

    async fn picture(&self, id: i64) -> Result<Option<Picture>> {
        self.fetch_opt(
            "SELECT id, ad_id, content_type, bytes FROM ad_pictures WHERE id = ?1",
            [id],
            |r| {
                Ok(Picture {
                    id: r.get(0)?,
                    ad_id: r.get(1)?,
                    content_type: r.get(2)?,
                    bytes: r.get(3)?,
                })
            },
        )
        .await
    }

    async fn create_member(&self, member: &NewMember) -> Result<Option<MallMember>> {
        let m = normalize_member(member)?;
        self.run(move |c| {
            write(c, |tx| {
                tx.query_row(
                    &format!(
                        "INSERT INTO members (address, name, password_hash, promotions, created_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (address) DO NOTHING RETURNING {MEMBER_COLS}"
                    ),
                    (
                        &m.address,
                        &m.name,
                        &m.password_hash,
                        m.promotions,
                        m.created_ms,
                    ),
                    member_row,
                )
                .optional()
                .map_err(backend)
            })
        })
        .await
    }

    async fn member(&self, id: i64) -> Result<Option<MallMember>> {
        self.run(move |c| member_in(c, id)).await
    }

    async fn member_by_address(&self, address: &str) -> Result<Option<MallMember>> {
        let Ok(address) = normalize_address("address", address) else {
            return Ok(None);
        };
        self.fetch_opt(
            format!("SELECT {MEMBER_COLS} FROM members WHERE address = ?1"),
            [address],
            member_row,
        )
        .await
    }

    async fn create_member_token(
        &self,
        token_hash: &str,
        member_id: i64,
        purpose: TokenPurpose,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<()> {
        check_hash("token hash", token_hash)?;
        let hash = token_hash.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                let stored = tx
                    .execute(
                        "INSERT INTO member_tokens
                             (token_hash, member_id, purpose, created_ms, expires_ms)
                         SELECT ?1, id, ?3, ?4, ?5 FROM members WHERE id = ?2",
                        (&hash, member_id, purpose.as_str(), now_ms, expires_ms),
                    )
                    .map_err(taken("token hash is already in use"))?;
                if stored == 0 {
                    return Err(StoreError::Invalid(format!("unknown member {member_id}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn use_member_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now_ms: i64,
    ) -> Result<Option<MallMember>> {
        if check_hash("token hash", token_hash).is_err() {
            return Ok(None);
        }
        let hash = token_hash.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                let member_id: Option<i64> = tx
                    .query_row(
                        "UPDATE member_tokens SET used_ms = ?3
                         WHERE token_hash = ?1 AND purpose = ?2 AND used_ms IS NULL
                           AND expires_ms > ?3
                         RETURNING member_id",
                        (&hash, purpose.as_str(), now_ms),
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some(member_id) = member_id else {
                    return Ok(None);
                };
                if purpose == TokenPurpose::Confirm {
                    tx.execute(
                        "UPDATE members SET confirmed_ms = COALESCE(confirmed_ms, ?2)
                         WHERE id = ?1",
                        (member_id, now_ms),
                    )
                    .map_err(backend)?;
                }
                member_in(tx, member_id)
            })
        })
        .await
    }

    async fn member_of_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now_ms: i64,
    ) -> Result<Option<MallMember>> {
        if check_hash("token hash", token_hash).is_err() {
            return Ok(None);
        }
        self.fetch_opt(
            format!(
                "SELECT {MEMBER_COLS} FROM members WHERE id = (
                     SELECT member_id FROM member_tokens
                     WHERE token_hash = ?1 AND purpose = ?2 AND used_ms IS NULL
                       AND expires_ms > ?3)"
            ),
            (token_hash.to_owned(), purpose.as_str(), now_ms),
            member_row,
        )
        .await
    }

    async fn confirm_member(
        &self,
        token_hash: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<Option<MallMember>> {
        if check_hash("token hash", token_hash).is_err() {
            return Ok(None);
        }
        let (token_hash, password_hash) = (token_hash.to_owned(), password_hash.to_owned());
        self.run(move |c| {
            write(c, |tx| {
                let member_id: Option<i64> = tx
                    .query_row(
                        "UPDATE members SET confirmed_ms = COALESCE(confirmed_ms, ?3)
                         WHERE password_hash = ?2 AND id = (
                             SELECT member_id FROM member_tokens
                             WHERE token_hash = ?1 AND purpose = 'confirm' AND used_ms IS NULL
                               AND expires_ms > ?3)
                         RETURNING id",
                        (&token_hash, &password_hash, now_ms),
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some(member_id) = member_id else {
                    return Ok(None);
                };
                tx.execute(
                    "UPDATE member_tokens SET used_ms = ?2
                     WHERE token_hash = ?1 AND used_ms IS NULL",
                    (&token_hash, now_ms),
                )
                .map_err(backend)?;
                member_in(tx, member_id)
            })
        })
        .await
    }

    async fn renew_signup(
        &self,
        member_id: i64,
        name: &str,
        password_hash: &str,
        promotions: bool,
    ) -> Result<bool> {
        let name = normalize_person_name(name)?;
        check_password_hash(password_hash)?;
        self.change_one(
            "UPDATE members SET name = ?2, password_hash = ?3, promotions = ?4
             WHERE id = ?1 AND confirmed_ms IS NULL",
            (member_id, name, password_hash.to_owned(), promotions),
        )
        .await
    }

    async fn count_member_tokens(
        &self,
        member_id: i64,
        purpose: TokenPurpose,
        since_ms: i64,
    ) -> Result<u32> {
        self.run(move |c| {
            count32(
                c,
                "SELECT COUNT(*) FROM member_tokens
                 WHERE member_id = ?1 AND purpose = ?2 AND created_ms >= ?3",
                (member_id, purpose.as_str(), since_ms),
            )
        })
        .await
    }

    async fn set_member_password(&self, member_id: i64, password_hash: &str) -> Result<bool> {
        check_password_hash(password_hash)?;
        self.change_member_ending_sessions(
            "UPDATE members SET password_hash = ?2 WHERE id = ?1 RETURNING address",
            (member_id, password_hash.to_owned()),
        )
        .await
    }

    async fn update_member(&self, member_id: i64, name: &str, promotions: bool) -> Result<bool> {
        let name = normalize_person_name(name)?;
        self.change_one(
            "UPDATE members SET name = ?2, promotions = ?3 WHERE id = ?1",
            (member_id, name, promotions),
        )
        .await
    }

    async fn member_signed_in(&self, member_id: i64, now_ms: i64) -> Result<()> {
        self.change_one(
            "UPDATE members SET last_signin_ms = ?2 WHERE id = ?1",
            (member_id, now_ms),
        )
        .await?;
        Ok(())
    }

    async fn delete_member(&self, member_id: i64) -> Result<bool> {
        // Tokens, inquiries and promotion recipient rows go by ON DELETE CASCADE.
        self.change_member_ending_sessions(
            "DELETE FROM members WHERE id = ?1 RETURNING address",
            [member_id],
        )
        .await
    }

    async fn add_inquiry(&self, inquiry: &NewInquiry) -> Result<i64> {
        let q = normalize_inquiry(inquiry)?;
        self.run(move |c| {
            write(c, |tx| {
                for (what, sql, key) in [
                    (
                        "member",
                        "SELECT EXISTS (SELECT 1 FROM members WHERE id = ?1)",
                        Value::Integer(q.member_id),
                    ),
                    (
                        "ad",
                        "SELECT EXISTS (SELECT 1 FROM ads WHERE id = ?1)",
                        Value::Integer(q.ad_id),
                    ),
                    (
                        "room",
                        "SELECT EXISTS (SELECT 1 FROM rooms WHERE id = ?1)",
                        Value::Text(q.room_id.clone()),
                    ),
                ] {
                    if !exists(tx, sql, [&key])? {
                        return Err(StoreError::Invalid(format!("unknown {what}")));
                    }
                }
                tx.query_row(
                    "INSERT INTO inquiries (member_id, ad_id, room_id, question, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                    (q.member_id, q.ad_id, &q.room_id, &q.question, q.created_ms),
                    |r| r.get(0),
                )
                .map_err(backend)
            })
        })
        .await
    }

    async fn inquiries_of_company(
        &self,
        company_id: i64,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<Inquiry>> {
        self.fetch_all(
            format!(
                "SELECT {INQUIRY_COLS} FROM {INQUIRY_FROM} WHERE a.company_id = ?1
                 ORDER BY i.created_ms DESC, i.id DESC LIMIT ?2 OFFSET ?3"
            ),
            (company_id, page(limit), i64::from(offset)),
            inquiry_row,
        )
        .await
    }

    async fn inquiries_of_member(&self, member_id: i64, limit: u32) -> Result<Vec<Inquiry>> {
        self.fetch_all(
            format!(
                "SELECT {INQUIRY_COLS} FROM {INQUIRY_FROM} WHERE i.member_id = ?1
                 ORDER BY i.created_ms DESC, i.id DESC LIMIT ?2"
            ),
            (member_id, page(limit)),
            inquiry_row,
        )
        .await
    }

    async fn count_inquiries(&self, member_id: i64, since_ms: i64) -> Result<u32> {
        self.run(move |c| {
            count32(
                c,
                "SELECT COUNT(*) FROM inquiries WHERE member_id = ?1 AND created_ms >= ?2",
                (member_id, since_ms),
            )
        })
        .await
    }

    async fn create_promotion(&self, promotion: &NewPromotion) -> Result<Option<(i64, u64)>> {
        let p = normalize_promotion(promotion)?;
        self.run(move |c| {
            write(c, |tx| {
                let company: Option<i64> = tx
                    .query_row(
                        "SELECT company_id FROM hosts WHERE login = ?1",
                        [&p.host_login],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some(company) = company else {
                    return Err(StoreError::Invalid(format!(
                        "{:?} is not a host",
                        p.host_login
                    )));
                };
                if !exists(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM ads WHERE id = ?1 AND company_id = ?2)",
                    (p.ad_id, company),
                )? {
                    return Ok(None);
                }
                let id: i64 = tx
                    .query_row(
                        "INSERT INTO promotions (ad_id, host_login, subject, body, created_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                        (p.ad_id, &p.host_login, &p.subject, &p.body, p.created_ms),
                        |r| r.get(0),
                    )
                    .map_err(backend)?;
                let recipients = tx
                    .execute(
                        "INSERT INTO promotion_recipients (promotion_id, member_id)
                         SELECT ?1, id FROM members
                         WHERE promotions = 1 AND confirmed_ms IS NOT NULL",
                        [id],
                    )
                    .map_err(backend)?;
                Ok(Some((id, u64::try_from(recipients).unwrap_or(u64::MAX))))
            })
        })
        .await
    }

    async fn promotions_of_company(&self, company_id: i64, limit: u32) -> Result<Vec<Promotion>> {
        self.fetch_all(
            format!(
                "SELECT {PROMOTION_COLS} FROM promotions o JOIN ads a ON a.id = o.ad_id
                 WHERE a.company_id = ?1 ORDER BY o.created_ms DESC, o.id DESC LIMIT ?2"
            ),
            (company_id, page(limit)),
            promotion_row,
        )
        .await
    }

    async fn promotion(&self, id: i64) -> Result<Option<Promotion>> {
        self.run(move |c| promotion_in(c, id)).await
    }

    async fn claim_promotion_mails(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<PromotionJob>> {
        check_owner(owner)?;
        let owner = owner.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                // Members who opted out since the promotion was written get nothing.
                tx.execute(
                    "UPDATE promotion_recipients SET state = 'skipped',
                         lease_owner = NULL, lease_until_ms = NULL
                     WHERE state = 'pending'
                       AND (lease_until_ms IS NULL OR lease_until_ms < ?1)
                       AND member_id IN (SELECT id FROM members WHERE promotions = 0)",
                    [now_ms],
                )
                .map_err(backend)?;
                let mut claimed = query_all(
                    tx,
                    "UPDATE promotion_recipients SET lease_owner = ?1, lease_until_ms = ?2
                     WHERE (promotion_id, member_id) IN (
                         SELECT promotion_id, member_id FROM promotion_recipients
                         WHERE state = 'pending'
                           AND (lease_until_ms IS NULL OR lease_until_ms < ?3)
                         ORDER BY promotion_id, member_id LIMIT ?4)
                     RETURNING promotion_id, member_id, attempts",
                    (&owner, lease_until_ms, now_ms, page(limit)),
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, u32>(2)?,
                        ))
                    },
                )?;
                // RETURNING follows no ORDER BY: the oldest promotion first.
                claimed.sort_unstable();
                let mut read = tx
                    .prepare_cached("SELECT address, name FROM members WHERE id = ?1")
                    .map_err(backend)?;
                claimed
                    .into_iter()
                    .map(|(promotion_id, member_id, attempts)| {
                        let (address, name) = read
                            .query_row([member_id], |r| Ok((r.get(0)?, r.get(1)?)))
                            .map_err(backend)?;
                        Ok(PromotionJob {
                            promotion_id,
                            member_id,
                            address,
                            name,
                            attempts,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    async fn promotion_mail_queued(
        &self,
        promotion_id: i64,
        member_id: i64,
        owner: &str,
        room_id: &str,
        unsubscribe_hash: &str,
        now_ms: i64,
    ) -> Result<bool> {
        check_queued(owner, room_id, unsubscribe_hash)?;
        let (owner, room_id, hash) = (
            owner.to_owned(),
            room_id.to_owned(),
            unsubscribe_hash.to_owned(),
        );
        self.run(move |c| {
            let changed = write(c, |tx| {
                tx.execute(
                    "UPDATE promotion_recipients SET state = 'queued', room_id = ?4,
                         unsubscribe_hash = ?5, queued_ms = ?6,
                         lease_owner = NULL, lease_until_ms = NULL
                     WHERE promotion_id = ?1 AND member_id = ?2 AND state = 'pending'
                       AND lease_owner = ?3",
                    (promotion_id, member_id, &owner, &room_id, &hash, now_ms),
                )
                .map_err(taken("unsubscribe hash or room is not usable"))
            })?;
            Ok(changed == 1)
        })
        .await
    }

    async fn unsubscribe_promotions(
        &self,
        unsubscribe_hash: &str,
        now_ms: i64,
    ) -> Result<Option<String>> {
        if check_hash("unsubscribe hash", unsubscribe_hash).is_err() {
            return Ok(None);
        }
        let hash = unsubscribe_hash.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                let member_id: Option<i64> = tx
                    .query_row(
                        "UPDATE promotion_recipients
                         SET unsubscribed_ms = COALESCE(unsubscribed_ms, ?2)
                         WHERE unsubscribe_hash = ?1 RETURNING member_id",
                        (&hash, now_ms),
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some(member_id) = member_id else {
                    return Ok(None);
                };
                tx.query_row(
                    "UPDATE members SET promotions = 0 WHERE id = ?1 RETURNING address",
                    [member_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)
            })
        })
        .await
    }

    async fn prune_mall(&self, before_ms: i64) -> Result<u64> {
        self.run(move |c| {
            write(c, |tx| {
                let events = tx
                    .execute("DELETE FROM ad_events WHERE at_ms < ?1", [before_ms])
                    .map_err(backend)?;
                let tokens = tx
                    .execute(
                        "DELETE FROM member_tokens WHERE expires_ms < ?1",
                        [before_ms],
                    )
                    .map_err(backend)?;
                Ok(u64::try_from(events + tokens).unwrap_or(u64::MAX))
            })
        })
        .await
    }

    async fn promotion_audience(&self) -> Result<u64> {
        self.run(|c| {
            let n: i64 = c
                .query_row(
                    "SELECT count(*) FROM members
                     WHERE promotions = 1 AND confirmed_ms IS NOT NULL",
                    [],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            to_total(n)
        })
        .await
    }

    async fn promotion_mail_failed(
        &self,
        promotion_id: i64,
        member_id: i64,
        owner: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<bool> {
        check_owner(owner)?;
        let (owner, error) = (owner.to_owned(), clean_error(error));
        self.run(move |c| {
            let changed = write(c, |tx| {
                tx.execute(
                    "UPDATE promotion_recipients SET attempts = attempts + 1, last_error = ?4,
                         state = CASE WHEN ?5 IS NULL THEN 'failed' ELSE 'pending' END,
                         lease_owner = NULL, lease_until_ms = ?5
                     WHERE promotion_id = ?1 AND member_id = ?2 AND state = 'pending'
                       AND lease_owner = ?3",
                    (promotion_id, member_id, &owner, &error, retry_at_ms),
                )
                .map_err(backend)
            })?;
            Ok(changed == 1)
        })
        .await
    }
}
