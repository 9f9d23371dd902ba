//! Replies by mail through chatd's own SMTP listener (`[reply] listen`, here on 127.0.0.1:0),
//! sent with the real `swaks` as an MTA would deliver them: a good reply lands in the room and
//! reaches its WebSocket connections once; a wrong From, an unknown or expired address, an
//! oversized mail and one over the rate are refused; bounces and auto-replies are accepted and
//! dropped without an answer; and in none of those cases is anything posted.
//!
//! `swaks` must be installed: without it these tests are SKIPPED, except under `CI=true`, where
//! a missing `swaks` fails them.

mod common;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpStream},
    process::Command,
    time::Duration,
};

use chmail::store::Via;
use common::{Harness, BOB, CAROL, DAVE, ORIGIN, ROOM};

/// The reply domain of the test config (`reply.<[signing] domain>`).
const REPLY_DOMAIN: &str = "reply.a.example";

/// Whether `swaks` can run here; under `CI=true` its absence fails the test.
fn swaks_available() -> bool {
    let found = Command::new("swaks")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "swaks is not installed, and CI=true requires it"
        );
        eprintln!("SKIPPED: swaks is not installed");
    }
    found
}

/// What `swaks` did: its exit code and its transcript.
#[derive(Debug)]
struct Sent {
    code: Option<i32>,
    transcript: String,
}

impl Sent {
    /// Asserts the exit code and that the server's answers include `reply` (`<** 550 5.7.1`,
    /// `<-  250`).
    fn expect(&self, code: i32, reply: &str) {
        assert_eq!(self.code, Some(code), "{}", self.transcript);
        assert!(
            self.transcript.contains(reply),
            "no {reply:?} in:\n{}",
            self.transcript
        );
    }
}

/// Sends `mail` (a whole message) from envelope sender `from` (`<>` for a bounce) to `to` at
/// the harness's reply listener with `swaks`.
async fn swaks(h: &Harness, from: &str, to: &str, mail: &str) -> Sent {
    let addr = reply_addr(h);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("mail.eml");
    std::fs::write(&path, mail).expect("mail written");
    let (from, to) = (from.to_owned(), to.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("swaks")
            .args(["--server", &addr.ip().to_string()])
            .args(["--port", &addr.port().to_string()])
            .args(["--helo", "mx.b.example"])
            .args(["--from", &from, "--to", &to])
            .args(["--timeout", "30"])
            .arg("--data")
            .arg(format!("@{}", path.display()))
            .output()
            .expect("swaks runs")
    })
    .await
    .expect("swaks finished");
    Sent {
        code: out.status.code(),
        transcript: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn reply_addr(h: &Harness) -> SocketAddr {
    h.running().reply_addr().expect("the reply listener runs")
}

/// The reply address of `participant` in the room.
async fn reply_address(h: &Harness, participant: &str) -> String {
    let address = chatd::reply::address(h.state(), ROOM, participant)
        .await
        .expect("reply address");
    assert!(address.ends_with(&format!("@{REPLY_DOMAIN}")), "{address}");
    address
}

/// A reply from `from` to `to` with `extra` header lines, a Message-ID and a plain `body`.
fn mail(from: &str, to: &str, message_id: &str, extra: &str, body: &str) -> String {
    format!(
        "From: Someone <{from}>\r\n\
         To: {to}\r\n\
         Subject: Re: Quarterly numbers\r\n\
         Date: Wed, 1 May 2024 16:20:45 +0200\r\n\
         Message-ID: <{message_id}>\r\n\
         {extra}\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=UTF-8\r\n\
         \r\n\
         {body}"
    )
}

/// A Gmail reply to a reminder: the answer on top, the reminder quoted below it.
fn gmail_reply(from: &str, to: &str, message_id: &str, answer: &str) -> String {
    let body = format!(
        "{answer}\r\n\
         \r\n\
         On Wed, May 1, 2024 at 2:40 PM CHmail <chmail@a.example> wrote:\r\n\
         \r\n\
         > alice@a.example: bob@b.example tried to chat about \"Quarterly numbers\".\r\n\
         >\r\n\
         > Answer in the chat: {ORIGIN}/auth/QUOTEDSIGNINTOKENquotedsignintoken01\r\n"
    );
    mail(from, to, message_id, "", &body)
}

/// The messages of the room that came by mail.
async fn mail_messages(h: &Harness) -> Vec<chmail::store::Message> {
    h.store()
        .messages(ROOM, None, 500)
        .await
        .expect("messages read")
        .into_iter()
        .filter(|m| m.via == Via::Mail)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_reply_is_posted_once_and_reaches_the_room() {
    if !swaks_available() {
        return;
    }
    let mut h = Harness::start(|_| {}).await;
    let mut carol = h.joined(CAROL).await;
    let to = reply_address(&h, BOB).await;
    let reply = gmail_reply(
        BOB,
        &to,
        "CAF1good@mail.gmail.com",
        "Almost: sales are final, costs are not.",
    );

    swaks(&h, BOB, &to, &reply).await.expect(0, "<-  250");
    let frame = carol.skip_to("message").await;
    assert_eq!(frame["message"]["author"], BOB, "{frame}");
    assert_eq!(frame["message"]["via"], "mail", "{frame}");
    assert_eq!(
        frame["message"]["text"],
        "Almost: sales are final, costs are not."
    );
    let stored = mail_messages(&h).await;
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stored[0].author, BOB);
    assert_eq!(stored[0].body, "Almost: sales are final, costs are not.");
    assert!(!stored[0].body.contains("/auth/"));

    // The MTA delivers the same mail again (a lost 250): posted once, sent once.
    swaks(&h, BOB, &to, &reply).await.expect(0, "<-  250");
    assert_eq!(mail_messages(&h).await.len(), 1);
    let again = carol.drain(Duration::from_millis(500)).await;
    assert!(
        again.iter().all(|f| f["type"] != "message"),
        "posted twice: {again:?}"
    );

    // A different reply of the same participant is a new message.
    let next = gmail_reply(
        BOB,
        &to,
        "CAF2good@mail.gmail.com",
        "Costs follow on Thursday.",
    );
    swaks(&h, BOB, &to, &next).await.expect(0, "<-  250");
    let frame = carol.skip_to("message").await;
    assert_eq!(frame["message"]["text"], "Costs follow on Thursday.");
    assert_eq!(mail_messages(&h).await.len(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_from_another_sender_is_refused() {
    if !swaks_available() {
        return;
    }
    let h = Harness::start(|_| {}).await;
    let to = reply_address(&h, BOB).await;
    // Carol is in the room too, but the address is Bob's.
    for from in ["mallory@m.example", CAROL] {
        let reply = gmail_reply(from, &to, &format!("{from}.1@m.example"), "Let me in.");
        let sent = swaks(&h, from, &to, &reply).await;
        sent.expect(
            26,
            "<** 550 5.7.1 This reply address belongs to another sender",
        );
    }
    // The envelope sender is Bob's but the From is not.
    let forged = gmail_reply("mallory@m.example", &to, "forged.1@m.example", "Hi.");
    swaks(&h, BOB, &to, &forged)
        .await
        .expect(26, "<** 550 5.7.1");
    // The From compares case-insensitively.
    let shouting = gmail_reply("BOB@B.Example", &to, "caps.1@b.example", "Fine by me.");
    swaks(&h, BOB, &to, &shouting).await.expect(0, "<-  250");
    let stored = mail_messages(&h).await;
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stored[0].author, BOB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_expired_and_foreign_addresses_are_refused() {
    if !swaks_available() {
        return;
    }
    let h = Harness::start(|_| {}).await;
    let unknown = format!("{}@{REPLY_DOMAIN}", "a".repeat(32));
    let reply = gmail_reply(BOB, &unknown, "unknown.1@b.example", "Hello?");
    let sent = swaks(&h, BOB, &unknown, &reply).await;
    sent.expect(
        24,
        "<** 550 5.1.1 This reply address is unknown or has expired",
    );
    assert!(sent.transcript.contains(ORIGIN), "{}", sent.transcript);

    // Dave's token, stored as if its mail went out long ago: expired now.
    let now = h.state().clock.now_ms();
    let candidate = chatd::reply::address::new_token().expect("random works");
    let expired = h
        .store()
        .reply_token(ROOM, DAVE, &candidate, now - 60_000, now - 1_000)
        .await
        .expect("token stored");
    let to = format!("{}@{REPLY_DOMAIN}", expired.token);
    let reply = gmail_reply(DAVE, &to, "expired.1@d.example", "Still there?");
    swaks(&h, DAVE, &to, &reply).await.expect(
        24,
        "<** 550 5.1.1 This reply address is unknown or has expired",
    );

    // A valid token at a domain that is not the reply domain.
    let bob = reply_address(&h, BOB).await;
    let local = bob.split('@').next().unwrap_or_default();
    let elsewhere = format!("{local}@a.example");
    let reply = gmail_reply(BOB, &elsewhere, "elsewhere.1@b.example", "Hi.");
    swaks(&h, BOB, &elsewhere, &reply)
        .await
        .expect(24, "<** 550 5.1.1 Not a CHmail reply address");
    assert!(mail_messages(&h).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_replies_and_bounces_are_dropped_without_an_answer() {
    if !swaks_available() {
        return;
    }
    let h = Harness::start(|_| {}).await;
    let to = reply_address(&h, BOB).await;
    for (n, header) in [
        "Auto-Submitted: auto-replied\r\n",
        "Precedence: bulk\r\n",
        "X-Autoreply: yes\r\n",
    ]
    .into_iter()
    .enumerate()
    {
        let auto = mail(
            BOB,
            &to,
            &format!("ooo.{n}@b.example"),
            header,
            "I am out of the office until Monday.\r\n",
        );
        swaks(&h, BOB, &to, &auto).await.expect(0, "<-  250");
    }
    // A bounce: the null reverse-path, to a known and to an unknown address.
    let bounce = mail(
        "mailer-daemon@mx.b.example",
        &to,
        "bounce.1@mx.b.example",
        "",
        "Your message could not be delivered.\r\n",
    );
    swaks(&h, "<>", &to, &bounce).await.expect(0, "<-  250");
    let unknown = format!("{}@{REPLY_DOMAIN}", "b".repeat(32));
    swaks(&h, "<>", &unknown, &bounce)
        .await
        .expect(0, "<-  250");
    assert!(mail_messages(&h).await.is_empty());
    assert_eq!(h.message_count().await, 0);
    // chatd answered none of them.
    assert!(h.mailer.mails().is_empty(), "{:#?}", h.mailer.mails());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_reply_is_refused_and_the_connection_goes_on() {
    if !swaks_available() {
        return;
    }
    let h = Harness::start(|c| c.reply.max_bytes = 4096).await;
    let to = reply_address(&h, BOB).await;
    let big = gmail_reply(BOB, &to, "big.1@b.example", &"All fine. ".repeat(1000));
    swaks(&h, BOB, &to, &big)
        .await
        .expect(26, "<** 552 5.3.4 A reply may have at most 4096 bytes");
    assert!(mail_messages(&h).await.is_empty());

    // After a refused mail the same connection takes the next one (as Postfix reuses it).
    let addr = reply_addr(&h);
    let small = gmail_reply(BOB, &to, "small.1@b.example", "Short answer.");
    let answers = tokio::task::spawn_blocking(move || {
        let mut smtp = Smtp::connect(addr);
        smtp.say("EHLO mx.b.example");
        smtp.say(&format!("MAIL FROM:<{BOB}>"));
        smtp.say(&format!("RCPT TO:<{to}>"));
        smtp.say("DATA");
        smtp.say(&format!("{big}\r\n."));
        smtp.say("RSET");
        smtp.say(&format!("MAIL FROM:<{BOB}>"));
        smtp.say(&format!("RCPT TO:<{to}>"));
        smtp.say("DATA");
        smtp.say(&format!("{small}\r\n."));
        smtp.say("QUIT");
        smtp.answers
    })
    .await
    .expect("dialogue done");
    let codes: Vec<&str> = answers.iter().map(|a| &a[..3]).collect();
    assert_eq!(
        codes,
        ["220", "250", "250", "250", "354", "552", "250", "250", "250", "354", "250", "221"],
        "{answers:#?}"
    );
    let stored = mail_messages(&h).await;
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stored[0].body, "Short answer.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_over_the_hourly_rate_are_deferred() {
    if !swaks_available() {
        return;
    }
    let h = Harness::start(|c| c.reply.per_token_per_hour = 2).await;
    let to = reply_address(&h, BOB).await;
    for n in 0..2 {
        let reply = gmail_reply(
            BOB,
            &to,
            &format!("rate.{n}@b.example"),
            &format!("Answer {n}."),
        );
        swaks(&h, BOB, &to, &reply).await.expect(0, "<-  250");
    }
    let third = gmail_reply(BOB, &to, "rate.2@b.example", "Answer 2.");
    swaks(&h, BOB, &to, &third)
        .await
        .expect(24, "<** 450 4.7.1 Too many replies");
    assert_eq!(mail_messages(&h).await.len(), 2);
    // The limit is per address: Carol's replies still go through.
    let carol = reply_address(&h, CAROL).await;
    let reply = gmail_reply(CAROL, &carol, "rate.c@c.example", "Me too.");
    swaks(&h, CAROL, &carol, &reply).await.expect(0, "<-  250");
    assert_eq!(mail_messages(&h).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_links_in_a_reply_are_not_posted() {
    if !swaks_available() {
        return;
    }
    let h = Harness::start(|_| {}).await;
    let to = reply_address(&h, BOB).await;
    // An unquoted copy of the reminder's link, which no history heuristic can see as a quote.
    let body = format!(
        "Thanks, I used {ORIGIN}/auth/SIGNINtokenSIGNINtokenSIGNINtoken0123456 to look.\r\n"
    );
    let reply = mail(BOB, &to, "link.1@b.example", "", &body);
    swaks(&h, BOB, &to, &reply).await.expect(0, "<-  250");
    let only_link = mail(
        BOB,
        &to,
        "link.2@b.example",
        "",
        &format!("{ORIGIN}/auth/SIGNINtokenSIGNINtokenSIGNINtoken0123456\r\n"),
    );
    swaks(&h, BOB, &to, &only_link).await.expect(0, "<-  250");
    let stored = mail_messages(&h).await;
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert!(!stored[0].body.contains("/auth/"), "{}", stored[0].body);
    assert!(
        !stored[0].body.contains("SIGNINtoken"),
        "{}",
        stored[0].body
    );
    assert_eq!(
        stored[0].body,
        "Thanks, I used [sign-in link removed] to look."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chinese_and_japanese_outlook_replies_never_post_a_safe_links_wrapped_sign_in_link() {
    if !swaks_available() {
        return;
    }
    let h = Harness::start(|_| {}).await;
    let to = reply_address(&h, BOB).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replies");
    let mut expected = Vec::new();
    // The quoted reminder's link, as Safe Links wrapped it (split by quoted-printable soft
    // breaks in the Chinese one, base64 in ISO-2022-JP in the Japanese one).
    for name in ["outlook-chinese", "outlook-japanese"] {
        let raw = std::fs::read_to_string(dir.join(format!("{name}.eml"))).expect("fixture");
        let reply = raw
            .replace("<alice@a.example>", &format!("<{BOB}>"))
            .replace("r-7f3k2q9x@reply.a.example", &to);
        swaks(&h, BOB, &to, &reply).await.expect(0, "<-  250");
        let text = std::fs::read_to_string(dir.join(format!("{name}.expected.txt")))
            .expect("expected text");
        expected.push(text.trim_end().to_owned());
    }
    let stored = mail_messages(&h).await;
    let bodies: Vec<&str> = stored.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, expected);
    for body in bodies {
        assert!(!body.contains("Qm9iIHdhcyBo"), "{body}");
        assert!(!body.contains("safelinks"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_sign_in_token_in_the_new_text_is_cut_in_any_wrapping_and_spent() {
    if !swaks_available() {
        return;
    }
    let h = Harness::start(|_| {}).await;
    let to = reply_address(&h, BOB).await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let url = chatd::auth::signin_url(h.state(), BOB, None)
            .await
            .expect("a sign-in link");
        tokens.push(url.rsplit('/').next().unwrap_or_default().to_owned());
    }
    // A client that put the link in the new text: wrapped by Safe Links, and once more with
    // the token on a line of its own.
    let body = format!(
        "Use this: https://eur01.safelinks.protection.outlook.com/?url=http%3A%2F%2Fchat.test\
         %2Fauth%2F{}&data=05%7C02%7Cbob%40b.example%7C0&reserved=0\r\n\
         or the one my client wrapped: http://chat.test/auth/\r\n\
         {}\r\n\
         Bye\r\n",
        tokens[0], tokens[1]
    );
    let reply = mail(BOB, &to, "wrapped.1@b.example", "", &body);
    swaks(&h, BOB, &to, &reply).await.expect(0, "<-  250");
    let stored = mail_messages(&h).await;
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(
        stored[0].body,
        "Use this: [sign-in link removed]\n\
         or the one my client wrapped: [sign-in link removed]\n\
         [sign-in link removed]\n\
         Bye"
    );
    for token in &tokens {
        let now = h.state().clock.now_ms();
        let left = h
            .store()
            .consume_signin_token(&chatd::auth::hash_token(token), now)
            .await
            .expect("store answers");
        assert!(left.is_none(), "a token seen in a reply is spent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_chatd_ends_open_smtp_connections() {
    let mut h = Harness::start(|_| {}).await;
    let addr = reply_addr(&h);
    let (greeting, mut smtp) = tokio::task::spawn_blocking(move || {
        let smtp = Smtp::connect(addr);
        (smtp.answers[0].clone(), smtp)
    })
    .await
    .expect("connected");
    assert!(greeting.starts_with("220 "), "{greeting}");
    tokio::time::timeout(Duration::from_secs(10), h.stop())
        .await
        .expect("chatd stops although an SMTP client is connected");
    let after = tokio::task::spawn_blocking(move || smtp.try_say("NOOP"))
        .await
        .expect("read done");
    assert_eq!(after, None, "the connection is closed");
    // Nothing listens any more.
    assert!(TcpStream::connect(addr).is_err());
    // The reply listener is off when `[reply] listen` is empty.
    let off = Harness::start(|c| c.reply.listen = String::new()).await;
    assert!(off.running().reply_addr().is_none());
}

/// A line-by-line SMTP client for the dialogues swaks cannot hold.
struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Every answer so far (the last line of each).
    answers: Vec<String>,
}

impl Smtp {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("time-out set");
        let mut smtp = Smtp {
            reader: BufReader::new(stream.try_clone().expect("stream clones")),
            writer: stream,
            answers: Vec::new(),
        };
        let greeting = smtp.answer().expect("a greeting");
        smtp.answers.push(greeting);
        smtp
    }

    /// Sends `line` and records the answer.
    fn say(&mut self, line: &str) {
        let answer = self
            .try_say(line)
            .unwrap_or_else(|| panic!("no answer to {line:?}"));
        self.answers.push(answer);
    }

    /// Sends `line` (CRLF added) and reads the answer; `None` when the connection is closed.
    fn try_say(&mut self, line: &str) -> Option<String> {
        let line = format!("{}\r\n", line.replace("\r\n", "\n").replace('\n', "\r\n"));
        self.writer.write_all(line.as_bytes()).ok()?;
        self.answer()
    }

    /// Reads one (possibly multi-line) answer; returns its last line.
    fn answer(&mut self) -> Option<String> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(line.trim_end().to_owned());
            }
        }
    }
}
