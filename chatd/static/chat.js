// CHmail room page: joins the chat of a CHmail-Link over the WebSocket protocol of
// docs/protocol.md. Plain JavaScript, no build step. Chat text is always inserted with
// textContent, never as HTML.
"use strict";

(function () {
  const body = document.body;
  if (!body || body.dataset.page !== "room") return;

  const PORT = Number(body.dataset.port);
  const ROOM = body.dataset.room || "";
  const SENDER = body.dataset.sender || "";
  const IS_SENDER = body.dataset.isSender === "true";
  const STORE_KEY = "chmail.as." + ROOM;

  const $ = (id) => document.getElementById(id);
  const statusEl = $("status");
  const participantsEl = $("participants");
  const whoami = $("whoami");
  const asSelect = $("as");
  const chatButton = $("chat-button");
  const messagesEl = $("messages");
  const olderButton = $("older");
  const composer = $("composer");
  const textEl = $("text");
  const sendButton = $("send");
  const proofEl = $("proof");
  const codeForm = $("code-form");
  const codeInput = $("code");
  const codeAgain = $("code-again");
  const mailSettings = $("mail-settings");
  const muteText = $("mute-text");
  const muteToggle = $("mute-toggle");

  let ws = null;
  let joined = false;
  let me = "";
  let backoff = 1000;
  let lastStatus = "";
  let callState = "";
  let typingTimer = null;
  let lastTypingSent = 0;
  let oldestId = null;
  let newestId = 0;
  let seq = 0;
  let ringAfterJoin = false;
  let verified = false; // whether the address this page speaks as is proven
  let muted = false; // whether its notification mails are off
  const pending = new Map(); // client id -> text, resent after a reconnect

  // The page's CSS gives some elements a display that beats the hidden attribute.
  function show(el, on) {
    if (!el) return;
    el.hidden = !on;
    el.style.display = on ? "" : "none";
  }

  function setStatus(text, keep) {
    if (!statusEl) return;
    statusEl.textContent = text;
    if (keep !== false) lastStatus = text;
  }

  function send(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function enableChat(on) {
    if (textEl) textEl.disabled = !on;
    if (sendButton) sendButton.disabled = !on;
  }

  function chosenAddress() {
    if (IS_SENDER) return null;
    if (asSelect && asSelect.value) return asSelect.value;
    try {
      return window.sessionStorage.getItem(STORE_KEY) || "";
    } catch (_) {
      return "";
    }
  }

  function join() {
    const as = chosenAddress();
    if (!IS_SENDER && !as) {
      setStatus("Choose which address you are, then press Join.");
      return;
    }
    const frame = { type: "join", v: 1, port: PORT, room: ROOM };
    if (as) frame.as = as;
    send(frame);
  }

  // Messages

  function formatTime(ms) {
    const d = new Date(ms);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function renderMessage(m, extraClass) {
    const li = document.createElement("li");
    li.dataset.id = String(m.id);
    if (m.client_id) li.dataset.clientId = m.client_id;
    if (m.via === "system" || !m.author) li.classList.add("system");
    else if (m.author === me) li.classList.add("mine");
    if (extraClass) li.classList.add(extraClass);
    if (m.author && m.via !== "system") {
      const who = document.createElement("span");
      who.className = "author";
      who.textContent = m.author;
      li.appendChild(who);
    }
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.text;
    li.appendChild(text);
    if (m.at) {
      const time = document.createElement("time");
      time.dateTime = new Date(m.at).toISOString();
      time.textContent = formatTime(m.at);
      li.appendChild(time);
    }
    return li;
  }

  // Inserts a stored message in id order, once.
  function addMessage(m) {
    if (!messagesEl) return;
    if (m.client_id) {
      const mine = messagesEl.querySelector('li.pending[data-client-id="' + CSS.escape(m.client_id) + '"]');
      if (mine) mine.remove();
    }
    if (messagesEl.querySelector('li[data-id="' + m.id + '"]')) return;
    const li = renderMessage(m);
    let before = null;
    for (const other of messagesEl.children) {
      const id = Number(other.dataset.id);
      if (other.classList.contains("pending")) {
        before = before || other;
        break;
      }
      if (id > m.id) {
        before = other;
        break;
      }
    }
    const atBottom = messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 40;
    messagesEl.insertBefore(li, before);
    if (oldestId === null || m.id < oldestId) oldestId = m.id;
    if (m.id > newestId) newestId = m.id;
    if (atBottom || m.author === me) messagesEl.scrollTop = messagesEl.scrollHeight;
  }

  function markRead() {
    if (joined && newestId > 0 && document.visibilityState === "visible") {
      send({ type: "read", up_to: newestId });
    }
  }

  function sendMessage(text) {
    const id = "c" + Date.now().toString(36) + "-" + (seq++).toString(36);
    pending.set(id, text);
    const li = renderMessage({ id: "pending", author: me, text: text, client_id: id }, "pending");
    messagesEl.appendChild(li);
    messagesEl.scrollTop = messagesEl.scrollHeight;
    send({ type: "message", text: text, id: id });
  }

  // Participants

  function setPresence(address, online, inRoom) {
    if (!participantsEl) return;
    for (const li of participantsEl.querySelectorAll("li[data-address]")) {
      if (li.dataset.address !== address) continue;
      li.dataset.presence = online ? "online" : "offline";
      li.classList.toggle("online", online);
      li.classList.toggle("here", !!inRoom);
      const text = li.querySelector(".presence-text");
      if (text) text.textContent = online ? (inRoom ? "in the chat" : "online") : "offline";
    }
  }

  // Proven addresses and notification mails

  function participantItems(address) {
    if (!participantsEl) return [];
    return [...participantsEl.querySelectorAll("li[data-address]")].filter((li) => li.dataset.address === address);
  }

  function markVerified(address) {
    for (const li of participantItems(address)) {
      if (li.dataset.role === "from") continue;
      for (const el of li.querySelectorAll(".unverified, .prove")) el.remove();
      if (!li.querySelector(".verified")) {
        const mark = document.createElement("span");
        mark.className = "verified";
        mark.title = "Proven with a code mailed to this address";
        mark.textContent = "verified";
        const role = li.querySelector(".role");
        li.insertBefore(mark, role ? role.nextSibling : null);
      }
    }
  }

  function addProveLink() {
    if (IS_SENDER || verified) return;
    for (const li of participantItems(me)) {
      if (li.querySelector(".prove")) continue;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link-button prove";
      button.textContent = "Prove it\u2019s you";
      button.addEventListener("click", askForCode);
      const mark = li.querySelector(".unverified");
      li.insertBefore(button, mark ? mark.nextSibling : null);
    }
  }

  function askForCode() {
    if (!joined) return;
    send({ type: "prove" });
  }

  function updateMailSettings() {
    show(mailSettings, !IS_SENDER && joined && verified);
    if (muteText) {
      muteText.textContent = muted
        ? "Mails about new messages while you are away are off for this chat."
        : "While you are away, new messages here are mailed to you.";
    }
    if (muteToggle) muteToggle.textContent = muted ? "Mail me new messages" : "Stop these mails";
  }

  // Frames

  function onFrame(f) {
    switch (f.type) {
      case "hello":
        backoff = 1000;
        if (IS_SENDER || chosenAddress()) join();
        else setStatus("Choose which address you are, then press Join.");
        break;
      case "joined":
        joined = true;
        me = f.you;
        if (whoami) show(whoami.closest("section") || whoami, false);
        enableChat(true);
        for (const m of f.members || []) {
          setPresence(m.address, m.online, m.in_room);
          if (m.verified) markVerified(m.address);
        }
        verified = IS_SENDER || (f.members || []).some((m) => m.address === me && m.verified);
        muted = false; // a "muted" frame follows when the mails are off
        addProveLink();
        updateMailSettings();
        setStatus(IS_SENDER ? "You are in the chat." : "You are in the chat as " + me + ".");
        if (!IS_SENDER) {
          try {
            window.sessionStorage.setItem(STORE_KEY, me);
          } catch (_) {
            /* private mode: ask again next time */
          }
        }
        for (const [id, text] of pending) send({ type: "message", text: text, id: id });
        if (callState === "ringing" || ringAfterJoin) {
          ringAfterJoin = false;
          callState = "ringing";
          if (chatButton) chatButton.disabled = true;
          send({ type: "ring" });
        }
        break;
      case "history":
        for (const m of f.messages || []) addMessage(m);
        show(olderButton, !!f.more);
        markRead();
        break;
      case "message":
        addMessage(f.message);
        markRead();
        break;
      case "ack":
        if (f.id) pending.delete(f.id);
        addMessage(f.message);
        break;
      case "call":
        callState = f.state;
        setStatus(f.text);
        if (chatButton) chatButton.disabled = f.state === "ringing";
        break;
      case "presence":
        setPresence(f.address, f.online, f.in_room);
        if (f.address === SENDER && !IS_SENDER) {
          if (f.in_room) setStatus(SENDER + " joined");
          else if (!f.online && lastStatus === SENDER + " joined") setStatus(SENDER + " left");
        }
        break;
      case "typing": {
        setStatus(f.from + " is typing\u2026", false);
        clearTimeout(typingTimer);
        typingTimer = setTimeout(() => setStatus(lastStatus), 3000);
        break;
      }
      case "ring":
        // The sender's page rings for this room: being here answers it.
        if (IS_SENDER && f.room === ROOM) send({ type: "accept", ring: f.ring, room: f.room });
        else if (IS_SENDER) setStatus(f.caller + " is calling about another mail: see your chats page.");
        break;
      case "ring_over":
        break;
      case "proof_sent":
        show(proofEl, true);
        setStatus("We mailed a code to " + f.address + ". Enter it here; it works for " + f.ttl_minutes + " minutes.");
        if (codeInput) {
          codeInput.value = "";
          codeInput.focus();
        }
        break;
      case "verified":
        markVerified(f.address);
        if (f.address === me) {
          verified = true;
          show(proofEl, false);
          setStatus("You proved that you are " + me + ".");
          updateMailSettings();
        }
        break;
      case "muted":
        muted = !!f.muted;
        updateMailSettings();
        break;
      case "error":
        onError(f);
        break;
      default:
        break; // frames of later versions
    }
  }

  function onError(f) {
    switch (f.code) {
      case "too_large":
      case "rate_limited":
      case "bad_frame":
        for (const li of messagesEl.querySelectorAll("li.pending")) {
          li.classList.remove("pending");
          li.classList.add("failed");
          pending.delete(li.dataset.clientId);
        }
        setStatus(f.message);
        break;
      case "not_verified":
        for (const li of messagesEl.querySelectorAll("li.pending")) {
          li.classList.remove("pending");
          li.classList.add("failed");
          pending.delete(li.dataset.clientId);
        }
        addProveLink();
        setStatus(f.message);
        break;
      case "wrong_code":
        setStatus(f.message);
        if (codeInput) codeInput.select();
        break;
      case "locked":
      case "expired":
      case "no_code":
        if (codeInput) codeInput.value = "";
        setStatus(f.message);
        break;
      case "forbidden":
        joined = false;
        if (whoami) show(whoami.closest("section") || whoami, true);
        try {
          window.sessionStorage.removeItem(STORE_KEY);
        } catch (_) {
          /* nothing stored */
        }
        setStatus(f.message);
        break;
      default:
        setStatus(f.message || "Something went wrong.");
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(scheme + location.host + "/ws");
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      onFrame(frame);
    };
    ws.onclose = () => {
      joined = false;
      enableChat(false);
      setStatus("Connection lost; reconnecting\u2026", false);
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 30000);
    };
  }

  // Controls

  if (whoami) {
    if (IS_SENDER) show(whoami.closest("section") || whoami, false);
    whoami.addEventListener("submit", (event) => {
      event.preventDefault();
      if (asSelect && asSelect.value) join();
    });
  }
  if (chatButton) {
    chatButton.addEventListener("click", () => {
      if (!joined) {
        ringAfterJoin = true;
        join();
        return;
      }
      callState = "ringing";
      chatButton.disabled = true;
      send({ type: "ring" });
    });
  }
  if (olderButton) {
    show(olderButton, false);
    olderButton.addEventListener("click", () => {
      if (oldestId !== null) send({ type: "history", before: oldestId });
    });
  }
  if (composer && textEl) {
    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = textEl.value;
      if (!joined || !text.trim()) return;
      sendMessage(text);
      textEl.value = "";
      textEl.focus();
    });
    textEl.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });
    textEl.addEventListener("input", () => {
      const now = Date.now();
      if (joined && now - lastTypingSent > 2000) {
        lastTypingSent = now;
        send({ type: "typing" });
      }
    });
  }
  if (codeForm && codeInput) {
    codeForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const code = codeInput.value.trim();
      if (joined && code) send({ type: "code", code: code });
    });
  }
  if (codeAgain) codeAgain.addEventListener("click", askForCode);
  if (muteToggle) {
    muteToggle.addEventListener("click", () => {
      if (joined) send({ type: "mute", muted: !muted });
    });
  }
  document.addEventListener("visibilitychange", markRead);

  enableChat(false);
  connect();
})();
