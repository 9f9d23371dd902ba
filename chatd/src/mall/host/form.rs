//! The ad form: its fields as posted, their checks with a message per field, and its markup.

use std::fmt::Write as _;

use chmail::store::mall::{
    check_ad_fields, Ad, AdFields, Host, MAX_CATEGORY_LEN, MAX_DESCRIPTION_LEN, MAX_TITLE_LEN,
};
use serde::Deserialize;

use super::{HostView, DAY_MS};
use crate::{
    clock::format_utc_ms,
    mall::storefront,
    web::html::{attr, escape},
};

// --- ads: the form ----------------------------------------------------------------------------

/// The ad form as posted (and as shown again).
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct AdForm {
    /// The title.
    #[serde(default)]
    title: String,
    /// The description.
    #[serde(default)]
    description: String,
    /// The price as decimal text (`12.50`).
    #[serde(default)]
    price: String,
    /// The currency code.
    #[serde(default)]
    currency: String,
    /// The category.
    #[serde(default)]
    category: String,
    /// The first day (`YYYY-MM-DD`), or empty.
    #[serde(default)]
    starts: String,
    /// The last day (`YYYY-MM-DD`), or empty.
    #[serde(default)]
    ends: String,
    /// The answering host's login.
    #[serde(default)]
    host: String,
    /// The CSRF token.
    #[serde(default)]
    pub(super) csrf: String,
}

impl AdForm {
    /// The form filled in from a stored ad.
    pub(super) fn of(ad: &Ad) -> Self {
        let f = &ad.fields;
        Self {
            title: f.title.clone(),
            description: f.description.clone(),
            price: format_amount(f.price_minor, &f.currency),
            currency: f.currency.clone(),
            category: f.category.clone(),
            starts: f.starts_ms.map(format_date).unwrap_or_default(),
            // The form names the last day; the store keeps the (exclusive) end.
            ends: f
                .ends_ms
                .map(|e| format_date(e.saturating_sub(1)))
                .unwrap_or_default(),
            host: f.host_login.clone(),
            csrf: String::new(),
        }
    }

    /// An empty form for `host`.
    pub(super) fn blank(host: &Host) -> Self {
        Self {
            currency: "EUR".into(),
            host: host.login.clone(),
            ..Self::default()
        }
    }
}

/// The message of each bad field, by field name.
pub(super) type FieldErrors = Vec<(&'static str, String)>;

pub(super) fn error_for<'a>(errors: &'a FieldErrors, field: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, m)| m.as_str())
}

/// Checks a posted ad form against the company's `hosts`: the fields to store, or a message per
/// bad field. `paused` carries over from the stored ad.
pub(super) fn parse_ad(
    form: &AdForm,
    hosts: &[Host],
    paused: bool,
) -> Result<AdFields, FieldErrors> {
    let mut errors = FieldErrors::new();
    let title = form.title.trim();
    check_line(
        &mut errors,
        ("title", "The title"),
        title,
        MAX_TITLE_LEN,
        "Give the ad a title.",
    );
    let description = form.description.trim();
    check_text(
        &mut errors,
        ("description", "The description"),
        description,
        MAX_DESCRIPTION_LEN,
        None,
    );
    let currency = form.currency.trim().to_ascii_uppercase();
    let price = parse_price(&form.price, &currency).unwrap_or_else(|message| {
        errors.push(("price", message));
        0
    });
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.push((
            "currency",
            "The currency is a three-letter code such as EUR, USD or KRW.".into(),
        ));
    }
    let category = form.category.trim();
    check_line(
        &mut errors,
        ("category", "The category"),
        category,
        MAX_CATEGORY_LEN,
        "Give the ad a category.",
    );
    let starts = parse_optional_date(&form.starts).unwrap_or_else(|()| {
        errors.push((
            "starts",
            "Write the first day as a date (2025-06-30).".into(),
        ));
        None
    });
    let last_day = parse_optional_date(&form.ends).unwrap_or_else(|()| {
        errors.push(("ends", "Write the last day as a date (2025-06-30).".into()));
        None
    });
    if let (Some(s), Some(l)) = (starts, last_day) {
        if l < s {
            errors.push((
                "ends",
                "The last day cannot be before the first day.".into(),
            ));
        }
    }
    let host = form.host.trim().to_lowercase();
    if !hosts.iter().any(|h| h.login == host) {
        errors.push((
            "host",
            "Choose the host who answers, one of your shop's hosts.".into(),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let fields = AdFields {
        host_login: host,
        title: title.to_owned(),
        description: description.to_owned(),
        price_minor: price,
        currency,
        category: category.to_owned(),
        starts_ms: starts,
        ends_ms: last_day.map(|d| d.saturating_add(DAY_MS)),
        paused,
    };
    // The store's own rules, so that nothing the store would refuse gets past this page.
    check_ad_fields(&fields).map_err(|e| vec![("form", e.to_string())])
}

fn too_long(what: &str, max: usize, len: usize) -> String {
    format!(
        "{what} is too long: {len} bytes, at most {max} (a letter with an accent counts as two)."
    )
}

/// Checks the one-line text `value` of `field` (its form name and what the messages call it,
/// such as "The title"): `missing` when empty, at most `max` bytes, no control characters.
pub(super) fn check_line(
    errors: &mut FieldErrors,
    (field, what): (&'static str, &str),
    value: &str,
    max: usize,
    missing: &str,
) {
    if value.is_empty() {
        errors.push((field, missing.into()));
    } else if value.len() > max {
        errors.push((field, too_long(what, max, value.len())));
    } else if value.chars().any(char::is_control) {
        errors.push((field, format!("{what} must be one line of text.")));
    }
}

/// Checks the text `value` of `field` (lines allowed), as [`check_line`] does; an empty one is
/// refused with `missing` when there is one.
pub(super) fn check_text(
    errors: &mut FieldErrors,
    (field, what): (&'static str, &str),
    value: &str,
    max: usize,
    missing: Option<&str>,
) {
    if let (true, Some(missing)) = (value.is_empty(), missing) {
        errors.push((field, missing.into()));
    } else if value.len() > max {
        errors.push((field, too_long(what, max, value.len())));
    } else if has_control_but_lines(value) {
        errors.push((field, format!("{what} holds characters that are not text.")));
    }
}

/// Whether `text` holds a control character other than a line break or a tab.
fn has_control_but_lines(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
}

/// A price as typed (`12.50`, `12,50`; `35000` in a currency without decimals) in minor units
/// of `currency`: the storefront's rule ([`storefront::parse_price`]), with a decimal comma
/// taken as a point.
///
/// # Errors
/// A sentence for the form.
fn parse_price(text: &str, currency: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("Give a price (0 when it is free).".into());
    }
    let t = if t.contains('.') {
        t.to_owned()
    } else {
        t.replacen(',', ".", 1)
    };
    storefront::parse_price(&t, currency).map_err(|m| sentence(&m))
}

/// `text` with a capital first letter and a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// Minor units as the form shows them: `12.50`, or `35000` in a currency without decimals.
fn format_amount(minor: i64, currency: &str) -> String {
    match storefront::currency_decimals(currency) {
        0 => minor.to_string(),
        _ => format!("{}.{:02}", minor / 100, (minor % 100).abs()),
    }
}

/// An empty field as `None`, a date (`YYYY-MM-DD`) as its midnight UTC in ms.
fn parse_optional_date(text: &str) -> Result<Option<i64>, ()> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    parse_date(t).map(Some).ok_or(())
}

/// `YYYY-MM-DD` (years 1970 to 9999) as unix ms of its midnight UTC.
fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1970..=9999).contains(&y) || !(1..=days_in_month).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d) * DAY_MS)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (`YYYY-MM-DD`, UTC) of unix ms.
fn format_date(ms: i64) -> String {
    format_utc_ms(ms).chars().take(10).collect()
}

/// The ad form: `action` is where it posts; `errors` are shown beside their fields.
pub(super) fn ad_form_html(
    hv: &HostView,
    action: &str,
    form: &AdForm,
    errors: &FieldErrors,
    hosts: &[Host],
    submit: &str,
) -> String {
    let field = |name: &'static str, label: &str, control: String, hint: &str| {
        let error = error_for(errors, name).map_or_else(String::new, |m| {
            format!(
                "<p class=\"error\"{id}>{m}</p>",
                id = attr("id", &format!("error-{name}")),
                m = escape(m),
            )
        });
        let hint = if hint.is_empty() {
            String::new()
        } else {
            format!("<p class=\"hint\">{hint}</p>")
        };
        let invalid = if error.is_empty() { "" } else { " invalid" };
        format!(
            "<div class=\"field{invalid}\"><label{for_}>{label}</label>{control}{hint}{error}</div>",
            for_ = attr("for", name),
        )
    };
    let invalid = |name: &str| {
        if error_for(errors, name).is_some() {
            format!(
                " aria-invalid=\"true\"{}",
                attr("aria-describedby", &format!("error-{name}"))
            )
        } else {
            String::new()
        }
    };
    let text = |name: &'static str, value: &str, max: usize, extra: &str| {
        format!(
            "<input type=\"text\"{id}{name_}{value}{max}{extra}{invalid}>",
            id = attr("id", name),
            name_ = attr("name", name),
            value = attr("value", value),
            max = attr("maxlength", &max.to_string()),
            invalid = invalid(name),
        )
    };
    let date = |name: &'static str, value: &str| {
        format!(
            "<input type=\"date\"{id}{name_}{value}{invalid}>",
            id = attr("id", name),
            name_ = attr("name", name),
            value = attr("value", value),
            invalid = invalid(name),
        )
    };
    let mut options = String::new();
    let chosen = form.host.trim().to_lowercase();
    for h in hosts {
        let selected = if h.login == chosen { " selected" } else { "" };
        let _ = write!(
            options,
            "<option{value}{selected}>{name} ({login})</option>",
            value = attr("value", &h.login),
            name = escape(&h.name),
            login = escape(&h.login),
        );
    }
    let general = error_for(errors, "form").map_or_else(String::new, |m| {
        format!(
            "<p class=\"error\" id=\"error-form\" role=\"alert\">{}</p>",
            escape(m)
        )
    });
    let summary = if errors.is_empty() {
        String::new()
    } else {
        "<p class=\"error\" role=\"alert\" id=\"form-errors\">Please correct the fields \
         marked below. Nothing was saved.</p>"
            .to_owned()
    };
    let fields = [
        field(
            "title",
            "Title",
            text("title", &form.title, MAX_TITLE_LEN, " required"),
            "",
        ),
        field(
            "description",
            "Description",
            format!(
                "<textarea id=\"description\" name=\"description\" rows=\"6\"{max}{invalid}>{text}</textarea>",
                max = attr("maxlength", &MAX_DESCRIPTION_LEN.to_string()),
                invalid = invalid("description"),
                text = escape(&form.description),
            ),
            "Plain text: what it is, its size, its condition.",
        ),
        field(
            "price",
            "Price",
            text("price", &form.price, 20, " inputmode=\"decimal\" required"),
            "A number such as 12.50.",
        ),
        field(
            "currency",
            "Currency",
            text(
                "currency",
                &form.currency,
                3,
                " autocapitalize=\"characters\" required",
            ),
            "Three letters: EUR, USD, KRW.",
        ),
        field(
            "category",
            "Category",
            text("category", &form.category, MAX_CATEGORY_LEN, " required"),
            "",
        ),
        field(
            "starts",
            "First day",
            date("starts", &form.starts),
            "Empty: from now on.",
        ),
        field(
            "ends",
            "Last day",
            date("ends", &form.ends),
            "Empty: no end.",
        ),
        field(
            "host",
            "Answered by",
            format!(
                "<select id=\"host\" name=\"host\"{invalid}>{options}</select>",
                invalid = invalid("host")
            ),
            "Questions about this ad are mailed to this host.",
        ),
    ]
    .concat();
    format!(
        "{summary}{general}<form method=\"post\"{action} class=\"stack ad-form\" novalidate>{csrf}\
         {fields}<div class=\"actions\"><button type=\"submit\" class=\"primary\">{submit}</button>\
         <a href=\"/mall/host\">Cancel</a></div></form>",
        action = attr("action", action),
        csrf = hv.csrf_field(),
        submit = escape(submit),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_read_as_decimal_text_in_the_currency_s_minor_units() {
        assert_eq!(parse_price(" 12.5 ", "EUR"), Ok(1250));
        assert_eq!(parse_price("12,05", "EUR"), Ok(1205));
        assert_eq!(parse_price("35000", "KRW"), Ok(35000));
        let empty = parse_price("", "EUR").unwrap_err();
        assert!(empty.contains("Give a price"), "{empty}");
        let bad = parse_price("ten", "EUR").unwrap_err();
        assert!(bad.starts_with("The price") && bad.ends_with('.'), "{bad}");
        assert_eq!(format_amount(1250, "EUR"), "12.50");
        assert_eq!(format_amount(7, "USD"), "0.07");
        assert_eq!(format_amount(35000, "KRW"), "35000");
    }

    #[test]
    fn dates_are_whole_days_in_utc() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-02-29"), Some(951_782_400_000));
        assert_eq!(parse_date("2024-05-01"), Some(1_714_521_600_000));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "24-01-01",
            "2024-01-01x",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
        assert_eq!(format_date(951_782_400_000), "2000-02-29");
    }

    fn host(login: &str) -> Host {
        Host {
            login: login.into(),
            company_id: 1,
            name: "Ana".into(),
            created_ms: 0,
        }
    }

    fn good_form() -> AdForm {
        AdForm {
            title: "Tea pot".into(),
            description: "Cast iron.\nHolds a litre.".into(),
            price: "25.00".into(),
            currency: "eur".into(),
            category: "Kitchen".into(),
            starts: "2025-01-01".into(),
            ends: "2025-01-31".into(),
            host: "ana@shop.example".into(),
            csrf: String::new(),
        }
    }

    #[test]
    fn a_good_ad_form_becomes_the_fields_with_an_exclusive_end() {
        let hosts = [host("ana@shop.example")];
        let f = parse_ad(&good_form(), &hosts, true).expect("valid");
        assert_eq!(f.price_minor, 2500);
        assert_eq!(f.currency, "EUR");
        assert_eq!(f.starts_ms, parse_date("2025-01-01"));
        assert_eq!(f.ends_ms, parse_date("2025-02-01"));
        assert!(f.paused);
    }

    #[test]
    fn each_bad_field_gets_its_own_message() {
        let hosts = [host("ana@shop.example")];
        type Spoil = fn(&mut AdForm);
        let cases: [(Spoil, &str); 9] = [
            (|f| f.title = " ".into(), "title"),
            (|f| f.title = "x".repeat(MAX_TITLE_LEN + 1), "title"),
            (|f| f.description = "a\u{7}b".into(), "description"),
            (|f| f.price = "ten".into(), "price"),
            (|f| f.currency = "EURO".into(), "currency"),
            (|f| f.category = String::new(), "category"),
            (|f| f.starts = "tomorrow".into(), "starts"),
            (|f| f.ends = "2024-12-31".into(), "ends"),
            (|f| f.host = "mallory@evil.example".into(), "host"),
        ];
        for (spoil, field) in cases {
            let mut form = good_form();
            spoil(&mut form);
            let errors = parse_ad(&form, &hosts, false).expect_err(field);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].0, field, "{errors:?}");
        }
    }
}
