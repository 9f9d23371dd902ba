//! What a reminder mail says (S117). It goes to the room's sender, who was away while someone
//! rang or wrote, and its subject and text fit what happened ([`Occasion`]) and why the room
//! exists ([`Origin`]):
//!
//! - someone is waiting: a ring or first messages, and the sender has not been in the chat;
//! - the chat continued: the sender took part before, and new messages came since;
//! - a question: the room is a member's product question in the mall, so the sender is the
//!   member (who sent no mail) and the news is the shop's answer.
//!
//! It quotes the NEWEST messages ([`crate::quote`]), the sender's own marked "You", says how many
//! earlier ones it left out, and carries a link that signs the sender straight into the room;
//! the room's address stands above the signature line. The caller adds Reply-To.

use std::fmt::Write as _;

use chmail::store::{Member, Room};

use crate::{
    auth::sender_address,
    mail::{message_id, one_line, OutgoingMail, SUBJECT_QUOTE_CHARS},
    quote::{quote_messages, Quoted},
    web::html::escape,
};

/// Why the room exists: it decides how the reminder speaks to its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The sender sent a mail with a CHmail-Link (the milter opened the room).
    Mail,
    /// A member asked about a product in the mall: the member is the sender, the ad's host the
    /// recipient who answers.
    Question {
        /// The ad's title, when the inquiry was found.
        title: Option<String>,
        /// The member's question, when the inquiry was found.
        question: Option<String>,
    },
    /// A shop's host sent a promotion from the mall to a member, who answered in the chat.
    Promotion,
}

/// What happened in the room since the sender was last told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occasion {
    /// Someone rang or wrote and the sender has not been in the chat yet.
    Waiting,
    /// The sender took part in the chat before; new messages came since.
    Continued,
}

impl Occasion {
    /// The occasion for `sender` in a room whose participants are `members`: continued when the
    /// sender ever joined the room or read in it.
    pub fn of(sender: &str, members: &[Member]) -> Self {
        let took_part = members.iter().any(|m| {
            m.address.eq_ignore_ascii_case(sender)
                && (m.joined_at.is_some() || m.last_read.is_some())
        });
        if took_part {
            Self::Continued
        } else {
            Self::Waiting
        }
    }
}

/// One reminder to compose.
#[derive(Debug, Clone)]
pub struct Reminder<'a> {
    /// Who rang or wrote last (an address).
    pub caller: &'a str,
    /// Why the room exists.
    pub origin: Origin,
    /// What happened.
    pub occasion: Occasion,
    /// The newest messages since the sender was last told or in the chat.
    pub quoted: &'a Quoted,
    /// A link that signs the sender into the room.
    pub signin_url: &'a str,
}

/// The reminder to the sender of `room`. The recipient is the room's From address (else its
/// login). `sequence` counts the room's reminders before this one; the Message-ID is made from
/// the room and it alone, so composing the same reminder again (after a crash, when more messages
/// or another link came meanwhile) gives the same id, which the outbox queues only once.
pub fn reminder_mail(
    config: &chmail::Config,
    room: &Room,
    sequence: u32,
    reminder: &Reminder<'_>,
) -> OutgoingMail {
    let to = sender_address(config, room);
    let words = Words::new(config, room, reminder);
    let room_url = format!("{}/c/{}/{}", config.chat.public_base(), room.port, room.id);
    let ttl = config.chat.signin_ttl_minutes;
    let messages = &reminder.quoted.messages;

    let mut text = format!("Hello,\n\n{}\n\n", words.lead);
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5;color:#1d2330\">\
         <p>Hello,</p><p>{}</p>",
        escape(&words.lead),
    );
    if let Some(question) = &words.question {
        text.push_str("Your question:\n");
        html.push_str("<p>Your question:</p>");
        for line in question.lines() {
            let _ = writeln!(text, "  > {line}");
        }
        text.push('\n');
        let _ = write!(
            html,
            "<blockquote style=\"margin:0 0 1em;padding-left:0.8em;border-left:3px solid #c9d1dc;\
             white-space:pre-wrap\">{}</blockquote>",
            escape(question)
        );
    }
    if messages.is_empty() {
        let none = match reminder.occasion {
            Occasion::Waiting => "No messages yet: they are waiting for you to answer.",
            Occasion::Continued => "No new messages: they are waiting for you in the chat.",
        };
        let _ = write!(text, "{none}\n\n");
        let _ = write!(html, "<p>{none}</p>");
    } else {
        let _ = write!(text, "{}\n\n", words.intro);
        let _ = write!(
            html,
            "<p>{}</p><ul style=\"padding-left:1.2em\">",
            escape(&words.intro)
        );
        if let Some(line) = reminder.quoted.earlier_line() {
            let _ = write!(text, "({line})\n\n");
            let _ = write!(html, "<li style=\"color:#5f6b7a\">{}</li>", escape(&line));
        }
        quote_messages(messages, &to, &mut text, &mut html);
        html.push_str("</ul>");
    }
    let _ = write!(
        text,
        "Answer in the chat (this link signs you in; it works once, for {ttl} minutes):\n\
         {url}\n\nLater the chat is at {room_url}\n\n-- \nCHmail: {why}\n",
        url = reminder.signin_url,
        why = words.why,
    );
    let _ = write!(
        html,
        "<p><a href=\"{u}\" style=\"display:inline-block;background:#2563eb;color:#fff;\
         padding:0.6em 1.2em;border-radius:999px;text-decoration:none;font-weight:600\">\
         Answer in the chat</a></p>\
         <p style=\"color:#5f6b7a;font-size:0.9em\">The button signs you in; it works once, for \
         {ttl} minutes. Later the chat is at <a href=\"{r}\">{r}</a>.</p>\
         <p style=\"color:#5f6b7a;font-size:0.85em\">CHmail: {w}</p></body></html>",
        u = escape(reminder.signin_url),
        r = escape(&room_url),
        w = escape(&words.why),
    );
    OutgoingMail {
        to,
        subject: words.subject,
        text,
        html: Some(html),
        message_id: message_id(config, "reminder", &[&room.id, &sequence.to_string()]),
        headers: Vec::new(),
    }
}

/// The sentences of one reminder, in plain text (escaped for the HTML part by the caller).
struct Words {
    subject: String,
    /// The first sentence: who did what.
    lead: String,
    /// The member's question, quoted under the lead.
    question: Option<String>,
    /// The line above the quoted messages.
    intro: String,
    /// Why the recipient gets this mail (under the signature line).
    why: String,
}

impl Words {
    fn new(config: &chmail::Config, room: &Room, reminder: &Reminder<'_>) -> Self {
        let caller = one_line(reminder.caller, 320);
        let subject_line = room
            .subject
            .as_deref()
            .map(|s| one_line(s, SUBJECT_QUOTE_CHARS))
            .filter(|s| !s.is_empty());
        let to = sender_address(config, room);
        // Whether someone else wrote: a ring alone is an invitation, not an answer.
        let wrote = reminder
            .quoted
            .messages
            .iter()
            .any(|m| !m.author.is_empty() && !m.author.eq_ignore_ascii_case(&to));
        let continued = reminder.occasion == Occasion::Continued;
        let mall = one_line(&config.mall.name, 80);
        match &reminder.origin {
            Origin::Question { title, question } => {
                let title = title
                    .as_deref()
                    .map(|t| one_line(t, SUBJECT_QUOTE_CHARS))
                    .or(subject_line)
                    .unwrap_or_else(|| "a product".to_owned());
                let (subject, lead) = match (wrote, continued) {
                    (true, false) => (
                        format!("{caller} answered your question about \"{title}\""),
                        format!(
                            "{caller} answered the question you asked in the {mall} about \
                             \"{title}\" while you were away."
                        ),
                    ),
                    (true, true) => (
                        format!("New answer from {caller} about \"{title}\""),
                        format!(
                            "{caller} wrote again in your chat about the question you asked \
                             in the {mall} about \"{title}\", since you were last in it."
                        ),
                    ),
                    (false, _) => (
                        format!("{caller} wants to chat about your question on \"{title}\""),
                        format!(
                            "{caller} wants to chat about the question you asked in the {mall} \
                             about \"{title}\", and rang while you were away."
                        ),
                    ),
                };
                Self {
                    subject,
                    lead,
                    question: question.clone(),
                    intro: if continued {
                        "New in the chat:".to_owned()
                    } else {
                        "Their answer:".to_owned()
                    },
                    why: format!(
                        "you get this because you asked a question in the {mall} and the shop \
                         got in touch while you were away."
                    ),
                }
            }
            Origin::Mail | Origin::Promotion => {
                let promotion = reminder.origin == Origin::Promotion;
                let what = if promotion { "promotion" } else { "mail" };
                let about = subject_line
                    .as_ref()
                    .map_or_else(String::new, |s| format!(" \"{s}\""));
                let on = subject_line
                    .as_ref()
                    .map_or_else(|| " with you".to_owned(), |s| format!(" about \"{s}\""));
                let (subject, lead) = match (continued, wrote) {
                    (false, _) => (
                        format!("{caller} wants to chat{on}"),
                        format!(
                            "{caller} opened the chat link of your {what}{about} and wants to \
                             chat with you, but you were away."
                        ),
                    ),
                    (true, true) => (
                        format!(
                            "New messages from {caller}{}",
                            subject_line.as_ref().map_or_else(
                                || " in your chat".to_owned(),
                                |s| format!(" about \"{s}\"")
                            )
                        ),
                        format!(
                            "{caller} wrote again in the chat about your {what}{about} since you \
                             were last in it."
                        ),
                    ),
                    (true, false) => (
                        format!("{caller} wants to chat again{on}"),
                        format!(
                            "{caller} wants to chat again about your {what}{about} and rang \
                             while you were away."
                        ),
                    ),
                };
                // A sender with several logins tells by the prefix which one is asked for.
                let subject = if promotion {
                    subject
                } else {
                    format!("{}: {subject}", room.login)
                };
                let why = if promotion {
                    format!(
                        "you get this because a member used the chat link of a promotion you \
                         sent from the {mall}."
                    )
                } else {
                    "you get this because someone used the chat link of a mail you sent.".to_owned()
                };
                Self {
                    subject,
                    lead,
                    question: None,
                    intro: if continued {
                        "New messages:".to_owned()
                    } else {
                        "Messages so far:".to_owned()
                    },
                    why,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chmail::store::{Message, Participant, Role, Via};

    fn room(subject: &str) -> Room {
        Room {
            id: "room".into(),
            port: 20_000,
            login: "ana@member.example".into(),
            message_id: None,
            subject: Some(subject.into()),
            created: 0,
            participants: vec![
                Participant {
                    address: "ana@member.example".into(),
                    role: Role::From,
                    name: None,
                },
                Participant {
                    address: "host@shop.example".into(),
                    role: Role::To,
                    name: None,
                },
            ],
            opening: None,
        }
    }

    fn message(id: i64, author: &str, body: &str) -> Message {
        Message {
            id,
            room_id: "room".into(),
            author: author.into(),
            body: body.into(),
            created_ms: 0,
            via: Via::Web,
            client_id: None,
            picture_id: None,
        }
    }

    fn compose(origin: Origin, occasion: Occasion, messages: Vec<Message>) -> OutgoingMail {
        let quoted = Quoted {
            messages,
            ..Quoted::default()
        };
        reminder_mail(
            &chmail::Config::default(),
            &room("Question about Tea pot"),
            0,
            &Reminder {
                caller: "host@shop.example",
                origin,
                occasion,
                quoted: &quoted,
                signin_url: "https://chat.example/auth/x",
            },
        )
    }

    #[test]
    fn a_question_answered_speaks_of_the_question_not_of_a_mail() {
        let mail = compose(
            Origin::Question {
                title: Some("Tea pot".into()),
                question: Some("Is it cast iron?".into()),
            },
            Occasion::Waiting,
            vec![message(1, "host@shop.example", "Yes, it is.")],
        );
        assert_eq!(
            mail.subject,
            "host@shop.example answered your question about \"Tea pot\""
        );
        assert!(mail.text.contains("  > Is it cast iron?"), "{}", mail.text);
        assert!(!mail.text.contains("mail you sent"), "{}", mail.text);
        let html = mail.html.unwrap_or_default();
        assert!(!html.contains("mail you sent"), "{html}");
    }

    #[test]
    fn each_case_has_its_own_subject() {
        let question = || Origin::Question {
            title: Some("Tea pot".into()),
            question: None,
        };
        let answer = || vec![message(1, "host@shop.example", "Yes.")];
        let cases = [
            (
                compose(Origin::Mail, Occasion::Waiting, Vec::new()),
                "ana@member.example: host@shop.example wants to chat about \"Question about Tea pot\"",
            ),
            (
                compose(Origin::Mail, Occasion::Continued, answer()),
                "ana@member.example: New messages from host@shop.example about \"Question about Tea pot\"",
            ),
            (
                compose(Origin::Mail, Occasion::Continued, Vec::new()),
                "ana@member.example: host@shop.example wants to chat again about \"Question about Tea pot\"",
            ),
            (
                compose(question(), Occasion::Continued, answer()),
                "New answer from host@shop.example about \"Tea pot\"",
            ),
            (
                compose(question(), Occasion::Waiting, Vec::new()),
                "host@shop.example wants to chat about your question on \"Tea pot\"",
            ),
            (
                compose(Origin::Promotion, Occasion::Waiting, answer()),
                "host@shop.example wants to chat about \"Question about Tea pot\"",
            ),
        ];
        for (mail, subject) in cases {
            assert_eq!(mail.subject, subject);
        }
        let promotion = compose(Origin::Promotion, Occasion::Waiting, answer());
        assert!(
            promotion.text.contains("a promotion you sent"),
            "{}",
            promotion.text
        );
        assert!(
            !promotion.text.contains("a mail you sent"),
            "{}",
            promotion.text
        );
    }

    #[test]
    fn the_chat_link_stands_above_the_signature() {
        let mail = compose(Origin::Mail, Occasion::Continued, Vec::new());
        let (body, _) = mail.text.split_once("\n-- \n").expect("a signature");
        assert!(
            body.contains("https://chat.example/auth/x"),
            "{}",
            mail.text
        );
        assert!(body.contains("/c/20000/room"), "{}", mail.text);
    }

    #[test]
    fn who_joined_or_read_took_part() {
        let member = |joined_at, last_read| Member {
            room_id: "room".into(),
            address: "ana@member.example".into(),
            role: Role::From,
            joined_at,
            last_read,
            verified: false,
        };
        let sender = "ana@member.example";
        assert_eq!(Occasion::of(sender, &[]), Occasion::Waiting);
        assert_eq!(
            Occasion::of(sender, &[member(None, None)]),
            Occasion::Waiting
        );
        assert_eq!(
            Occasion::of(sender, &[member(Some(1), None)]),
            Occasion::Continued
        );
        assert_eq!(
            Occasion::of(sender, &[member(None, Some(3))]),
            Occasion::Continued
        );
    }
}
