//! The mall's layout and who is looking: every mall page goes through [`page`], with a bar that
//! shows the mall's name, a search box and the viewer's links.
//!
//! **Reachable while browsing.** A signed-in viewer (member, host, or any CHmail login) stays
//! reachable on every mall page, as on `/me`: the page loads the sender's script,
//! `/static/me.js` (marked by the body's `data-watch`), which opens the WebSocket with the
//! session cookie and sends `watch`, so the login is online while a mall page is open. A `ring`
//! shows in the ring box that the frame puts above the content ([`RING_BOX`], the ids the script
//! drives), and Accept opens the chat. The bar links to the viewer's chats, `/me`, with the sum
//! of their unread messages ([`Unread`], rendered here from the store's `rooms_of_login`; the
//! script keeps it current from the `unread` frames, per room, which is why the badge lists the
//! rooms that have any). Those are the rooms of the login's own mails and questions: a host's
//! inquiries, where the host is a recipient, are on the shop's pages, not in this count.

use std::fmt::Write as _;

use axum::http::HeaderMap;
use chmail::store::mall::{Host, MallMember};

use tracing::warn;

use crate::{
    auth::session_login,
    error::AppError,
    state::AppState,
    web::html::{attr, escape},
};

/// The script that keeps a signed-in viewer online and shows rings (shared with `/me`).
pub const WATCH_SCRIPT: &str = "/static/me.js";

/// The box in which `/static/me.js` shows a ring, with Accept and Decline: on every page of a
/// signed-in viewer, hidden until a ring comes.
pub const RING_BOX: &str = "<section id=\"ring\" class=\"card ring-box\" hidden \
     aria-live=\"assertive\"><p id=\"ring-text\"></p><div class=\"row\">\
     <button type=\"button\" id=\"accept\" class=\"primary\">Accept</button>\
     <button type=\"button\" id=\"decline\">Decline</button></div></section>\n";

/// The unread messages of a viewer's chats, for the bar's badge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unread {
    /// Every room with unread messages and its count.
    pub rooms: Vec<(String, i64)>,
}

impl Unread {
    /// The sum over the rooms.
    pub fn total(&self) -> i64 {
        self.rooms.iter().map(|(_, n)| n).sum()
    }
}

/// Who is looking at a mall page.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// The signed-in login (a member's or host's address), if any.
    pub login: Option<String>,
    /// The member with that address, if the login is one.
    pub member: Option<MallMember>,
    /// The host with that login, if the login is one.
    pub host: Option<Host>,
    /// The unread messages of the login's chats; `None` when not signed in or not read.
    pub unread: Option<Unread>,
}

impl Viewer {
    /// The signed-in member.
    ///
    /// # Errors
    /// [`AppError::Forbidden`] for anyone else.
    pub fn require_member(&self) -> Result<&MallMember, AppError> {
        self.member.as_ref().ok_or(AppError::Forbidden)
    }

    /// The signed-in host.
    ///
    /// # Errors
    /// [`AppError::Forbidden`] for anyone else.
    pub fn require_host(&self) -> Result<&Host, AppError> {
        self.host.as_ref().ok_or(AppError::Forbidden)
    }
}

/// The viewer of a request: its session's login and whether that login is a member or a host.
///
/// # Errors
/// When the store fails or times out.
pub async fn viewer(state: &AppState, headers: &HeaderMap) -> Result<Viewer, AppError> {
    let Some(login) = session_login(state, headers).await else {
        return Ok(Viewer::default());
    };
    let member = state
        .store_call(state.store.member_by_address(&login))
        .await?
        .filter(|m| m.confirmed_ms.is_some());
    let host = state.store_call(state.store.host(&login)).await?;
    let unread = unread_of(state, &login).await;
    Ok(Viewer {
        login: Some(login),
        member,
        host,
        unread,
    })
}

/// The unread messages of `login`'s chats (the rooms `/me` lists). A store failure is logged and
/// only leaves the badge without a count: the page matters more.
async fn unread_of(state: &AppState, login: &str) -> Option<Unread> {
    match crate::web::me::chats_of(state, login).await {
        Ok(rooms) => Some(Unread {
            rooms: rooms
                .into_iter()
                .filter(|r| r.unread > 0)
                .map(|r| (r.room_id, r.unread))
                .collect(),
        }),
        Err(e) => {
            warn!(cause = %e, "unread counts not read; the mall's bar shows none");
            None
        }
    }
}

/// What a mall page needs besides its content.
#[derive(Debug, Default)]
pub struct MallPage<'a> {
    /// The title (the mall's name is added; escaped here).
    pub title: &'a str,
    /// Extra attributes of `<body>`, built with [`attr`].
    pub body_attrs: String,
    /// Scripts to load with `defer` (same-origin paths).
    pub scripts: &'a [&'a str],
    /// The text in the search box.
    pub search: &'a str,
    /// The page's CSRF token ([`crate::web::csrf::form_token`]), for the bar's sign-out form;
    /// pages for signed-in viewers must give it.
    pub csrf: &'a str,
}

/// A complete mall page around `main` (already escaped markup).
pub fn page(state: &AppState, viewer: &Viewer, p: &MallPage<'_>, main: &str) -> String {
    let mall = &state.config.mall.name;
    let signed_in = viewer.login.is_some();
    let mut head = String::new();
    let mut scripts: Vec<&str> = p.scripts.to_vec();
    if signed_in && !scripts.contains(&WATCH_SCRIPT) {
        scripts.push(WATCH_SCRIPT);
    }
    for src in scripts {
        let _ = write!(head, "<script defer{}></script>", attr("src", src));
    }
    let mut links = String::new();
    if signed_in {
        links.push_str(&chats_link(viewer.unread.as_ref()));
    }
    if viewer.host.is_some() {
        links.push_str("<a href=\"/mall/host\">My shop</a>");
    }
    if viewer.member.is_some() {
        links.push_str("<a href=\"/mall/account\">My account</a>");
    }
    if viewer.login.is_some() {
        let _ = write!(
            links,
            "<form method=\"post\" action=\"/mall/signout\" class=\"inline\">\
             <input type=\"hidden\" name=\"csrf\"{csrf}>\
             <button type=\"submit\" class=\"link\">Sign out</button></form>",
            csrf = attr("value", p.csrf)
        );
    } else {
        links.push_str(
            "<a href=\"/mall/signin\">Sign in</a><a class=\"button\" href=\"/mall/signup\">Join</a>",
        );
    }
    let (attrs, ring) = if let Some(login) = viewer.login.as_deref() {
        let mut attrs = p.body_attrs.clone();
        attrs.push_str(&attr("data-watch", ""));
        if !p.body_attrs.contains(" data-login=") {
            attrs.push_str(&attr("data-login", login));
        }
        (attrs, RING_BOX)
    } else {
        (p.body_attrs.clone(), "")
    };
    let title = if p.title.is_empty() {
        mall.clone()
    } else {
        format!("{} · {mall}", p.title)
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n<title>{title}</title>\n\
         <link rel=\"stylesheet\" href=\"/static/chat.css\">\n\
         <link rel=\"stylesheet\" href=\"/static/mall.css\">\n{head}\n</head>\n<body class=\"mall\"{attrs}>\n\
         <header class=\"mall-bar\"><a class=\"brand\" href=\"/mall\">{mall}</a>\
         <form class=\"search\" method=\"get\" action=\"/mall/search\" role=\"search\">\
         <input type=\"search\" name=\"q\" maxlength=\"200\" placeholder=\"Search products\" aria-label=\"Search products\"{search}>\
         </form><nav>{links}</nav></header>\n<main>\n{ring}{main}\n</main>\n</body>\n</html>\n",
        title = escape(&title),
        mall = escape(mall),
        search = attr("value", p.search),
    )
}

/// The bar's link to the viewer's chats (`/me`) with the badge of unread messages: its count,
/// and in `data-rooms` the rooms that have any (`room=count`, space-separated), from which the
/// script sums the live counts. Without counts (the store failed) the badge stays empty.
fn chats_link(unread: Option<&Unread>) -> String {
    let (count, rooms, zero) = match unread {
        Some(u) => {
            let rooms: Vec<String> = u.rooms.iter().map(|(r, n)| format!("{r}={n}")).collect();
            let total = u.total();
            (total.to_string(), rooms.join(" "), total == 0)
        }
        None => (String::new(), String::new(), true),
    };
    format!(
        "<a id=\"my-chats\" href=\"/me\">Your chats<span id=\"unread-total\" \
         class=\"unread-total{zero}\"{count_attr}{rooms_attr} title=\"unread messages\">{text}</span></a>",
        zero = if zero { " zero" } else { "" },
        count_attr = attr("data-count", &count),
        rooms_attr = attr("data-rooms", &rooms),
        text = escape(&count),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chats_link_sums_the_rooms_and_lists_them_for_the_script() {
        let unread = Unread {
            rooms: vec![("roomA".into(), 2), ("roomB".into(), 1)],
        };
        let link = chats_link(Some(&unread));
        assert!(link.contains("href=\"/me\""), "{link}");
        assert!(link.contains("data-count=\"3\""), "{link}");
        assert!(link.contains("data-rooms=\"roomA=2 roomB=1\""), "{link}");
        assert!(link.contains(">3</span>"), "{link}");
        assert!(!link.contains(" zero"), "{link}");
        let none = chats_link(Some(&Unread::default()));
        assert!(none.contains("unread-total zero"), "{none}");
        assert!(chats_link(None).contains("data-count=\"\""));
    }
}
