//! `bench ws`: what an idle WebSocket costs chatd. chatd runs as its own process (the built
//! `chatd` binary over an SQLite store in a tempdir, rooms made through the store beforehand);
//! the bench opens `--connections` WebSockets on one runtime, each joining a room as one of its
//! recipients, `--room-size` to a room, and reads chatd's resident memory (`VmRSS`) before and
//! after: the difference per connection is the figure. Then one member of each room sends a
//! message that the room's others receive, and the memory is read again.
//!
//! chatd admits 64 connections per client network (chatd/src/ws/capacity.rs), and behind a
//! reverse proxy on the same host the client is the last `X-Forwarded-For` entry
//! (chatd/src/client_ip.rs): each room's connections say they come from their own address, as
//! through a proxy in front of many users. The sockets are spread over several loopback source
//! addresses so that no address runs out of ephemeral ports.

use std::{
    fmt::Write as _,
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use chmail::{
    config::PortRange,
    store::{Participant, Role, Room},
    RoomId,
};
use chmail_tests::{built_binary, free_port, stop_child, tempdir, wait_listening};
use futures_util::{
    stream::{SplitSink, SplitStream},
    SinkExt, StreamExt,
};
use serde_json::{json, Value};
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};
use tokio_tungstenite::{
    client_async_with_config,
    tungstenite::{
        client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig, Message,
    },
    WebSocketStream,
};

use crate::{system, unknown, value};

/// The sender of every room.
const LOGIN: &str = "alice@example.test";
/// File descriptors beyond the connections: chatd's store, log, listener and runtime, the
/// bench's runtime (each process needs a few dozen).
const SPARE_FILES: u64 = 128;
/// WebSocket handshakes under way at once.
const CONCURRENT_CONNECTS: usize = 256;
/// Connections per loopback source address (each address has about 28k ephemeral ports).
const PER_SOURCE_ADDRESS: usize = 10_000;
/// The longest one connection may take to open and join.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long chatd may take to listen (it migrates the store first).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for chatd to settle before its memory is read.
const SETTLE: Duration = Duration::from_secs(3);
/// The longest the broadcast may take to reach every member.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(120);
/// The client's read buffer: small, as chatd's own (chatd/src/ws/mod.rs), so that the bench's
/// side stays light.
const CLIENT_READ_BUFFER: usize = 4 * 1024;

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;
type Stream = SplitStream<WebSocketStream<TcpStream>>;

/// The options of `bench ws`.
#[derive(Debug)]
pub struct Options {
    /// WebSockets to open.
    connections: usize,
    /// Connections per room.
    room_size: usize,
    /// Send one message per room after measuring the idle connections.
    broadcast: bool,
    /// Only open the connections (read `hello`), join no room: the cost of the connection alone.
    join: bool,
}

impl Options {
    /// Parses the arguments after `ws`.
    ///
    /// # Errors
    ///
    /// An unknown argument or a bad number.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            connections: 20_000,
            room_size: 10,
            broadcast: true,
            join: true,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--connections" => options.connections = value(arg, args.next())?,
                "--room-size" => options.room_size = value(arg, args.next())?,
                "--no-broadcast" => options.broadcast = false,
                "--no-join" => {
                    options.join = false;
                    options.broadcast = false;
                }
                other => return Err(unknown(other)),
            }
        }
        if options.room_size == 0 || options.room_size > 64 || options.connections < 2 {
            return Err(
                "--room-size must be 1-64 (one address per room, 64 connections \
                 per address) and --connections at least 2"
                    .into(),
            );
        }
        Ok(options)
    }
}

/// Runs `bench ws` and prints its figures.
///
/// # Errors
///
/// When the file limit cannot be raised far enough, chatd does not start, or a connection fails.
pub fn run(options: &Options) -> Result<(), String> {
    let wanted = u64::try_from(options.connections).unwrap_or(u64::MAX) + SPARE_FILES;
    let limit = system::raise_nofile(wanted);
    if limit < wanted {
        return Err(format!(
            "the open-files limit is {limit}, {wanted} are needed: raise it (`ulimit -n {wanted}` \
             in the shell that runs the bench; the hard limit needs root)"
        ));
    }
    let rooms = options.connections.div_ceil(options.room_size);
    let data = tempdir("chmail-bench-ws.");
    let url = format!("sqlite://{}", data.path().join("chmail.db").display());
    let runtime = tokio::runtime::Runtime::new().map_err(|err| format!("runtime: {err}"))?;
    let started = Instant::now();
    let (port, room_ids) = runtime.block_on(make_rooms(&url, rooms))?;
    println!(
        "bench ws: {} connections, {} per room, {rooms} rooms (made in {:.1} s); open files \
         limit {limit}",
        options.connections,
        options.room_size,
        started.elapsed().as_secs_f64()
    );

    let listen = free_port();
    let config = data.path().join("chmail.toml");
    let mut toml = String::new();
    let _ = writeln!(toml, "data_dir = {:?}", data.path().display().to_string());
    let _ = writeln!(toml, "[store]\nurl = {url:?}");
    let _ = writeln!(
        toml,
        "[chat]\nlisten = \"127.0.0.1:{listen}\"\npublic_url = \"http://127.0.0.1:{listen}\"\n\
         metrics_listen = \"\"\nmax_room_connections = {}",
        options.room_size.max(50)
    );
    // Nothing is mailed; the reply listener is not needed.
    let _ = writeln!(
        toml,
        "[smtp]\nrelay = \"127.0.0.1:9\"\n[reply]\nlisten = \"\""
    );
    fs::write(&config, toml).map_err(|err| format!("write the chatd config: {err}"))?;
    let log_path = data.path().join("chatd.log");
    let log = fs::File::create(&log_path).map_err(|err| format!("chatd log: {err}"))?;
    let mut chatd = Command::new(built_binary("chatd"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|err| err.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|err| format!("start chatd: {err}"))?;
    wait_listening("chatd", &mut chatd, listen, START_TIMEOUT, &log_path, 40);
    let pid = chatd.id();

    let result = runtime.block_on(measure(
        options,
        SocketAddr::from(([127, 0, 0, 1], listen)),
        port,
        &room_ids,
        pid,
    ));
    stop_child(&mut chatd, Duration::from_secs(10));
    drop(runtime);
    result
}

/// Makes `rooms` rooms of [`LOGIN`] in the store at `url`, each with one recipient
/// `r<index>@remote.test`; returns the login's port and the room ids.
async fn make_rooms(url: &str, rooms: usize) -> Result<(u16, Vec<String>), String> {
    let store = chmail::open_store(url, 1)
        .await
        .map_err(|err| format!("open the store: {err}"))?;
    store
        .migrate()
        .await
        .map_err(|err| format!("migrate: {err}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let grant = store
        .grant_port(
            LOGIN,
            PortRange {
                first: 20_000,
                last: 29_999,
            },
            Duration::from_secs(180 * 86_400),
            now,
        )
        .await
        .map_err(|err| format!("grant a port: {err}"))?;
    let mut ids = Vec::with_capacity(rooms);
    for index in 0..rooms {
        let room = Room {
            id: RoomId::generate().as_str().to_owned(),
            port: grant.port,
            login: LOGIN.to_owned(),
            message_id: None,
            subject: Some(format!("benchmark room {index}")),
            created: now,
            participants: vec![
                Participant {
                    address: LOGIN.to_owned(),
                    role: Role::From,
                    name: None,
                },
                Participant {
                    address: recipient(index),
                    role: Role::To,
                    name: None,
                },
            ],
            opening: None,
        };
        store
            .create_room(&room)
            .await
            .map_err(|err| format!("create a room: {err}"))?;
        ids.push(room.id);
    }
    Ok((grant.port, ids))
}

/// The recipient of room `index`.
fn recipient(index: usize) -> String {
    format!("r{index}@remote.test")
}

/// The connections open, joined and reading; each room's first connection's sink (the room's
/// speaker for the broadcast); and every sink, kept so nothing closes.
struct Clients {
    speakers: Vec<(usize, Sink)>,
    listeners: Vec<Sink>,
    received: Arc<AtomicUsize>,
}

/// Opens the connections and prints chatd's memory before, after and after the broadcast.
async fn measure(
    options: &Options,
    chatd: SocketAddr,
    port: u16,
    rooms: &[String],
    pid: u32,
) -> Result<(), String> {
    let received = Arc::new(AtomicUsize::new(0));
    let mut clients = Clients {
        speakers: Vec::new(),
        listeners: Vec::new(),
        received: received.clone(),
    };
    // The first room's connections warm chatd up (its first WebSocket, its first join) before
    // the baseline is read.
    let warm = options.room_size.min(options.connections);
    open_range(&mut clients, options, chatd, port, rooms, 0..warm).await?;
    tokio::time::sleep(SETTLE).await;
    let before = system::rss_kib(pid)?;
    let started = Instant::now();
    open_range(
        &mut clients,
        options,
        chatd,
        port,
        rooms,
        warm..options.connections,
    )
    .await?;
    let took = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let after = system::rss_kib(pid)?;
    let measured = options.connections - warm;
    println!(
        "opened {}{measured} connections in {:.1} s ({:.0}/s)",
        if options.join { "and joined " } else { "" },
        took.as_secs_f64(),
        per_second(measured, took)
    );
    println!("chatd VmRSS: {before} KiB before, {after} KiB with all connections idle");
    println!(
        "=> {:.2} KiB per idle WebSocket ({})",
        kib_per(after.saturating_sub(before), measured),
        if options.join {
            "joined to a room"
        } else {
            "no room joined"
        }
    );
    if !options.broadcast {
        return Ok(());
    }
    let expected: usize = (0..rooms.len())
        .map(|room| members(options, room).saturating_sub(1))
        .sum();
    let started = Instant::now();
    for (room, sink) in &mut clients.speakers {
        let frame = json!({"type": "message", "text": "hello room", "id": format!("b{room}")});
        sink.send(Message::text(frame.to_string()))
            .await
            .map_err(|err| format!("send a message: {err}"))?;
    }
    while received.load(Ordering::SeqCst) < expected {
        if started.elapsed() > BROADCAST_TIMEOUT {
            return Err(format!(
                "only {} of {expected} messages arrived within {BROADCAST_TIMEOUT:?}",
                received.load(Ordering::SeqCst)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let broadcast = system::rss_kib(pid)?;
    println!(
        "one message in each of {} rooms reached {expected} members in {:.2} s",
        rooms.len(),
        took.as_secs_f64()
    );
    println!(
        "chatd VmRSS after the messages: {broadcast} KiB => {:.2} KiB per connection",
        kib_per(broadcast.saturating_sub(before), measured)
    );
    // The sinks close with the runtime, after chatd has stopped.
    drop(clients.listeners);
    Ok(())
}

/// How many connections room `room` gets.
fn members(options: &Options, room: usize) -> usize {
    options
        .connections
        .saturating_sub(room * options.room_size)
        .min(options.room_size)
}

/// Opens connections `range` (connection `i` joins room `i / room_size`), at most
/// [`CONCURRENT_CONNECTS`] at a time.
async fn open_range(
    clients: &mut Clients,
    options: &Options,
    chatd: SocketAddr,
    port: u16,
    rooms: &[String],
    range: std::ops::Range<usize>,
) -> Result<(), String> {
    let gate = Arc::new(Semaphore::new(CONCURRENT_CONNECTS));
    let mut tasks = JoinSet::new();
    for index in range {
        let room = index / options.room_size;
        let room_id = rooms
            .get(room)
            .cloned()
            .ok_or("more connections than rooms")?;
        let received = clients.received.clone();
        let gate = gate.clone();
        let join = options.join;
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let target = Target {
                chatd,
                source: source_address(index),
                forwarded: forwarded_address(room),
                port,
                room: room_id,
                address: recipient(room),
                join,
            };
            let opened = tokio::time::timeout(CONNECT_TIMEOUT, open(&target, received)).await;
            match opened {
                Ok(Ok(sink)) => Ok((index, room, sink)),
                Ok(Err(why)) => Err(format!("connection {index}: {why}")),
                Err(_) => Err(format!(
                    "connection {index}: no join within {CONNECT_TIMEOUT:?}"
                )),
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (index, room, sink) = done.map_err(|err| format!("a connection task: {err}"))??;
        if index % options.room_size == 0 {
            clients.speakers.push((room, sink));
        } else {
            clients.listeners.push(sink);
        }
    }
    Ok(())
}

/// The loopback address connection `index` connects from.
fn source_address(index: usize) -> IpAddr {
    // 127.0.1.1, 127.0.1.2, ...: off 127.0.0.1, where the other sockets live.
    let host = u8::try_from(1 + index / PER_SOURCE_ADDRESS).unwrap_or(u8::MAX);
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, host))
}

/// The client address room `room`'s connections claim, as a proxy would forward it: 10.0.0.1
/// for the first room, and so on.
fn forwarded_address(room: usize) -> Ipv4Addr {
    let room = u32::try_from(room).unwrap_or(u32::MAX) & 0x00ff_ffff;
    Ipv4Addr::from(0x0a00_0000 | (room + 1))
}

/// Where and as whom one connection joins.
struct Target {
    chatd: SocketAddr,
    source: IpAddr,
    forwarded: Ipv4Addr,
    port: u16,
    room: String,
    address: String,
    /// Join the room; otherwise only wait for `hello`.
    join: bool,
}

/// Opens one WebSocket, joins `target.room` (unless `target.join` is off) and leaves a task reading it (which answers
/// chatd's pings and counts the `message` frames into `received`); returns the sending half.
async fn open(target: &Target, received: Arc<AtomicUsize>) -> Result<Sink, String> {
    let socket = TcpSocket::new_v4().map_err(|err| format!("socket: {err}"))?;
    socket
        .bind(SocketAddr::new(target.source, 0))
        .map_err(|err| format!("bind {}: {err}", target.source))?;
    let stream = socket
        .connect(target.chatd)
        .await
        .map_err(|err| format!("connect: {err}"))?;
    let mut request = format!("ws://{}/ws", target.chatd)
        .into_client_request()
        .map_err(|err| format!("request: {err}"))?;
    let forwarded = HeaderValue::from_str(&target.forwarded.to_string())
        .map_err(|err| format!("header: {err}"))?;
    request.headers_mut().insert("x-forwarded-for", forwarded);
    let config = WebSocketConfig::default()
        .read_buffer_size(CLIENT_READ_BUFFER)
        .write_buffer_size(0);
    let (ws, _) = client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|err| format!("handshake: {err}"))?;
    let (mut sink, mut stream) = ws.split();
    let awaited = if target.join {
        let join = json!({
            "type": "join", "v": 1, "port": target.port, "room": target.room, "as": target.address
        });
        sink.send(Message::text(join.to_string()))
            .await
            .map_err(|err| format!("send join: {err}"))?;
        "joined"
    } else {
        "hello"
    };
    loop {
        let frame = match stream.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(format!("read: {err}")),
            None => return Err("closed before joining".into()),
        };
        let frame: Value = serde_json::from_str(&frame).map_err(|err| err.to_string())?;
        match frame["type"].as_str() {
            Some(kind) if kind == awaited => break,
            Some("error") => return Err(format!("join refused: {frame}")),
            _ => {}
        }
    }
    tokio::spawn(idle(stream, received));
    Ok(sink)
}

/// Reads a joined connection until it closes, counting the `message` frames.
async fn idle(mut stream: Stream, received: Arc<AtomicUsize>) {
    while let Some(Ok(frame)) = stream.next().await {
        if let Message::Text(text) = frame {
            let is_message =
                serde_json::from_str::<Value>(&text).is_ok_and(|frame| frame["type"] == "message");
            if is_message {
                received.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

fn per_second(count: usize, took: Duration) -> f64 {
    // Connection counts are far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let count = count as f64;
    count / took.as_secs_f64().max(f64::EPSILON)
}

fn kib_per(kib: u64, connections: usize) -> f64 {
    // Both far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let per = kib as f64 / connections.max(1) as f64;
    per
}
