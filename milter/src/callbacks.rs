//! The milter protocol stages (indymilter callbacks): gather macros and the CHmail-relevant
//! headers, then carry out the [`Outcome`] at end-of-message.

use std::{ffi::CString, sync::Arc, time::Instant};

use indymilter::{
    Actions, Callbacks, ContextActions, EomContext, MacroStage, Macros, NegotiateContext,
    ProtoOpts, SetErrorReply, SocketInfo, Status,
};
use tracing::{info, warn};

use crate::{
    headers::Headers,
    policy::{Mail, Milter, Outcome},
};

/// Per-connection state.
#[derive(Default)]
pub struct Session {
    /// The MTA agreed not to wait for a reply to each header.
    noreply_header: bool,
    /// The client as the connect stage named it: the fallback when the MTA sends no
    /// `{client_addr}`/`{client_name}` macros.
    client_addr: Option<String>,
    client_name: Option<String>,
    /// The mail under way, from MAIL FROM to end-of-message.
    headers: Option<Headers>,
}

/// The macros asked for, per stage. Asking replaces the MTA's own list for that stage.
/// A stage's macros come only with that stage's command: the connect callback exists so that
/// the MTA does not skip the connect stage, and its macros with it.
const MACROS: [(MacroStage, &str); 3] = [
    (MacroStage::Connect, "{client_addr} {client_name} j _"),
    (MacroStage::Mail, "i {auth_authen}"),
    (MacroStage::Eom, "i"),
];

/// The callbacks of the CHmail milter over the shared `milter` state.
pub fn callbacks(milter: Arc<Milter>) -> Callbacks<Session> {
    let max_header_bytes = milter.config.milter.max_header_bytes;
    Callbacks::new()
        .on_negotiate(|cx, actions, opts| Box::pin(on_negotiate(cx, actions, opts)))
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
            Box::pin(async move { on_eom(cx, &milter).await })
        })
        .on_abort(|cx| {
            if let Some(session) = cx.data.as_mut() {
                session.headers = None;
            }
            Box::pin(async { Status::Continue })
        })
}

async fn on_negotiate(
    cx: &mut NegotiateContext<Session>,
    actions: Actions,
    opts: ProtoOpts,
) -> Status {
    cx.requested_actions = actions & (Actions::ADD_HEADER | Actions::CHANGE_HEADER);
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
        ..Default::default()
    });
    Status::Continue
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
    let mail = Mail {
        queue_id: macro_value(&cx.macros, "i"),
        auth_authen: macro_value(&cx.macros, "{auth_authen}"),
        client_addr: macro_value(&cx.macros, "{client_addr}").or(session.client_addr.clone()),
        client_name: macro_value(&cx.macros, "{client_name}").or(session.client_name.clone()),
        headers,
    };
    let outcome = milter.decide(&mail).await;
    let status = apply(cx, milter, &outcome).await;
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
        note = outcome.note.as_deref().unwrap_or(""),
        "mail"
    );
    status
}

/// Carries out `outcome`. A failed action is logged and counted; the mail still goes on.
async fn apply(cx: &mut EomContext<Session>, milter: &Milter, outcome: &Outcome) -> Status {
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
        match cx.actions.add_header(kind.name(), value.as_str()).await {
            Ok(()) => added += 1,
            Err(e) => {
                warn!(cause = %e, "cannot add a header");
                metrics.error("action");
            }
        }
    }
    metrics.added(added);
    Status::Continue
}
