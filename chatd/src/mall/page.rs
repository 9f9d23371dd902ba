//! The mall's layout and who is looking: every mall page goes through [`page`], with a bar that
//! shows the mall's name, a search box and the viewer's links.

use std::fmt::Write as _;

use axum::http::HeaderMap;
use chmail::store::mall::{Host, MallMember};

use crate::{
    auth::session_login,
    error::AppError,
    state::AppState,
    web::html::{attr, escape},
};

/// Who is looking at a mall page.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// The signed-in login (a member's or host's address), if any.
    pub login: Option<String>,
    /// The member with that address, if the login is one.
    pub member: Option<MallMember>,
    /// The host with that login, if the login is one.
    pub host: Option<Host>,
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
    Ok(Viewer {
        login: Some(login),
        member,
        host,
    })
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
    let mut head = String::new();
    for src in p.scripts {
        let _ = write!(head, "<script defer{}></script>", attr("src", src));
    }
    let mut links = String::new();
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
         </form><nav>{links}</nav></header>\n<main>\n{main}\n</main>\n</body>\n</html>\n",
        title = escape(&title),
        attrs = p.body_attrs,
        mall = escape(mall),
        search = attr("value", p.search),
    )
}
