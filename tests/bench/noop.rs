//! A milter that does no work: the baseline that shows what the milter protocol itself costs.
//! It takes part in the same stages as the CHmail milter (connect, MAIL FROM, every header,
//! end-of-message; no body), asks for the same actions and the same header option, sets
//! `TCP_NODELAY` on accepted sockets as `milter/src/listen.rs` does, and at end-of-message adds
//! the header fields it was started with (fixed text: `bench milter` gives it the two that CHmail
//! adds to a signed mail; `bench mta` none), so that the difference to CHmail is CHmail's own
//! work.

use std::{
    future, io,
    task::{Context, Poll},
};

use indymilter::{Actions, Callbacks, Config, ContextActions, Listener, ProtoOpts, Status};
use tokio::net::{TcpListener, TcpStream};

/// Most concurrent MTA connections: far above the bench's SMTP sessions.
const MAX_CONNECTIONS: usize = 1_000;

/// The listener with `TCP_NODELAY` on every accepted socket (see `milter/src/listen.rs`: without
/// it the small end-of-message replies wait for delayed ACKs).
struct NoDelay(TcpListener);

impl Listener for NoDelay {
    type Io = TcpStream;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<TcpStream>> {
        self.0.poll_accept(cx).map_ok(|(stream, _)| {
            // Best effort, as in the real milter: a socket without it only gets slower.
            let _ = stream.set_nodelay(true);
            stream
        })
    }
}

/// The two fields CHmail adds to a signed mail, with values of the same shape and length.
pub const CHMAIL_FIELDS: &[(&str, &str)] = &[
    (
        "CHmail",
        "v=1; d=example.test; s=sel1; l=user00@example.test; h=chat.example.test; \
         p=20000; r=3q2-7wVYx1T0gD1m5rQh2A; t=1700000000; \
         b=B1dPZ9zmqkQ2hXJx0aV4g3S6tNwE8uYcL5rKfIoP7sDjH2bMvT9nA0eRyWlC4xZqUk1\
         OiG8pFhJ3sD6mN5bV2cX7zL0kQ9wE4rT1yU8iA3oP6sD2fG5hJ0kL7==",
    ),
    (
        "CHmail-Link",
        "<https://chat.example.test/c/20000/3q2-7wVYx1T0gD1m5rQh2A>",
    ),
];

/// Starts the no-op milter on 127.0.0.1 on the current runtime, for good, and returns its port.
/// At end-of-message it adds `fields`.
///
/// # Errors
///
/// When no port can be bound.
pub async fn start(fields: &'static [(&'static str, &'static str)]) -> io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let config = Config {
        max_connections: MAX_CONNECTIONS,
        ..Default::default()
    };
    tokio::spawn(async move {
        if let Err(err) = indymilter::run(
            NoDelay(listener),
            callbacks(fields),
            config,
            future::pending::<()>(),
        )
        .await
        {
            eprintln!("the no-op milter stopped: {err}");
        }
    });
    Ok(port)
}

/// The callbacks; the session data is whether the MTA takes headers without a reply.
fn callbacks(fields: &'static [(&'static str, &'static str)]) -> Callbacks<bool> {
    Callbacks::new()
        .on_negotiate(|cx, actions, opts| {
            cx.requested_actions = actions & (Actions::ADD_HEADER | Actions::CHANGE_HEADER);
            let noreply_header = opts.contains(ProtoOpts::NOREPLY_HEADER);
            if noreply_header {
                cx.requested_opts |= ProtoOpts::NOREPLY_HEADER;
            }
            cx.data = Some(noreply_header);
            Box::pin(async { Status::Continue })
        })
        .on_connect(|_, _, _| Box::pin(async { Status::Continue }))
        .on_mail(|_, _| Box::pin(async { Status::Continue }))
        .on_header(|cx, _, _| {
            let status = if cx.data == Some(true) {
                Status::Noreply
            } else {
                Status::Continue
            };
            Box::pin(async move { status })
        })
        .on_eom(move |cx| {
            Box::pin(async move {
                for (name, value) in fields {
                    // The names and values are constants without NUL bytes; a refused action
                    // shows as a missing field in the bench's check.
                    let _ = cx.actions.add_header(*name, *value).await;
                }
                Status::Continue
            })
        })
}
