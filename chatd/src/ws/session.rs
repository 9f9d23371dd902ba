//! What one connection is and may do: its identity (a room's recipient address, the room's
//! sender, or the sender's `/me` page), its limits, and the handling of each client frame.
//!
//! A refused frame gets an `error` frame and changes nothing else; the connection stays open.

use crate::room_tag::room_tag;
use std::{collections::VecDeque, net::IpAddr, time::Duration};

use chmail::store::{Role, Room, StoreError, Via, MAX_CLIENT_ID_LEN};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::protocol::{self, ClientFrame, ErrorCode, MemberView, MessageView, ServerFrame};
use crate::{
    auth::sender_address,
    error::AppError,
    hub::{ConnId, JoinError, Outbox, RoomKey},
    presence, ringer,
    state::AppState,
    unread,
};

/// Least time between two relayed `typing` frames of one connection; more are dropped silently.
pub const TYPING_EVERY: Duration = Duration::from_secs(1);

/// The window of the rate limits.
const MINUTE: Duration = Duration::from_secs(60);

/// A sliding one-minute window: at most `limit` events in any minute.
#[derive(Debug)]
pub struct RateWindow {
    limit: u32,
    hits: VecDeque<Instant>,
}

impl RateWindow {
    /// A window allowing `limit` events per minute.
    pub fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            hits: VecDeque::new(),
        }
    }

    /// Counts an event at `now` if the limit allows it.
    pub fn allow(&mut self, now: Instant) -> bool {
        while self
            .hits
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= MINUTE)
        {
            self.hits.pop_front();
        }
        if self.hits.len() >= self.limit as usize {
            return false;
        }
        self.hits.push_back(now);
        true
    }
}

/// Who is on the other end, as known at the upgrade.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's IP address ([`crate::client_ip`]: behind a local proxy, the address it
    /// forwarded).
    pub ip: Option<IpAddr>,
    /// The signed-in login, from the session cookie.
    pub login: Option<String>,
}

/// The room a connection joined.
#[derive(Debug, Clone)]
struct Joined {
    room: Room,
    address: String,
    is_sender: bool,
    sender: String,
}

/// A refusal: the error frame to send.
struct Refusal(ErrorCode, String);

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(code, message.into())
    }
}

impl From<AppError> for Refusal {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Store(StoreError::Invalid(_)) => {
                Refusal::new(ErrorCode::BadFrame, "that request is not valid")
            }
            AppError::NotFound => Refusal::new(ErrorCode::NotFound, "no such chat"),
            AppError::Forbidden => Refusal::new(ErrorCode::Forbidden, "not allowed"),
            other => {
                warn!(cause = %other, "chat request failed");
                Refusal::new(
                    ErrorCode::ServerError,
                    "the chat server has a problem right now; please try again",
                )
            }
        }
    }
}

type Outcome = Result<(), Refusal>;

/// One connection's state; the receive loop hands it every frame.
pub struct Session {
    state: AppState,
    id: ConnId,
    peer: Peer,
    outbox: Outbox,
    joined: Option<Joined>,
    /// The login this connection counts as online (the sender's pages), once it does.
    online_as: Option<String>,
    watching: bool,
    frames: RateWindow,
    last_typing: Option<Instant>,
}

impl Session {
    /// A fresh connection of `peer` whose frames go to `outbox`.
    pub fn new(state: AppState, peer: Peer, outbox: Outbox) -> Self {
        // `[chat] frames_per_minute`: messages and rings have their own, lower limits, shared
        // by all connections of a client network and of an identity
        // ([`crate::limit::ChatLimits`]).
        let frames = RateWindow::per_minute(state.config.chat.frames_per_minute);
        Self {
            id: state.hub.next_id(),
            state,
            peer,
            outbox,
            joined: None,
            online_as: None,
            watching: false,
            frames,
            last_typing: None,
        }
    }

    /// Queues a frame to this connection.
    pub fn send(&self, frame: &ServerFrame) {
        self.outbox.send(frame);
    }

    /// Queues an error frame.
    pub fn error(&self, code: ErrorCode, message: &str) {
        self.send(&ServerFrame::error(code, message));
    }

    /// The first frame: the protocol version and the limits.
    pub fn hello(&self) {
        let chat = &self.state.config.chat;
        self.send(&ServerFrame::Hello {
            v: protocol::VERSION,
            max_message_bytes: chat.max_message_bytes,
            messages_per_minute: chat.messages_per_minute,
            history_page: chat.history_page,
        });
    }

    /// Handles the text of one WebSocket message.
    pub async fn on_text(&mut self, text: &str) {
        if !self.frames.allow(Instant::now()) {
            self.error(ErrorCode::RateLimited, "too many frames; slow down");
            return;
        }
        let frame = match protocol::parse(text) {
            Ok(frame) => frame,
            Err(why) => {
                self.error(ErrorCode::BadFrame, &why);
                return;
            }
        };
        if let Err(Refusal(code, message)) = self.handle(frame).await {
            debug!(conn = self.id, code = code.as_str(), "frame refused");
            self.error(code, &message);
        }
    }

    async fn handle(&mut self, frame: ClientFrame) -> Outcome {
        match frame {
            ClientFrame::Join {
                port,
                room,
                as_address,
                v,
            } => {
                check_version(v)?;
                self.join(port, &room, as_address.as_deref()).await?;
                self.send_muted().await
            }
            ClientFrame::Watch { v } => {
                check_version(v)?;
                self.watch().await
            }
            ClientFrame::History { before } => self.history(before).await,
            ClientFrame::Message { text, id, picture } => {
                self.check_verified().await?;
                self.message(text, id, picture).await
            }
            ClientFrame::Read { up_to } => {
                let j = self.joined()?;
                // Message ids count over all rooms: a read past this room's newest message
                // would hide the room's next messages from the unread counts and mails.
                let call = self.state.store.messages(&j.room.id, None, 1);
                let newest = self.state.store_call(call).await?.last().map(|m| m.id);
                let Some(up_to) = newest.map(|newest| up_to.min(newest)) else {
                    return Ok(());
                };
                let call = self.state.store.mark_read(&j.room.id, &j.address, up_to);
                self.state.store_call(call).await?;
                let receipt = ServerFrame::Read {
                    address: j.address.clone(),
                    up_to,
                };
                self.state
                    .hub
                    .publish_room(&j.room.id, &receipt, Some(self.id));
                // The reader's other pages (/me, the mall's bar) show the count this read lowered.
                let login = if j.is_sender {
                    &j.room.login
                } else {
                    &j.address
                };
                unread::push(&self.state, login, &j.room.id).await;
                Ok(())
            }
            ClientFrame::Typing {} => self.typing(),
            ClientFrame::Ring {} => {
                let j = self.joined()?.clone();
                if j.is_sender {
                    return Err(Refusal::new(
                        ErrorCode::Forbidden,
                        "the sender cannot ring themselves",
                    ));
                }
                let now = self.state.clock.now_ms();
                if !self
                    .state
                    .limits
                    .ring(&j.room.id, &j.address, self.peer.ip, now)
                {
                    return Err(Refusal::new(
                        ErrorCode::RateLimited,
                        "you rang a moment ago; wait before ringing again",
                    ));
                }
                ringer::ring(&self.state, &j.room, &j.address, &j.sender).await?;
                Ok(())
            }
            ClientFrame::Accept { ring, room } => self.answer(ring, &room, true).await,
            ClientFrame::Decline { ring, room } => self.answer(ring, &room, false).await,
            ClientFrame::Ping {} => {
                self.send(&ServerFrame::Pong {});
                Ok(())
            }
            ClientFrame::Prove {} => self.prove().await,
            ClientFrame::Code { code } => self.code(&code).await,
            ClientFrame::Mute { muted } => self.mute(muted).await,
        }
    }

    /// The recipient joined as (`None` for the sender, who is proven by signing in).
    fn recipient(&self) -> Result<Option<(String, String)>, Refusal> {
        let j = self.joined()?;
        Ok((!j.is_sender).then(|| (j.room.id.clone(), j.address.clone())))
    }

    /// With `[chat] require_verified`, a recipient speaks only once proven.
    async fn check_verified(&self) -> Outcome {
        if !self.state.config.chat.require_verified {
            return Ok(());
        }
        let Some((room_id, address)) = self.recipient()? else {
            return Ok(());
        };
        let call = self.state.store.is_verified(&room_id, &address);
        if self.state.store_call(call).await? {
            return Ok(());
        }
        Err(Refusal::new(
            ErrorCode::NotVerified,
            format!("prove that you are {address} first: ask for a code by mail"),
        ))
    }

    /// `prove`: mail a code to the address this connection joined as.
    async fn prove(&mut self) -> Outcome {
        let Some((room_id, address)) = self.recipient()? else {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "the sender is proven by signing in",
            ));
        };
        let subject = self.joined()?.room.subject.clone();
        let requested =
            crate::codes::request(&self.state, &room_id, subject.as_deref(), &address).await?;
        match requested {
            crate::codes::Requested::Sent { ttl_minutes } => {
                self.send(&ServerFrame::ProofSent {
                    address,
                    ttl_minutes,
                });
                Ok(())
            }
            crate::codes::Requested::AlreadyVerified => {
                self.send(&ServerFrame::Verified { address });
                Ok(())
            }
            crate::codes::Requested::TooMany => Err(Refusal::new(
                ErrorCode::RateLimited,
                format!(
                    "{} codes an hour at most; use the last one or wait",
                    self.state.config.chat.codes_per_hour
                ),
            )),
        }
    }

    /// `code`: check the code; the right one proves the address to the whole room.
    async fn code(&mut self, typed: &str) -> Outcome {
        let Some((room_id, address)) = self.recipient()? else {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "the sender is proven by signing in",
            ));
        };
        let check = match crate::codes::verify(&self.state, &room_id, &address, typed).await {
            Ok(check) => check,
            Err(AppError::BadRequest(why)) => return Err(Refusal::new(ErrorCode::BadFrame, why)),
            Err(e) => return Err(e.into()),
        };
        match check {
            chmail::store::CodeCheck::Verified => {
                self.state
                    .hub
                    .publish_room(&room_id, &ServerFrame::Verified { address }, None);
                Ok(())
            }
            chmail::store::CodeCheck::Wrong { attempts_left } => {
                self.send(&ServerFrame::Error {
                    code: ErrorCode::WrongCode,
                    message: match attempts_left {
                        0 => "that code is wrong; ask for a new one".to_owned(),
                        1 => "that code is wrong; 1 more try".to_owned(),
                        n => format!("that code is wrong; {n} more tries"),
                    },
                    attempts_left: Some(attempts_left),
                });
                Ok(())
            }
            chmail::store::CodeCheck::Locked => Err(Refusal::new(
                ErrorCode::Locked,
                "too many wrong codes; ask for a new one",
            )),
            chmail::store::CodeCheck::Expired => Err(Refusal::new(
                ErrorCode::Expired,
                "that code has expired; ask for a new one",
            )),
            chmail::store::CodeCheck::NoCode => {
                // A code used by another connection of the same address proved it already.
                let call = self.state.store.is_verified(&room_id, &address);
                if self.state.store_call(call).await? {
                    self.send(&ServerFrame::Verified { address });
                    return Ok(());
                }
                Err(Refusal::new(ErrorCode::NoCode, "ask for a code first"))
            }
        }
    }

    /// `mute`: notification mails of this room off or on for the joined address.
    async fn mute(&mut self, muted: bool) -> Outcome {
        let j = self.joined()?;
        let call = self.state.store.set_muted(&j.room.id, &j.address, muted);
        self.state.store_call(call).await?;
        self.send(&ServerFrame::Muted { muted });
        Ok(())
    }

    /// After a recipient's `join`: `muted` when their notification mails are off (on is the
    /// default and needs no frame).
    async fn send_muted(&mut self) -> Outcome {
        let Some((room_id, address)) = self.recipient()? else {
            return Ok(());
        };
        let call = self.state.store.notify_state(&room_id, &address);
        if self.state.store_call(call).await?.is_some_and(|s| s.muted) {
            self.send(&ServerFrame::Muted { muted: true });
        }
        Ok(())
    }

    fn joined(&self) -> Result<&Joined, Refusal> {
        self.joined
            .as_ref()
            .ok_or_else(|| Refusal::new(ErrorCode::NotJoined, "join a room first"))
    }

    /// `join`. A failure before the `joined` frame leaves the connection as it was: out of the
    /// hub's room, not online, free to join again.
    async fn join(&mut self, port: u16, room_id: &str, as_address: Option<&str>) -> Outcome {
        if self.joined.is_some() || self.watching {
            return Err(Refusal::new(
                ErrorCode::AlreadyJoined,
                "this connection is in use; open another one",
            ));
        }
        let (first, sender_online) = match self.enter(port, room_id, as_address).await {
            Ok(entered) => entered,
            Err(refusal) => {
                self.undo_join();
                return Err(refusal);
            }
        };
        self.after_join(first, sender_online).await
    }

    /// Undoes what a failed [`Session::enter`] did: the hub's room and the login's connections.
    fn undo_join(&mut self) {
        if let Some(j) = self.joined.take() {
            self.state.hub.leave_room(&j.room.id, self.id);
        }
        // A joining connection is not watching (refused above): only the join made it online.
        if let Some(login) = self.online_as.take() {
            self.state.hub.remove_login(&login, self.id);
            presence::disconnect(&self.state, &login);
        }
    }

    /// Joins the room up to the `joined` frame: whether this is the address's first connection
    /// in the room, and whether the sender is online.
    async fn enter(
        &mut self,
        port: u16,
        room_id: &str,
        as_address: Option<&str>,
    ) -> Result<(bool, bool), Refusal> {
        let not_found = || Refusal::new(ErrorCode::NotFound, "no such chat");
        if room_id.is_empty() || room_id.len() > chmail::store::MAX_ROOM_ID_LEN {
            return Err(not_found());
        }
        let state = self.state.clone();
        let room = state
            .store_call(state.store.room(room_id))
            .await?
            .filter(|r| r.port == port)
            .ok_or_else(not_found)?;
        let sender = sender_address(&state.config, &room);
        let session = self.peer.login.as_deref();
        let (address, is_sender) = match joins_as(&room, session, as_address) {
            Some(JoinAs::Sender) => (sender.clone(), true),
            Some(JoinAs::Recipient(address)) => (address, false),
            None if as_address.is_some() => {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "that address is not one of this mail's recipients",
                ))
            }
            None => {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "choose which of the mail's addresses you are, or sign in as the sender",
                ))
            }
        };
        let first = state
            .hub
            .join_room(
                &RoomKey {
                    id: &room.id,
                    login: &room.login,
                    sender: &sender,
                },
                self.id,
                &address,
                is_sender,
                self.outbox.clone(),
            )
            .map_err(|JoinError::RoomFull| {
                Refusal::new(ErrorCode::RoomFull, "this chat has too many connections")
            })?;
        self.joined = Some(Joined {
            room: room.clone(),
            address: address.clone(),
            is_sender,
            sender: sender.clone(),
        });
        let now = state.clock.now_ms();
        // The sender's own address need not be a participant row; joining it may find none.
        state
            .store_call(state.store.join_room(&room.id, &address, now))
            .await?;
        if is_sender {
            self.count_online(&room.login).await;
        } else if session == Some(address.as_str()) {
            // Signed in as this very address (a mailed link, a confirmed mall account, a shop's
            // host): proven without a code, so notification mails reach it like any proven one.
            if state
                .store_call(state.store.prove_address(&room.id, &address))
                .await?
            {
                let frame = ServerFrame::Verified {
                    address: address.clone(),
                };
                state.hub.publish_room(&room.id, &frame, Some(self.id));
            }
        }
        let members = state.store_call(state.store.members(&room.id)).await?;
        let mut people = crate::people::of_room(&state, &room).await;
        let here = state.hub.addresses_in_room(&room.id);
        let sender_online = presence::is_online(&state, &room.login).await;
        let last_read = members
            .iter()
            .find(|m| m.address == address)
            .and_then(|m| m.last_read);
        let members = members
            .iter()
            .map(|m| {
                let in_room = here.contains(&m.address);
                let online = if m.role == Role::From {
                    sender_online
                } else {
                    in_room
                };
                let person = people.remove(&m.address).unwrap_or_default();
                MemberView::new(m, online, in_room, person)
            })
            .collect();
        self.send(&ServerFrame::Joined {
            room: room.id.clone(),
            port: room.port,
            subject: room.subject.clone(),
            sender: sender.clone(),
            you: address.clone(),
            is_sender,
            members,
            last_read,
            opening: room.opening.clone(),
            started: room.created.saturating_mul(1000),
        });
        state.metrics.joined(is_sender);
        Ok((first, sender_online))
    }

    /// After the `joined` frame: the history, the others told, the ring answered or shown.
    async fn after_join(&mut self, first: bool, sender_online: bool) -> Outcome {
        let state = self.state.clone();
        let Joined {
            room,
            address,
            is_sender,
            sender,
        } = self.joined()?.clone();
        self.history(None).await?;
        if first {
            state.hub.publish_room(
                &room.id,
                &ServerFrame::Presence {
                    address: address.clone(),
                    online: if is_sender { sender_online } else { true },
                    in_room: true,
                },
                Some(self.id),
            );
        }
        if is_sender {
            // Opening the room while it rings answers the ring.
            if let Some(ring) = state.store_call(state.store.active_ring(&room.id)).await? {
                ringer::answer(&state, &room, &sender, ring.id, true).await?;
            }
        } else if let Some(ring) = state.store_call(state.store.active_ring(&room.id)).await? {
            self.send(&ringer::call_frame(&ring, &sender));
        }
        debug!(conn = self.id, room = %room_tag(&room.id), sender = is_sender, "joined");
        Ok(())
    }

    async fn watch(&mut self) -> Outcome {
        if self.joined.is_some() || self.watching {
            return Err(Refusal::new(
                ErrorCode::AlreadyJoined,
                "this connection is in use; open another one",
            ));
        }
        let Some(login) = self.peer.login.clone() else {
            return Err(Refusal::new(ErrorCode::Forbidden, "sign in first"));
        };
        self.watching = true;
        self.count_online(&login).await;
        self.send(&ServerFrame::Watching { login });
        Ok(())
    }

    /// Makes this connection one of `login`'s: it rings, counts as online, and updates the
    /// first table (where the login was last seen).
    async fn count_online(&mut self, login: &str) {
        if self.online_as.is_some() {
            return;
        }
        self.online_as = Some(login.to_owned());
        self.state
            .hub
            .add_login(login, self.id, self.outbox.clone());
        presence::connect(&self.state, login).await;
        let ip = self.peer.ip.map(|ip| ip.to_string());
        let record =
            self.state
                .store
                .record_login(login, ip.as_deref(), None, self.state.clock.now_secs());
        if let Err(e) = self.state.store_call(record).await {
            warn!(login = %login, cause = %e, "first table not updated");
        }
    }

    async fn history(&mut self, before: Option<i64>) -> Outcome {
        let j = self.joined()?;
        let page = self
            .state
            .config
            .chat
            .history_page
            .clamp(1, chmail::store::MAX_PAGE - 1);
        let call = self.state.store.messages(&j.room.id, before, page + 1);
        let mut messages = self.state.store_call(call).await?;
        let more = messages.len() > page as usize;
        if more {
            messages.remove(0);
        }
        self.send(&ServerFrame::History {
            messages: messages.iter().map(MessageView::from).collect(),
            more,
        });
        Ok(())
    }

    async fn message(&mut self, text: String, id: Option<String>, picture: Option<i64>) -> Outcome {
        let j = self.joined()?.clone();
        let max = self.state.config.chat.max_message_bytes;
        if text.len() > max {
            return Err(Refusal::new(
                ErrorCode::TooLarge,
                format!("a message may have at most {max} bytes"),
            ));
        }
        if text.trim().is_empty() && picture.is_none() {
            return Err(Refusal::new(ErrorCode::BadFrame, "the message is empty"));
        }
        if id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > MAX_CLIENT_ID_LEN)
        {
            return Err(Refusal::new(
                ErrorCode::BadFrame,
                format!("a message id has 1 to {MAX_CLIENT_ID_LEN} bytes"),
            ));
        }
        // The sender speaks as their login in every room; a recipient as an address in a room.
        let identity = if j.is_sender {
            format!("login\n{}", j.room.login)
        } else {
            format!("room\n{}\n{}", j.room.id, j.address)
        };
        let now = self.state.clock.now_ms();
        if !self.state.limits.message(&identity, self.peer.ip, now) {
            return Err(Refusal::new(
                ErrorCode::RateLimited,
                "too many messages; wait a moment",
            ));
        }
        let state = &self.state;
        let posted = crate::post::post(
            state,
            crate::post::Post {
                room: &j.room,
                author: &j.address,
                text,
                via: Via::Web,
                client_id: id.clone(),
                except: Some(self.id),
                picture,
            },
        )
        .await?;
        let unreached = if posted.new {
            crate::post::unreached(state, &j.room, &j.address).await
        } else {
            Vec::new()
        };
        self.send(&ServerFrame::Ack {
            id,
            message: MessageView::from(&posted.message),
            unreached,
        });
        if posted.new && !j.is_sender {
            self.ring_with_message(&j).await;
        }
        Ok(())
    }

    /// A recipient wrote while the sender is online elsewhere but not in the room: the message
    /// rings the sender as Chat would, so nobody has to press Chat and wait before writing.
    /// Once per ring time-out at most (the limit of `ring`); an away sender gets the reminder
    /// that [`crate::post::post`] scheduled instead.
    async fn ring_with_message(&self, j: &Joined) {
        let state = &self.state;
        if state.hub.sender_in_room(&j.room.id) || !presence::is_online(state, &j.room.login).await
        {
            return;
        }
        match state.store_call(state.store.active_ring(&j.room.id)).await {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(e) => {
                warn!(room = %room_tag(&j.room.id), cause = %e, "no ring for a message");
                return;
            }
        }
        let now = state.clock.now_ms();
        if !state.limits.ring(&j.room.id, &j.address, self.peer.ip, now) {
            return;
        }
        if let Err(e) = ringer::ring(state, &j.room, &j.address, &j.sender).await {
            warn!(room = %room_tag(&j.room.id), cause = %e, "no ring for a message");
        }
    }

    fn typing(&mut self) -> Outcome {
        let (room_id, from) = {
            let j = self.joined()?;
            (j.room.id.clone(), j.address.clone())
        };
        let now = Instant::now();
        if self
            .last_typing
            .is_some_and(|t| now.saturating_duration_since(t) < TYPING_EVERY)
        {
            return Ok(());
        }
        self.last_typing = Some(now);
        self.state
            .hub
            .publish_room(&room_id, &ServerFrame::Typing { from }, Some(self.id));
        Ok(())
    }

    async fn answer(&mut self, ring: i64, room_id: &str, accept: bool) -> Outcome {
        let Some(login) = self.peer.login.clone() else {
            return Err(Refusal::new(ErrorCode::Forbidden, "sign in first"));
        };
        let not_found = || Refusal::new(ErrorCode::NotFound, "no such chat");
        if room_id.is_empty() || room_id.len() > chmail::store::MAX_ROOM_ID_LEN {
            return Err(not_found());
        }
        let state = self.state.clone();
        let room = state
            .store_call(state.store.room(room_id))
            .await?
            .ok_or_else(not_found)?;
        if room.login != login {
            return Err(not_found());
        }
        let sender = sender_address(&state.config, &room);
        if !ringer::answer(&state, &room, &sender, ring, accept).await? {
            self.send(&ServerFrame::RingOver {
                ring,
                room: room.id.clone(),
                state: "over",
            });
            return Err(Refusal::new(ErrorCode::RingOver, "that ring is over"));
        }
        Ok(())
    }

    /// The connection is closing: leave the room and the login's connections.
    pub async fn close(&mut self) {
        let state = self.state.clone();
        if let Some(j) = self.joined.take() {
            let last = state.hub.leave_room(&j.room.id, self.id);
            if last {
                let online = if j.is_sender {
                    state.presence.is_online_here(&j.room.login)
                } else {
                    false
                };
                state.hub.publish_room(
                    &j.room.id,
                    &ServerFrame::Presence {
                        address: j.address.clone(),
                        online,
                        in_room: false,
                    },
                    None,
                );
            }
            if !j.is_sender && !state.hub.recipient_in_room(&j.room.id) {
                ringer::cancel(&state, &j.room).await;
            }
        }
        if let Some(login) = self.online_as.take() {
            state.hub.remove_login(&login, self.id);
            presence::disconnect(&state, &login);
        }
    }
}

/// Whom a `join` makes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum JoinAs {
    /// The room's sender (their session).
    Sender,
    /// One of the room's To/Cc addresses (lowercased).
    Recipient(String),
}

/// Decides whom a `join` with `as_address` makes a connection of `session` (the signed-in login)
/// in `room`: the claimed To/Cc address; without a claim, the sender (their session), or the
/// recipient the session is signed in as (a signed-in person joins as themselves without
/// choosing). `None`: not allowed.
fn joins_as(room: &Room, session: Option<&str>, as_address: Option<&str>) -> Option<JoinAs> {
    let recipient = |address: &str| {
        room.participants
            .iter()
            .any(|p| p.address == address && p.role != Role::From)
    };
    match as_address {
        Some(claimed) => {
            let claimed = claimed.trim().to_lowercase();
            recipient(&claimed).then_some(JoinAs::Recipient(claimed))
        }
        None if session == Some(room.login.as_str()) => Some(JoinAs::Sender),
        None => session
            .map(str::to_lowercase)
            .filter(|login| recipient(login))
            .map(JoinAs::Recipient),
    }
}

fn check_version(v: Option<u32>) -> Outcome {
    match v {
        None => Ok(()),
        Some(v) if v == protocol::VERSION => Ok(()),
        Some(v) => Err(Refusal::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {v} is not supported; this server speaks {}",
                protocol::VERSION
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Room {
        Room {
            id: "r".into(),
            port: 20417,
            login: "alice@a.example".into(),
            message_id: None,
            subject: None,
            created: 0,
            participants: vec![
                chmail::store::Participant::new("alice@a.example", Role::From),
                chmail::store::Participant::new("bob@b.example", Role::To),
                chmail::store::Participant::new("carol@c.example", Role::Cc),
            ],
            opening: None,
        }
    }

    #[test]
    fn a_signed_in_recipient_joins_as_themselves_without_choosing() {
        let r = room();
        let bob = Some(JoinAs::Recipient("bob@b.example".into()));
        assert_eq!(joins_as(&r, Some("bob@b.example"), None), bob);
        assert_eq!(joins_as(&r, Some("Bob@B.example"), None), bob);
        assert_eq!(
            joins_as(&r, Some("alice@a.example"), None),
            Some(JoinAs::Sender)
        );
        // A claim wins over the session; only the room's To/Cc addresses can be claimed.
        assert_eq!(joins_as(&r, None, Some(" BOB@b.example ")), bob);
        assert_eq!(
            joins_as(&r, Some("bob@b.example"), Some("carol@c.example")),
            Some(JoinAs::Recipient("carol@c.example".into()))
        );
        assert_eq!(joins_as(&r, None, Some("alice@a.example")), None);
        assert_eq!(joins_as(&r, None, Some("eve@e.example")), None);
        // Strangers and the anonymous must choose.
        assert_eq!(joins_as(&r, Some("eve@e.example"), None), None);
        assert_eq!(joins_as(&r, None, None), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_window_allows_the_limit_per_sliding_minute() {
        let mut w = RateWindow::per_minute(3);
        let start = Instant::now();
        assert!(w.allow(start));
        assert!(w.allow(start));
        assert!(w.allow(start + Duration::from_secs(30)));
        assert!(!w.allow(start + Duration::from_secs(59)));
        // The two at `start` leave the window after a minute; the one at 30 s stays.
        assert!(w.allow(start + Duration::from_secs(60)));
        assert!(w.allow(start + Duration::from_secs(61)));
        assert!(!w.allow(start + Duration::from_secs(62)));
        assert!(w.allow(start + Duration::from_secs(90)));
        let mut none = RateWindow::per_minute(0);
        assert!(!none.allow(start));
    }
}
