//! HTML templating without a template engine: [`escape`] for every piece of text that reaches a
//! page, and [`page`] for the common layout (head, stylesheet, scripts, body attributes).
//!
//! Every dynamic value goes through [`escape`] (or [`attr`]) at the point where it is written into
//! markup, so a hostile subject or address cannot open a tag or leave an attribute.

use std::fmt::Write as _;

/// `text` with `& < > " '` replaced by entities: safe in element content and in quoted
/// attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// ` name="value"` with the value escaped, for building attribute lists.
pub fn attr(name: &str, value: &str) -> String {
    format!(" {name}=\"{}\"", escape(value))
}

/// What a page needs besides its content.
#[derive(Debug, Default)]
pub struct Page<'a> {
    /// The `<title>` (escaped here).
    pub title: &'a str,
    /// Extra attributes of `<body>`, already built with [`attr`].
    pub body_attrs: String,
    /// Scripts to load with `defer` (same-origin paths such as `/static/chat.js`).
    pub scripts: &'a [&'a str],
}

/// A complete HTML document around `main` (already escaped markup).
pub fn page(p: &Page<'_>, main: &str) -> String {
    let mut head = String::new();
    for src in p.scripts {
        let _ = write!(head, "<script defer{}></script>", attr("src", src));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{title}</title>\n<link rel=\"stylesheet\" href=\"/static/chat.css\">\n{head}\n\
         </head>\n<body{attrs}>\n<header class=\"bar\"><a class=\"brand\" href=\"/me\">CHmail</a></header>\n\
         <main>\n{main}\n</main>\n</body>\n</html>\n",
        title = escape(p.title),
        attrs = p.body_attrs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("Grüße"), "Grüße");
    }

    #[test]
    fn attributes_cannot_be_left() {
        assert_eq!(
            attr("data-x", "a\" onload=\"b"),
            " data-x=\"a&quot; onload=&quot;b\""
        );
    }

    #[test]
    fn the_title_is_escaped_and_scripts_are_deferred() {
        let html = page(
            &Page {
                title: "<b>",
                body_attrs: attr("data-page", "x"),
                scripts: &["/static/chat.js"],
            },
            "<p>hi</p>",
        );
        assert!(html.contains("<title>&lt;b&gt;</title>"));
        assert!(html.contains("<script defer src=\"/static/chat.js\"></script>"));
        assert!(html.contains("<body data-page=\"x\">"));
    }
}
