//! The one path that sends a chat-capable mail on someone's behalf: a member's product inquiry
//! (to the ad's host) or a host's promotion (to a member).
//!
//! It does for chatd what the milter does for a mail client: record the login's address (the
//! first table), grant or confirm its chat port (the second table) and open the room, in one
//! store transaction; then sign a `CHmail` header and add the `CHmail-Link`. The mail comes from
//! `[mall] from` with the writer's name as display name, so that the signature's domain aligns
//! with the From domain (a mail "from" the member's own address would fail SPF, DKIM and DMARC
//! at the recipient). Its Reply-To is the recipient's reply address of the room: a reply by mail
//! lands in the chat.
//!
//! Relay these mails through an MTA port without the CHmail milter
//! (`contrib/postfix/chatd-relay.cf.snippet`): on port 25 the milter keeps a client's CHmail
//! header only after checking it in DNS, and re-signs mail from its trusted networks.

use std::net::IpAddr;

use chmail::{
    header::{from_address, link_value, RoomId},
    store::{Participant, Role, Room, StoreError, Submission},
};

use crate::{error::AppError, mail::OutgoingMail, outbox, state::AppState};

/// The name of the signed header field.
pub const HEADER_NAME: &str = "CHmail";
/// The name of the link field.
pub const LINK_NAME: &str = "CHmail-Link";

/// A chat-capable mail to send.
#[derive(Debug, Clone)]
pub struct ChatMail<'a> {
    /// The outbox kind (`inquiry`, `promotion`).
    pub kind: &'a str,
    /// The CHmail login the chat goes back to: the member who asks, the host who promotes. It is
    /// an address, and the room's sender (`From` participant): reminders go to it.
    pub login: &'a str,
    /// The writer's display name (`Ana Lima` becomes `"Ana Lima via <mall>"`).
    pub name: &'a str,
    /// The recipient's address (the room's `To` participant).
    pub to: &'a str,
    /// The recipient's name as the chat shows it (a member's name, a shop's).
    pub to_name: &'a str,
    /// How the chat shows its start, as its first item: the member's question, the promotion.
    pub opening: &'a str,
    /// The subject.
    pub subject: &'a str,
    /// The text; a line with the chat link follows it, then the mall's name as the signature.
    pub text: &'a str,
    /// The writer's IP address, recorded in the first table like a mail client's.
    pub client_ip: Option<IpAddr>,
    /// Extra header fields (List-Unsubscribe, ...).
    pub headers: Vec<(String, String)>,
}

/// What [`send`] queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The new room.
    pub room_id: String,
    /// The login's chat port.
    pub port: u16,
    /// The chat page of the room (the CHmail-Link without angle brackets).
    pub link: String,
    /// The mail's Message-ID (without angle brackets).
    pub message_id: String,
}

/// Opens a room for `mail`, signs it and queues it in the outbox.
///
/// # Errors
/// [`AppError::Internal`] when `[mall] from` is not an address, no key signs its domain, or the
/// store times out; [`AppError::Store`] when the store refuses (no free port, bad input) or
/// fails. Nothing is queued then; the room may stay, unused.
pub async fn send(state: &AppState, mail: ChatMail<'_>) -> Result<Sent, AppError> {
    let config = &state.config;
    let from_text = config.mall_from();
    let from = from_address(&from_text).ok_or_else(|| {
        AppError::Internal(format!("[mall] from {from_text:?} is not an address"))
    })?;
    let domain = from.rsplit_once('@').map_or("", |(_, d)| d);
    let signer = state.signing.signer_for(domain).ok_or_else(|| {
        AppError::Internal(format!(
            "no signing key for the mall's From domain {domain}"
        ))
    })?;
    let public_host = config
        .chat
        .public_host()
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let room = RoomId::generate();
    let now_ms = state.clock.now_ms();
    let now = now_ms.div_euclid(1000);
    let message_id = crate::mail::message_id(config, mail.kind, &[room.as_str()]);
    let submission = Submission {
        login: mail.login.to_owned(),
        ip: mail.client_ip.map(|ip| ip.to_string()),
        hostname: None,
        now,
        ports: config.chat.ports,
        reclaim_after: config.chat.reclaim_after(),
        room_id: room.as_str().to_owned(),
        message_id: Some(format!("<{message_id}>")),
        subject: Some(mail.subject.to_owned()),
        participants: vec![
            Participant::new(mail.login, Role::From).named(mail.name),
            Participant::new(mail.to, Role::To).named(mail.to_name),
        ],
        opening: Some(mail.opening.to_owned()),
    };
    let grant = state
        .store_call(state.store.record_submission(&submission))
        .await?;
    let header = signer
        .sign(
            mail.login,
            &public_host,
            grant.port,
            &room,
            u64::try_from(now).unwrap_or(0),
            &from,
        )
        .map_err(|e| AppError::Store(StoreError::Invalid(format!("cannot sign: {e}"))))?;
    let link_field = link_value(config.chat.public_base(), grant.port, &room);
    let link = link_field
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    let reply_to = crate::reply::address::address(state, room.as_str(), mail.to).await?;
    let mut headers = vec![
        (
            "From".to_owned(),
            format!("{} <{from}>", display_name(mail.name, &config.mall.name)),
        ),
        ("Reply-To".to_owned(), reply_to),
        // Written by a person, not by a machine: auto-responders may answer it.
        ("Auto-Submitted".to_owned(), "no".to_owned()),
        // Unfolded: the outbox takes header values on one line (a line within 998 octets); the
        // mail writer folds it again as the milter does, with tabs (`mail::chmail_field`).
        (
            HEADER_NAME.to_owned(),
            header.to_value().replace("\n\t", " "),
        ),
        (LINK_NAME.to_owned(), link_field),
    ];
    headers.extend(mail.headers);
    // The chat link stands above the signature line: mail clients grey out or fold what
    // follows `-- `, and leave it out of a reply's quote.
    let text = format!(
        "{body}\n\nChat about this: {link}\n(Or reply to this mail: your reply goes to the \
         chat.)\n\n-- \n{mall}\n",
        body = mail.text.trim_end(),
        mall = config.mall.name.trim(),
    );
    let outgoing = OutgoingMail {
        to: mail.to.to_owned(),
        subject: mail.subject.to_owned(),
        text,
        html: None,
        message_id: message_id.clone(),
        headers,
    };
    outbox::queue(state, &outgoing, mail.kind, Some(room.as_str())).await?;
    Ok(Sent {
        room_id: room.as_str().to_owned(),
        port: grant.port,
        link,
        message_id,
    })
}

/// The kind of the mail of this module that opened `room` (`inquiry`, `promotion`), told by the
/// room's Message-ID, which [`send`] makes from the kind and the room id alone (and a room id is
/// random, made with the room: no other mail can carry that id); `None` for the room of an
/// ordinary mail.
pub fn kind_of(config: &chmail::Config, room: &Room) -> Option<&'static str> {
    let id = room.message_id.as_deref()?;
    let bare = id.trim().trim_start_matches('<').trim_end_matches('>');
    [super::inquiry::KIND, super::promotion::KIND]
        .into_iter()
        .find(|kind| bare == crate::mail::message_id(config, kind, &[&room.id]))
}

/// `"<name> via <mall>"` as a quoted display name: quotes and backslashes escaped, control
/// characters dropped.
fn display_name(name: &str, mall: &str) -> String {
    let text = format!("{} via {}", name.trim(), mall.trim());
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_display_name_is_quoted_and_cannot_break_out() {
        assert_eq!(display_name("Ana", "Mall"), "\"Ana via Mall\"");
        assert_eq!(
            display_name("A\"b\\c\r\nBcc: x", "M"),
            "\"A\\\"b\\\\cBcc: x via M\""
        );
    }
}
