//! The new part of a reply's text: the history a mail client quoted below or between the new
//! lines, and the sender's signature, are cut away.
//!
//! The heuristics, in order, on lines without `\r`:
//! 1. A separator that starts the quoted original without `>` quoting cuts off everything from
//!    there on: `-----Original Message-----` and its translations, `---------- Forwarded
//!    message ---------`, and Outlook's header block (`From:` then `Sent:`/`Date:` and
//!    `Subject:` within a few lines, with the `_____` or blank lines above it; in Outlook's main
//!    languages, Chinese `发件人:`, Japanese `差出人:` and Korean `보낸 사람:` among them), and a full
//!    attribution (`On <date>, <name> wrote:`) above an original quoted without `>` (Yahoo).
//! 2. Quoted lines (`>` first) are dropped wherever they are, so bottom-posted and interleaved
//!    answers keep their new lines. So is an attribution line ("On .. wrote:", "Am .. schrieb
//!    ..:", "Le .. a écrit :", ".. 작성:"), even wrapped over two lines, when quoted lines or the
//!    end follow it.
//! 3. A signature delimiter (`-- `, or `--` as clients that trim spaces send it) cuts off the
//!    rest; then "Sent from my iPhone" and the like are dropped from the end.
//! 4. Where quoted lines were dropped, the blank lines around them become one paragraph break;
//!    leading and trailing blank lines and trailing spaces go.

use std::fmt;

/// One kind of thing cut from a reply's text, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Removed {
    /// `-----Original Message-----` (or a forwarded message) and everything after it.
    OriginalMessage,
    /// Outlook's `From:`/`Sent:`/`To:`/`Subject:` block and everything after it.
    HeaderBlock,
    /// Lines quoted with `>` (an HTML `<blockquote>` counts as such).
    QuotedLines,
    /// The "On .. wrote:" line that introduces quoted lines.
    Attribution,
    /// A `-- ` signature and everything after it.
    Signature,
    /// A "Sent from my iPhone" line at the end.
    DeviceSignature,
}

impl Removed {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OriginalMessage => "original-message",
            Self::HeaderBlock => "header-block",
            Self::QuotedLines => "quoted-lines",
            Self::Attribution => "attribution",
            Self::Signature => "signature",
            Self::DeviceSignature => "device-signature",
        }
    }
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Most lines after a `From:` line in which Outlook's header block must show its other fields
/// (`Sent`, `To`, `Cc`, `Subject`: a long `To`/`Cc` wraps over a few lines).
const HEADER_BLOCK_LINES: usize = 8;

/// Longest line taken for an attribution or a device signature, in bytes: both are short, and
/// a long line is the writer's own.
const MAX_MARKER_LINE: usize = 300;

/// Names of Outlook's header-block fields, in the languages Outlook writes them in most:
/// English, German, French, Spanish and Portuguese, Italian, Dutch, Swedish, Korean, Chinese
/// (simplified, then traditional) and Japanese. A block that is not seen leaves the quoted
/// reminder, with its sign-in link, in the text.
const FROM_NAMES: &[&str] = &[
    "From",
    "Von",
    "De",
    "Da",
    "Van",
    "Från",
    "보낸 사람",
    "发件人",
    "寄件者",
    "差出人",
];
const DATE_NAMES: &[&str] = &[
    "Sent",
    "Date",
    "Gesendet",
    "Datum",
    "Envoyé",
    "Enviado",
    "Inviato",
    "Verzonden",
    "Skickat",
    "보낸 날짜",
    "发送时间",
    "日期",
    "寄件日期",
    "送信日時",
    "日付",
];
const SUBJECT_NAMES: &[&str] = &[
    "Subject",
    "Betreff",
    "Objet",
    "Asunto",
    "Oggetto",
    "Onderwerp",
    "Ämne",
    "제목",
    "主题",
    "主旨",
    "件名",
];

/// What a separator line says (lower case, without its dashes) when the original follows it.
const SEPARATORS: &[&str] = &[
    "original message",
    "ursprüngliche nachricht",
    "message d'origine",
    "mensaje original",
    "messaggio originale",
    "mensagem original",
    "oorspronkelijk bericht",
    "forwarded message",
    "weitergeleitete nachricht",
    "원본 메시지",
    "原始邮件",
    "原始郵件",
    "元のメッセージ",
];

/// Verbs of attribution lines: "wrote" and its translations.
const ATTRIBUTION_VERBS: &[&str] = &[
    "wrote",
    "writes",
    "schrieb",
    "a écrit",
    "escribió",
    "ha scritto",
    "escreveu",
    "schreef",
    "skrev",
    "napisał",
    "написал",
    "kirjoitti",
    "작성",
    "写道",
];

/// How attribution lines start, for joining one that a client wrapped over two lines. A digit
/// starts the Korean and Japanese forms ("2024년 5월 1일 ..").
const ATTRIBUTION_OPENERS: &[&str] = &[
    "On ", "Am ", "Le ", "El ", "Il ", "Em ", "Op ", "Den ", "W dniu ",
];

/// The ends of replies that a phone or an app adds instead of a signature (lower case).
const DEVICE_SIGNATURES: &[&str] = &[
    "sent from my ",
    "sent from mail for windows",
    "sent from outlook",
    "sent from yahoo mail",
    "sent with proton mail",
    "get outlook for ",
    "von meinem ",
    "gesendet von meinem ",
    "envoyé de mon ",
    "enviado desde mi ",
    "enviado do meu ",
    "inviato da ",
];

/// The new text of `text` (lines separated by `\n`), with what was cut appended to `removed`.
pub(crate) fn strip(text: &str, removed: &mut Vec<Removed>) -> String {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if let Some((at, kind)) = history_start(&lines) {
        lines.truncate(at);
        note(removed, kind);
    }
    let mut kept = drop_quotes(&lines, removed);
    if let Some(at) = kept
        .iter()
        .position(|l| l.is_some_and(|l| l.trim_end() == "--"))
    {
        kept.truncate(at);
        note(removed, Removed::Signature);
    }
    while let Some(last) = kept.iter().rposition(|l| l.is_some_and(|l| !is_blank(l))) {
        if !kept[last].is_some_and(is_device_signature) {
            break;
        }
        kept.truncate(last);
        note(removed, Removed::DeviceSignature);
    }
    assemble(&kept)
}

/// Adds `kind` to `removed` once.
fn note(removed: &mut Vec<Removed>, kind: Removed) {
    if !removed.contains(&kind) {
        removed.push(kind);
    }
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// Where the unquoted original starts: the first separator or Outlook header block outside
/// quoted lines, moved up over the blank and `_____` lines above it.
fn history_start(lines: &[&str]) -> Option<(usize, Removed)> {
    let (at, kind) = lines.iter().enumerate().find_map(|(i, line)| {
        if is_quoted(line) {
            None
        } else if is_separator(line) {
            Some((i, Removed::OriginalMessage))
        } else if is_header_block(&lines[i..]) {
            Some((i, Removed::HeaderBlock))
        } else if introduces_unquoted_original(&lines[i..]) {
            Some((i, Removed::OriginalMessage))
        } else {
            None
        }
    })?;
    let mut start = at;
    while start > 0 && (is_blank(lines[start - 1]) || is_rule(lines[start - 1])) {
        start -= 1;
    }
    Some((start, kind))
}

/// `lines` start with a full attribution (`On <date>, <name> wrote:`, maybe wrapped over two
/// lines) that unquoted text follows: the original as Yahoo and some webmails quote it, without
/// `>`. Attributions above `>` lines are left to [`drop_quotes`], which keeps the new text that
/// a bottom-poster writes between and below the quotes.
fn introduces_unquoted_original(lines: &[&str]) -> bool {
    let Some(first) = lines.first() else {
        return false;
    };
    if !opens_attribution(first) || !first.contains(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let rest = if is_attribution(first) {
        &lines[1..]
    } else if lines.len() > 1 && wraps_attribution(first, lines[1]) {
        &lines[2..]
    } else {
        return false;
    };
    !quotes_follow(rest)
}

/// `-----Original Message-----`, `---------- Forwarded message ---------`, translations.
fn is_separator(line: &str) -> bool {
    let line = line.trim();
    if line.len() > MAX_MARKER_LINE {
        return false;
    }
    if line.eq_ignore_ascii_case("Begin forwarded message:") {
        return true;
    }
    let words = line.trim_matches(|c: char| c == '-' || c == '_' || c == '*' || c.is_whitespace());
    words.len() < line.len()
        && line.starts_with('-')
        && SEPARATORS.iter().any(|s| words.to_lowercase() == *s)
}

/// A line of underscores or dashes, as Outlook puts above its header block.
fn is_rule(line: &str) -> bool {
    let line = line.trim();
    line.len() >= 10 && (line.bytes().all(|b| b == b'_') || line.bytes().all(|b| b == b'-'))
}

/// `lines` start with Outlook's header block: `From:`, then `Sent:`/`Date:` and `Subject:`
/// within [`HEADER_BLOCK_LINES`] lines. A `From:` and a `To:` alone could be the writer's own
/// words (an itinerary), so both others are needed.
fn is_header_block(lines: &[&str]) -> bool {
    let Some((first, rest)) = lines.split_first() else {
        return false;
    };
    if !is_field(first, FROM_NAMES) {
        return false;
    }
    let next = &rest[..rest.len().min(HEADER_BLOCK_LINES)];
    next.iter().any(|l| is_field(l, DATE_NAMES)) && next.iter().any(|l| is_field(l, SUBJECT_NAMES))
}

/// `line` is a header-block field named one of `names`: `Name:`, `Name :` (French), `*Name:*`
/// (bold turned into text), `Name：` (the full-width colon of Chinese and Japanese).
fn is_field(line: &str, names: &[&str]) -> bool {
    let line = line.trim().trim_start_matches('*');
    names.iter().any(|name| {
        let Some(head) = line.get(..name.len()) else {
            return false;
        };
        head.eq_ignore_ascii_case(name)
            && line[name.len()..]
                .trim_start_matches(['*', ' ', '\u{a0}', '\u{3000}'])
                .starts_with([':', '：'])
    })
}

/// "On Mon, 1 May 2024 at 14:40, CHmail <chmail@a.example> wrote:" and the like.
fn is_attribution(line: &str) -> bool {
    let line = line.trim();
    if line.len() > MAX_MARKER_LINE || !(line.ends_with(':') || line.ends_with('：')) {
        return false;
    }
    let lower = line.to_lowercase();
    ATTRIBUTION_VERBS.iter().any(|verb| lower.contains(verb))
}

fn opens_attribution(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with(|c: char| c.is_ascii_digit())
        || ATTRIBUTION_OPENERS.iter().any(|o| line.starts_with(o))
}

/// Drops quoted lines and the attribution lines before them: `None` where a line went.
fn drop_quotes<'a>(lines: &[&'a str], removed: &mut Vec<Removed>) -> Vec<Option<&'a str>> {
    let mut kept: Vec<Option<&str>> = lines.iter().map(|l| Some(*l)).collect();
    for (i, line) in lines.iter().enumerate() {
        if is_quoted(line) {
            kept[i] = None;
            note(removed, Removed::QuotedLines);
            continue;
        }
        if is_blank(line) || !quotes_follow(&lines[i + 1..]) {
            continue;
        }
        // Gmail wraps a long attribution: "On .. CHmail <" / "chmail@a.example> wrote:", or
        // "Am .. schrieb CHmail <" / "chmail@a.example>:".
        let wrapped = i > 0 && wraps_attribution(lines[i - 1], line);
        if wrapped {
            kept[i - 1] = None;
        } else if !is_attribution(line) {
            continue;
        }
        kept[i] = None;
        note(removed, Removed::Attribution);
    }
    kept
}

/// `above` and `line` are one attribution that a client wrapped.
fn wraps_attribution(above: &str, line: &str) -> bool {
    !is_blank(above)
        && !is_quoted(above)
        && opens_attribution(above)
        && !opens_attribution(line)
        && !is_attribution(above)
        && above.len() <= MAX_MARKER_LINE
        && is_attribution(&format!("{} {}", above.trim(), line.trim()))
}

/// After blank lines, `lines` go on with a quoted line or end.
fn quotes_follow(lines: &[&str]) -> bool {
    lines
        .iter()
        .find(|l| !is_blank(l))
        .is_none_or(|l| is_quoted(l))
}

fn is_device_signature(line: &str) -> bool {
    let line = line.trim();
    if line.len() > MAX_MARKER_LINE {
        return false;
    }
    let lower = line.to_lowercase();
    DEVICE_SIGNATURES.iter().any(|s| lower.starts_with(s)) || lower.ends_with("에서 보냄")
}

/// The kept lines joined: trailing spaces trimmed, each run of blank lines and dropped lines
/// that has a dropped line in it made one blank line, and no blank lines at either end.
fn assemble(kept: &[Option<&str>]) -> String {
    let mut out = String::new();
    let mut blanks = 0usize;
    let mut dropped = false;
    for item in kept {
        match item {
            None => dropped = true,
            Some(line) if is_blank(line) => blanks += 1,
            Some(line) => {
                if !out.is_empty() {
                    let breaks = if dropped { 1 } else { blanks };
                    out.push('\n');
                    for _ in 0..breaks {
                        out.push('\n');
                    }
                }
                out.push_str(line.trim_end());
                blanks = 0;
                dropped = false;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_all(text: &str) -> (String, Vec<Removed>) {
        let mut removed = Vec::new();
        (strip(text, &mut removed), removed)
    }

    #[test]
    fn chinese_japanese_and_korean_outlook_header_blocks_start_the_quote() {
        for block in [
            "发件人: CHmail <c@a.example>\n发送时间: 2024年5月1日 14:40\n收件人: a@a.example\n\
             主题: Quarterly numbers",
            "寄件者： CHmail <c@a.example>\n寄件日期： 2024年5月1日 下午 02:40\n\
             收件者： a@a.example\n主旨： Quarterly numbers",
            "差出人: CHmail <c@a.example>\n送信日時: 2024年5月1日 14:40\n宛先: a@a.example\n\
             件名: Quarterly numbers",
            "보낸 사람: CHmail <c@a.example>\n보낸 날짜: 2024년 5월 1일 수요일 오후 2:40\n\
             받는 사람: a@a.example\n제목: Quarterly numbers",
        ] {
            let (text, removed) = strip_all(&format!(
                "好的。\n\n________________________________\n{block}\n\nSign in: \
                 http://chat.test/auth/x\n"
            ));
            assert_eq!(text, "好的。", "{block}");
            assert_eq!(removed, [Removed::HeaderBlock], "{block}");
        }
    }

    #[test]
    fn top_posted_text_loses_attribution_and_quote() {
        let (text, removed) = strip_all(
            "Yes, see you then.\n\nOn Wed, May 1, 2024 at 2:40 PM CHmail <c@a.example> wrote:\n\
             \n> Hello,\n>\n> bob tried to chat\n",
        );
        assert_eq!(text, "Yes, see you then.");
        assert_eq!(removed, [Removed::Attribution, Removed::QuotedLines]);
    }

    #[test]
    fn attribution_wrapped_over_two_lines_goes_whole() {
        let (text, _) = strip_all(
            "Fine.\n\nOn Wed, May 1, 2024 at 2:40 PM CHmail <\nchmail@a.example> wrote:\n\n> Hi\n",
        );
        assert_eq!(text, "Fine.");
        let (text, _) = strip_all(
            "Fine.\n\nOn Wed, May 1, 2024 at 2:40 PM CHmail <chmail@a.example>\nwrote:\n> Hi\n",
        );
        assert_eq!(text, "Fine.");
        let (text, _) = strip_all(
            "Gut.\n\nAm Mi., 1. Mai 2024 um 14:40 Uhr schrieb CHmail <\nc@a.example>:\n\n> Hi\n",
        );
        assert_eq!(text, "Gut.");
    }

    #[test]
    fn interleaved_answers_stay_as_paragraphs() {
        let (text, _) = strip_all(
            "On Wed, CHmail wrote:\n> Are the figures final?\nNot yet.\n\n\n> Can we talk?\n\n\
             Tomorrow.\n",
        );
        assert_eq!(text, "Not yet.\n\nTomorrow.");
    }

    #[test]
    fn blank_lines_of_the_writer_are_kept() {
        let (text, removed) = strip_all("One.\n\n\nTwo.\nThree.\n");
        assert_eq!(text, "One.\n\n\nTwo.\nThree.");
        assert!(removed.is_empty());
    }

    #[test]
    fn a_line_ending_in_wrote_without_quotes_after_it_stays() {
        let (text, _) = strip_all("Here is what I wrote:\nthe plan.\n");
        assert_eq!(text, "Here is what I wrote:\nthe plan.");
    }

    #[test]
    fn attribution_above_an_unquoted_original_cuts_the_rest() {
        let (text, removed) = strip_all(
            "Yes, Friday works.\n\n    On Wednesday, May 1, 2024 at 02:40:03 PM GMT+2, CHmail \
             <c@a.example> wrote:  \n \n Hello,\n \n bob tried to chat\n",
        );
        assert_eq!(text, "Yes, Friday works.");
        assert_eq!(removed, [Removed::OriginalMessage]);
        // Without a date it may be the writer's own sentence.
        let (text, _) = strip_all("On reflection, here is what Bob wrote:\nhis plan.\n");
        assert_eq!(text, "On reflection, here is what Bob wrote:\nhis plan.");
    }

    #[test]
    fn outlook_header_block_cuts_the_rest() {
        let (text, removed) = strip_all(
            "Thanks!\n\n________________________________\nFrom: CHmail <c@a.example>\n\
             Sent: Wednesday, May 1, 2024 2:40 PM\nTo: Alice <a@a.example>\nSubject: Re: x\n\n\
             Hello,\n",
        );
        assert_eq!(text, "Thanks!");
        assert_eq!(removed, [Removed::HeaderBlock]);
    }

    #[test]
    fn from_and_to_lines_of_the_writer_stay() {
        let (text, _) = strip_all("Trip:\nFrom: Paris\nTo: Berlin\nDate: Monday\n");
        assert_eq!(text, "Trip:\nFrom: Paris\nTo: Berlin\nDate: Monday");
    }

    #[test]
    fn french_header_block_and_separator_are_found() {
        assert!(is_header_block(&[
            "De : CHmail <c@a.example>",
            "Envoyé : mercredi 1 mai 2024 14:40",
            "À : Alice",
            "Objet : x",
        ]));
        assert!(is_separator("-----Ursprüngliche Nachricht-----"));
        assert!(is_separator("---------- Forwarded message ---------"));
        assert!(!is_separator("original message"));
    }

    #[test]
    fn signature_and_device_line_go() {
        let (text, removed) = strip_all("See you.\n\n-- \nAlice\n+1 555 0100\n");
        assert_eq!(text, "See you.");
        assert_eq!(removed, [Removed::Signature]);
        let (text, removed) = strip_all("See you.\n\nSent from my iPhone\n");
        assert_eq!(text, "See you.");
        assert_eq!(removed, [Removed::DeviceSignature]);
    }

    #[test]
    fn attribution_verbs_in_other_languages() {
        for line in [
            "Am Mi., 1. Mai 2024 um 14:40 Uhr schrieb CHmail <c@a.example>:",
            "Le mer. 1 mai 2024 à 14:40, CHmail <c@a.example> a écrit :",
            "2024년 5월 1일 (수) 오후 2:40, CHmail <c@a.example>님이 작성:",
            "On 01/05/2024 14:40, CHmail wrote:",
        ] {
            assert!(is_attribution(line), "{line}");
        }
    }
}
