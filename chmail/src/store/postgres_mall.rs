//! The mall side of the PostgreSQL store: [`MallStore`] for [`PostgresStore`].
//!
//! Several chatd nodes share these rows, so each race is settled by the database: a company or
//! member name by its UNIQUE key and `ON CONFLICT`; an event per view by its primary key, the
//! counters moving in the same transaction (ads locked in id order, so two page views never
//! deadlock); an ad's picture limit by locking the ad's row; a token by an
//! `UPDATE .. WHERE used_ms IS NULL`; promotion mails by `FOR UPDATE SKIP LOCKED` and a lease.
//! A text search is PostgreSQL full-text search (`plainto_tsquery`, so the input's punctuation
//! is no operator) ranked by `ts_rank`.

use deadpool_postgres::GenericClient;
use tokio_postgres::{error::SqlState, types::ToSql, Row};

use super::{
    chat::{check_hash, check_owner, normalize_address, page, to_count},
    mail_loop::clean_error,
    mall::{
        category_key, check_ad_fields, check_password_hash, check_picture, check_queued,
        check_view_id, impression_batch, normalize_company_name, normalize_inquiry,
        normalize_member, normalize_person_name, normalize_promotion, search_words, to_total, Ad,
        AdFields, AdPage, AdQuery, Company, Host, Inquiry, MallMember, MallStore, NewInquiry,
        NewMember, NewPromotion, Picture, Promotion, PromotionJob, TokenPurpose,
        MAX_PICTURES_PER_AD,
    },
    mall_sql::{
        AD_FROM, COMPANY_COLS, HOST_COLS, INQUIRY_COLS, INQUIRY_FROM, MEMBER_COLS, PROMOTION_COLS,
    },
    postgres::{backend, bounded, PostgresStore},
    postgres_chat::{execute, query_all, query_opt},
    Result, StoreError,
};

/// The columns [`ad_row`] reads, from [`AD_FROM`].
const AD_COLS: &str = "a.id, a.company_id, c.name, a.host_login, a.title, a.description,
    a.price_minor, a.currency, a.category, a.starts_ms, a.ends_ms, a.paused,
    ARRAY(SELECT p.id FROM ad_pictures p WHERE p.ad_id = a.id ORDER BY p.position, p.id),
    a.impressions, a.clicks, a.created_ms, a.updated_ms";
/// Whether ad `a` shows at `$1`.
const ACTIVE: &str = "NOT a.paused AND (a.starts_ms IS NULL OR a.starts_ms <= $1)
    AND (a.ends_ms IS NULL OR $1 < a.ends_ms)";

/// Reads column `i`.
fn get<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T> {
    r.try_get(i).map_err(backend)
}

/// A company, from [`COMPANY_COLS`].
fn company_row(r: &Row) -> Result<Company> {
    Ok(Company {
        id: get(r, 0)?,
        name: get(r, 1)?,
        created_ms: get(r, 2)?,
    })
}

/// A host, from [`HOST_COLS`].
fn host_row(r: &Row) -> Result<Host> {
    Ok(Host {
        login: get(r, 0)?,
        company_id: get(r, 1)?,
        name: get(r, 2)?,
        created_ms: get(r, 3)?,
    })
}

/// An ad, from [`AD_COLS`].
fn ad_row(r: &Row) -> Result<Ad> {
    Ok(Ad {
        id: get(r, 0)?,
        company_id: get(r, 1)?,
        company_name: get(r, 2)?,
        fields: AdFields {
            host_login: get(r, 3)?,
            title: get(r, 4)?,
            description: get(r, 5)?,
            price_minor: get(r, 6)?,
            currency: get(r, 7)?,
            category: get(r, 8)?,
            starts_ms: get(r, 9)?,
            ends_ms: get(r, 10)?,
            paused: get(r, 11)?,
        },
        pictures: get(r, 12)?,
        impressions: get(r, 13)?,
        clicks: get(r, 14)?,
        created_ms: get(r, 15)?,
        updated_ms: get(r, 16)?,
    })
}

/// A member, from [`MEMBER_COLS`].
fn member_row(r: &Row) -> Result<MallMember> {
    Ok(MallMember {
        id: get(r, 0)?,
        address: get(r, 1)?,
        name: get(r, 2)?,
        password_hash: get(r, 3)?,
        promotions: get(r, 4)?,
        confirmed_ms: get(r, 5)?,
        created_ms: get(r, 6)?,
        last_signin_ms: get(r, 7)?,
    })
}

/// An inquiry, from [`INQUIRY_COLS`].
fn inquiry_row(r: &Row) -> Result<Inquiry> {
    let port: i32 = get(r, 8)?;
    Ok(Inquiry {
        id: get(r, 0)?,
        member_id: get(r, 1)?,
        member_name: get(r, 2)?,
        member_address: get(r, 3)?,
        ad_id: get(r, 4)?,
        ad_title: get(r, 5)?,
        host_login: get(r, 6)?,
        room_id: get(r, 7)?,
        port: u16::try_from(port).map_err(|_| {
            StoreError::Backend(format!("port {port} in the database is not a port"))
        })?,
        question: get(r, 9)?,
        created_ms: get(r, 10)?,
        answered: get(r, 11)?,
    })
}

/// A promotion, from [`PROMOTION_COLS`].
fn promotion_row(r: &Row) -> Result<Promotion> {
    Ok(Promotion {
        id: get(r, 0)?,
        ad_id: get(r, 1)?,
        ad_title: get(r, 2)?,
        host_login: get(r, 3)?,
        subject: get(r, 4)?,
        body: get(r, 5)?,
        created_ms: get(r, 6)?,
        recipients: to_total(get(r, 7)?)?,
        sent: to_total(get(r, 8)?)?,
        chatted: to_total(get(r, 9)?)?,
        unsubscribed: to_total(get(r, 10)?)?,
        failed: to_total(get(r, 11)?)?,
    })
}

/// Reads every row with `read`.
fn rows<T>(rows: &[Row], read: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(read).collect()
}

/// Whether `sql` (a `SELECT EXISTS ..`) holds.
async fn exists<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<bool> {
    match query_opt(c, sql, params).await? {
        Some(row) => get(&row, 0),
        None => Ok(false),
    }
}

/// Reads one COUNT(*) as the `u32` of the interface.
async fn count32<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u32> {
    match query_opt(c, sql, params).await? {
        Some(row) => to_count(get(&row, 0)?),
        None => Ok(0),
    }
}

/// Maps a uniqueness or foreign key violation to [`StoreError::Invalid`] with `message`.
fn refused(message: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| match e.code() {
        Some(&SqlState::UNIQUE_VIOLATION | &SqlState::FOREIGN_KEY_VIOLATION) => {
            StoreError::Invalid(message.into())
        }
        _ => backend(e),
    }
}

/// Runs a cached statement and returns the number of rows it touched, mapping errors with
/// `map`.
async fn execute_with<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    map: impl Fn(tokio_postgres::Error) -> StoreError,
) -> Result<u64> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.execute(&stmt, params).await.map_err(map)
}

/// Fails with [`StoreError::Invalid`] unless company `company_id` exists and `host` is one of
/// its hosts.
async fn require_company_host<C: GenericClient>(c: &C, company_id: i64, host: &str) -> Result<()> {
    if !exists(
        c,
        "SELECT EXISTS (SELECT 1 FROM companies WHERE id = $1)",
        &[&company_id],
    )
    .await?
    {
        return Err(StoreError::Invalid(format!("unknown company {company_id}")));
    }
    if !exists(
        c,
        "SELECT EXISTS (SELECT 1 FROM hosts WHERE login = $1 AND company_id = $2)",
        &[&host, &company_id],
    )
    .await?
    {
        return Err(StoreError::Invalid(format!(
            "host {host:?} is not a host of this company"
        )));
    }
    Ok(())
}

/// Runs a cached statement and reads its row, if any, with `read`.
async fn read_opt<C: GenericClient, T>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    read: fn(&Row) -> Result<T>,
) -> Result<Option<T>> {
    query_opt(c, sql, params)
        .await?
        .as_ref()
        .map(read)
        .transpose()
}

/// Runs a cached `INSERT .. RETURNING id` and reads the id.
async fn insert_id<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<i64> {
    read_opt(c, sql, params, |r| get(r, 0))
        .await?
        .ok_or_else(|| StoreError::Backend("INSERT .. RETURNING gave no row".into()))
}

/// The member `id`.
async fn member_in<C: GenericClient>(c: &C, id: i64) -> Result<Option<MallMember>> {
    read_opt(
        c,
        &format!("SELECT {MEMBER_COLS} FROM members WHERE id = $1"),
        &[&id],
        member_row,
    )
    .await
}

/// The single-statement calls: each takes a pooled connection within the time bound.
impl PostgresStore {
    /// Reads the row of `sql`, if any, with `read`.
    async fn fetch_opt<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        read: fn(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        bounded(async {
            let client = self.client().await?;
            read_opt(&client, sql, params, read).await
        })
        .await
    }

    /// Reads every row of `sql` with `read`.
    async fn fetch_all<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        read: fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        bounded(async {
            let client = self.client().await?;
            rows(&query_all(&client, sql, params).await?, read)
        })
        .await
    }

    /// Runs `sql`; whether it touched exactly one row.
    async fn change_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<bool> {
        bounded(async {
            let client = self.client().await?;
            Ok(execute(&client, sql, params).await? == 1)
        })
        .await
    }

    /// Runs `sql`, which changes a member and returns their address, and ends the sessions of
    /// that address, in one transaction. False when no member matched.
    async fn change_member_ending_sessions(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<bool> {
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            let Some(row) = query_opt(&tx, sql, params).await? else {
                return Ok(false);
            };
            let address: String = get(&row, 0)?;
            execute(&tx, "DELETE FROM sessions WHERE login = $1", &[&address]).await?;
            tx.commit().await.map_err(backend)?;
            Ok(true)
        })
        .await
    }
}

#[async_trait::async_trait]
impl MallStore for PostgresStore {
    async fn add_company(&self, name: &str, now_ms: i64) -> Result<(Company, bool)> {
        let (name, key) = normalize_company_name(name)?;
        bounded(async {
            let client = self.client().await?;
            let added = query_opt(
                &client,
                &format!(
                    "INSERT INTO companies (name, name_key, created_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (name_key) DO NOTHING RETURNING {COMPANY_COLS}"
                ),
                &[&name, &key, &now_ms],
            )
            .await?;
            if let Some(row) = added {
                return Ok((company_row(&row)?, true));
            }
            // Read committed: the conflicting row is committed, so this statement sees it.
            let row = query_opt(
                &client,
                &format!("SELECT {COMPANY_COLS} FROM companies WHERE name_key = $1"),
                &[&key],
            )
            .await?
            .ok_or_else(|| StoreError::Backend(format!("company {name:?} vanished")))?;
            Ok((company_row(&row)?, false))
        })
        .await
    }

    async fn company(&self, id: i64) -> Result<Option<Company>> {
        self.fetch_opt(
            &format!("SELECT {COMPANY_COLS} FROM companies WHERE id = $1"),
            &[&id],
            company_row,
        )
        .await
    }

    async fn company_by_name(&self, name: &str) -> Result<Option<Company>> {
        let Ok((_, key)) = normalize_company_name(name) else {
            return Ok(None);
        };
        self.fetch_opt(
            &format!("SELECT {COMPANY_COLS} FROM companies WHERE name_key = $1"),
            &[&key],
            company_row,
        )
        .await
    }

    async fn companies(&self) -> Result<Vec<Company>> {
        self.fetch_all(
            &format!("SELECT {COMPANY_COLS} FROM companies ORDER BY name_key, id"),
            &[],
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
        bounded(async {
            let client = self.client().await?;
            // One statement: a login of another company is left alone (no row comes back);
            // `xmax = 0` tells an inserted row from an updated one.
            let stmt = client
                .prepare_cached(&format!(
                    "INSERT INTO hosts (login, company_id, name, created_ms)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (login) DO UPDATE SET name = excluded.name
                         WHERE hosts.company_id = excluded.company_id
                     RETURNING {HOST_COLS}, (xmax = 0)"
                ))
                .await
                .map_err(backend)?;
            let row = client
                .query_opt(&stmt, &[&login, &company_id, &name, &now_ms])
                .await
                .map_err(|e| {
                    if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                        StoreError::Invalid(format!("unknown company {company_id}"))
                    } else {
                        backend(e)
                    }
                })?;
            let Some(row) = row else {
                return Err(StoreError::Invalid(format!(
                    "{login:?} is already a host of another company"
                )));
            };
            Ok((host_row(&row)?, get(&row, 4)?))
        })
        .await
    }

    async fn host(&self, login: &str) -> Result<Option<Host>> {
        let Ok(login) = normalize_address("host login", login) else {
            return Ok(None);
        };
        self.fetch_opt(
            &format!("SELECT {HOST_COLS} FROM hosts WHERE login = $1"),
            &[&login],
            host_row,
        )
        .await
    }

    async fn hosts_of(&self, company_id: i64) -> Result<Vec<Host>> {
        self.fetch_all(
            &format!("SELECT {HOST_COLS} FROM hosts WHERE company_id = $1 ORDER BY login"),
            &[&company_id],
            host_row,
        )
        .await
    }

    async fn create_ad(&self, company_id: i64, fields: &AdFields, now_ms: i64) -> Result<i64> {
        let f = check_ad_fields(fields)?;
        let key = category_key(&f.category);
        bounded(async {
            let client = self.client().await?;
            require_company_host(&client, company_id, &f.host_login).await?;
            insert_id(
                &client,
                "INSERT INTO ads (company_id, host_login, title, description, price_minor,
                     currency, category, category_key, starts_ms, ends_ms, paused,
                     created_ms, updated_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
                 RETURNING id",
                &[
                    &company_id,
                    &f.host_login,
                    &f.title,
                    &f.description,
                    &f.price_minor,
                    &f.currency,
                    &f.category,
                    &key,
                    &f.starts_ms,
                    &f.ends_ms,
                    &f.paused,
                    &now_ms,
                ],
            )
            .await
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
        let key = category_key(&f.category);
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            if query_opt(
                &tx,
                "SELECT 1 FROM ads WHERE id = $1 AND company_id = $2 FOR NO KEY UPDATE",
                &[&id, &company_id],
            )
            .await?
            .is_none()
            {
                return Ok(false);
            }
            require_company_host(&tx, company_id, &f.host_login).await?;
            let changed = execute(
                &tx,
                "UPDATE ads SET host_login = $3, title = $4, description = $5,
                     price_minor = $6, currency = $7, category = $8, category_key = $9,
                     starts_ms = $10, ends_ms = $11, paused = $12, updated_ms = $13
                 WHERE id = $1 AND company_id = $2",
                &[
                    &id,
                    &company_id,
                    &f.host_login,
                    &f.title,
                    &f.description,
                    &f.price_minor,
                    &f.currency,
                    &f.category,
                    &key,
                    &f.starts_ms,
                    &f.ends_ms,
                    &f.paused,
                    &now_ms,
                ],
            )
            .await?;
            tx.commit().await.map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn set_ad_paused(&self, id: i64, company_id: i64, paused: bool) -> Result<bool> {
        self.change_one(
            "UPDATE ads SET paused = $3 WHERE id = $1 AND company_id = $2",
            &[&id, &company_id, &paused],
        )
        .await
    }

    async fn ad(&self, id: i64) -> Result<Option<Ad>> {
        self.fetch_opt(
            &format!("SELECT {AD_COLS} FROM {AD_FROM} WHERE a.id = $1"),
            &[&id],
            ad_row,
        )
        .await
    }

    async fn ads_of(&self, company_id: i64) -> Result<Vec<Ad>> {
        self.fetch_all(
            &format!(
                "SELECT {AD_COLS} FROM {AD_FROM} WHERE a.company_id = $1
                 ORDER BY a.created_ms DESC, a.id DESC"
            ),
            &[&company_id],
            ad_row,
        )
        .await
    }

    async fn search_ads(&self, query: &AdQuery) -> Result<AdPage> {
        let words = search_words(&query.text)?;
        let category = query.category.as_deref().map(category_key);
        let (offset, limit) = (i64::from(query.offset), page(query.limit));
        let filter = format!("{ACTIVE} AND ($2::text IS NULL OR a.category_key = $2)");
        bounded(async {
            let client = self.client().await?;
            let (total, found) = if words.is_empty() {
                let total = query_opt(
                    &client,
                    &format!("SELECT COUNT(*) FROM ads a WHERE {filter}"),
                    &[&query.now_ms, &category],
                )
                .await?;
                let found = query_all(
                    &client,
                    &format!(
                        "SELECT {AD_COLS} FROM {AD_FROM} WHERE {filter}
                         ORDER BY a.created_ms DESC, a.id DESC LIMIT $3 OFFSET $4"
                    ),
                    &[&query.now_ms, &category, &limit, &offset],
                )
                .await?;
                (total, found)
            } else {
                let text = words.join(" ");
                let total = query_opt(
                    &client,
                    &format!(
                        "SELECT COUNT(*) FROM ads a, plainto_tsquery('simple', $3) q
                         WHERE {filter} AND a.search @@ q"
                    ),
                    &[&query.now_ms, &category, &text],
                )
                .await?;
                let found = query_all(
                    &client,
                    &format!(
                        "SELECT {AD_COLS} FROM {AD_FROM}, plainto_tsquery('simple', $3) q
                         WHERE {filter} AND a.search @@ q
                         ORDER BY ts_rank(a.search, q) DESC, a.created_ms DESC, a.id DESC
                         LIMIT $4 OFFSET $5"
                    ),
                    &[&query.now_ms, &category, &text, &limit, &offset],
                )
                .await?;
                (total, found)
            };
            let total: i64 = match total {
                Some(row) => get(&row, 0)?,
                None => 0,
            };
            Ok(AdPage {
                ads: rows(&found, ad_row)?,
                total: to_total(total)?,
            })
        })
        .await
    }

    async fn rotate_ads(&self, category: Option<&str>, now_ms: i64, limit: u32) -> Result<Vec<Ad>> {
        let category = category.map(category_key);
        self.fetch_all(
            &format!(
                "SELECT {AD_COLS} FROM {AD_FROM}
                 WHERE {ACTIVE} AND ($2::text IS NULL OR a.category_key = $2)
                 ORDER BY a.impressions, a.last_shown_ms NULLS FIRST, a.id LIMIT $3"
            ),
            &[&now_ms, &category, &page(limit)],
            ad_row,
        )
        .await
    }

    async fn categories(&self, now_ms: i64) -> Result<Vec<(String, u64)>> {
        self.fetch_all(
            &format!(
                "SELECT min(a.category), COUNT(*) FROM ads a WHERE {ACTIVE}
                 GROUP BY a.category_key ORDER BY a.category_key"
            ),
            &[&now_ms],
            |r| Ok((get(r, 0)?, to_total(get(r, 1)?)?)),
        )
        .await
    }

    async fn record_impressions(&self, view_id: &str, ad_ids: &[i64], now_ms: i64) -> Result<u64> {
        let ids = impression_batch(view_id, ad_ids)?;
        if ids.is_empty() {
            return Ok(0);
        }
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            // Locks in id order: two views showing the same ads never wait on each other in a
            // circle. NO KEY: the event rows' foreign key checks are not blocked.
            execute(
                &tx,
                "SELECT id FROM ads WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
                &[&ids],
            )
            .await?;
            let counted = execute(
                &tx,
                "WITH new AS (
                     INSERT INTO ad_events (ad_id, kind, view_id, at_ms)
                     SELECT id, 'impression', $2, $3 FROM ads WHERE id = ANY($1)
                     ON CONFLICT DO NOTHING RETURNING ad_id)
                 UPDATE ads SET impressions = impressions + 1,
                     last_shown_ms = GREATEST(COALESCE(last_shown_ms, $3), $3)
                 FROM new WHERE ads.id = new.ad_id",
                &[&ids, &view_id, &now_ms],
            )
            .await?;
            tx.commit().await.map_err(backend)?;
            Ok(counted)
        })
        .await
    }

    async fn record_click(&self, view_id: &str, ad_id: i64, now_ms: i64) -> Result<bool> {
        check_view_id(view_id)?;
        self.change_one(
            "WITH new AS (
                 INSERT INTO ad_events (ad_id, kind, view_id, at_ms)
                 SELECT id, 'click', $2, $3 FROM ads WHERE id = $1
                 ON CONFLICT DO NOTHING RETURNING ad_id)
             UPDATE ads SET clicks = clicks + 1 FROM new WHERE ads.id = new.ad_id",
            &[&ad_id, &view_id, &now_ms],
        )
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
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            // The ad's row lock makes count-then-insert safe against a concurrent upload.
            if query_opt(
                &tx,
                "SELECT 1 FROM ads WHERE id = $1 AND company_id = $2 FOR NO KEY UPDATE",
                &[&ad_id, &company_id],
            )
            .await?
            .is_none()
            {
                return Ok(None);
            }
            let row = query_opt(
                &tx,
                "SELECT COUNT(*), COALESCE(MAX(position) + 1, 0) FROM ad_pictures
                 WHERE ad_id = $1",
                &[&ad_id],
            )
            .await?
            .ok_or_else(|| StoreError::Backend("COUNT gave no row".into()))?;
            let (held, next): (i64, i64) = (get(&row, 0)?, get(&row, 1)?);
            if usize::try_from(held).unwrap_or(usize::MAX) >= MAX_PICTURES_PER_AD {
                return Ok(None);
            }
            let id = insert_id(
                &tx,
                "INSERT INTO ad_pictures (ad_id, position, content_type, bytes)
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[&ad_id, &next, &content_type, &bytes],
            )
            .await?;
            tx.commit().await.map_err(backend)?;
            Ok(Some(id))
        })
        .await
    }

    async fn delete_picture(&self, id: i64, ad_id: i64, company_id: i64) -> Result<bool> {
        self.change_one(
            "DELETE FROM ad_pictures WHERE id = $1 AND ad_id = $2
             AND EXISTS (SELECT 1 FROM ads WHERE id = $2 AND company_id = $3)",
            &[&id, &ad_id, &company_id],
        )
        .await
    }

    async fn picture(&self, id: i64) -> Result<Option<Picture>> {
        self.fetch_opt(
            "SELECT id, ad_id, content_type, bytes FROM ad_pictures WHERE id = $1",
            &[&id],
            |r| {
                Ok(Picture {
                    id: get(r, 0)?,
                    ad_id: get(r, 1)?,
                    content_type: get(r, 2)?,
                    bytes: get(r, 3)?,
                })
            },
        )
        .await
    }

    async fn create_member(&self, member: &NewMember) -> Result<Option<MallMember>> {
        let m = normalize_member(member)?;
        self.fetch_opt(
            &format!(
                "INSERT INTO members (address, name, password_hash, promotions, created_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (address) DO NOTHING RETURNING {MEMBER_COLS}"
            ),
            &[
                &m.address,
                &m.name,
                &m.password_hash,
                &m.promotions,
                &m.created_ms,
            ],
            member_row,
        )
        .await
    }

    async fn member(&self, id: i64) -> Result<Option<MallMember>> {
        bounded(async {
            let client = self.client().await?;
            member_in(&client, id).await
        })
        .await
    }

    async fn member_by_address(&self, address: &str) -> Result<Option<MallMember>> {
        let Ok(address) = normalize_address("address", address) else {
            return Ok(None);
        };
        self.fetch_opt(
            &format!("SELECT {MEMBER_COLS} FROM members WHERE address = $1"),
            &[&address],
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
        bounded(async {
            let client = self.client().await?;
            let stored = execute_with(
                &client,
                "INSERT INTO member_tokens (token_hash, member_id, purpose, created_ms, expires_ms)
                 SELECT $1, id, $3, $4, $5 FROM members WHERE id = $2",
                &[
                    &token_hash,
                    &member_id,
                    &purpose.as_str(),
                    &now_ms,
                    &expires_ms,
                ],
                refused("token hash is already in use"),
            )
            .await?;
            if stored == 0 {
                return Err(StoreError::Invalid(format!("unknown member {member_id}")));
            }
            Ok(())
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
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            let used = query_opt(
                &tx,
                "UPDATE member_tokens SET used_ms = $3
                 WHERE token_hash = $1 AND purpose = $2 AND used_ms IS NULL AND expires_ms > $3
                 RETURNING member_id",
                &[&token_hash, &purpose.as_str(), &now_ms],
            )
            .await?;
            let Some(used) = used else {
                return Ok(None);
            };
            let member_id: i64 = get(&used, 0)?;
            if purpose == TokenPurpose::Confirm {
                execute(
                    &tx,
                    "UPDATE members SET confirmed_ms = COALESCE(confirmed_ms, $2) WHERE id = $1",
                    &[&member_id, &now_ms],
                )
                .await?;
            }
            let member = member_in(&tx, member_id).await?;
            tx.commit().await.map_err(backend)?;
            Ok(member)
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
            &format!(
                "SELECT {MEMBER_COLS} FROM members WHERE id = (
                     SELECT member_id FROM member_tokens
                     WHERE token_hash = $1 AND purpose = $2 AND used_ms IS NULL
                       AND expires_ms > $3)"
            ),
            &[&token_hash, &purpose.as_str(), &now_ms],
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
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            // The member row first: a concurrent `renew_signup` holds it until it commits, and
            // then the hash is compared with the new one (and does not match).
            let confirmed = query_opt(
                &tx,
                "UPDATE members SET confirmed_ms = COALESCE(confirmed_ms, $3)
                 WHERE password_hash = $2 AND id = (
                     SELECT member_id FROM member_tokens
                     WHERE token_hash = $1 AND purpose = 'confirm' AND used_ms IS NULL
                       AND expires_ms > $3)
                 RETURNING id",
                &[&token_hash, &password_hash, &now_ms],
            )
            .await?;
            let Some(row) = confirmed else {
                return Ok(None);
            };
            let member_id: i64 = get(&row, 0)?;
            let used = execute(
                &tx,
                "UPDATE member_tokens SET used_ms = $2
                 WHERE token_hash = $1 AND used_ms IS NULL",
                &[&token_hash, &now_ms],
            )
            .await?;
            if used != 1 {
                // Used by a concurrent request in between: that one confirmed.
                return Ok(None);
            }
            let member = member_in(&tx, member_id).await?;
            tx.commit().await.map_err(backend)?;
            Ok(member)
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
            "UPDATE members SET name = $2, password_hash = $3, promotions = $4
             WHERE id = $1 AND confirmed_ms IS NULL",
            &[&member_id, &name, &password_hash, &promotions],
        )
        .await
    }

    async fn count_member_tokens(
        &self,
        member_id: i64,
        purpose: TokenPurpose,
        since_ms: i64,
    ) -> Result<u32> {
        bounded(async {
            let client = self.client().await?;
            count32(
                &client,
                "SELECT COUNT(*) FROM member_tokens
                 WHERE member_id = $1 AND purpose = $2 AND created_ms >= $3",
                &[&member_id, &purpose.as_str(), &since_ms],
            )
            .await
        })
        .await
    }

    async fn set_member_password(&self, member_id: i64, password_hash: &str) -> Result<bool> {
        check_password_hash(password_hash)?;
        self.change_member_ending_sessions(
            "UPDATE members SET password_hash = $2 WHERE id = $1 RETURNING address",
            &[&member_id, &password_hash],
        )
        .await
    }

    async fn update_member(&self, member_id: i64, name: &str, promotions: bool) -> Result<bool> {
        let name = normalize_person_name(name)?;
        self.change_one(
            "UPDATE members SET name = $2, promotions = $3 WHERE id = $1",
            &[&member_id, &name, &promotions],
        )
        .await
    }

    async fn member_signed_in(&self, member_id: i64, now_ms: i64) -> Result<()> {
        self.change_one(
            "UPDATE members SET last_signin_ms = $2 WHERE id = $1",
            &[&member_id, &now_ms],
        )
        .await?;
        Ok(())
    }

    async fn delete_member(&self, member_id: i64) -> Result<bool> {
        // Tokens, inquiries and promotion recipient rows go by ON DELETE CASCADE.
        self.change_member_ending_sessions(
            "DELETE FROM members WHERE id = $1 RETURNING address",
            &[&member_id],
        )
        .await
    }

    async fn add_inquiry(&self, inquiry: &NewInquiry) -> Result<i64> {
        let q = normalize_inquiry(inquiry)?;
        bounded(async {
            let client = self.client().await?;
            for (what, sql, key) in [
                (
                    "member",
                    "SELECT EXISTS (SELECT 1 FROM members WHERE id = $1)",
                    &q.member_id as &(dyn ToSql + Sync),
                ),
                (
                    "ad",
                    "SELECT EXISTS (SELECT 1 FROM ads WHERE id = $1)",
                    &q.ad_id,
                ),
                (
                    "room",
                    "SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1)",
                    &q.room_id,
                ),
            ] {
                if !exists(&client, sql, &[key]).await? {
                    return Err(StoreError::Invalid(format!("unknown {what}")));
                }
            }
            let stmt = client
                .prepare_cached(
                    "INSERT INTO inquiries (member_id, ad_id, room_id, question, created_ms)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .await
                .map_err(backend)?;
            // A member, ad or room deleted since the checks is still refused by its key.
            let row = client
                .query_one(
                    &stmt,
                    &[
                        &q.member_id,
                        &q.ad_id,
                        &q.room_id,
                        &q.question,
                        &q.created_ms,
                    ],
                )
                .await
                .map_err(refused("unknown member, ad or room"))?;
            get(&row, 0)
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
            &format!(
                "SELECT {INQUIRY_COLS} FROM {INQUIRY_FROM} WHERE a.company_id = $1
                 ORDER BY i.created_ms DESC, i.id DESC LIMIT $2 OFFSET $3"
            ),
            &[&company_id, &page(limit), &i64::from(offset)],
            inquiry_row,
        )
        .await
    }

    async fn inquiries_of_member(&self, member_id: i64, limit: u32) -> Result<Vec<Inquiry>> {
        self.fetch_all(
            &format!(
                "SELECT {INQUIRY_COLS} FROM {INQUIRY_FROM} WHERE i.member_id = $1
                 ORDER BY i.created_ms DESC, i.id DESC LIMIT $2"
            ),
            &[&member_id, &page(limit)],
            inquiry_row,
        )
        .await
    }

    async fn count_inquiries(&self, member_id: i64, since_ms: i64) -> Result<u32> {
        bounded(async {
            let client = self.client().await?;
            count32(
                &client,
                "SELECT COUNT(*) FROM inquiries WHERE member_id = $1 AND created_ms >= $2",
                &[&member_id, &since_ms],
            )
            .await
        })
        .await
    }

    async fn create_promotion(&self, promotion: &NewPromotion) -> Result<Option<(i64, u64)>> {
        let p = normalize_promotion(promotion)?;
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            let host = query_opt(
                &tx,
                "SELECT company_id FROM hosts WHERE login = $1",
                &[&p.host_login],
            )
            .await?;
            let Some(host) = host else {
                return Err(StoreError::Invalid(format!(
                    "{:?} is not a host",
                    p.host_login
                )));
            };
            let company: i64 = get(&host, 0)?;
            if !exists(
                &tx,
                "SELECT EXISTS (SELECT 1 FROM ads WHERE id = $1 AND company_id = $2)",
                &[&p.ad_id, &company],
            )
            .await?
            {
                return Ok(None);
            }
            let id = insert_id(
                &tx,
                "INSERT INTO promotions (ad_id, host_login, subject, body, created_ms)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&p.ad_id, &p.host_login, &p.subject, &p.body, &p.created_ms],
            )
            .await?;
            let recipients = execute(
                &tx,
                "INSERT INTO promotion_recipients (promotion_id, member_id)
                 SELECT $1, id FROM members WHERE promotions AND confirmed_ms IS NOT NULL",
                &[&id],
            )
            .await?;
            tx.commit().await.map_err(backend)?;
            Ok(Some((id, recipients)))
        })
        .await
    }

    async fn promotions_of_company(&self, company_id: i64, limit: u32) -> Result<Vec<Promotion>> {
        self.fetch_all(
            &format!(
                "SELECT {PROMOTION_COLS} FROM promotions o JOIN ads a ON a.id = o.ad_id
                 WHERE a.company_id = $1 ORDER BY o.created_ms DESC, o.id DESC LIMIT $2"
            ),
            &[&company_id, &page(limit)],
            promotion_row,
        )
        .await
    }

    async fn promotion(&self, id: i64) -> Result<Option<Promotion>> {
        self.fetch_opt(
            &format!(
                "SELECT {PROMOTION_COLS} FROM promotions o JOIN ads a ON a.id = o.ad_id
                 WHERE o.id = $1"
            ),
            &[&id],
            promotion_row,
        )
        .await
    }

    async fn claim_promotion_mails(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<PromotionJob>> {
        check_owner(owner)?;
        bounded(async {
            let client = self.client().await?;
            // Members who opted out since the promotion was written get nothing; rows another
            // node holds right now are left to it.
            execute(
                &client,
                "WITH gone AS (
                     SELECT t.promotion_id, t.member_id
                     FROM promotion_recipients t JOIN members m ON m.id = t.member_id
                     WHERE t.state = 'pending' AND NOT m.promotions
                       AND (t.lease_until_ms IS NULL OR t.lease_until_ms < $1)
                     FOR UPDATE OF t SKIP LOCKED)
                 UPDATE promotion_recipients t SET state = 'skipped',
                     lease_owner = NULL, lease_until_ms = NULL
                 FROM gone
                 WHERE t.promotion_id = gone.promotion_id AND t.member_id = gone.member_id",
                &[&now_ms],
            )
            .await?;
            // SKIP LOCKED: rows another node is claiming right now are its; a row whose claim
            // committed after this statement began is re-checked against the lease and left out.
            let found = query_all(
                &client,
                "WITH due AS (
                     SELECT promotion_id, member_id FROM promotion_recipients
                     WHERE state = 'pending'
                       AND (lease_until_ms IS NULL OR lease_until_ms < $3)
                     ORDER BY promotion_id, member_id LIMIT $4
                     FOR UPDATE SKIP LOCKED)
                 UPDATE promotion_recipients t SET lease_owner = $1, lease_until_ms = $2
                 FROM due, members m
                 WHERE t.promotion_id = due.promotion_id AND t.member_id = due.member_id
                   AND m.id = t.member_id
                 RETURNING t.promotion_id, t.member_id, m.address, m.name, t.attempts",
                &[&owner, &lease_until_ms, &now_ms, &page(limit)],
            )
            .await?;
            let mut jobs = found
                .iter()
                .map(|r| {
                    Ok(PromotionJob {
                        promotion_id: get(r, 0)?,
                        member_id: get(r, 1)?,
                        address: get(r, 2)?,
                        name: get(r, 3)?,
                        attempts: u32::try_from(get::<i64>(r, 4)?).unwrap_or(u32::MAX),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            // RETURNING follows no ORDER BY: the oldest promotion first.
            jobs.sort_by_key(|j| (j.promotion_id, j.member_id));
            Ok(jobs)
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
        bounded(async {
            let client = self.client().await?;
            let changed = execute_with(
                &client,
                "UPDATE promotion_recipients SET state = 'queued', room_id = $4,
                     unsubscribe_hash = $5, queued_ms = $6,
                     lease_owner = NULL, lease_until_ms = NULL
                 WHERE promotion_id = $1 AND member_id = $2 AND state = 'pending'
                   AND lease_owner = $3",
                &[
                    &promotion_id,
                    &member_id,
                    &owner,
                    &room_id,
                    &unsubscribe_hash,
                    &now_ms,
                ],
                refused("unsubscribe hash or room is not usable"),
            )
            .await?;
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
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            let row = query_opt(
                &tx,
                "UPDATE promotion_recipients SET unsubscribed_ms = COALESCE(unsubscribed_ms, $2)
                 WHERE unsubscribe_hash = $1 RETURNING member_id",
                &[&unsubscribe_hash, &now_ms],
            )
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let member_id: i64 = get(&row, 0)?;
            let address = query_opt(
                &tx,
                "UPDATE members SET promotions = false WHERE id = $1 RETURNING address",
                &[&member_id],
            )
            .await?
            .map(|r| get(&r, 0))
            .transpose()?;
            tx.commit().await.map_err(backend)?;
            Ok(address)
        })
        .await
    }

    async fn prune_mall(&self, before_ms: i64) -> Result<u64> {
        bounded(async {
            let client = self.client().await?;
            let events = execute(
                &client,
                "DELETE FROM ad_events WHERE at_ms < $1",
                &[&before_ms],
            )
            .await?;
            let tokens = execute(
                &client,
                "DELETE FROM member_tokens WHERE expires_ms < $1",
                &[&before_ms],
            )
            .await?;
            Ok(events.saturating_add(tokens))
        })
        .await
    }

    async fn promotion_audience(&self) -> Result<u64> {
        bounded(async {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT count(*) FROM members WHERE promotions AND confirmed_ms IS NOT NULL",
                    &[],
                )
                .await
                .map_err(backend)?;
            to_total(row.get::<_, i64>(0))
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
        let error = clean_error(error);
        bounded(async {
            let client = self.client().await?;
            let changed = execute(
                &client,
                "UPDATE promotion_recipients SET attempts = attempts + 1, last_error = $4,
                     state = CASE WHEN $5::BIGINT IS NULL THEN 'failed' ELSE 'pending' END,
                     lease_owner = NULL, lease_until_ms = $5
                 WHERE promotion_id = $1 AND member_id = $2 AND state = 'pending'
                   AND lease_owner = $3",
                &[&promotion_id, &member_id, &owner, &error, &retry_at_ms],
            )
            .await?;
            Ok(changed == 1)
        })
        .await
    }
}
