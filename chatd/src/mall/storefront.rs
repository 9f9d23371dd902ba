//! The storefront (S201): the mall's home page with ads rotated fairly among the active ones,
//! category pages, search with paging, product pages with their pictures, and the pictures.
//!
//! | route | what |
//! |---|---|
//! | `GET /mall` | the home page: rotated ads and the categories with their counts |
//! | `GET /mall/category/{name}` | a category: rotated, or newest first with `?page=N` |
//! | `GET /mall/search?q=&page=` | a search of the active ads, [`MallConfig::page_size`] a page |
//! | `GET /mall/ad/{id}?v=VIEW` | a product page; counts a click once per page view `VIEW` |
//! | `GET /mall/picture/{id}` | a picture, with its content type, cached for a day |
//!
//! Counting: every page that lists ads makes a random view id, records one impression of each ad
//! it shows under that id ([`MallStore::record_impressions`], one call per page), and links to
//! the product pages with `?v=<view>`; the product page counts a click once per (view, ad)
//! ([`MallStore::record_click`]). Reloading a product page or coming back to it through the same
//! listing counts nothing more.
//!
//! The price helpers ([`format_price`], [`parse_price`]) and [`picture_type`] (a picture's type
//! by its content) are shared with the host pages and the admin commands.
//!
//! [`MallConfig::page_size`]: chmail::config::MallConfig::page_size
//! [`MallStore::record_impressions`]: chmail::store::MallStore::record_impressions
//! [`MallStore::record_click`]: chmail::store::MallStore::record_click

use std::fmt::Write as _;

use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use chmail::store::{
    mall::{Ad, AdQuery, MAX_CATEGORY_LEN, MAX_SEARCH_LEN, MAX_VIEW_ID_LEN},
    MAX_PAGE,
};
use serde::Deserialize;
use tracing::warn;

use super::account::Visit;
use crate::{
    auth::new_token,
    error::AppError,
    state::AppState,
    web::html::{attr, escape},
};

/// Most related ads shown under a product ("More in this category"): one row on a desktop.
pub const RELATED_SHOWN: u32 = 4;

/// Highest page number a listing accepts: far beyond any real catalogue, low enough that the
/// row offset cannot overflow.
pub const MAX_PAGE_NUMBER: u32 = 10_000;

/// How long browsers and proxies may keep a picture (`Cache-Control: max-age`): a picture's id
/// is never reused for other bytes, so a day is safe.
pub const PICTURE_MAX_AGE_SECS: u32 = 86_400;

/// The storefront's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/mall", get(home))
        .route("/mall/", get(home))
        .route("/mall/category/{name}", get(category))
        .route("/mall/search", get(search))
        .route("/mall/ad/{id}", get(product))
        .route("/mall/picture/{id}", get(picture))
}

// --- pictures, prices, links: shared helpers ---------------------------------------------------

/// The content type of a picture judged by its first bytes (PNG, JPEG, GIF or WebP), never by
/// its name; `None` for anything else.
pub fn picture_type(bytes: &[u8]) -> Option<&'static str> {
    crate::picture::kind(bytes)
}

/// The ISO 4217 currencies without minor units: their prices are whole numbers.
const ZERO_DECIMAL_CURRENCIES: [&str; 17] = [
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];

/// How many decimals a price in `currency` has: 0 for the currencies without minor units (KRW,
/// JPY, ...), 2 for every other.
pub fn currency_decimals(currency: &str) -> u32 {
    if ZERO_DECIMAL_CURRENCIES.contains(&currency.trim().to_ascii_uppercase().as_str()) {
        0
    } else {
        2
    }
}

/// A price in minor units as people read it: `€1,299.00`, `$12.50`, `₩35,000`, `12.50 CHF`.
pub fn format_price(minor: i64, currency: &str) -> String {
    let code = currency.trim().to_ascii_uppercase();
    let decimals = currency_decimals(&code);
    let scale = 10i64.pow(decimals);
    let (whole, fraction) = (
        minor.unsigned_abs() / scale.unsigned_abs(),
        minor.unsigned_abs() % scale.unsigned_abs(),
    );
    let digits = whole.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if minor < 0 { "-" } else { "" };
    let amount = if decimals == 0 {
        format!("{sign}{grouped}")
    } else {
        format!(
            "{sign}{grouped}.{fraction:0width$}",
            width = decimals as usize
        )
    };
    let symbol = match code.as_str() {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        "JPY" => "¥",
        "KRW" => "₩",
        "INR" => "₹",
        _ => return format!("{amount} {code}"),
    };
    format!("{sign}{symbol}{}", amount.trim_start_matches('-'))
}

/// A price typed as a decimal (`12.50`, `12.5`, `12`; `35000` for KRW) in minor units of
/// `currency`.
///
/// # Errors
/// A sentence for the user when the text is not a plain non-negative number with at most the
/// currency's decimals, or is too large.
pub fn parse_price(text: &str, currency: &str) -> Result<i64, String> {
    let decimals = currency_decimals(currency);
    let text = text.trim();
    let example = if decimals == 0 { "35000" } else { "12.50" };
    let bad = || format!("the price must be a number like {example}");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) || (text.ends_with('.')) {
        return Err(bad());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > decimals as usize {
        return Err(if decimals == 0 {
            format!(
                "the price must be a whole number in {}",
                currency.trim().to_ascii_uppercase()
            )
        } else {
            format!("the price has at most {decimals} decimals")
        });
    }
    let too_large = || "the price is too large".to_owned();
    let whole: i64 = whole.parse().map_err(|_| too_large())?;
    let mut minor = whole
        .checked_mul(10i64.pow(decimals))
        .ok_or_else(too_large)?;
    if !fraction.is_empty() {
        let padded = format!("{fraction:0<width$}", width = decimals as usize);
        let part: i64 = padded.parse().map_err(|_| bad())?;
        minor = minor.checked_add(part).ok_or_else(too_large)?;
    }
    if minor > chmail::store::mall::MAX_PRICE_MINOR {
        return Err(too_large());
    }
    Ok(minor)
}

/// `text` percent-encoded for a URL path segment or query value: everything but the unreserved
/// characters of RFC 3986.
pub fn url_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The path of a category's page.
pub fn category_path(name: &str) -> String {
    format!("/mall/category/{}", url_component(name))
}

/// The path of a product page, with the view id of the page that links to it.
pub fn ad_path(id: i64, view: Option<&str>) -> String {
    match view {
        Some(v) => format!("/mall/ad/{id}?v={}", url_component(v)),
        None => format!("/mall/ad/{id}"),
    }
}

/// Whether `view` looks like a view id we make (so that junk never reaches the store).
fn is_view_id(view: &str) -> bool {
    !view.is_empty()
        && view.len() <= MAX_VIEW_ID_LEN
        && view
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// --- the page around each answer --------------------------------------------------------------

/// The mall's own "not here" page.
fn not_found(ctx: &Visit, state: &AppState, what: &str) -> Response {
    let main = format!(
        "<section class=\"card empty\"><h1>Not found</h1><p>{}</p>\
         <p><a class=\"button primary\" href=\"/mall\">Back to the mall</a></p></section>",
        escape(what)
    );
    ctx.respond(
        state,
        StatusCode::NOT_FOUND,
        "Not found",
        "mall-not-found",
        &main,
    )
}

/// Records the impressions of one rendered listing under a fresh view id and returns the id.
/// A failure to count is logged and the page still shows.
async fn count_impressions(state: &AppState, ads: &[Ad]) -> Result<String, AppError> {
    let view = new_token()?;
    if ads.is_empty() {
        return Ok(view);
    }
    let ids: Vec<i64> = ads.iter().map(|a| a.id).collect();
    let now = state.clock.now_ms();
    if let Err(e) = state
        .store_call(state.store.record_impressions(&view, &ids, now))
        .await
    {
        warn!(cause = %e, "impressions not counted");
    }
    Ok(view)
}

/// The grid of product cards, each linking with the listing's view id.
fn cards(ads: &[Ad], view: &str) -> String {
    let mut out = String::from("<ul class=\"products\">");
    for ad in ads {
        let thumb = match ad.pictures.first() {
            Some(id) => format!(
                "<img{src} alt=\"\" loading=\"lazy\" decoding=\"async\">",
                src = attr("src", &format!("/mall/picture/{id}"))
            ),
            None => format!(
                "<span class=\"no-picture\" aria-hidden=\"true\">{}</span>",
                escape(&ad.fields.title.chars().next().unwrap_or('?').to_string())
            ),
        };
        let _ = write!(
            out,
            "<li class=\"product\"{id}><a{href}><span class=\"thumb\">{thumb}</span>\
             <span class=\"info\"><span class=\"title\">{title}</span>\
             <span class=\"price\">{price}</span>\
             <span class=\"company\">{company}</span></span></a></li>",
            id = attr("data-ad", &ad.id.to_string()),
            href = attr("href", &ad_path(ad.id, Some(view))),
            title = escape(&ad.fields.title),
            price = escape(&format_price(ad.fields.price_minor, &ad.fields.currency)),
            company = escape(&ad.company_name),
        );
    }
    out.push_str("</ul>");
    out
}

/// The category chips, `current` marked.
fn chips(categories: &[(String, u64)], current: Option<&str>) -> String {
    if categories.is_empty() {
        return String::new();
    }
    let mut out = String::from("<nav class=\"chips\" aria-label=\"Categories\">");
    let all = if current.is_none() { " current" } else { "" };
    let _ = write!(out, "<a class=\"chip{all}\" href=\"/mall\">All</a>");
    for (name, count) in categories {
        let mark = if current.is_some_and(|c| c.eq_ignore_ascii_case(name)) {
            " current"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<a class=\"chip{mark}\"{href}>{name} <span class=\"count\">{count}</span></a>",
            href = attr("href", &category_path(name)),
            name = escape(name),
        );
    }
    out.push_str("</nav>");
    out
}

/// Links to the pages of a listing: previous, a window of numbers, next. `link` makes the URL of
/// a page number.
fn pager(page_no: u32, total: u64, per_page: u32, link: impl Fn(u32) -> String) -> String {
    let pages = u32::try_from(total.div_ceil(u64::from(per_page.max(1))))
        .unwrap_or(u32::MAX)
        .min(MAX_PAGE_NUMBER);
    if pages <= 1 {
        return String::new();
    }
    let mut out = String::from("<nav class=\"pager\" aria-label=\"Pages\">");
    if page_no > 1 {
        let _ = write!(
            out,
            "<a rel=\"prev\"{}>‹ Previous</a>",
            attr("href", &link(page_no - 1))
        );
    }
    let first = page_no.saturating_sub(3).max(1);
    let last = (page_no + 3).min(pages);
    for n in first..=last {
        if n == page_no {
            let _ = write!(
                out,
                "<span class=\"current\" aria-current=\"page\">{n}</span>"
            );
        } else {
            let _ = write!(out, "<a{}>{n}</a>", attr("href", &link(n)));
        }
    }
    if page_no < pages {
        let _ = write!(
            out,
            "<a rel=\"next\"{}>Next ›</a>",
            attr("href", &link(page_no + 1))
        );
    }
    out.push_str("</nav>");
    out
}

/// Ads per page: `[mall] page_size`, at least 1 and at most what the store pages.
fn page_size(state: &AppState) -> u32 {
    state.config.mall.page_size.clamp(1, MAX_PAGE)
}

/// A `page` parameter: absent means 1.
///
/// # Errors
/// [`AppError::BadRequest`] for anything but a number from 1 to [`MAX_PAGE_NUMBER`].
fn page_number(raw: Option<&str>) -> Result<u32, AppError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(1);
    };
    raw.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PAGE_NUMBER).contains(n))
        .ok_or_else(|| {
            AppError::BadRequest(format!(
                "The page number must be a number from 1 to {MAX_PAGE_NUMBER}."
            ))
        })
}

// --- the pages ----------------------------------------------------------------------------------

/// `GET /mall`: rotated ads and the categories.
async fn home(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    let ctx = Visit::of(&state, &headers).await?;
    let now = state.clock.now_ms();
    let categories = state.store_call(state.store.categories(now)).await?;
    let ads = state
        .store_call(state.store.rotate_ads(None, now, page_size(&state)))
        .await?;
    let view = count_impressions(&state, &ads).await?;
    let total: u64 = categories.iter().map(|(_, n)| n).sum();
    let mall = &state.config.mall.name;
    let mut main = format!(
        "<section class=\"hero\"><h1>{title}</h1>\
         <p>Ask a shop about any product and chat with them in seconds.</p></section>",
        title = escape(mall)
    );
    main.push_str(&chips(&categories, None));
    if ads.is_empty() {
        main.push_str(
            "<section class=\"card empty\"><p>There are no products yet. Please come back \
             soon.</p></section>",
        );
    } else {
        main.push_str(&cards(&ads, &view));
        if total > ads.len() as u64 {
            let _ = write!(
                main,
                "<p class=\"more\"><a class=\"button\" href=\"/mall/search\">See all {total} \
                 products</a></p>"
            );
        }
    }
    Ok(ctx.respond(&state, StatusCode::OK, "", "mall-home", &main))
}

/// The query of a listing.
#[derive(Debug, Deserialize)]
pub struct ListingParams {
    /// The search text.
    #[serde(default)]
    q: Option<String>,
    /// The page number (from 1).
    #[serde(default)]
    page: Option<String>,
}

/// `GET /mall/category/{name}`: rotated, or newest first with `?page=N`.
async fn category(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<ListingParams>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let ctx = Visit::of(&state, &headers).await?;
    let now = state.clock.now_ms();
    let categories = state.store_call(state.store.categories(now)).await?;
    let known = (name.len() <= MAX_CATEGORY_LEN)
        .then(|| {
            categories
                .iter()
                .find(|(c, _)| c.to_lowercase() == name.trim().to_lowercase())
        })
        .flatten();
    let Some((category, count)) = known.cloned() else {
        return Ok(not_found(
            &ctx,
            &state,
            "There is nothing in this category right now.",
        ));
    };
    let per_page = page_size(&state);
    let paged = params.page.is_some();
    let page_no = page_number(params.page.as_deref())?;
    let (ads, total) = if paged {
        let query = AdQuery {
            text: String::new(),
            category: Some(category.clone()),
            now_ms: now,
            offset: (page_no - 1) * per_page,
            limit: per_page,
        };
        let found = state.store_call(state.store.search_ads(&query)).await?;
        (found.ads, found.total)
    } else {
        let ads = state
            .store_call(state.store.rotate_ads(Some(&category), now, per_page))
            .await?;
        (ads, count)
    };
    let view = count_impressions(&state, &ads).await?;
    let mut main = format!(
        "<section class=\"listing-head\"><h1>{title}</h1><p class=\"muted\">{count} {what}</p></section>",
        title = escape(&category),
        what = if count == 1 { "product" } else { "products" },
    );
    main.push_str(&chips(&categories, Some(&category)));
    if ads.is_empty() {
        main.push_str(
            "<section class=\"card empty\"><p>No more products on this page.</p></section>",
        );
    } else {
        main.push_str(&cards(&ads, &view));
    }
    let path = category_path(&category);
    if paged {
        main.push_str(&pager(page_no, total, per_page, |n| {
            format!("{path}?page={n}")
        }));
    } else if total > ads.len() as u64 {
        let _ = write!(
            main,
            "<p class=\"more\"><a class=\"button\"{}>See all {total}</a></p>",
            attr("href", &format!("{path}?page=1"))
        );
    }
    Ok(ctx.respond(&state, StatusCode::OK, &category, "mall-category", &main))
}

/// `GET /mall/search?q=&page=`: the active ads that match, best first; an empty search lists
/// every active ad, newest first.
async fn search(
    State(state): State<AppState>,
    Query(params): Query<ListingParams>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let ctx = Visit::of(&state, &headers).await?;
    let q = params.q.as_deref().unwrap_or_default().trim().to_owned();
    if q.len() > MAX_SEARCH_LEN {
        let main = format!(
            "<section class=\"card\"><h1>Search</h1><p class=\"error\">Your search is too long: \
             please use at most {MAX_SEARCH_LEN} bytes (about {MAX_SEARCH_LEN} letters, fewer \
             for accented or non-Latin ones).</p></section>"
        );
        return Ok(ctx.respond_searched(
            &state,
            StatusCode::BAD_REQUEST,
            "Search",
            "mall-search",
            &q,
            &main,
        ));
    }
    let page_no = match page_number(params.page.as_deref()) {
        Ok(n) => n,
        Err(e) => {
            let main = format!(
                "<section class=\"card\"><h1>Search</h1><p class=\"error\">{}</p></section>",
                escape(&e.public_message())
            );
            return Ok(ctx.respond_searched(
                &state,
                StatusCode::BAD_REQUEST,
                "Search",
                "mall-search",
                &q,
                &main,
            ));
        }
    };
    let per_page = page_size(&state);
    let now = state.clock.now_ms();
    let query = AdQuery {
        text: q.clone(),
        category: None,
        now_ms: now,
        offset: (page_no - 1) * per_page,
        limit: per_page,
    };
    let found = state.store_call(state.store.search_ads(&query)).await?;
    let view = count_impressions(&state, &found.ads).await?;
    let heading = if q.is_empty() {
        "All products".to_owned()
    } else {
        format!("Results for “{q}”")
    };
    let mut main = format!(
        "<section class=\"listing-head\"><h1>{}</h1><p class=\"muted\">{} {}</p></section>",
        escape(&heading),
        found.total,
        if found.total == 1 {
            "product"
        } else {
            "products"
        }
    );
    if found.ads.is_empty() {
        let text = if found.total > 0 {
            "No more results on this page.".to_owned()
        } else if q.is_empty() {
            "There are no products yet.".to_owned()
        } else {
            format!("Nothing matches “{q}”. Try other or fewer words.")
        };
        let _ = write!(
            main,
            "<section class=\"card empty\"><p>{}</p>\
             <p><a class=\"button\" href=\"/mall\">Back to the mall</a></p></section>",
            escape(&text)
        );
    } else {
        main.push_str(&cards(&found.ads, &view));
    }
    let encoded = url_component(&q);
    main.push_str(&pager(page_no, found.total, per_page, |n| {
        format!("/mall/search?q={encoded}&page={n}")
    }));
    let title = if q.is_empty() { "All products" } else { &q };
    Ok(ctx.respond_searched(&state, StatusCode::OK, title, "mall-search", &q, &main))
}

/// The query of a product page.
#[derive(Debug, Deserialize)]
pub struct ProductParams {
    /// The view id of the listing the visitor came from.
    #[serde(default)]
    v: Option<String>,
}

/// `GET /mall/ad/{id}?v=VIEW`: the product page. An inactive ad is "not found", except for the
/// hosts of its company (who see a note instead).
async fn product(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<ProductParams>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let ctx = Visit::of(&state, &headers).await?;
    let missing = "This product is not in the mall (any more).";
    let Ok(id) = id.parse::<i64>() else {
        return Ok(not_found(&ctx, &state, missing));
    };
    let Some(ad) = state.store_call(state.store.ad(id)).await? else {
        return Ok(not_found(&ctx, &state, missing));
    };
    let now = state.clock.now_ms();
    let active = ad.is_active(now);
    let own = ctx
        .viewer
        .host
        .as_ref()
        .is_some_and(|h| h.company_id == ad.company_id);
    if !active && !own {
        return Ok(not_found(&ctx, &state, missing));
    }
    if let Some(view) = params.v.as_deref().filter(|v| is_view_id(v)) {
        if active {
            if let Err(e) = state
                .store_call(state.store.record_click(view, ad.id, now))
                .await
            {
                warn!(ad = ad.id, cause = %e, "click not counted");
            }
        }
    }
    let host_name = state
        .store_call(state.store.host(&ad.fields.host_login))
        .await?
        .map(|h| h.name);
    let related: Vec<Ad> = state
        .store_call(
            state
                .store
                .rotate_ads(Some(&ad.fields.category), now, RELATED_SHOWN + 1),
        )
        .await?
        .into_iter()
        .filter(|a| a.id != ad.id)
        .take(RELATED_SHOWN as usize)
        .collect();
    let related_view = count_impressions(&state, &related).await?;

    let f = &ad.fields;
    let mut main = String::from("<article class=\"product-page\">");
    if !active {
        main.push_str(
            "<p class=\"notice\">This ad is not showing in the mall now (paused, not started \
             or ended): only your company's hosts see this page.</p>",
        );
    }
    main.push_str(&gallery(&ad));
    let _ = write!(
        main,
        "<section class=\"card details\">\
         <p class=\"crumbs\"><a href=\"/mall\">Mall</a> › <a{cat_href}>{category}</a></p>\
         <h1>{title}</h1><p class=\"price\">{price}</p>\
         <p class=\"seller\">Sold by <strong>{company}</strong>{host}</p>\
         <div class=\"description\">{description}</div></section>",
        cat_href = attr("href", &category_path(&f.category)),
        category = escape(&f.category),
        title = escape(&f.title),
        price = escape(&format_price(f.price_minor, &f.currency)),
        company = escape(&ad.company_name),
        host = host_name.map_or_else(String::new, |n| format!(
            " · questions answered by {}",
            escape(&n)
        )),
        description = paragraphs(&f.description),
    );
    let form = super::inquiry::form_html(&state, &ctx.viewer, &ad, &ctx.form.token);
    let _ = write!(
        main,
        "<section class=\"inquiry-slot\" id=\"ask\" aria-label=\"Ask about this product\">{form}</section>"
    );
    if !related.is_empty() {
        let _ = write!(
            main,
            "<section class=\"related\"><h2>More in {}</h2>{}</section>",
            escape(&f.category),
            cards(&related, &related_view)
        );
    }
    main.push_str("</article>");
    Ok(ctx.respond(&state, StatusCode::OK, &f.title, "mall-product", &main))
}

/// The pictures of an ad: a strip that snaps picture by picture (swipe on a phone), and
/// thumbnails that jump to each.
fn gallery(ad: &Ad) -> String {
    if ad.pictures.is_empty() {
        return format!(
            "<div class=\"gallery\"><div class=\"slides\"><figure class=\"no-picture\" \
             aria-hidden=\"true\">{}</figure></div></div>",
            escape(&ad.fields.title.chars().next().unwrap_or('?').to_string())
        );
    }
    let mut slides = String::new();
    let mut thumbs = String::new();
    let count = ad.pictures.len();
    for (n, id) in ad.pictures.iter().enumerate() {
        let src = format!("/mall/picture/{id}");
        let alt = if count == 1 {
            ad.fields.title.clone()
        } else {
            format!("{} (picture {} of {count})", ad.fields.title, n + 1)
        };
        let _ = write!(
            slides,
            "<figure{anchor}><img{src}{alt}{lazy}></figure>",
            anchor = attr("id", &format!("picture-{}", n + 1)),
            src = attr("src", &src),
            alt = attr("alt", &alt),
            lazy = if n == 0 { "" } else { " loading=\"lazy\"" },
        );
        let _ = write!(
            thumbs,
            "<a{href}><img{src} alt=\"\" loading=\"lazy\"></a>",
            href = attr("href", &format!("#picture-{}", n + 1)),
            src = attr("src", &src),
        );
    }
    let thumbs = if count > 1 {
        format!("<nav class=\"thumbs\" aria-label=\"Pictures\">{thumbs}</nav>")
    } else {
        String::new()
    };
    format!("<div class=\"gallery\"><div class=\"slides\">{slides}</div>{thumbs}</div>")
}

/// Plain text as paragraphs: blank lines part paragraphs, single line breaks stay; all escaped.
fn paragraphs(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = String::new();
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let lines: Vec<String> = para.lines().map(|l| escape(l.trim_end())).collect();
        let _ = write!(out, "<p>{}</p>", lines.join("<br>"));
    }
    out
}

/// `GET /mall/picture/{id}`: the bytes with their content type, `nosniff`, cached for a day.
async fn picture(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = id.parse::<i64>().map_err(|_| AppError::NotFound)?;
    let picture = state
        .store_call(state.store.picture(id))
        .await?
        .ok_or(AppError::NotFound)?;
    // Only the types the store accepts are served; anything else would be a store defect.
    let content_type = chmail::store::mall::PICTURE_TYPES
        .into_iter()
        .find(|t| *t == picture.content_type)
        .ok_or(AppError::NotFound)?;
    let cache = format!("public, max-age={PICTURE_MAX_AGE_SECS}");
    let mut response = picture.bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_recognised_by_their_content_only() {
        assert_eq!(
            picture_type(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some("image/png")
        );
        assert_eq!(picture_type(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(picture_type(b"GIF89a...."), Some("image/gif"));
        assert_eq!(picture_type(b"RIFF\x10\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(picture_type(b"RIFF\x10\0\0\0WAVEfmt "), None);
        assert_eq!(
            picture_type(b"<svg xmlns=\"http://www.w3.org/2000/svg\">"),
            None
        );
        assert_eq!(picture_type(b"<html><script>"), None);
        assert_eq!(picture_type(b""), None);
    }

    #[test]
    fn prices_show_two_decimals_except_in_zero_decimal_currencies() {
        assert_eq!(format_price(1250, "EUR"), "€12.50");
        assert_eq!(format_price(129_900, "usd"), "$1,299.00");
        assert_eq!(format_price(5, "GBP"), "£0.05");
        assert_eq!(format_price(35_000, "KRW"), "₩35,000");
        assert_eq!(format_price(1_234_567, "JPY"), "¥1,234,567");
        assert_eq!(format_price(1250, "CHF"), "12.50 CHF");
        assert_eq!(format_price(0, "EUR"), "€0.00");
    }

    #[test]
    fn typed_prices_become_minor_units() {
        assert_eq!(parse_price("12.50", "EUR"), Ok(1250));
        assert_eq!(parse_price("12.5", "EUR"), Ok(1250));
        assert_eq!(parse_price(" 12 ", "EUR"), Ok(1200));
        assert_eq!(parse_price("0.05", "EUR"), Ok(5));
        assert_eq!(parse_price("35000", "KRW"), Ok(35_000));
        assert_eq!(parse_price("35000.00", "KRW"), Ok(35_000));
        for bad in [
            "", "-1", "1,299.00", "12.", ".5", "12.345", "1e3", "abc", "12.5.0",
        ] {
            assert!(parse_price(bad, "EUR").is_err(), "{bad:?} accepted");
        }
        assert!(parse_price("35000.5", "KRW")
            .unwrap_err()
            .contains("whole number"));
        assert!(parse_price("99999999999999999999", "EUR").is_err());
        assert!(parse_price("10000000001", "EUR").is_err());
    }

    #[test]
    fn url_components_are_percent_encoded() {
        assert_eq!(url_component("Home & Garden"), "Home%20%26%20Garden");
        assert_eq!(url_component("a/b?c#d"), "a%2Fb%3Fc%23d");
        assert_eq!(url_component("Küche"), "K%C3%BCche");
        assert_eq!(ad_path(7, Some("ab_-9")), "/mall/ad/7?v=ab_-9");
    }

    #[test]
    fn descriptions_keep_their_line_breaks_and_are_escaped() {
        assert_eq!(
            paragraphs("One\nTwo <b>\n\n\nThree & four"),
            "<p>One<br>Two &lt;b&gt;</p><p>Three &amp; four</p>"
        );
    }

    #[test]
    fn the_pager_links_neighbouring_pages() {
        let html = pager(2, 50, 10, |n| format!("/x?page={n}"));
        assert!(html.contains("href=\"/x?page=1\""));
        assert!(html.contains("aria-current=\"page\">2<"));
        assert!(html.contains("href=\"/x?page=5\""));
        assert!(!html.contains("page=6"));
        assert_eq!(pager(1, 10, 10, |n| n.to_string()), "");
    }

    #[test]
    fn page_numbers_are_checked() {
        assert_eq!(page_number(None).ok(), Some(1));
        assert_eq!(page_number(Some("3")).ok(), Some(3));
        assert!(page_number(Some("0")).is_err());
        assert!(page_number(Some("-2")).is_err());
        assert!(page_number(Some("x")).is_err());
        assert!(page_number(Some("99999999")).is_err());
    }
}
