//! The milter protocol stages (indymilter callbacks): gather macros and the CHmail-relevant
//! headers (and, for the footer, the body), then carry out the [`Outcome`] at end-of-message.

use std::{ffi::CString, sync::Arc, time::Instant};

use indymilter::{
    Actions, Callbacks, Context, ContextActions, EomContext, MacroStage, Macros, NegotiateContext,
    ProtoOpts, SetErrorReply, SocketInfo, Status,
};
use tracing::{debug, info, warn};

use crate::{
    drain::{Transaction, Transactions},
    footer::{add_footer, Footer, Untouched},
    headers::{Headers, Kind},
    opening,
    policy::{Mail, Milter, Outcome},
};

/// Per-connection state.
#[derive(Default)]
pub struct Session {
    /// The MTA agreed not to wait for a reply to each header.
    noreply_header: bool,
    /// The MTA takes a `skip` answer to a body chunk: the rest of a body not needed is not sent.
    skip: bool,
    /// The MTA lets the milter replace the body (for the footer).
    replace_body: bool,
    /// The client as the connect stage named it: the fallback when the MTA sends no
    /// `{client_addr}`/`{client_name}` macros.
    client_addr: Option<String>,
    client_name: Option<String>,
    /// The mail under way, from MAIL FROM to end-of-message.
    headers: Option<Headers>,
    /// Its body, when the footer needs it.
    body: Body,
    /// Whether the body stage has judged the mail under way (signed or not).
    judged: bool,
    /// The start of the body of a signed mail, for its opening ([`crate::opening`]).
    prefix: Option<Vec<u8>>,
    /// Marks the mail under way for a shutdown to wait for ([`crate::drain`]).
    transaction: Option<Transaction>,
}

/// What is kept of the body of the mail under way, for the footer.
#[derive(Debug, Default)]
enum Body {
    /// No body chunk yet: the footer is off, or the body is empty.
    #[default]
    Pending,
    /// Not needed: the mail will not be signed, or the MTA does not let the body be replaced.
    Unwanted,
    /// The body so far.
    Kept(Vec<u8>),
    /// Over `[milter] footer_max_bytes`: the mail goes on without the footer.
    Oversized,
}

/// The macros asked for, per stage. Asking replaces the MTA's own list for that stage.
/// A stage's macros come only with that stage's command: the connect callback exists so that
/// the MTA does not skip the connect stage, and its macros with it.
const MACROS: [(MacroStage, &str); 3] = [
    (MacroStage::Connect, "{client_addr} {client_name} j _"),
    (MacroStage::Mail, "i {auth_authen}"),
    (MacroStage::Eom, "i"),
];

/// The callbacks of the CHmail milter over the shared `milter` state; each mail from MAIL FROM to
/// end-of-message counts in `transactions`. The body stage is asked for only under `[milter]
/// footer` or a non-zero `opening_chars`: without them the MTA does not send bodies at all.
pub fn callbacks(milter: Arc<Milter>, transactions: Transactions) -> Callbacks<Session> {
    let max_header_bytes = milter.config.milter.max_header_bytes;
    let footer = milter.config.milter.footer;
    let wants_body = footer || milter.config.milter.opening_chars > 0;
    let body_milter = milter.clone();
    let callbacks = Callbacks::new()
        .on_negotiate(move |cx, actions, opts| Box::pin(on_negotiate(cx, actions, opts, footer)))
        .on_connect(|cx, hostname, socket| {
            let session = cx.data.get_or_insert_with(Session::default);
            session.client_name = Some(String::from_utf8_lossy(hostname.as_bytes()).into_owned());
            session.client_addr = match socket {
                SocketInfo::Inet(addr) => Some(addr.ip().to_string()),
                _ => None,
            };
            Box::pin(async { Status::Continue })
        })
        .on_mail(move |cx, _args| {
            let session = cx.data.get_or_insert_with(Session::default);
            session.headers = Some(Headers::new(max_header_bytes));
            session.body = Body::Pending;
            session.judged = false;
            session.prefix = None;
            session.transaction = Some(transactions.begin());
            Box::pin(async { Status::Continue })
        })
        .on_header(|cx, name, value| {
            let session = cx.data.get_or_insert_with(Session::default);
            if let Some(headers) = session.headers.as_mut() {
                headers.push(name.as_bytes(), value.as_bytes());
            }
            let status = if session.noreply_header {
                Status::Noreply
            } else {
                Status::Continue
            };
            Box::pin(async move { status })
        })
        .on_eom(move |cx| {
            let milter = milter.clone();
            Box::pin(async move {
                let status = on_eom(cx, &milter).await;
                if let Some(session) = cx.data.as_mut() {
                    session.transaction = None;
                }
                status
            })
        })
        .on_abort(|cx| {
            if let Some(session) = cx.data.as_mut() {
                session.headers = None;
                session.body = Body::Pending;
                session.judged = false;
                session.prefix = None;
                session.transaction = None;
            }
            Box::pin(async { Status::Continue })
        });
    if !wants_body {
        return callbacks;
    }
    callbacks.on_body(move |cx, chunk| {
        let status = on_body(cx, &chunk, &body_milter);
        Box::pin(async move { status })
    })
}

async fn on_negotiate(
    cx: &mut NegotiateContext<Session>,
    actions: Actions,
    opts: ProtoOpts,
    footer: bool,
) -> Status {
    let mut wanted = Actions::ADD_HEADER | Actions::CHANGE_HEADER;
    if footer {
        wanted |= Actions::REPLACE_BODY;
    }
    cx.requested_actions = actions & wanted;
    let noreply_header = opts.contains(ProtoOpts::NOREPLY_HEADER);
    if noreply_header {
        cx.requested_opts |= ProtoOpts::NOREPLY_HEADER;
    }
    for (stage, names) in MACROS {
        // The names are constants without NUL bytes.
        if let Ok(names) = CString::new(names) {
            cx.requested_macros.insert(stage, names);
        }
    }
    cx.data = Some(Session {
        noreply_header,
        skip: cx.requested_opts.contains(ProtoOpts::SKIP),
        replace_body: cx.requested_actions.contains(Actions::REPLACE_BODY),
        ..Default::default()
    });
    Status::Continue
}

/// Keeps the body of a mail that will be signed: its first [`opening::PREFIX_BYTES`] for the
/// opening, and up to `[milter] footer_max_bytes` for the footer; asks the MTA to skip the rest
/// of the body when nothing needs it, when it can.
fn on_body(cx: &mut Context<Session>, chunk: &[u8], milter: &Milter) -> Status {
    let Some(session) = cx.data.as_mut() else {
        return Status::Continue;
    };
    if !session.judged {
        session.judged = true;
        // The header block is complete by now: whether the mail will be signed is known.
        let client_addr =
            macro_value(&cx.macros, "{client_addr}").or_else(|| session.client_addr.clone());
        let signed = session.headers.as_ref().is_some_and(|headers| {
            let auth = macro_value(&cx.macros, "{auth_authen}");
            milter
                .sender_login(auth.as_deref(), client_addr.as_deref(), headers)
                .is_some()
        });
        session.body = if signed && session.replace_body && milter.config.milter.footer {
            Body::Kept(Vec::new())
        } else {
            Body::Unwanted
        };
        session.prefix = (signed && milter.config.milter.opening_chars > 0).then(Vec::new);
    }
    let mut more = false;
    if let Some(prefix) = session.prefix.as_mut() {
        let take = opening::PREFIX_BYTES
            .saturating_sub(prefix.len())
            .min(chunk.len());
        prefix.extend_from_slice(&chunk[..take]);
        more = prefix.len() < opening::PREFIX_BYTES;
    }
    if let Body::Kept(body) = &mut session.body {
        if body.len() + chunk.len() <= milter.config.milter.footer_max_bytes {
            body.extend_from_slice(chunk);
            return Status::Continue;
        }
        session.body = Body::Oversized;
    }
    if session.skip && !more {
        Status::Skip
    } else {
        Status::Continue
    }
}

fn macro_value(macros: &Macros, name: &str) -> Option<String> {
    let name = CString::new(name).ok()?;
    macros
        .get(&name)
        .map(|v| String::from_utf8_lossy(v.to_bytes()).into_owned())
}

async fn on_eom(cx: &mut EomContext<Session>, milter: &Milter) -> Status {
    let started = Instant::now();
    let Some(session) = cx.data.as_mut() else {
        return Status::Continue;
    };
    let Some(headers) = session.headers.take() else {
        return Status::Continue;
    };
    let body = std::mem::take(&mut session.body);
    let replace_body = session.replace_body;
    let chars = milter.config.milter.opening_chars;
    let opening = session.prefix.take().and_then(|prefix| {
        opening::opening(headers.mime_fields().unwrap_or_default(), &prefix, chars)
    });
    let mail = Mail {
        queue_id: macro_value(&cx.macros, "i"),
        auth_authen: macro_value(&cx.macros, "{auth_authen}"),
        client_addr: macro_value(&cx.macros, "{client_addr}").or(session.client_addr.clone()),
        client_name: macro_value(&cx.macros, "{client_name}").or(session.client_name.clone()),
        mta_host: macro_value(&cx.macros, "j"),
        headers,
        opening,
    };
    let outcome = milter.decide(&mail).await;
    let footer = match (&outcome.link, milter.config.milter.footer) {
        (Some(link), true) => Some(footer(&mail.headers, body, replace_body, link).await),
        _ => None,
    };
    let status = apply(cx, milter, &outcome, footer.as_ref()).await;
    let metrics = milter.metrics();
    metrics.mail(outcome.action);
    metrics.eom_time(started.elapsed());
    info!(
        queue_id = mail.queue_id.as_deref().unwrap_or("-"),
        login = outcome.login.as_deref().unwrap_or("-"),
        port = outcome.port.map(u32::from).unwrap_or(0),
        action = outcome.action,
        removed = outcome.delete.len(),
        added = outcome.add.len(),
        footer = footer.as_ref().map_or("-", footer_result),
        note = outcome.note.as_deref().unwrap_or(""),
        "mail"
    );
    status
}

/// The body of a signed mail with the footer and `link`, or why it stays as it is.
///
/// The body may be megabytes: it is worked on off the async threads, and should that work ever
/// panic, the mail goes on untouched.
async fn footer(headers: &Headers, body: Body, replace_body: bool, link: &str) -> Footer {
    if !replace_body {
        return Footer::Untouched(Untouched::NotOffered);
    }
    let body = match body {
        Body::Kept(body) => body,
        // No chunk came: the body is empty.
        Body::Pending => Vec::new(),
        Body::Oversized => return Footer::Untouched(Untouched::TooLarge),
        // The body stage and end-of-message judge the same macros and headers, so a mail kept
        // out there is not signed here; should they ever differ, the body is not at hand.
        Body::Unwanted => return Footer::Untouched(Untouched::NoText),
    };
    let Some(mime) = headers.mime_fields().map(<[u8]>::to_vec) else {
        return Footer::Untouched(Untouched::TooLarge);
    };
    let link = link.to_owned();
    match tokio::task::spawn_blocking(move || add_footer(&mime, &body, &link)).await {
        Ok(footer) => footer,
        Err(e) => {
            warn!(cause = %e, "the footer failed: the body goes on unchanged");
            Footer::Untouched(Untouched::Unparseable)
        }
    }
}

/// One word for the log and the metrics: `added`, or why the body stayed as it was.
fn footer_result(footer: &Footer) -> &'static str {
    match footer {
        Footer::Added(_) => "added",
        Footer::Untouched(why) => why.as_str(),
    }
}

/// Carries out `outcome` and the `footer`. A failed action is logged and counted; the mail still
/// goes on.
async fn apply(
    cx: &mut EomContext<Session>,
    milter: &Milter,
    outcome: &Outcome,
    footer: Option<&Footer>,
) -> Status {
    if outcome.tempfail {
        // The text is fixed and valid, so this cannot fail; without it the MTA uses its own.
        let _ = cx.reply.set_error_reply(
            "451",
            Some("4.3.0"),
            ["CHmail is temporarily unavailable, please try again later"],
        );
        return Status::Tempfail;
    }
    let metrics = milter.metrics();
    let mut removed = 0;
    for (kind, index) in &outcome.delete {
        let index = i32::try_from(*index).unwrap_or(i32::MAX);
        match cx
            .actions
            .change_header(kind.name(), index, None::<CString>)
            .await
        {
            Ok(()) => removed += 1,
            Err(e) => {
                warn!(cause = %e, "cannot delete a header");
                metrics.error("action");
            }
        }
    }
    metrics.stripped(removed);
    let mut added = 0;
    for (kind, value) in &outcome.add {
        let done = match kind {
            // RFC 8601 section 5: on top, above the fields of earlier hops.
            Kind::AuthResults => {
                cx.actions
                    .insert_header(0, kind.name(), value.as_str())
                    .await
            }
            _ => cx.actions.add_header(kind.name(), value.as_str()).await,
        };
        match done {
            Ok(()) => added += 1,
            Err(e) => {
                warn!(cause = %e, "cannot add a header");
                metrics.error("action");
            }
        }
    }
    metrics.added(added);
    match footer {
        Some(Footer::Added(body)) => match cx.actions.replace_body(body).await {
            Ok(()) => metrics.footer("added"),
            Err(e) => {
                warn!(cause = %e, "cannot replace the body");
                metrics.error("action");
            }
        },
        Some(Footer::Untouched(why)) => {
            debug!(reason = why.as_str(), "body left without the footer");
            metrics.footer(why.as_str());
        }
        None => {}
    }
    Status::Continue
}
