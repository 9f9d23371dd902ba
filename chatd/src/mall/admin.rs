//! The mall's admin commands: `chatd mall add-company`, `chatd mall add-host` and
//! `chatd mall import-ads FILE.csv`.
//!
//! The CSV file has a header row naming its columns, in any order: `company`, `host`, `title`,
//! `description`, `price`, `currency`, `category` (required) and `pictures`, `starts`, `ends`
//! (optional). Fields follow RFC 4180: separated by commas, quoted with `"` when they hold a
//! comma, a quote (doubled) or a line break. The file is UTF-8.
//!
//! - `company` and `host`: a company added with `add-company` and one of its hosts (added with
//!   `add-host`); the host answers the ad's inquiries.
//! - `price`: a decimal in the currency (`12.50`; whole numbers for currencies without minor
//!   units such as KRW and JPY); `currency`: the ISO 4217 code.
//! - `pictures`: file names relative to the CSV file, separated by `|`; each is checked by its
//!   content (PNG, JPEG, GIF or WebP) and size (`[mall] max_picture_bytes`).
//! - `starts`, `ends`: empty (at once; no end), a date `2025-06-01` (from 00:00 UTC; an end date
//!   is the last day shown) or an RFC 3339 time `2025-06-01T09:00:00+02:00` (an end is exclusive).
//!
//! A bad row is reported with its line number and reason and changes nothing; the good rows are
//! imported. Importing the same file again adds nothing twice: a row whose company already has an
//! ad with the same title is skipped.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    path::Path,
};

use chmail::store::{
    mall::{check_ad_fields, AdFields, Company, MAX_PICTURES_PER_AD, MAX_PICTURE_LEN},
    Store, StoreError, MAX_ADDRESS_LEN,
};

use super::storefront::parse_price;

/// Why an admin command did nothing (a bad row of an import is not an error: it is reported).
#[derive(Debug, thiserror::Error)]
pub enum MallAdminError {
    /// The input is wrong; the text says what to change.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of the admin commands.
pub type Result<T, E = MallAdminError> = std::result::Result<T, E>;

/// The columns an import needs.
pub const REQUIRED_COLUMNS: [&str; 7] = [
    "company",
    "host",
    "title",
    "description",
    "price",
    "currency",
    "category",
];

/// The columns an import may have besides the required ones.
pub const OPTIONAL_COLUMNS: [&str; 3] = ["pictures", "starts", "ends"];

/// `chatd mall add-company NAME`: adds a company (or finds the one of that name).
///
/// # Errors
/// [`MallAdminError::Invalid`] for an empty or too long name; a store error.
pub async fn add_company(store: &dyn Store, name: &str, now_ms: i64) -> Result<String> {
    let (company, added) = store
        .add_company(name.trim(), now_ms)
        .await
        .map_err(invalid_as_message)?;
    Ok(if added {
        format!("added company {} {:?}\n", company.id, company.name)
    } else {
        format!("company {} {:?} exists already\n", company.id, company.name)
    })
}

/// `chatd mall add-host --company NAME LOGIN [--name NAME]`: makes `login` (an address) a host of
/// the company, with `name` as display name (default: the address's local part). Adding the
/// same host again updates the name.
///
/// # Errors
/// [`MallAdminError::Invalid`] for a bad address or name, a missing company, or a login that is
/// already a host of another company; a store error.
pub async fn add_host(
    store: &dyn Store,
    company: &str,
    login: &str,
    name: Option<&str>,
    now_ms: i64,
) -> Result<String> {
    let login = check_login(login)?;
    let company = store
        .company_by_name(company.trim())
        .await?
        .ok_or_else(|| {
            MallAdminError::Invalid(format!(
                "no company named {:?}: add it first with `chatd mall add-company`",
                company.trim()
            ))
        })?;
    if let Some(other) = store.host(&login).await? {
        if other.company_id != company.id {
            let theirs = store
                .company(other.company_id)
                .await?
                .map_or_else(|| other.company_id.to_string(), |c| c.name);
            return Err(MallAdminError::Invalid(format!(
                "{login} is already a host of {theirs:?}; a login hosts one company"
            )));
        }
    }
    let local = login.split('@').next().unwrap_or_default();
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(local);
    let (host, added) = store
        .add_host(company.id, &login, name, now_ms)
        .await
        .map_err(invalid_as_message)?;
    Ok(if added {
        format!(
            "added host {} ({:?}) to company {:?}\n",
            host.login, host.name, company.name
        )
    } else {
        format!(
            "host {} ({:?}) of company {:?} updated\n",
            host.login, host.name, company.name
        )
    })
}

/// A login as the mall keeps it: a lowercased address.
fn check_login(typed: &str) -> Result<String> {
    let login = typed.trim().to_lowercase();
    let ok = login.len() <= MAX_ADDRESS_LEN
        && !login.chars().any(|c| c.is_whitespace() || c.is_control())
        && login.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if ok {
        Ok(login)
    } else {
        Err(MallAdminError::Invalid(format!(
            "{:?} is not an address like host@shop.example",
            typed.trim()
        )))
    }
}

/// A store refusal as a plain message for the admin.
fn invalid_as_message(e: StoreError) -> MallAdminError {
    match e {
        StoreError::Invalid(text) => MallAdminError::Invalid(text),
        other => MallAdminError::Store(other),
    }
}

// --- importing ads --------------------------------------------------------------------------

/// One row of an import that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowNote {
    /// The line the row starts on (the header is line 1).
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// The ids of the ads added, in file order.
    pub added: Vec<i64>,
    /// Pictures stored with them.
    pub pictures: usize,
    /// Rows skipped because their company has an ad with the same title already.
    pub skipped: Vec<RowNote>,
    /// Rows not imported because something in them is wrong.
    pub bad: Vec<RowNote>,
}

impl ImportReport {
    /// The bad and skipped rows, one a line, and a summary line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut notes: Vec<(&RowNote, &str)> = self
            .bad
            .iter()
            .map(|n| (n, ""))
            .chain(self.skipped.iter().map(|n| (n, "skipped: ")))
            .collect();
        notes.sort_by_key(|(n, _)| n.line);
        for (note, prefix) in notes {
            let _ = writeln!(out, "line {}: {prefix}{}", note.line, note.reason);
        }
        let _ = writeln!(
            out,
            "imported {} {} with {} {}; {} skipped (imported before); {} bad {}",
            self.added.len(),
            plural(self.added.len(), "ad", "ads"),
            self.pictures,
            plural(self.pictures, "picture", "pictures"),
            self.skipped.len(),
            self.bad.len(),
            plural(self.bad.len(), "row", "rows"),
        );
        out
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Where an import finds the pictures a row names: files beside the CSV, or the demo's
/// embedded pictures. The error is a sentence for the report.
pub type PictureLoader<'a> = dyn Fn(&str) -> Result<Vec<u8>, String> + Send + Sync + 'a;

/// `chatd mall import-ads FILE.csv`: imports the ads of a CSV file, whose pictures are files
/// relative to it.
///
/// # Errors
/// When the file cannot be read or its header is wrong, or the store fails; bad rows are in the
/// report.
pub async fn import_ads_file(
    store: &dyn Store,
    path: &Path,
    max_picture_bytes: usize,
    now_ms: i64,
) -> Result<ImportReport> {
    let bytes = std::fs::read(path).map_err(|source| MallAdminError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        MallAdminError::Invalid(format!(
            "{} is not UTF-8 text (byte {} is not): save it as UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
    let load = move |name: &str| -> Result<Vec<u8>, String> {
        std::fs::read(dir.join(name)).map_err(|e| format!("picture {name:?}: {e}"))
    };
    import_ads(store, &text, &load, max_picture_bytes, now_ms).await
}

/// Imports the ads of CSV `text` (the module doc describes it), loading pictures with `load`.
///
/// # Errors
/// When the header is wrong or the store fails; bad rows are in the report.
pub async fn import_ads(
    store: &dyn Store,
    text: &str,
    load: &PictureLoader<'_>,
    max_picture_bytes: usize,
    now_ms: i64,
) -> Result<ImportReport> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = parse_csv(text).into_iter();
    let header = records.next().ok_or_else(|| {
        MallAdminError::Invalid("the file is empty: it needs a header row".into())
    })?;
    if let Some(e) = &header.error {
        return Err(MallAdminError::Invalid(format!(
            "line {}: the header row: {e}",
            header.line
        )));
    }
    let columns = Columns::of(&header.fields)?;
    let max_picture = max_picture_bytes.min(MAX_PICTURE_LEN);
    let mut import = Import {
        store,
        load,
        max_picture,
        now_ms,
        companies: HashMap::new(),
        titles: HashMap::new(),
        report: ImportReport::default(),
    };
    for record in records {
        import.row(&columns, record).await?;
    }
    Ok(import.report)
}

/// The column index of each field name.
struct Columns(HashMap<&'static str, usize>);

impl Columns {
    fn of(header: &[String]) -> Result<Self> {
        let mut map = HashMap::new();
        for (i, name) in header.iter().enumerate() {
            let name = name.trim().to_lowercase();
            let known = REQUIRED_COLUMNS
                .iter()
                .chain(OPTIONAL_COLUMNS.iter())
                .find(|c| **c == name)
                .ok_or_else(|| {
                    MallAdminError::Invalid(format!(
                        "line 1: unknown column {name:?}; the columns are {} and optionally {}",
                        REQUIRED_COLUMNS.join(","),
                        OPTIONAL_COLUMNS.join(",")
                    ))
                })?;
            if map.insert(*known, i).is_some() {
                return Err(MallAdminError::Invalid(format!(
                    "line 1: the column {name:?} is there twice"
                )));
            }
        }
        let missing: Vec<&str> = REQUIRED_COLUMNS
            .iter()
            .filter(|c| !map.contains_key(*c))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(MallAdminError::Invalid(format!(
                "line 1: the header lacks the column(s) {}",
                missing.join(", ")
            )));
        }
        Ok(Self(map))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// The field of `column` in `fields` (empty for an absent optional column).
    fn get<'a>(&self, fields: &'a [String], column: &str) -> &'a str {
        self.0
            .get(column)
            .and_then(|&i| fields.get(i))
            .map_or("", String::as_str)
    }
}

/// The state of one import: caches of companies and their titles, and the report.
struct Import<'a> {
    store: &'a dyn Store,
    load: &'a PictureLoader<'a>,
    max_picture: usize,
    now_ms: i64,
    /// Companies by lowercased name (`None`: no such company).
    companies: HashMap<String, Option<Company>>,
    /// The titles of each company's ads, to skip rows imported before.
    titles: HashMap<i64, HashSet<String>>,
    report: ImportReport,
}

/// A row ready to store.
struct ReadyRow {
    company: Company,
    fields: AdFields,
    pictures: Vec<(&'static str, Vec<u8>)>,
}

impl Import<'_> {
    /// Imports one row, or notes why not. Only a store failure ends the import.
    async fn row(&mut self, columns: &Columns, record: CsvRecord) -> Result<()> {
        let line = record.line;
        let ready = match record.error {
            Some(e) => Err(e),
            None => self.check(columns, &record.fields).await?,
        };
        let ready = match ready {
            Ok(ready) => ready,
            Err(reason) => {
                self.report.bad.push(RowNote { line, reason });
                return Ok(());
            }
        };
        let titles = self.titles.entry(ready.company.id).or_default();
        if !titles.insert(ready.fields.title.clone()) {
            self.report.skipped.push(RowNote {
                line,
                reason: format!(
                    "{:?} already has an ad titled {:?}",
                    ready.company.name, ready.fields.title
                ),
            });
            return Ok(());
        }
        let id = match self
            .store
            .create_ad(ready.company.id, &ready.fields, self.now_ms)
            .await
        {
            Ok(id) => id,
            Err(StoreError::Invalid(reason)) => {
                titles.remove(&ready.fields.title);
                self.report.bad.push(RowNote { line, reason });
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.report.added.push(id);
        for (content_type, bytes) in &ready.pictures {
            let added = self
                .store
                .add_picture(id, ready.company.id, content_type, bytes)
                .await?;
            if added.is_some() {
                self.report.pictures += 1;
            }
        }
        Ok(())
    }

    /// Checks a row's fields. `Ok(Err(reason))` for a bad row; `Err` only when the store fails.
    async fn check(
        &mut self,
        columns: &Columns,
        fields: &[String],
    ) -> Result<Result<ReadyRow, String>> {
        if fields.len() != columns.len() {
            return Ok(Err(format!(
                "has {} fields, the header has {} (a comma or a line break in a text needs \
                 quotes around the text)",
                fields.len(),
                columns.len()
            )));
        }
        let get = |c: &str| columns.get(fields, c).trim();
        let company_name = get("company");
        if company_name.is_empty() {
            return Ok(Err("company is empty".into()));
        }
        let key = company_name.to_lowercase();
        if !self.companies.contains_key(&key) {
            let found = self.store.company_by_name(company_name).await?;
            if let Some(c) = &found {
                let titles = self
                    .store
                    .ads_of(c.id)
                    .await?
                    .into_iter()
                    .map(|a| a.fields.title)
                    .collect();
                self.titles.insert(c.id, titles);
            }
            self.companies.insert(key.clone(), found);
        }
        let Some(company) = self.companies.get(&key).cloned().flatten() else {
            return Ok(Err(format!(
                "no company named {company_name:?}: add it with `chatd mall add-company`"
            )));
        };
        let host_login = get("host").to_lowercase();
        let is_host = match self.store.host(&host_login).await? {
            Some(h) => h.company_id == company.id,
            None => false,
        };
        if !is_host {
            return Ok(Err(format!(
                "{host_login:?} is not a host of {:?}: add it with `chatd mall add-host`",
                company.name
            )));
        }
        let currency = get("currency").to_ascii_uppercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Ok(Err(format!(
                "currency {currency:?} is not a three-letter code like EUR, USD or KRW"
            )));
        }
        let price_minor = match parse_price(get("price"), &currency) {
            Ok(p) => p,
            Err(e) => return Ok(Err(format!("price {:?}: {e}", get("price")))),
        };
        let starts_ms = match parse_when(get("starts"), false) {
            Ok(t) => t,
            Err(e) => return Ok(Err(format!("starts: {e}"))),
        };
        let ends_ms = match parse_when(get("ends"), true) {
            Ok(t) => t,
            Err(e) => return Ok(Err(format!("ends: {e}"))),
        };
        let ad = AdFields {
            host_login,
            title: get("title").to_owned(),
            description: columns.get(fields, "description").trim().to_owned(),
            price_minor,
            currency,
            category: get("category").to_owned(),
            starts_ms,
            ends_ms,
            paused: false,
        };
        let ad = match check_ad_fields(&ad) {
            Ok(ad) => ad,
            Err(StoreError::Invalid(e)) => return Ok(Err(e)),
            Err(e) => return Err(e.into()),
        };
        let names: Vec<&str> = get("pictures")
            .split('|')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if names.len() > MAX_PICTURES_PER_AD {
            return Ok(Err(format!(
                "{} pictures; an ad has at most {MAX_PICTURES_PER_AD}",
                names.len()
            )));
        }
        let mut pictures = Vec::with_capacity(names.len());
        for name in names {
            let bytes = match (self.load)(name) {
                Ok(b) => b,
                Err(e) => return Ok(Err(e)),
            };
            if bytes.len() > self.max_picture {
                return Ok(Err(format!(
                    "picture {name:?} has {} bytes; at most {} are accepted",
                    bytes.len(),
                    self.max_picture
                )));
            }
            let content_type = match crate::picture::check(&bytes) {
                Ok(kind) => kind,
                Err(crate::picture::Refused::NotAPicture) => {
                    return Ok(Err(format!(
                        "picture {name:?} is not a PNG, JPEG, GIF or WebP picture"
                    )))
                }
                Err(crate::picture::Refused::TooManyPixels) => {
                    return Ok(Err(format!("picture {name:?} has more than 40 megapixels")))
                }
            };
            pictures.push((content_type, bytes));
        }
        Ok(Ok(ReadyRow {
            company,
            fields: ad,
            pictures,
        }))
    }
}

// --- dates -----------------------------------------------------------------------------------

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// A `starts` or `ends` field: empty (`None`), a date (00:00 UTC of it; for an end, of the day
/// after, so that the date is the last day shown) or an RFC 3339 time.
///
/// # Errors
/// A sentence for the report.
pub fn parse_when(text: &str, is_end: bool) -> Result<Option<i64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || {
        format!(
            "{text:?} is not a date like 2025-06-01 or a time like 2025-06-01T09:00:00Z \
             (RFC 3339)"
        )
    };
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let days = parse_date(date).ok_or_else(bad)?;
    let Some(time) = time else {
        let day = if is_end { days + 1 } else { days };
        return Ok(Some(day * DAY_MS));
    };
    let (clock, offset_ms) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let i = time.rfind(['+', '-']).ok_or_else(bad)?;
        let (clock, offset) = time.split_at(i);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':').ok_or_else(bad)?;
        let (h, m) = (
            number(h, 2, 23).ok_or_else(bad)?,
            number(m, 2, 59).ok_or_else(bad)?,
        );
        (clock, sign * (h * 3_600_000 + m * 60_000))
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = hms.split(':');
    let (Some(h), Some(m), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let h = number(h, 2, 23).ok_or_else(bad)?;
    let m = number(m, 2, 59).ok_or_else(bad)?;
    // 60: a leap second, read as the last second of the minute.
    let s = number(s, 2, 60).ok_or_else(bad)?.min(59);
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let millis = fraction
        .get(..3)
        .unwrap_or(fraction)
        .parse::<i64>()
        .map_or(0, |f| f * 10i64.pow(3 - fraction.len().min(3) as u32));
    Ok(Some(
        days * DAY_MS + h * 3_600_000 + m * 60_000 + s * 1000 + millis - offset_ms,
    ))
}

/// `digits` exactly `len` ASCII digits with a value up to `max`.
fn number(digits: &str, len: usize, max: i64) -> Option<i64> {
    if digits.len() != len || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n <= max)
}

/// `YYYY-MM-DD` as days since 1970-01-01.
fn parse_date(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let y = number(y, 4, 9999)?;
    let m = number(m, 2, 12).filter(|m| *m >= 1)?;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let d = number(d, 2, days_in_month).filter(|d| *d >= 1)?;
    Some(days_from_civil(y, m, d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// --- CSV (RFC 4180) ----------------------------------------------------------------------------

/// One record of a CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRecord {
    /// The line it starts on (from 1).
    pub line: usize,
    /// Its fields.
    pub fields: Vec<String>,
    /// Why it cannot be read, if so (its fields are then incomplete).
    pub error: Option<String>,
}

/// Splits `text` into records: fields separated by commas, quoted with `"` (a quote inside is
/// doubled), records ending at a line break (LF or CRLF) outside quotes. Blank lines are skipped.
/// A record with a stray quote is returned with an error and reading goes on at the next line;
/// an unclosed quote ends the file with an error.
pub fn parse_csv(text: &str) -> Vec<CsvRecord> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false; // the current field started with a quote
    let mut in_quotes = false; // inside that quote now
    let mut error: Option<String> = None;
    let mut line = 1;
    let mut start = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                fields.push(std::mem::take(&mut field));
                let blank = fields.len() == 1 && fields[0].is_empty() && !quoted;
                if !blank || error.is_some() {
                    records.push(CsvRecord {
                        line: start,
                        fields: std::mem::take(&mut fields),
                        error: error.take(),
                    });
                }
                fields.clear();
                quoted = false;
                line += 1;
                start = line;
            }
            _ if error.is_some() => {}
            '"' if field.is_empty() && !quoted => {
                quoted = true;
                in_quotes = true;
            }
            '"' => {
                error = Some(
                    "a quote inside a field that does not start with one (quote the whole \
                     field and double the quotes inside)"
                        .into(),
                );
            }
            c if quoted => {
                error = Some(format!(
                    "{c:?} after a closing quote (a quoted field ends at a comma or the line's \
                     end)"
                ));
            }
            c => field.push(c),
        }
    }
    if in_quotes {
        records.push(CsvRecord {
            line: start,
            fields,
            error: Some("a quoted field is not closed: the rest of the file was not read".into()),
        });
    } else if !field.is_empty() || !fields.is_empty() || quoted || error.is_some() {
        fields.push(field);
        records.push(CsvRecord {
            line: start,
            fields,
            error,
        });
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(records: &[CsvRecord]) -> Vec<(usize, Vec<&str>)> {
        records
            .iter()
            .map(|r| (r.line, r.fields.iter().map(String::as_str).collect()))
            .collect()
    }

    #[test]
    fn csv_fields_follow_rfc_4180_quoting() {
        let text = "a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\"two\nlines\"\n\n1,,3";
        let records = parse_csv(text);
        assert!(records.iter().all(|r| r.error.is_none()));
        assert_eq!(
            fields(&records),
            vec![
                (1, vec!["a", "b", "c"]),
                (2, vec!["x, y", "say \"hi\"", "two\nlines"]),
                (5, vec!["1", "", "3"]),
            ]
        );
    }

    #[test]
    fn csv_errors_name_their_line_and_reading_goes_on() {
        let text = "h\nab\"c\n\"x\"y\nok\n\"open\nstill";
        let records = parse_csv(text);
        assert_eq!(records.len(), 5);
        assert_eq!(records[1].line, 2);
        assert!(records[1].error.as_deref().unwrap_or("").contains("quote"));
        assert_eq!(records[2].line, 3);
        assert!(records[2]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("closing quote"));
        assert_eq!((records[3].line, records[3].error.is_none()), (4, true));
        assert_eq!(records[4].line, 5);
        assert!(records[4]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("not closed"));
    }

    #[test]
    fn dates_and_rfc_3339_times_become_milliseconds() {
        assert_eq!(parse_when("", false), Ok(None));
        assert_eq!(parse_when("1970-01-02", false), Ok(Some(DAY_MS)));
        assert_eq!(parse_when("1970-01-02", true), Ok(Some(2 * DAY_MS)));
        assert_eq!(
            parse_when("2024-02-29T12:00:00Z", false),
            Ok(Some(1_709_208_000_000))
        );
        assert_eq!(
            parse_when("2024-02-29T14:00:00.5+02:00", false),
            Ok(Some(1_709_208_000_500))
        );
        assert_eq!(
            parse_when("2024-02-29 06:30:00-05:30", false),
            Ok(Some(1_709_208_000_000))
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "24-01-01",
            "2024-01-01T25:00:00Z",
            "2024-01-01T10:00:00",
            "tomorrow",
            "2024-01-01T10:00Z",
        ] {
            assert!(parse_when(bad, false).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn logins_must_be_addresses() {
        assert_eq!(
            check_login(" Host@Shop.Example ").ok().as_deref(),
            Some("host@shop.example")
        );
        for bad in ["host", "@shop.example", "host@", "a b@c.d", "a@b@c.d"] {
            assert!(check_login(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_report_lists_rows_by_line_and_sums_up() {
        let report = ImportReport {
            added: vec![1, 2],
            pictures: 3,
            skipped: vec![RowNote {
                line: 2,
                reason: "dup".into(),
            }],
            bad: vec![RowNote {
                line: 4,
                reason: "price".into(),
            }],
        };
        assert_eq!(
            report.text(),
            "line 2: skipped: dup\nline 4: price\n\
             imported 2 ads with 3 pictures; 1 skipped (imported before); 1 bad row\n"
        );
    }
}
