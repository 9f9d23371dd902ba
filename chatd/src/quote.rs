//! Which chat messages a mail quotes, and how. A reminder or a notification quotes the NEWEST
//! messages since a point (the latest answer is what its reader needs; the first messages may be
//! long answered), says how many earlier ones it left out, and shows each as its time, its author
//! ("You" for the mail's reader) and its text, escaped in the HTML part.

use std::fmt::Write as _;

use chmail::store::{Message, Via};

use crate::{
    clock::format_utc_ms,
    error::AppError,
    mail::{cut, MESSAGE_QUOTE_CHARS},
    state::AppState,
    web::html::escape,
};

/// Most earlier messages counted for "N earlier messages not shown": past this the mail says
/// "more than N", and counting stops (one store call of at most this many rows).
pub const MAX_COUNTED: u32 = 1_000;

/// The messages a mail quotes and what it leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quoted {
    /// The newest messages, oldest first.
    pub messages: Vec<Message>,
    /// Messages after the starting point that are older than those quoted.
    pub earlier: usize,
    /// Whether there are more than `earlier` of them (counting stopped at [`MAX_COUNTED`]).
    pub earlier_more: bool,
}

impl Quoted {
    /// The line about the messages left out, if any: "3 earlier messages not shown.".
    pub fn earlier_line(&self) -> Option<String> {
        if self.earlier == 0 {
            return None;
        }
        let noun = if self.earlier == 1 && !self.earlier_more {
            "message"
        } else {
            "messages"
        };
        let more = if self.earlier_more { "More than " } else { "" };
        Some(format!(
            "{more}{n} earlier {noun} not shown.",
            n = self.earlier
        ))
    }
}

/// The newest `limit` messages of `room_id` after message `after` (all rooms' ids grow), oldest
/// first, and how many between `after` and the first of them are left out.
///
/// # Errors
/// When the store fails.
pub async fn newest_after(
    state: &AppState,
    room_id: &str,
    after: i64,
    limit: u32,
) -> Result<Quoted, AppError> {
    let newest = state
        .store_call(state.store.messages(room_id, None, limit))
        .await?;
    let full = newest.len() >= limit as usize;
    let messages: Vec<Message> = newest.into_iter().filter(|m| m.id > after).collect();
    let Some(first) = messages.first().map(|m| m.id).filter(|_| full) else {
        // Fewer than `limit` new ones, or the page reaches back past `after`: none left out.
        return Ok(Quoted {
            messages,
            ..Quoted::default()
        });
    };
    let before = state
        .store_call(state.store.messages_after(room_id, after, MAX_COUNTED))
        .await?;
    let earlier_more = before.len() >= MAX_COUNTED as usize && before.iter().all(|m| m.id < first);
    let earlier = before.iter().filter(|m| m.id < first).count();
    Ok(Quoted {
        messages,
        earlier,
        earlier_more,
    })
}

/// Quotes `messages` in a mail to `reader`: each as `[when] author:` and its indented lines in
/// `text`, as a `<li>` in `html` (inside the caller's `<ul>`), cut to [`MESSAGE_QUOTE_CHARS`],
/// escaped. The reader's own messages are marked "You".
pub fn quote_messages(messages: &[Message], reader: &str, text: &mut String, html: &mut String) {
    for m in messages {
        let author = if m.via == Via::System || m.author.is_empty() {
            "CHmail"
        } else if m.author.eq_ignore_ascii_case(reader) {
            "You"
        } else {
            &m.author
        };
        let when = format_utc_ms(m.created_ms);
        let mut body = cut(&m.body, MESSAGE_QUOTE_CHARS);
        if m.picture_id.is_some() {
            // Pictures stay in the chat: the mail says there is one.
            body = if body.trim().is_empty() {
                "(a picture: open the chat to see it)".to_owned()
            } else {
                format!("(a picture) {body}")
            };
        }
        let _ = writeln!(text, "[{when}] {author}:");
        for line in body.lines() {
            let _ = writeln!(text, "  {line}");
        }
        text.push('\n');
        let _ = write!(
            html,
            "<li><span style=\"color:#5f6b7a\">{w}</span> <strong>{a}</strong>:<br>\
             <span style=\"white-space:pre-wrap\">{b}</span></li>",
            w = escape(&when),
            a = escape(author),
            b = escape(&body),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(author: &str, body: &str) -> Message {
        Message {
            id: 1,
            room_id: "room".into(),
            author: author.into(),
            body: body.into(),
            created_ms: 0,
            via: Via::Web,
            client_id: None,
            picture_id: None,
        }
    }

    #[test]
    fn the_readers_own_messages_are_marked_as_theirs() {
        let (mut text, mut html) = (String::new(), String::new());
        quote_messages(
            &[
                message("bob@b.example", "hi"),
                message("Alice@a.example", "hello"),
            ],
            "alice@a.example",
            &mut text,
            &mut html,
        );
        assert!(text.contains("bob@b.example:\n  hi"), "{text}");
        assert!(text.contains("You:\n  hello"), "{text}");
        assert!(html.contains("<strong>You</strong>"), "{html}");
    }

    #[test]
    fn a_picture_is_named_in_the_quote() {
        let mut bare = message("bob@b.example", "");
        bare.picture_id = Some(7);
        let mut captioned = message("bob@b.example", "the lid");
        captioned.picture_id = Some(8);
        let (mut text, mut html) = (String::new(), String::new());
        quote_messages(&[bare, captioned], "alice@a.example", &mut text, &mut html);
        assert!(
            text.contains("(a picture: open the chat to see it)"),
            "{text}"
        );
        assert!(text.contains("(a picture) the lid"), "{text}");
        assert!(html.contains("(a picture) the lid"), "{html}");
    }

    #[test]
    fn the_earlier_line_counts_what_was_left_out() {
        let quoted = |earlier, earlier_more| Quoted {
            messages: Vec::new(),
            earlier,
            earlier_more,
        };
        assert_eq!(quoted(0, false).earlier_line(), None);
        assert_eq!(
            quoted(1, false).earlier_line().as_deref(),
            Some("1 earlier message not shown.")
        );
        assert_eq!(
            quoted(1_000, true).earlier_line().as_deref(),
            Some("More than 1000 earlier messages not shown.")
        );
    }
}
