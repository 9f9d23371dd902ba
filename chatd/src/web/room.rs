//! `GET /c/{port}/{room}`: the chat page behind a CHmail-Link.
//!
//! The room id is the capability; the port alone grants nothing. An unknown room, a known room
//! under another port and a malformed link all get the very same 404 page, so the answer tells
//! nobody which rooms or ports exist. The page is only the frame: the history, presence and
//! ringing come over the WebSocket (`static/chat.js`, `docs/protocol.md`), which relies on the
//! ids and `data-` attributes written here.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
};

use axum::{
    extract::{rejection::PathRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chmail::store::{Member, Role, Room, MAX_ROOM_ID_LEN};

use super::html::{attr, escape, page, Page};
use crate::{auth::session_login, error::AppError, people::Person, state::AppState};

/// The room a link names, if the link is well formed, the room exists and it is on that port.
///
/// # Errors
/// [`AppError::NotFound`] for every way of not matching; a store failure.
pub async fn find_room(state: &AppState, port: &str, room_id: &str) -> Result<Room, AppError> {
    let port = parse_port(port).ok_or(AppError::NotFound)?;
    if !is_room_id(room_id) {
        return Err(AppError::NotFound);
    }
    match state.store_call(state.store.room(room_id)).await? {
        Some(room) if room.port == port => Ok(room),
        _ => Err(AppError::NotFound),
    }
}

/// A port as written in a link: 1 to 5 digits, 1..=65535.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|p| *p != 0)
}

/// A room id as written in a link: URL-safe base64 characters, at most the store's limit.
fn is_room_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_ROOM_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /c/{port}/{room}`.
pub async fn room_page(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Path((port, room_id)) = path.map_err(|_| AppError::NotFound)?;
    let room = find_room(&state, &port, &room_id).await?;
    let members = state.store_call(state.store.members(&room.id)).await?;
    let login = session_login(&state, &headers).await;
    let people = crate::people::of_room(&state, &room).await;
    let html = render(&state, &room, &members, &people, login.as_deref());
    Ok(super::html_response(StatusCode::OK, [], html))
}

/// How the page of `room` names `address`: its name, else the address itself.
fn name_of<'a>(people: &'a People, address: &'a str) -> &'a str {
    people
        .get(address)
        .and_then(|p| p.name.as_deref())
        .unwrap_or(address)
}

/// The people of a room by address ([`crate::people::of_room`]).
type People = HashMap<String, Person>;

/// The page for `room` as seen by `login` (signed in or not). The conversation fills the
/// screen: a compact head (who, about what, where the call stands), the mail that started it as
/// the first item, the messages, and the composer pinned at the bottom; the people and the
/// settings fold away behind a button.
fn render(
    state: &AppState,
    room: &Room,
    members: &[Member],
    people: &People,
    login: Option<&str>,
) -> String {
    let sender = crate::auth::sender_address(&state.config, room);
    let is_sender = login.is_some_and(|l| l == room.login);
    // A signed-in recipient joins as themselves (the WebSocket decides the same way).
    let signed_in_recipient = login.map(str::to_lowercase).filter(|l| {
        !is_sender
            && room
                .participants
                .iter()
                .any(|p| p.address == *l && p.role != Role::From)
    });
    let subject = room.subject.as_deref().unwrap_or("");
    let shown_subject = if subject.trim().is_empty() {
        "(no subject)"
    } else {
        subject
    };
    let sender_name = name_of(people, &sender);
    let names: String = people
        .iter()
        .filter_map(|(address, p)| {
            p.name
                .as_ref()
                .map(|n| format!("{}\t{}\t{}", address, n, p.badge.unwrap_or("")))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let body_attrs = [
        attr("data-page", "room"),
        attr("class", "chat-page"),
        attr("data-port", &room.port.to_string()),
        attr("data-room", &room.id),
        attr("data-sender", &sender),
        attr("data-subject", subject),
        attr("data-login", login.unwrap_or("")),
        attr("data-is-sender", if is_sender { "true" } else { "false" }),
        attr(
            "data-recipient",
            signed_in_recipient.as_deref().unwrap_or(""),
        ),
        attr("data-names", &names),
        attr(
            "data-max-message-bytes",
            &state.config.chat.max_message_bytes.to_string(),
        ),
        attr(
            "data-max-picture-bytes",
            &state.config.chat.max_picture_bytes.to_string(),
        ),
    ]
    .concat();

    // Whom the head names: for a recipient the sender; for the sender the other people.
    let others: Vec<&str> = room
        .participants
        .iter()
        .filter(|p| p.role != Role::From && p.address != sender)
        .map(|p| p.address.as_str())
        .collect::<Vec<_>>();
    let title = if is_sender {
        match others.as_slice() {
            [] => shown_subject.to_owned(),
            [one] => name_of(people, one).to_owned(),
            [one, rest @ ..] => format!("{} and {} more", name_of(people, one), rest.len()),
        }
    } else {
        sender_name.to_owned()
    };
    let mut main = String::new();
    let _ = write!(
        main,
        "<header class=\"chat-head\">\
         <span class=\"avatar\" aria-hidden=\"true\"{hue}>{initials}</span>\
         <div class=\"head-text\"><h1 id=\"title\">{title}</h1>\
         <p class=\"about\" id=\"subject\">{subject}</p>\
         <p id=\"status\" role=\"status\" aria-live=\"polite\">Loading the chat&hellip;</p></div>\
         <div class=\"head-actions\">",
        hue = attr("data-hue", &hue(&title).to_string()),
        initials = escape(&initials(&title)),
        title = escape(&title),
        subject = escape(shown_subject),
    );
    if !is_sender {
        let _ = write!(
            main,
            "<button type=\"button\" id=\"chat-button\" class=\"small\" hidden>Ring {}</button>",
            escape(first_name(sender_name)),
        );
    }
    main.push_str(
        "<button type=\"button\" id=\"people-button\" class=\"small\" aria-expanded=\"false\" \
         aria-controls=\"people\">People</button></div></header>\n",
    );
    main.push_str(
        "<section id=\"people\" class=\"drawer\" aria-label=\"People and settings\" hidden>",
    );
    main.push_str(&participants(room, members, people, &sender));
    main.push_str(SETTINGS);
    if login.is_some() {
        main.push_str("<p><a href=\"/me\">All your chats</a></p>");
    }
    main.push_str("</section>\n");
    main.push_str(
        "<noscript><p class=\"notice\">This chat needs JavaScript. Please turn it on for this \
         page, or simply reply to the mail.</p></noscript>\n",
    );
    main.push_str("<div id=\"notices\" class=\"notices\"></div>\n");
    if !is_sender && signed_in_recipient.is_none() {
        main.push_str(&whoami(members, people, &sender));
        main.push_str(PROOF);
    } else if !is_sender {
        main.push_str(PROOF);
    }
    let _ = write!(
        main,
        "<div id=\"scroller\" class=\"scroller\" tabindex=\"0\" aria-label=\"Conversation\">\
         {opening}\
         <button type=\"button\" id=\"older\" class=\"small\" hidden>Show older messages</button>\
         <ol id=\"messages\" aria-live=\"polite\" aria-relevant=\"additions\"></ol></div>\n\
         <button type=\"button\" id=\"jump\" class=\"jump\" hidden>New messages</button>\n\
         <p id=\"typing\" class=\"typing\" aria-live=\"polite\"></p>\n\
         <form id=\"composer\" autocomplete=\"off\">{attach}\
         <label for=\"text\" class=\"visually-hidden\">Message</label>\
         <textarea id=\"text\" name=\"text\" rows=\"1\" maxlength=\"{max}\" \
         placeholder=\"Write a message\" enterkeyhint=\"send\" required></textarea>\
         <button type=\"submit\" id=\"send\" aria-label=\"Send\">Send</button>\
         </form>",
        opening = opening(room, people, &sender, is_sender),
        attach = if state.config.chat.max_picture_bytes > 0 {
            "<input type=\"file\" id=\"picture\" class=\"visually-hidden\" \
             accept=\"image/png,image/jpeg,image/gif,image/webp\">\
             <label for=\"picture\" class=\"attach\" title=\"Send a picture\">\
             <span aria-hidden=\"true\">+</span><span class=\"visually-hidden\">Send a picture\
             </span></label>"
        } else {
            ""
        },
        max = state.config.chat.max_message_bytes,
    );
    page(
        &Page {
            title: &format!("{title} - {shown_subject} - CHmail"),
            body_attrs,
            scripts: &["/static/chat.js"],
        },
        &main,
    )
}

/// The first item of the conversation: the mail (or the mall question) that started it, with
/// its subject, the start of its text when known, who wrote it and when.
fn opening(room: &Room, people: &People, sender: &str, is_sender: bool) -> String {
    let subject = room.subject.as_deref().unwrap_or("").trim();
    let by = if is_sender {
        "You".to_owned()
    } else {
        name_of(people, sender).to_owned()
    };
    let text = room
        .opening
        .as_deref()
        .map(|t| format!("<p class=\"opening-text\">{}</p>", escape(t)))
        .unwrap_or_default();
    let when = crate::clock::format_utc_ms(room.created.saturating_mul(1000));
    format!(
        "<article id=\"opening\" class=\"opening\" aria-label=\"How this chat began\">\
         <p class=\"opening-kind\">{by} wrote</p>\
         <h2 class=\"opening-subject\">{subject}</h2>{text}\
         <p class=\"opening-meta\"><time{at}>{when}</time></p></article>",
        by = escape(&by),
        subject = escape(if subject.is_empty() {
            "(no subject)"
        } else {
            subject
        }),
        at = attr("data-ms", &room.created.saturating_mul(1000).to_string()),
        when = escape(&when),
    )
}

/// The first word of a name, for short buttons ("Ring Ana"); an address stays whole.
fn first_name(name: &str) -> &str {
    if name.contains('@') {
        return name;
    }
    name.split_whitespace().next().unwrap_or(name)
}

/// Up to two initials of a name or an address, for its avatar.
pub fn initials(name: &str) -> String {
    let base = name.split('@').next().unwrap_or(name);
    let mut letters = base
        .split(|c: char| c.is_whitespace() || c == '.' || c == '_' || c == '-')
        .filter_map(|w| w.chars().find(|c| c.is_alphanumeric()))
        .flat_map(char::to_uppercase);
    let mut out = String::new();
    out.extend(letters.next());
    out.extend(letters.next());
    if out.is_empty() {
        out.push('?');
    }
    out
}

/// A stable colour (one of eight hues) for a name's avatar.
pub fn hue(name: &str) -> u8 {
    let sum = name
        .bytes()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
    u8::try_from(sum % 8).unwrap_or(0)
}

/// `#participants`: the sender first, then the To and Cc addresses, each by name with a plain
/// word for what they are ("wrote the mail", "shop") and, for recipients, whether mails reach
/// them (a proven address) or not.
fn participants(room: &Room, members: &[Member], people: &People, sender: &str) -> String {
    let mut items = String::new();
    let mut seen = HashSet::new();
    let mut item = |address: &str, role: Role, verified: bool| {
        if !seen.insert(address.to_owned()) {
            return;
        }
        let person = people.get(address);
        let name = person.and_then(|p| p.name.as_deref());
        let shop = person.and_then(|p| p.badge) == Some("shop");
        let what = match (role, shop) {
            (_, true) => "shop",
            (Role::From, false) => "wrote the mail",
            (Role::To | Role::Cc, false) => "received the mail",
        };
        let mark = if role == Role::From {
            String::new()
        } else if verified {
            " <span class=\"verified\" title=\"Gets new messages by mail while away\">\
             confirmed</span>"
                .to_owned()
        } else {
            " <span class=\"unverified\" title=\"Has not confirmed this address: gets no mail \
             about new messages\">not confirmed</span>"
                .to_owned()
        };
        let shown = name.unwrap_or(address);
        let _ = write!(
            items,
            "<li{a}{r} data-presence=\"offline\"><span class=\"avatar small\" aria-hidden=\"true\"{h}>\
             {ini}</span><span class=\"person\"><span class=\"name\">{shown}</span>\
             <span class=\"what\">{what}{mark}</span>{addr}</span>\
             <span class=\"presence\" aria-hidden=\"true\"></span>\
             <span class=\"visually-hidden presence-text\">offline</span></li>",
            a = attr("data-address", address),
            r = attr("data-role", role.as_str()),
            h = attr("data-hue", &hue(shown).to_string()),
            ini = escape(&initials(shown)),
            shown = escape(shown),
            addr = if name.is_some() {
                format!("<span class=\"address\">{}</span>", escape(address))
            } else {
                String::new()
            },
        );
    };
    item(sender, Role::From, true);
    for m in members.iter().filter(|m| m.role == Role::From) {
        item(&m.address, Role::From, true);
    }
    if members.is_empty() {
        for p in room.participants.iter().filter(|p| p.role != Role::From) {
            item(&p.address, p.role, false);
        }
    }
    for m in members.iter().filter(|m| m.role != Role::From) {
        item(&m.address, m.role, m.verified);
    }
    format!("<h2>People</h2><ul id=\"participants\">{items}</ul>\n")
}

/// `#proof`, the code form of a recipient confirming their address; `chat.js` shows it when
/// they ask for a code.
const PROOF: &str = "<section class=\"panel stack\" id=\"proof\" hidden>\
     <form id=\"code-form\" class=\"row\" autocomplete=\"off\">\
     <label for=\"code\">Code from the mail</label>\
     <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" \
     autocomplete=\"one-time-code\" maxlength=\"12\" placeholder=\"123456\" required>\
     <button type=\"submit\" id=\"code-send\" class=\"primary\">Confirm</button>\
     <button type=\"button\" id=\"code-again\" class=\"link-button\">Mail a new code</button>\
     </form></section>\n";

/// The settings in the people drawer: mails about new messages (recipients with a confirmed
/// address), sound and system notifications (this browser).
const SETTINGS: &str = "<h2>Settings</h2>\
     <p class=\"row setting\" id=\"mail-settings\" hidden>\
     <span id=\"mute-text\" class=\"muted\"></span>\
     <button type=\"button\" id=\"mute-toggle\" class=\"small\"></button></p>\
     <p class=\"row setting\"><input type=\"checkbox\" id=\"alerts\" checked>\
     <label for=\"alerts\">Sound and notifications for new messages while this tab is in the \
     background</label></p>\n";

/// `#whoami`: which of the room's To/Cc addresses the visitor is, by name; the only one is
/// chosen already.
fn whoami(members: &[Member], people: &People, sender: &str) -> String {
    let mut options = String::new();
    let mut seen = HashSet::new();
    let recipients: Vec<&Member> = members
        .iter()
        .filter(|m| m.role != Role::From && seen.insert(m.address.as_str()))
        .collect();
    let only = recipients.len() == 1;
    for m in &recipients {
        let label = match people.get(&m.address).and_then(|p| p.name.as_deref()) {
            Some(name) => format!("{name} ({})", m.address),
            None => m.address.clone(),
        };
        let _ = write!(
            options,
            "<option{v}{sel}>{l}</option>",
            v = attr("value", &m.address),
            sel = if only { " selected" } else { "" },
            l = escape(&label),
        );
    }
    let choose = if only {
        String::new()
    } else {
        "<option value=\"\">choose your address</option>".to_owned()
    };
    format!(
        "<section class=\"panel\" id=\"whoami-panel\"><form id=\"whoami\" class=\"stack\">\
         <label for=\"as\">Who are you in this chat?</label>\
         <div class=\"row\"><select id=\"as\" name=\"as\" required>{choose}{options}</select>\
         <button type=\"submit\" id=\"join\">Join the chat</button></div>\
         </form><p class=\"muted\">Pick the address this mail reached you at. Are you \
         {sender}? <a href=\"/signin\">Sign in</a> to answer as yourself.</p></section>\n",
        sender = escape(name_of(people, sender)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ports_and_room_ids_pass() {
        assert_eq!(parse_port("20417"), Some(20417));
        for bad in ["", "0", "65536", "+1", "1e3", "020417x", "123456"] {
            assert_eq!(parse_port(bad), None, "{bad}");
        }
        assert!(is_room_id("AbC_-9"));
        assert!(!is_room_id("a/b"));
        assert!(!is_room_id(&"a".repeat(MAX_ROOM_ID_LEN + 1)));
    }

    #[test]
    fn avatars_get_initials_and_a_stable_hue() {
        assert_eq!(initials("Ana Lima"), "AL");
        assert_eq!(initials("bob.smith@b.example"), "BS");
        assert_eq!(initials("철수"), "철");
        assert_eq!(initials("--"), "?");
        assert_eq!(hue("Ana Lima"), hue("Ana Lima"));
        assert!(hue("x") < 8);
        assert_eq!(first_name("Lena from Tea House"), "Lena");
        assert_eq!(first_name("bob@b.example"), "bob@b.example");
    }
}
