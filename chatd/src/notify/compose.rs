//! What a notification mail says: the new messages, a link into the room, how to answer by mail
//! and how to stop these mails; and the headers that make mail clients handle it well
//! (Reply-To, List-Unsubscribe with One-Click, threading under the original mail).

use std::fmt::Write as _;

use chmail::store::Room;

use crate::{
    mail::{message_id, one_line, OutgoingMail, SUBJECT_QUOTE_CHARS},
    quote::{quote_messages, Quoted},
    web::html::escape,
};

/// Where a notification points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// The room's page, `<public_url>/c/<port>/<room>`.
    pub room_url: String,
    /// The one-click unsubscribe URL, `<public_url>/u/<token>`.
    pub unsubscribe_url: String,
    /// The participant's reply address, if replies by mail are on.
    pub reply_to: Option<String>,
}

/// The notification to `to` about `room`: the `quoted` messages (the newest, oldest first, none
/// by `to`) and how many earlier ones are left out, the room's `sender` address. The Message-ID
/// is stable per (room, recipient, last message quoted), so a retried notification keeps its id.
pub fn notification_mail(
    config: &chmail::Config,
    room: &Room,
    sender: &str,
    to: &str,
    quoted: &Quoted,
    links: &Links,
) -> OutgoingMail {
    let subject_line = room
        .subject
        .as_deref()
        .map(|s| one_line(s, SUBJECT_QUOTE_CHARS))
        .filter(|s| !s.is_empty());
    let messages = &quoted.messages;
    let count = messages.len();
    let noun = if count == 1 { "message" } else { "messages" };
    let subject = match &subject_line {
        Some(s) => format!("{count} new chat {noun}: {s}"),
        None => format!("{count} new chat {noun} from {}", one_line(sender, 320)),
    };
    let about = subject_line
        .as_ref()
        .map_or_else(String::new, |s| format!(" about \"{s}\""));

    let mut text = format!("Hello,\n\nnew in the chat{about} while you were away:\n\n");
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5;color:#1d2330\">\
         <p>Hello,</p><p>new in the chat{a} while you were away:</p>\
         <ul style=\"padding-left:1.2em\">",
        a = escape(&about),
    );
    if let Some(line) = quoted.earlier_line() {
        let _ = write!(text, "({line})\n\n");
        let _ = write!(html, "<li style=\"color:#5f6b7a\">{}</li>", escape(&line));
    }
    quote_messages(messages, to, &mut text, &mut html);
    html.push_str("</ul>");
    let _ = writeln!(text, "Open the chat: {}", links.room_url);
    let _ = write!(
        html,
        "<p><a href=\"{u}\" style=\"display:inline-block;background:#2563eb;color:#fff;\
         padding:0.6em 1.2em;border-radius:999px;text-decoration:none;font-weight:600\">\
         Open the chat</a></p>",
        u = escape(&links.room_url),
    );
    if links.reply_to.is_some() {
        text.push_str(
            "Or answer this mail: your reply (without the quoted part) goes into the chat.\n",
        );
        html.push_str(
            "<p>Or answer this mail: your reply (without the quoted part) goes into the chat.</p>",
        );
    }
    let _ = write!(
        text,
        "\n-- \nCHmail: you get this because you proved {to} in this chat and were not in it when \
         these messages came. Stop these mails: {}\n",
        links.unsubscribe_url
    );
    let _ = write!(
        html,
        "<p style=\"color:#5f6b7a;font-size:0.85em\">CHmail: you get this because you proved \
         {t} in this chat and were not in it when these messages came. \
         <a href=\"{u}\">Stop these mails</a>.</p></body></html>",
        t = escape(to),
        u = escape(&links.unsubscribe_url),
    );

    let mut headers = Vec::new();
    if let Some(reply_to) = &links.reply_to {
        headers.push(("Reply-To".to_owned(), reply_to.clone()));
    }
    // RFC 2369 and RFC 8058: a mail client shows an unsubscribe button and POSTs
    // `List-Unsubscribe=One-Click` to the URL.
    headers.push((
        "List-Unsubscribe".to_owned(),
        format!("<{}>", links.unsubscribe_url),
    ));
    headers.push((
        "List-Unsubscribe-Post".to_owned(),
        "List-Unsubscribe=One-Click".to_owned(),
    ));
    // Threads the notification under the mail the chat is about, in clients that thread by
    // references.
    if let Some(original) = room.message_id.as_deref().and_then(angle_id) {
        headers.push(("In-Reply-To".to_owned(), original.clone()));
        headers.push(("References".to_owned(), original));
    }
    let last_id = messages
        .last()
        .map_or_else(String::new, |m| m.id.to_string());
    OutgoingMail {
        to: to.to_owned(),
        subject,
        text,
        html: Some(html),
        message_id: message_id(config, "notification", &[&room.id, to, &last_id]),
        headers,
    }
}

/// `id` as `<id-left@id-right>` if it is a usable Message-ID (with or without its brackets).
fn angle_id(id: &str) -> Option<String> {
    let bare = id.trim().trim_start_matches('<').trim_end_matches('>');
    let ok = !bare.is_empty()
        && bare.len() <= 900
        && bare.contains('@')
        && bare
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    ok.then(|| format!("<{bare}>"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chmail::store::{Message, Participant, Role, Via};

    fn room() -> Room {
        Room {
            id: "room".into(),
            port: 20_000,
            login: "alice".into(),
            message_id: Some("<orig@a.example>".into()),
            subject: Some("Numbers\r\nBcc: x".into()),
            created: 0,
            participants: vec![Participant {
                address: "alice@a.example".into(),
                role: Role::From,
                name: None,
            }],
            opening: None,
        }
    }

    fn quoted(messages: Vec<Message>, earlier: usize) -> Quoted {
        Quoted {
            messages,
            earlier,
            earlier_more: false,
        }
    }

    fn message(id: i64, body: &str) -> Message {
        Message {
            id,
            room_id: "room".into(),
            author: "alice@a.example".into(),
            body: body.into(),
            created_ms: 0,
            via: Via::Web,
            client_id: None,
            picture_id: None,
        }
    }

    #[test]
    fn a_notification_quotes_escapes_and_carries_the_list_headers() {
        let links = Links {
            room_url: "https://chat.example/c/20000/room".into(),
            unsubscribe_url: "https://chat.example/u/abc".into(),
            reply_to: Some("r-xyz@reply.example".into()),
        };
        let mail = notification_mail(
            &chmail::Config::default(),
            &room(),
            "alice@a.example",
            "bob@b.example",
            &quoted(vec![message(1, "hi"), message(2, "<b>bold</b>")], 0),
            &links,
        );
        assert_eq!(mail.subject, "2 new chat messages: Numbers Bcc: x");
        assert!(mail.text.contains("  <b>bold</b>"), "{}", mail.text);
        let html = mail.html.unwrap_or_default();
        assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"), "{html}");
        let header = |name: &str| {
            mail.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("Reply-To"), Some("r-xyz@reply.example"));
        assert_eq!(
            header("List-Unsubscribe"),
            Some("<https://chat.example/u/abc>")
        );
        assert_eq!(
            header("List-Unsubscribe-Post"),
            Some("List-Unsubscribe=One-Click")
        );
        assert_eq!(header("In-Reply-To"), Some("<orig@a.example>"));
        let again = notification_mail(
            &chmail::Config::default(),
            &room(),
            "alice@a.example",
            "bob@b.example",
            &quoted(vec![message(2, "x")], 3),
            &links,
        );
        assert_eq!(mail.message_id, again.message_id, "stable per last message");
        assert!(
            again.text.contains("(3 earlier messages not shown.)"),
            "{}",
            again.text
        );
        assert!(!mail.text.contains("earlier"), "{}", mail.text);
    }

    #[test]
    fn only_usable_message_ids_are_referenced() {
        assert_eq!(angle_id("<a@b>"), Some("<a@b>".into()));
        assert_eq!(angle_id("a@b"), Some("<a@b>".into()));
        assert_eq!(angle_id("<a b@c>"), None);
        assert_eq!(angle_id("<nope>"), None);
    }
}
