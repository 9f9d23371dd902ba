//! HTML to plain text, for replies sent as HTML only: enough to read a mail client's reply, not
//! a browser.
//!
//! Script, style and the head are dropped; `<br>`, block elements (`<div>`, `<li>`, `<tr>` ..)
//! and paragraphs (`<p>`) break lines; other tags go; white space collapses as a browser
//! collapses it (not in `<pre>`); entities are decoded. A `<blockquote>` is quoted history: its
//! content is dropped and one `>` line stands for it, so that [`super::history`] treats it as it
//! treats `>` quoting (and drops the "On .. wrote:" line above it).

/// Longest entity read (`&thetasym;` is the longest name HTML 4 has; numeric ones are shorter).
const MAX_ENTITY: usize = 12;

/// The text of `html`: lines separated by `\n`, no line ending in spaces, at most one blank line
/// in a row.
pub(crate) fn to_text(html: &str) -> String {
    // ASCII lower case keeps every byte offset, so tag names found in `lower` index `html`.
    let lower = html.to_ascii_lowercase();
    let head_close = lower.rfind("</head");
    let bytes = html.as_bytes();
    let mut out = Out::default();
    let mut quote_depth = 0usize;
    let mut pre_depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' if lower[i..].starts_with("<!--") => {
                i = lower[i + 4..]
                    .find("-->")
                    .map_or(bytes.len(), |e| i + 4 + e + 3);
            }
            b'<' if bytes
                .get(i + 1)
                .is_some_and(|b| b.is_ascii_alphabetic() || matches!(b, b'/' | b'!' | b'?')) =>
            {
                let Some(len) = html[i..].find('>') else {
                    break; // an unclosed tag at the end: nothing readable follows
                };
                let tag = Tag::parse(&lower[i + 1..i + len]);
                i += len + 1;
                if tag.closing {
                    match tag.name {
                        "blockquote" => {
                            quote_depth = quote_depth.saturating_sub(1);
                            if quote_depth == 0 {
                                out.block();
                            }
                        }
                        "pre" => pre_depth = pre_depth.saturating_sub(1),
                        _ => {}
                    }
                    if quote_depth == 0 && is_block(tag.name) {
                        out.block();
                    }
                    continue;
                }
                let skip_to = match tag.name {
                    "script" | "style" | "title" | "template" => Some(tag.name),
                    "head" if head_close.is_some_and(|c| c > i) => Some("head"),
                    _ => None,
                };
                if let Some(name) = skip_to {
                    let close = format!("</{name}");
                    i = lower[i..]
                        .find(&close)
                        .and_then(|c| lower[i + c..].find('>').map(|e| i + c + e + 1))
                        .unwrap_or(bytes.len());
                    continue;
                }
                if tag.name == "blockquote" {
                    if quote_depth == 0 {
                        out.block();
                        out.text.push_str(">\n");
                    }
                    quote_depth += 1;
                    continue;
                }
                if quote_depth > 0 {
                    continue;
                }
                match tag.name {
                    "br" => out.newline(),
                    "p" if !tag.attributes.contains("msonormal") => out.paragraph(),
                    "li" => {
                        out.block();
                        out.text.push_str("- ");
                    }
                    "td" | "th" => out.space = true,
                    "pre" => {
                        out.block();
                        pre_depth += 1;
                    }
                    name if is_block(name) => out.block(),
                    _ => {}
                }
            }
            b'&' => {
                let (decoded, len) = entity(&html[i..]);
                if quote_depth == 0 {
                    match decoded {
                        // A no-break space is a space that does not collapse.
                        '\u{a0}' => out.text.push(' '),
                        c => out.word(c),
                    }
                }
                i += len;
            }
            _ => {
                // Past the first character: it may be a `<` that starts no tag.
                let from = i + html[i..].chars().next().map_or(1, char::len_utf8);
                let end = html[from..]
                    .find(['<', '&'])
                    .map_or(bytes.len(), |e| from + e);
                if quote_depth == 0 {
                    out.run(&html[i..end], pre_depth > 0);
                }
                i = end;
            }
        }
    }
    tidy(&out.text)
}

/// Elements that start and end a line.
fn is_block(name: &str) -> bool {
    matches!(
        name,
        "address"
            | "article"
            | "aside"
            | "center"
            | "dd"
            | "div"
            | "dl"
            | "dt"
            | "fieldset"
            | "figure"
            | "footer"
            | "form"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "header"
            | "hr"
            | "li"
            | "main"
            | "nav"
            | "ol"
            | "p"
            | "pre"
            | "section"
            | "table"
            | "tbody"
            | "thead"
            | "tfoot"
            | "tr"
            | "ul"
    )
}

/// A tag: its lower-case name and the rest of it.
struct Tag<'a> {
    name: &'a str,
    closing: bool,
    attributes: &'a str,
}

impl<'a> Tag<'a> {
    /// `inside` is what stands between `<` and `>`, in lower case.
    fn parse(inside: &'a str) -> Self {
        let (closing, inside) = match inside.strip_prefix('/') {
            Some(rest) => (true, rest),
            None => (false, inside),
        };
        let end = inside
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == ':' || c == '-'))
            .unwrap_or(inside.len());
        Self {
            name: &inside[..end],
            closing,
            attributes: &inside[end..],
        }
    }
}

/// The text being built.
#[derive(Default)]
struct Out {
    text: String,
    /// White space was seen since the last word: one space goes before the next one.
    space: bool,
}

impl Out {
    fn at_line_start(&self) -> bool {
        self.text.is_empty() || self.text.ends_with('\n')
    }

    fn word(&mut self, c: char) {
        if self.space && !self.at_line_start() && !self.text.ends_with(' ') {
            self.text.push(' ');
        }
        self.space = false;
        self.text.push(c);
    }

    /// Text between tags: collapsed white space, or as it is in `<pre>`.
    fn run(&mut self, run: &str, pre: bool) {
        for c in run.chars() {
            match c {
                '\r' => {}
                '\n' | '\t' | ' ' if pre => self.text.push(c),
                '\u{a0}' => self.text.push(' '),
                c if c.is_ascii_whitespace() => self.space = true,
                c => self.word(c),
            }
        }
    }

    fn newline(&mut self) {
        let kept = self.text.trim_end_matches(' ').len();
        self.text.truncate(kept);
        self.text.push('\n');
        self.space = false;
    }

    fn block(&mut self) {
        if !self.at_line_start() {
            self.newline();
        }
        self.space = false;
    }

    fn paragraph(&mut self) {
        self.block();
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }
}

/// The character `s` (which starts with `&`) begins with, and the bytes it takes: a `&` that
/// starts no known entity stands for itself.
fn entity(s: &str) -> (char, usize) {
    let literal = ('&', 1);
    // Look no further than an entity can reach: a text full of `&` stays linear.
    let window = &s.as_bytes()[1..s.len().min(MAX_ENTITY + 2)];
    let Some(semi) = window.iter().position(|b| *b == b';') else {
        return literal;
    };
    if semi == 0 {
        return literal;
    }
    let body = &s[1..1 + semi];
    let c = if let Some(num) = body.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => num.parse::<u32>().ok(),
        };
        let Some(code) = code else {
            return literal;
        };
        char::from_u32(code)
            .filter(|c| *c != '\0')
            .unwrap_or('\u{fffd}')
    } else {
        match named(body) {
            Some(c) => c,
            None => return literal,
        }
    };
    (c, semi + 2)
}

/// The named entities mail clients write.
fn named(name: &str) -> Option<char> {
    Some(match name {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "shy" | "zwnj" | "zwj" | "lrm" | "rlm" => return None,
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "deg" => '°',
        "times" => '×',
        "agrave" => 'à',
        "aacute" => 'á',
        "acirc" => 'â',
        "auml" => 'ä',
        "ccedil" => 'ç',
        "egrave" => 'è',
        "eacute" => 'é',
        "ecirc" => 'ê',
        "euml" => 'ë',
        "icirc" => 'î',
        "iuml" => 'ï',
        "ntilde" => 'ñ',
        "ocirc" => 'ô',
        "ouml" => 'ö',
        "oslash" => 'ø',
        "ugrave" => 'ù',
        "uacute" => 'ú',
        "ucirc" => 'û',
        "uuml" => 'ü',
        "szlig" => 'ß',
        "Agrave" => 'À',
        "Auml" => 'Ä',
        "Eacute" => 'É',
        "Ouml" => 'Ö',
        "Uuml" => 'Ü',
        _ => return None,
    })
}

/// No spaces at line ends, at most one blank line in a row, none at the ends.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0usize;
    for line in text.split('\n') {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank_run > 0 {
                out.push('\n');
            }
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaks_lines_at_br_div_p_and_li() {
        assert_eq!(
            to_text(
                "<div>one<br>two</div><div><br></div><div>three</div><p>four</p>\
                     <ul><li>a</li><li>b</li></ul>"
            ),
            "one\ntwo\n\nthree\n\nfour\n- a\n- b"
        );
    }

    #[test]
    fn drops_script_style_head_and_comments() {
        assert_eq!(
            to_text(
                "<html><head><title>T</title><style>p{color:red}</style></head><body>\
                     <script>alert(1)</script><!-- note -->Hello</body></html>"
            ),
            "Hello"
        );
    }

    #[test]
    fn collapses_white_space_but_not_in_pre() {
        assert_eq!(
            to_text("<div>\n  a \n  b  </div><pre>x  y\n z</pre>"),
            "a b\nx  y\n z"
        );
    }

    #[test]
    fn decodes_entities_and_leaves_unknown_ones() {
        assert_eq!(
            to_text("&lt;a&gt; &amp; &#233;&#xe9; caf&eacute; &bogus; AT&T &#0;"),
            "<a> & éé café &bogus; AT&T \u{fffd}"
        );
    }

    #[test]
    fn blockquote_becomes_one_quote_line() {
        assert_eq!(
            to_text(
                "<div>Yes.</div><div>On Mon, X wrote:<br></div><blockquote>old<blockquote>\
                     older</blockquote>still old</blockquote><div>after</div>"
            ),
            "Yes.\nOn Mon, X wrote:\n>\nafter"
        );
    }

    #[test]
    fn outlook_msonormal_paragraphs_are_lines() {
        assert_eq!(
            to_text(
                "<p class=MsoNormal>Hi,<o:p></o:p></p><p class=MsoNormal><o:p>&nbsp;</o:p></p>\
                     <p class=MsoNormal>fine.<o:p></o:p></p>"
            ),
            "Hi,\n\nfine."
        );
    }

    #[test]
    fn broken_markup_does_not_lose_text() {
        assert_eq!(to_text("a < b and c<d"), "a < b and c");
        assert_eq!(to_text("x <style>never closed"), "x");
        assert_eq!(to_text("<head>no close<div>y</div>"), "no close\ny");
    }

    #[test]
    fn a_megabyte_of_ampersands_and_open_tags_is_quick() {
        let started = std::time::Instant::now();
        let text = to_text(&"&amp&".repeat(200_000));
        assert!(text.starts_with("&amp&&amp&"));
        to_text(&format!("{}>", "<a".repeat(500_000)));
        to_text(&"<!-- <head> <script>".repeat(50_000));
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }
}
