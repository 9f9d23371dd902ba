//! Outgoing mail: reminders and sign-in links, sent by SMTP to `[smtp] relay` with lettre.
//!
//! The relay is spoken to in plain SMTP (as to the local MTA, so chatd's mail passes the milter
//! like any other). Each mail is `multipart/alternative` (text and HTML, both UTF-8) when it has
//! an HTML part, carries a `Date`, a stable `Message-ID`, `Auto-Submitted: auto-generated`
//! (RFC 3834: no vacation replies to it) and `X-Auto-Response-Suppress: All` (the same for
//! Exchange), and the mail's extra headers (Reply-To, List-Unsubscribe, ...), checked so that
//! none can add a header of its own. Subjects go out as RFC 2047 encoded words and bodies as
//! quoted-printable or base64 where they are not plain ASCII, so a mail is 7-bit on the wire.
//! What a mail says is built beside what sends it (reminders in [`crate::reminder::compose`],
//! notifications in [`crate::notify::compose`], sign-in links here in [`signin_mail`]); every text
//! that came from a user is escaped in the HTML part. Nothing is sent from here directly: mails are queued in the
//! outbox ([`crate::outbox`]), whose worker calls [`MailSender::send`].

use std::time::Duration;

use async_trait::async_trait;
use chmail::header::{ChmailHeader, HEADER_NAME};
use lettre::{
    message::{
        header::{Header, HeaderName, HeaderValue},
        Mailbox, MultiPart, SinglePart,
    },
    AsyncSmtpTransport, AsyncTransport, Tokio1Executor,
};
use sha2::{Digest, Sha256};

use crate::web::html::escape;

/// One mail chatd sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// The recipient's address.
    pub to: String,
    /// The subject (any UTF-8; encoded as needed).
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body, if any (sent as multipart/alternative with the text).
    pub html: Option<String>,
    /// The Message-ID without angle brackets: stable per mail, so a resend can be recognised.
    pub message_id: String,
    /// Extra header fields in order (Reply-To, List-Unsubscribe, List-Unsubscribe-Post, ...),
    /// unfolded. A `From` replaces chatd's own sender (`[smtp] from`). Never To, Subject, Date or
    /// Message-ID, which come from the fields above;
    /// a name or value with a line break makes the mail fail permanently.
    pub headers: Vec<(String, String)>,
}

/// Why a mail was not sent.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MailError {
    /// Worth retrying later (connection refused, time-out, 4xx).
    #[error("temporary mail failure: {0}")]
    Temporary(String),
    /// Retrying will not help (5xx, a malformed address).
    #[error("permanent mail failure: {0}")]
    Permanent(String),
}

/// Where outgoing mail goes. The server uses SMTP; a seam for tests that count mails.
#[async_trait]
pub trait MailSender: Send + Sync + 'static {
    /// Sends one mail.
    ///
    /// # Errors
    /// [`MailError`] saying whether a retry may help.
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError>;
}

/// The SMTP port used when `[smtp] relay` names none.
const DEFAULT_SMTP_PORT: u16 = 25;

/// Sends mail by SMTP to `[smtp] relay` (plain SMTP, as to a local MTA).
pub struct SmtpSender {
    /// The transport, or why the config gives none (every send then fails permanently).
    transport: Result<AsyncSmtpTransport<Tokio1Executor>, String>,
    /// The From mailbox, or why `[smtp] from` is unusable.
    from: Result<Mailbox, String>,
    /// The longest a whole mail may take.
    timeout: Duration,
}

impl SmtpSender {
    /// A sender for the config's `[smtp]` section. A bad relay or From address is reported by
    /// each [`MailSender::send`] as a permanent failure.
    pub fn new(config: &chmail::Config) -> Self {
        let timeout = config.smtp.timeout();
        let transport = parse_relay(&config.smtp.relay).map(|(host, port)| {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(port)
                .timeout(Some(timeout))
                .build()
        });
        let from_text = config.smtp_from();
        let from = from_text
            .parse::<Mailbox>()
            .map(|m| Mailbox::new(Some("CHmail".into()), m.email))
            .map_err(|e| format!("[smtp] from {from_text:?} is not an address: {e}"));
        Self {
            transport,
            from,
            timeout,
        }
    }
}

/// `HOST:PORT`, `[IPv6]:PORT`, or `HOST` (port 25).
fn parse_relay(relay: &str) -> Result<(String, u16), String> {
    let relay = relay.trim();
    let bad = || format!("[smtp] relay {relay:?} is not HOST:PORT");
    let (host, port) = if let Some(rest) = relay.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(bad()),
        }
    } else {
        match relay.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return Err(bad()),
            None => (relay, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        None => DEFAULT_SMTP_PORT,
    };
    Ok((host.to_owned(), port))
}

#[async_trait]
impl MailSender for SmtpSender {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let transport = self
            .transport
            .as_ref()
            .map_err(|e| MailError::Permanent(e.clone()))?;
        let from = self
            .from
            .as_ref()
            .map_err(|e| MailError::Permanent(e.clone()))?;
        let message = build_message(from.clone(), mail)?;
        match tokio::time::timeout(self.timeout, transport.send(message)).await {
            Err(_) => Err(MailError::Temporary(format!(
                "the relay did not finish within {} ms",
                self.timeout.as_millis()
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() => Err(MailError::Permanent(e.to_string())),
            Ok(Err(e)) => Err(MailError::Temporary(e.to_string())),
        }
    }
}

/// The lettre message for `mail`.
fn build_message(from: Mailbox, mail: &OutgoingMail) -> Result<lettre::Message, MailError> {
    let to: Mailbox = mail.to.trim().parse().map_err(|e| {
        MailError::Permanent(format!("recipient {:?} is not an address: {e}", mail.to))
    })?;
    if !is_message_id(&mail.message_id) {
        return Err(MailError::Permanent(format!(
            "Message-ID {:?} is not id-left@id-right in printable ASCII",
            mail.message_id
        )));
    }
    // A `From` among the extra headers replaces the default sender (the mall's mails carry the
    // writer's name); it must be an address like any Reply-To.
    let from = match mail
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("from"))
    {
        Some((_, value)) => value
            .trim()
            .parse::<Mailbox>()
            .map_err(|e| MailError::Permanent(format!("From {value:?} is not an address: {e}")))?,
        None => from,
    };
    let mut builder = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(one_line(&mail.subject, usize::MAX))
        .date_now()
        .message_id(Some(format!("<{}>", mail.message_id)))
        .header(AutoSubmitted)
        .header(AutoResponseSuppress);
    for (name, value) in &mail.headers {
        if !name.eq_ignore_ascii_case("from") {
            builder = add_header(builder, name, value)?;
        }
    }
    let built = match &mail.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            html.clone(),
        )),
        None => builder.singlepart(SinglePart::plain(mail.text.clone())),
    };
    built.map_err(|e| MailError::Permanent(format!("mail not built: {e}")))
}

/// Header fields that [`OutgoingMail`]'s own fields or the MIME structure write: an extra header
/// must not repeat or replace them.
const RESERVED_HEADERS: [&str; 10] = [
    "sender",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// Whether `id` can go between the angle brackets of a Message-ID: `id-left@id-right`, printable
/// ASCII without `<` and `>`.
fn is_message_id(id: &str) -> bool {
    id.contains('@')
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
}

/// Adds the extra header `name: value` to `builder`. `Reply-To` goes through lettre's mailbox
/// header (so it is parsed and encoded as an address); any other through lettre's encoder
/// (RFC 2047 encoded words for non-ASCII, folded), replacing a default of the same name
/// (`Auto-Submitted`, say). A line break or other control character in the name or value could
/// add header fields of its own, so it makes the mail fail permanently, as do a reserved name
/// ([`RESERVED_HEADERS`]) and a Reply-To that is not an address.
fn add_header(
    builder: lettre::message::MessageBuilder,
    name: &str,
    value: &str,
) -> Result<lettre::message::MessageBuilder, MailError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(MailError::Permanent(format!(
            "header name {name:?} is not printable ASCII without ':'"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(MailError::Permanent(format!(
            "header {name} has a line break or control character in its value"
        )));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(MailError::Permanent(format!(
            "header {name} is written by chatd itself, not as an extra header"
        )));
    }
    if lower == "reply-to" {
        let mailbox: Mailbox = value.trim().parse().map_err(|e| {
            MailError::Permanent(format!("Reply-To {value:?} is not an address: {e}"))
        })?;
        return Ok(builder.reply_to(mailbox));
    }
    let header_name = HeaderName::new_from_ascii(name.to_owned())
        .map_err(|_| MailError::Permanent(format!("header name {name:?} is too long")))?;
    if lower == HEADER_NAME.to_ascii_lowercase() {
        return Ok(builder.raw_header(chmail_field(header_name, value)?));
    }
    Ok(builder.raw_header(HeaderValue::new(header_name, value.trim().to_owned())))
}

/// The `CHmail` field written as the milter writes it, by [`ChmailHeader::to_value`]: folded
/// between tags, continuation lines beginning with one tab, as `docs/header.md` fixes (lettre's
/// own folding would begin them with a space). The value is parsed first, so only a well-formed
/// header goes out this way.
fn chmail_field(name: HeaderName, value: &str) -> Result<HeaderValue, MailError> {
    let header = ChmailHeader::parse(value.as_bytes())
        .map_err(|e| MailError::Permanent(format!("the CHmail header does not parse: {e}")))?;
    // `to_value` writes printable ASCII and "\n\t" folds only: no header can be injected.
    let folded = header.to_value().replace('\n', "\r\n");
    Ok(HeaderValue::dangerous_new_pre_encoded(
        name,
        value.to_owned(),
        folded,
    ))
}

/// `Auto-Submitted: auto-generated` (RFC 3834).
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// `X-Auto-Response-Suppress: All`: Exchange's way of saying no auto-replies.
#[derive(Debug, Clone, Copy)]
struct AutoResponseSuppress;

impl Header for AutoResponseSuppress {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Auto-Response-Suppress")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "All".into())
    }
}

/// Longest subject of a mailed conversation quoted in a mail's subject (reminders,
/// notifications), in characters.
pub const SUBJECT_QUOTE_CHARS: usize = 120;
/// Longest chat message quoted in a mail, in characters: the whole text is in the chat.
pub const MESSAGE_QUOTE_CHARS: usize = 2_000;

/// `text` on one line (control characters and runs of space become one space), cut to `max`
/// characters.
pub fn one_line(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    cut(&line, max)
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A Message-ID `<kind>.<hash of parts>@<signing domain>`: the same parts give the same id.
pub fn message_id(config: &chmail::Config, kind: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    for part in parts {
        hasher.update([0u8]);
        hasher.update(part.as_bytes());
    }
    let hex: String = hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{kind}.{hex}@{}", config.signing.domain)
}

/// The mail with a sign-in link for `to`.
pub fn signin_mail(config: &chmail::Config, to: &str, signin_url: &str) -> OutgoingMail {
    let ttl = config.chat.signin_ttl_minutes;
    let host = config.chat.public_base();
    let text = format!(
        "Hello,\n\nhere is your link to sign in to your chats at {host}:\n\n{signin_url}\n\n\
         It works once, for {ttl} minutes. If you did not ask for it, ignore this mail: nobody \
         can sign in without the link.\n\n-- \nCHmail\n"
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5;color:#1d2330\">\
         <p>Hello,</p><p>here is your link to sign in to your chats at {h}:</p>\
         <p><a href=\"{u}\" style=\"display:inline-block;background:#2563eb;color:#fff;\
         padding:0.6em 1.2em;border-radius:999px;text-decoration:none;font-weight:600\">Sign in</a></p>\
         <p style=\"color:#5f6b7a;font-size:0.9em\">It works once, for {ttl} minutes. If you did \
         not ask for it, ignore this mail: nobody can sign in without the link.</p></body></html>",
        h = escape(host),
        u = escape(signin_url),
    );
    OutgoingMail {
        to: to.to_owned(),
        subject: "Your CHmail sign-in link".into(),
        text,
        html: Some(html),
        message_id: message_id(config, "signin", &[to, signin_url]),
        headers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_parse_with_and_without_ports() {
        assert_eq!(parse_relay("127.0.0.1:25"), Ok(("127.0.0.1".into(), 25)));
        assert_eq!(parse_relay("mx.example"), Ok(("mx.example".into(), 25)));
        assert_eq!(parse_relay("[::1]:2525"), Ok(("::1".into(), 2525)));
        assert!(parse_relay("::1:25").is_err());
        assert!(parse_relay("host:x").is_err());
        assert!(parse_relay(":25").is_err());
    }

    #[test]
    fn the_chmail_header_is_folded_with_tabs_as_the_milter_writes_it() {
        let room = chmail::RoomId::generate();
        let header = chmail::Signer::from_seed("example.com", "sel1", [7; 32])
            .sign(
                "mall@example.com",
                "chat.example.com",
                20000,
                &room,
                1_700_000_000,
                "mall@example.com",
            )
            .expect("sign");
        let mail = OutgoingMail {
            to: "bob@example.net".into(),
            subject: "Hi".into(),
            text: "Hello".into(),
            html: None,
            message_id: "m1@example.com".into(),
            headers: vec![("CHmail".into(), header.to_value().replace("\n\t", " "))],
        };
        let from: Mailbox = "mall@example.com".parse().expect("mailbox");
        let raw = build_message(from, &mail).expect("built").formatted();
        let raw = String::from_utf8(raw).expect("ASCII");
        let start = raw.find("CHmail: ").expect("the field");
        let field: Vec<&str> = raw[start..]
            .split("\r\n")
            .enumerate()
            .take_while(|(i, l)| *i == 0 || l.starts_with([' ', '\t']))
            .map(|(_, l)| l)
            .collect();
        assert_eq!(
            field.join("\n"),
            format!("CHmail: {}", header.to_value()),
            "{raw}"
        );
        assert!(field.len() > 1 && field[1..].iter().all(|l| l.starts_with('\t')));
    }

    #[test]
    fn subjects_stay_on_one_line_and_are_cut() {
        assert_eq!(one_line("a\r\nBcc: x", usize::MAX), "a Bcc: x");
        assert_eq!(cut("ábc", 2), "áb…");
        assert_eq!(cut("ab", 2), "ab");
    }
}
