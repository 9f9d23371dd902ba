// CHmail room page: joins the chat of a CHmail-Link over the WebSocket protocol of
// docs/protocol.md. Plain JavaScript, no build step. Chat text is always inserted as text
// (textContent, text nodes), never as HTML; links are made with createElement, http(s) only.
"use strict";

(function () {
  const body = document.body;
  if (!body || body.dataset.page !== "room") return;

  const PORT = Number(body.dataset.port);
  const ROOM = body.dataset.room || "";
  const SENDER = body.dataset.sender || "";
  const IS_SENDER = body.dataset.isSender === "true";
  const SIGNED_IN_AS = body.dataset.recipient || "";
  const STORE_KEY = "chmail.as." + ROOM;
  const ALERTS_KEY = "chmail.alerts";
  const BASE_TITLE = document.title;
  // Distance from the bottom (px) within which the list counts as "at the newest message".
  const NEAR_BOTTOM = 80;
  // Distance from the top (px) at which older messages are fetched.
  const NEAR_TOP = 120;

  const $ = (id) => document.getElementById(id);
  const statusEl = $("status");
  const participantsEl = $("participants");
  const whoamiPanel = $("whoami-panel");
  const whoami = $("whoami");
  const asSelect = $("as");
  const chatButton = $("chat-button");
  const peopleButton = $("people-button");
  const peopleDrawer = $("people");
  const scroller = $("scroller");
  const messagesEl = $("messages");
  const olderButton = $("older");
  const jumpButton = $("jump");
  const typingEl = $("typing");
  const notices = $("notices");
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
  const alertsBox = $("alerts");
  const pictureInput = $("picture");
  const MAX_PICTURE_BYTES = Number(body.dataset.maxPictureBytes || 0);

  let ws = null;
  let joined = false;
  let me = "";
  let backoff = 1000;
  let typingTimer = null;
  let lastTypingSent = 0;
  let oldestId = null;
  let newestId = 0;
  let seq = 0;
  let ringAfterJoin = false;
  let verified = false; // whether the address this page speaks as is proven
  let muted = false; // whether its notification mails are off
  let call = null; // the last call frame: where the ring to the sender stands
  let historyMode = "initial"; // what the next history frame is: the first page or an older one
  let hasMore = false;
  let loadingOlder = false;
  let lastRead = null; // the last message this address had read when it joined
  let newBelow = 0; // messages that arrived while scrolled away from the newest
  let unseen = 0; // messages that arrived while the tab was hidden
  let sentOnce = false;
  let proofDismissed = false;
  let audio = null;
  const pending = new Map(); // client id -> text, resent after a reconnect
  const people = new Map(); // address -> {name, badge}
  const members = new Map(); // address -> {role, verified, online, in_room, last_read}

  for (const line of (body.dataset.names || "").split("\n")) {
    const [address, name, badge] = line.split("\t");
    if (address && name) people.set(address, { name: name, badge: badge || "" });
  }

  // The page's CSS gives some elements a display that beats the hidden attribute.
  function show(el, on) {
    if (!el) return;
    el.hidden = !on;
    el.style.display = on ? "" : "none";
  }

  function nameOf(address) {
    if (address && address === me) return "You";
    const p = people.get(address);
    return (p && p.name) || address || "";
  }

  function firstName(address) {
    const name = nameOf(address);
    return name.includes("@") ? name : name.split(/\s+/)[0];
  }

  function initials(name) {
    const base = (name || "").split("@")[0];
    const letters = base
      .split(/[\s._-]+/)
      .map((w) => [...w].find((c) => /[\p{L}\p{N}]/u.test(c)))
      .filter(Boolean)
      .map((c) => c.toUpperCase());
    return letters.slice(0, 2).join("") || "?";
  }

  function hue(name) {
    let sum = 0;
    for (const b of new TextEncoder().encode(name)) sum = (Math.imul(sum, 31) + b) >>> 0;
    return String(sum % 8);
  }

  function setStatus(text) {
    if (statusEl) statusEl.textContent = text;
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
    if (IS_SENDER || SIGNED_IN_AS) return null;
    if (asSelect && asSelect.value) return asSelect.value;
    try {
      return window.sessionStorage.getItem(STORE_KEY) || "";
    } catch (_) {
      return "";
    }
  }

  function canJoin() {
    return IS_SENDER || SIGNED_IN_AS || !!chosenAddress();
  }

  function join() {
    const as = chosenAddress();
    if (!canJoin()) {
      setStatus("Say who you are to join the chat.");
      return;
    }
    const frame = { type: "join", v: 1, port: PORT, room: ROOM };
    if (as) frame.as = as;
    historyMode = "initial";
    send(frame);
  }

  // Where the conversation stands, in the head of the page.

  function other() {
    if (!IS_SENDER) return SENDER;
    for (const [address, m] of members) if (m.role !== "from" && address !== SENDER && m.in_room) return address;
    for (const [address, m] of members) if (m.role !== "from" && address !== SENDER) return address;
    return "";
  }

  function describe() {
    if (!joined) return;
    if (call && call.state === "ringing") {
      setStatus("Ringing " + nameOf(SENDER) + "\u2026");
      return;
    }
    if (!IS_SENDER) {
      const s = members.get(SENDER) || {};
      if (s.in_room) setStatus(nameOf(SENDER) + " is in the chat");
      else if (s.online) setStatus(nameOf(SENDER) + " is online: your message rings them");
      else setStatus(nameOf(SENDER) + " is away: your messages reach them by mail");
    } else {
      const here = [...members].filter(([a, m]) => m.role !== "from" && a !== me && m.in_room).map(([a]) => nameOf(a));
      if (here.length) setStatus(here.join(", ") + (here.length === 1 ? " is" : " are") + " in the chat");
      else setStatus("Nobody else is in the chat right now");
    }
    updateRingButton();
  }

  function updateRingButton() {
    if (!chatButton) return;
    const s = members.get(SENDER) || {};
    const ringing = call && call.state === "ringing";
    show(chatButton, joined && !IS_SENDER && !s.in_room && !!s.online && !ringing);
  }

  function callText(f) {
    const who = nameOf(SENDER);
    switch (f.state) {
      case "ringing":
        return "Ringing " + who + "\u2026" + (f.attempt > 1 ? " (try " + f.attempt + ")" : "");
      case "accepted":
        return who + " answered: joining now";
      case "declined":
        return who + " cannot chat right now: your messages reach them by mail";
      case "timed_out":
        return who + " did not answer: they get a reminder mail with your messages";
      case "offline":
        return who + " is away: a reminder mail with your messages is on its way";
      case "reminded":
        return who + " is away: we mailed them a reminder";
      default:
        return "";
    }
  }

  // Messages

  function formatTime(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function formatDay(ms) {
    return new Date(ms).toLocaleDateString([], { weekday: "short", day: "numeric", month: "short", year: "numeric" });
  }

  // Appends `text` to `el`, with http(s) URLs as links that open elsewhere, never as HTML.
  function appendText(el, text) {
    const re = /\bhttps?:\/\/[^\s<>"']+/gi;
    let last = 0;
    for (const match of text.matchAll(re)) {
      let url = match[0];
      // Punctuation that ends a sentence is not part of the link.
      const trail = url.match(/[.,;:!?)\]}]+$/);
      if (trail) url = url.slice(0, -trail[0].length);
      const at = match.index;
      el.appendChild(document.createTextNode(text.slice(last, at)));
      let href = null;
      try {
        const parsed = new URL(url);
        if (parsed.protocol === "http:" || parsed.protocol === "https:") href = parsed.href;
      } catch (_) {
        href = null;
      }
      if (href) {
        const a = document.createElement("a");
        a.href = href;
        a.textContent = url;
        a.target = "_blank";
        a.rel = "noopener noreferrer nofollow";
        el.appendChild(a);
      } else {
        el.appendChild(document.createTextNode(url));
      }
      last = at + url.length;
    }
    el.appendChild(document.createTextNode(text.slice(last)));
  }

  function stateText(state) {
    return { sending: "Sending\u2026", sent: "Sent", read: "Read", failed: "Not sent" }[state] || "";
  }

  function setState(li, state) {
    li.dataset.state = state;
    const el = li.querySelector(".state");
    if (el) el.textContent = stateText(state);
    const retry = li.querySelector(".retry");
    if (state === "failed" && !retry) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "link-button retry";
      b.textContent = "Try again";
      b.addEventListener("click", () => {
        const text = li.querySelector(".text").textContent;
        const img = li.querySelector(".picture img");
        const picture = img ? Number(img.src.split("/").pop()) : undefined;
        li.remove();
        sendMessage(text, picture);
      });
      li.querySelector(".meta").appendChild(b);
    } else if (state !== "failed" && retry) {
      retry.remove();
    }
  }

  function renderMessage(m, pendingState) {
    const li = document.createElement("li");
    li.dataset.id = String(m.id);
    li.dataset.author = m.author || "";
    if (m.client_id) li.dataset.clientId = m.client_id;
    const system = m.via === "system" || !m.author;
    const mine = !system && m.author === me;
    li.className = system ? "system" : mine ? "mine" : "theirs";
    if (pendingState) li.classList.add("pending");
    if (!system && !mine) {
      const avatar = document.createElement("span");
      avatar.className = "avatar small";
      avatar.setAttribute("aria-hidden", "true");
      avatar.dataset.hue = hue(nameOf(m.author));
      avatar.textContent = initials(nameOf(m.author));
      li.appendChild(avatar);
    }
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    if (!system && !mine) {
      const who = document.createElement("span");
      who.className = "author";
      who.textContent = nameOf(m.author);
      bubble.appendChild(who);
    } else if (mine) {
      const who = document.createElement("span");
      who.className = "visually-hidden";
      who.textContent = "You: ";
      bubble.appendChild(who);
    }
    if (m.picture) {
      const url = "/c/" + PORT + "/" + ROOM + "/pictures/" + m.picture;
      const link = document.createElement("a");
      link.href = url;
      link.target = "_blank";
      link.rel = "noopener";
      link.className = "picture";
      const img = document.createElement("img");
      img.src = url;
      img.alt = system ? "A picture" : "A picture from " + nameOf(m.author);
      img.loading = "lazy";
      img.decoding = "async";
      img.addEventListener("load", () => {
        if (nearBottom() || li === messagesEl.lastElementChild) toBottom();
      });
      link.appendChild(img);
      bubble.appendChild(link);
    } else if (m.uploading) {
      const p = document.createElement("span");
      p.className = "uploading";
      p.textContent = "Sending a picture\u2026";
      bubble.appendChild(p);
    }
    const text = document.createElement("span");
    text.className = "text";
    appendText(text, m.text || "");
    if (m.text) bubble.appendChild(text);
    else bubble.appendChild(Object.assign(text, { hidden: true }));
    const meta = document.createElement("span");
    meta.className = "meta";
    if (m.via === "mail") {
      const via = document.createElement("span");
      via.className = "via";
      via.textContent = "by mail";
      meta.appendChild(via);
    }
    if (m.at) {
      const time = document.createElement("time");
      time.dateTime = new Date(m.at).toISOString();
      time.title = formatDay(m.at);
      time.textContent = formatTime(m.at);
      meta.appendChild(time);
    }
    if (mine) {
      const st = document.createElement("span");
      st.className = "state";
      meta.appendChild(st);
    }
    bubble.appendChild(meta);
    li.appendChild(bubble);
    if (mine) setState(li, pendingState || (readByOthers(m.id) ? "read" : "sent"));
    return li;
  }

  // Groups runs of one author (the name and avatar only on the first) and marks new days.
  function regroup() {
    let prev = null;
    let prevDay = "";
    for (const li of [...messagesEl.querySelectorAll("li.day")]) li.remove();
    for (const li of [...messagesEl.children]) {
      if (li.classList.contains("divider")) continue;
      const t = li.querySelector("time");
      const day = t ? new Date(t.dateTime).toDateString() : prevDay;
      if (day && day !== prevDay && prevDay !== "") {
        const d = document.createElement("li");
        d.className = "day";
        d.textContent = formatDay(new Date(t.dateTime).getTime());
        messagesEl.insertBefore(d, li);
        prev = null;
      }
      if (day) prevDay = day;
      const continued = prev && prev.dataset.author === li.dataset.author && !li.classList.contains("system");
      li.classList.toggle("continued", !!continued);
      prev = li;
    }
  }

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM;
  }

  function toBottom() {
    scroller.scrollTop = scroller.scrollHeight;
    newBelow = 0;
    show(jumpButton, false);
  }

  function messageNodes() {
    return [...messagesEl.querySelectorAll("li[data-id]")];
  }

  // Inserts a stored message in id order, once. Returns its element, or null if it was there.
  function insertMessage(m) {
    if (m.client_id) {
      const mine = messagesEl.querySelector('li.pending[data-client-id="' + CSS.escape(m.client_id) + '"]');
      if (mine) mine.remove();
    }
    if (messagesEl.querySelector('li[data-id="' + m.id + '"]')) return null;
    const li = renderMessage(m);
    let before = null;
    for (const other of messageNodes()) {
      if (other.classList.contains("pending") || Number(other.dataset.id) > m.id) {
        before = other;
        break;
      }
    }
    messagesEl.insertBefore(li, before);
    if (oldestId === null || m.id < oldestId) oldestId = m.id;
    if (m.id > newestId) newestId = m.id;
    return li;
  }

  // A new message arrived live: keep the newest in view, or say that new ones are below.
  function arrived(m) {
    const atBottom = nearBottom();
    const li = insertMessage(m);
    if (!li) return;
    regroup();
    const theirs = m.author !== me && m.via !== "system";
    if (theirs && typingEl) typingEl.textContent = "";
    if (atBottom || m.author === me) toBottom();
    else if (theirs) {
      newBelow += 1;
      jumpButton.textContent = newBelow === 1 ? "1 new message" : newBelow + " new messages";
      show(jumpButton, true);
    }
    if (theirs && document.visibilityState !== "visible") alertNew(m);
    markRead();
  }

  function history(f) {
    const msgs = f.messages || [];
    hasMore = !!f.more;
    show(olderButton, hasMore);
    if (historyMode === "older") {
      const before = scroller.scrollHeight;
      const top = scroller.scrollTop;
      for (const m of msgs) insertMessage(m);
      regroup();
      scroller.scrollTop = top + (scroller.scrollHeight - before);
      loadingOlder = false;
      return;
    }
    for (const m of msgs) insertMessage(m);
    regroup();
    // The first unread message of someone else gets a marker, and the view starts there.
    const old = messagesEl.querySelector("li.divider");
    if (old) old.remove();
    let firstUnread = null;
    if (lastRead !== null) {
      firstUnread = messageNodes().find(
        (li) => Number(li.dataset.id) > lastRead && li.dataset.author !== me && !li.classList.contains("system"),
      );
    }
    if (firstUnread) {
      const d = document.createElement("li");
      d.className = "divider";
      d.textContent = "New messages";
      messagesEl.insertBefore(d, firstUnread);
      toBottom();
      if (d.offsetTop < scroller.scrollTop) scroller.scrollTop = Math.max(0, d.offsetTop - 16);
    } else {
      toBottom();
    }
    historyMode = "live";
    markRead();
    // A page that did not fill the screen cannot be scrolled up: fetch more right away.
    if (hasMore && scroller.scrollHeight <= scroller.clientHeight) loadOlder();
  }

  function loadOlder() {
    if (!joined || !hasMore || loadingOlder || oldestId === null) return;
    loadingOlder = true;
    historyMode = "older";
    send({ type: "history", before: oldestId });
  }

  function markRead() {
    if (joined && newestId > 0 && document.visibilityState === "visible" && nearBottom()) {
      send({ type: "read", up_to: newestId });
    }
  }

  function readByOthers(id) {
    for (const [address, m] of members) {
      if (address !== me && m.last_read !== null && m.last_read !== undefined && m.last_read >= id) return true;
    }
    return false;
  }

  function updateReadStates() {
    for (const li of messagesEl.querySelectorAll("li.mine:not(.pending)")) {
      if (li.dataset.state !== "read" && readByOthers(Number(li.dataset.id))) setState(li, "read");
    }
  }

  function sendMessage(text, picture) {
    const id = "c" + Date.now().toString(36) + "-" + (seq++).toString(36);
    const frame = { type: "message", text: text, id: id };
    if (picture) frame.picture = picture;
    pending.set(id, frame);
    const li = renderMessage({ id: "pending", author: me, text: text, client_id: id, at: Date.now(), picture: picture }, "sending");
    messagesEl.appendChild(li);
    regroup();
    toBottom();
    send(frame);
    if (!sentOnce) {
      sentOnce = true;
      offerNotifications();
    }
  }

  // Tells the writer, next to their newest message, whom it will not reach and what to do: one
  // note that moves along with the newest message, gone once a message reaches everyone.
  function showUnreached(li, unreached) {
    if (!li) return;
    for (const old of messagesEl.querySelectorAll(".reach")) old.remove();
    if (!unreached || !unreached.length) return;
    const note = document.createElement("p");
    note.className = "reach";
    const names = unreached.map((u) => nameOf(u.address));
    const list = names.length > 3 ? names.slice(0, 3).join(", ") + " and " + (names.length - 3) + " more" : names.join(", ");
    const never = unreached.every((u) => u.why === "never_joined");
    note.textContent = never
      ? "Not delivered yet to " + list + ": they have not opened this chat. They will see it when they open the chat link in the mail; to reach them now, write to them by mail."
      : "Not delivered to " + list + ": they left the chat and have not confirmed their address, so no mail tells them. They will see it when they come back; to reach them now, write to them by mail.";
    li.appendChild(note);
  }

  // Alerts while the tab is hidden: the count in the title and the icon, a sound, a notification.

  function alertsOn() {
    try {
      return window.localStorage.getItem(ALERTS_KEY) !== "off";
    } catch (_) {
      return true;
    }
  }

  function setBadge(count) {
    document.title = count > 0 ? "(" + count + ") " + BASE_TITLE : BASE_TITLE;
    let link = document.querySelector('link[rel="icon"]');
    if (!link) {
      link = document.createElement("link");
      link.rel = "icon";
      document.head.appendChild(link);
    }
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 32;
    const g = canvas.getContext("2d");
    if (!g) return;
    g.fillStyle = "#2563eb";
    g.beginPath();
    g.arc(16, 16, 15, 0, 2 * Math.PI);
    g.fill();
    g.fillStyle = "#fff";
    g.font = "bold 18px sans-serif";
    g.textAlign = "center";
    g.textBaseline = "middle";
    g.fillText(count > 0 ? (count > 9 ? "9+" : String(count)) : "C", 16, 17);
    if (count > 0) {
      g.fillStyle = "#dc2626";
      g.beginPath();
      g.arc(25, 7, 7, 0, 2 * Math.PI);
      g.fill();
    }
    link.href = canvas.toDataURL("image/png");
  }

  function beep() {
    if (!audio || audio.state !== "running") return;
    const now = audio.currentTime;
    for (const [at, freq] of [[0, 880], [0.18, 1175]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + at);
      gain.gain.exponentialRampToValueAtTime(0.2, now + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.16);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + at);
      osc.stop(now + at + 0.17);
    }
  }

  function notify(title, text) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const n = new Notification(title, { body: text.slice(0, 140), tag: "chmail-" + ROOM });
      n.onclick = () => {
        window.focus();
        n.close();
      };
    } catch (_) {
      // Some browsers allow notifications only from a service worker: the title still counts.
    }
  }

  function alertNew(m) {
    unseen += 1;
    setBadge(unseen);
    if (!alertsOn()) return;
    beep();
    notify(nameOf(m.author), m.text || "");
  }

  // The browser asks for permission only after a gesture; we ask once the user has written and
  // is waiting for an answer, and only with a button they press.
  function offerNotifications() {
    if (!("Notification" in window) || Notification.permission !== "default" || !alertsOn() || !notices) return;
    if (notices.querySelector(".offer-notify")) return;
    const p = notice("offer-notify", "Get a notification when " + firstName(other()) + " answers?");
    const yes = document.createElement("button");
    yes.type = "button";
    yes.className = "small primary";
    yes.id = "notify-on";
    yes.textContent = "Notify me";
    yes.addEventListener("click", () => {
      Notification.requestPermission().finally(() => p.remove());
    });
    p.insertBefore(yes, p.lastChild);
  }

  // A one-line notice above the conversation with `text`, a dismiss button, and room for an
  // action before it.
  function notice(kind, text) {
    const p = document.createElement("p");
    p.className = "notice row " + kind;
    const t = document.createElement("span");
    t.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "dismiss";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "\u00d7";
    close.addEventListener("click", () => p.remove());
    p.append(t, close);
    notices.appendChild(p);
    return p;
  }

  // People

  function setPresence(address, online, inRoom) {
    const m = members.get(address) || {};
    m.online = online;
    m.in_room = !!inRoom;
    members.set(address, m);
    if (!participantsEl) return;
    for (const li of participantsEl.querySelectorAll("li[data-address]")) {
      if (li.dataset.address !== address) continue;
      li.dataset.presence = inRoom ? "here" : online ? "online" : "offline";
      li.classList.toggle("online", online);
      li.classList.toggle("here", !!inRoom);
      const text = li.querySelector(".presence-text");
      if (text) text.textContent = inRoom ? "in the chat" : online ? "online" : "away";
    }
  }

  function participantItems(address) {
    if (!participantsEl) return [];
    return [...participantsEl.querySelectorAll("li[data-address]")].filter((li) => li.dataset.address === address);
  }

  function markVerified(address) {
    const m = members.get(address);
    if (m) m.verified = true;
    for (const li of participantItems(address)) {
      if (li.dataset.role === "from") continue;
      for (const el of li.querySelectorAll(".unverified")) {
        el.className = "verified";
        el.title = "Gets new messages by mail while away";
        el.textContent = "confirmed";
      }
    }
  }

  // A recipient whose address is not proven gets no mail about answers: say so, with the way out.
  function offerProof() {
    const old = notices && notices.querySelector(".offer-proof");
    if (IS_SENDER || verified || !joined || !notices) {
      if (old) old.remove();
      return;
    }
    if (old || proofDismissed) return;
    const p = notice("offer-proof", "Get answers by mail while you are away: confirm " + me + ".");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "small primary";
    b.id = "prove";
    b.textContent = "Mail me a code";
    b.addEventListener("click", askForCode);
    p.insertBefore(b, p.lastChild);
    p.lastChild.addEventListener("click", () => {
      proofDismissed = true;
    });
  }

  function askForCode() {
    if (joined) send({ type: "prove" });
  }

  function updateMailSettings() {
    show(mailSettings, !IS_SENDER && joined);
    if (muteText) {
      muteText.textContent = !verified
        ? "New messages are not mailed to you while you are away: your address is not confirmed."
        : muted
          ? "Mails about new messages while you are away are off for this chat."
          : "While you are away, new messages here are mailed to you.";
    }
    if (muteToggle) {
      muteToggle.textContent = !verified ? "Confirm my address" : muted ? "Mail me new messages" : "Stop these mails";
    }
  }

  // Frames

  function onJoined(f) {
    joined = true;
    me = f.you;
    lastRead = f.last_read === undefined ? null : f.last_read;
    show(whoamiPanel, false);
    enableChat(true);
    for (const m of f.members || []) {
      if (m.name && !people.has(m.address)) people.set(m.address, { name: m.name, badge: m.badge || "" });
      members.set(m.address, {
        role: m.role,
        verified: m.verified,
        online: m.online,
        in_room: m.in_room,
        last_read: m.last_read === undefined ? null : m.last_read,
      });
      setPresence(m.address, m.online, m.in_room);
      if (m.verified) markVerified(m.address);
    }
    verified = IS_SENDER || (f.members || []).some((m) => m.address === me && m.verified);
    muted = false; // a "muted" frame follows when the mails are off
    updateMailSettings();
    offerProof();
    describe();
    if (!IS_SENDER && !SIGNED_IN_AS) {
      try {
        window.sessionStorage.setItem(STORE_KEY, me);
      } catch (_) {
        /* private mode: ask again next time */
      }
    }
    for (const frame of pending.values()) send(frame);
    if (ringAfterJoin) {
      ringAfterJoin = false;
      send({ type: "ring" });
    }
  }

  function onFrame(f) {
    switch (f.type) {
      case "hello":
        backoff = 1000;
        if (canJoin()) join();
        else setStatus("Say who you are to join the chat.");
        break;
      case "joined":
        onJoined(f);
        break;
      case "history":
        history(f);
        break;
      case "message":
        arrived(f.message);
        break;
      case "ack": {
        if (f.id) pending.delete(f.id);
        const atBottom = nearBottom();
        const li = insertMessage(f.message);
        regroup();
        showUnreached(li, f.unreached);
        if (atBottom) toBottom();
        break;
      }
      case "read": {
        const m = members.get(f.address) || {};
        m.last_read = Math.max(m.last_read || 0, f.up_to);
        members.set(f.address, m);
        updateReadStates();
        break;
      }
      case "call":
        call = f;
        describe();
        if (f.state !== "ringing") {
          const text = callText(f);
          if (text) setStatus(text);
        }
        break;
      case "presence": {
        const before = members.get(f.address) || {};
        const wasHere = !!before.in_room;
        setPresence(f.address, f.online, f.in_room);
        describe();
        if (f.address !== me && f.in_room && !wasHere) setStatus(nameOf(f.address) + " joined");
        else if (f.address !== me && !f.in_room && wasHere) setStatus(nameOf(f.address) + " left the chat");
        break;
      }
      case "typing": {
        if (typingEl) typingEl.textContent = nameOf(f.from) + " is typing\u2026";
        clearTimeout(typingTimer);
        typingTimer = setTimeout(() => {
          if (typingEl) typingEl.textContent = "";
        }, 3000);
        break;
      }
      case "ring":
        // The sender's page rings for this room: being here answers it.
        if (IS_SENDER && f.room === ROOM) send({ type: "accept", ring: f.ring, room: f.room });
        else if (IS_SENDER) setStatus((f.caller_name || f.caller) + " is calling about another mail: see your chats page.");
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
          offerProof();
          setStatus("Confirmed: answers reach you by mail while you are away.");
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

  function failPending() {
    for (const li of messagesEl.querySelectorAll("li.pending")) {
      li.classList.remove("pending");
      setState(li, "failed");
      pending.delete(li.dataset.clientId);
    }
  }

  function onError(f) {
    switch (f.code) {
      case "too_large":
      case "rate_limited":
      case "bad_frame":
        failPending();
        setStatus(f.message);
        break;
      case "not_verified":
        failPending();
        offerProof();
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
        show(whoamiPanel, true);
        try {
          window.sessionStorage.removeItem(STORE_KEY);
        } catch (_) {
          /* nothing stored */
        }
        setStatus(f.message);
        break;
      default:
        loadingOlder = false;
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
      setStatus("Connection lost; reconnecting\u2026");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 30000);
    };
  }

  // Controls

  if (whoami) {
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
      call = { state: "ringing", attempt: 1 };
      describe();
      send({ type: "ring" });
    });
  }
  if (peopleButton && peopleDrawer) {
    peopleButton.addEventListener("click", () => {
      const open = peopleDrawer.hidden;
      show(peopleDrawer, open);
      peopleButton.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }
  if (olderButton) olderButton.addEventListener("click", loadOlder);
  if (jumpButton) jumpButton.addEventListener("click", () => {
    toBottom();
    markRead();
  });
  if (scroller) {
    scroller.addEventListener("scroll", () => {
      if (scroller.scrollTop < NEAR_TOP) loadOlder();
      if (nearBottom()) {
        newBelow = 0;
        show(jumpButton, false);
        markRead();
      }
    }, { passive: true });
  }
  if (composer && textEl) {
    const fit = () => {
      textEl.style.height = "auto";
      textEl.style.height = Math.min(textEl.scrollHeight + 2, window.innerHeight * 0.35) + "px";
    };
    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = textEl.value;
      if (!joined || !text.trim()) return;
      sendMessage(text);
      textEl.value = "";
      fit();
      textEl.focus();
    });
    textEl.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });
    textEl.addEventListener("input", () => {
      fit();
      const now = Date.now();
      if (joined && now - lastTypingSent > 2000) {
        lastTypingSent = now;
        send({ type: "typing" });
      }
    });
  }
  // A picture: uploaded first (its bytes over HTTP), then sent as a message naming it, with the
  // text typed so far as its caption.
  async function sendPicture(file) {
    if (!joined || !file) return;
    if (file.size > MAX_PICTURE_BYTES) {
      setStatus("That picture is too large: at most " + Math.ceil(MAX_PICTURE_BYTES / 1048576) + " MB.");
      return;
    }
    const placeholder = renderMessage({ id: "pending", author: me, text: "", at: Date.now(), uploading: true }, "sending");
    messagesEl.appendChild(placeholder);
    toBottom();
    try {
      const response = await fetch("/c/" + PORT + "/" + ROOM + "/pictures", {
        method: "POST",
        body: file,
        headers: { "Content-Type": file.type || "application/octet-stream" },
        credentials: "same-origin",
      });
      const answer = await response.json().catch(() => ({}));
      placeholder.remove();
      if (!response.ok || !answer.id) {
        setStatus(answer.error || "The picture could not be sent; please try again.");
        return;
      }
      const caption = textEl ? textEl.value.trim() : "";
      if (textEl) textEl.value = "";
      sendMessage(caption, answer.id);
    } catch (_) {
      placeholder.remove();
      setStatus("The picture could not be sent; please try again.");
    }
  }
  if (pictureInput) {
    if (!MAX_PICTURE_BYTES) show(pictureInput.nextElementSibling, false);
    pictureInput.addEventListener("change", () => {
      const file = pictureInput.files && pictureInput.files[0];
      pictureInput.value = "";
      sendPicture(file);
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
      if (!joined) return;
      if (!verified) askForCode();
      else send({ type: "mute", muted: !muted });
    });
  }
  if (alertsBox) {
    alertsBox.checked = alertsOn();
    alertsBox.addEventListener("change", () => {
      try {
        window.localStorage.setItem(ALERTS_KEY, alertsBox.checked ? "on" : "off");
      } catch (_) {
        /* not remembered */
      }
      if (alertsBox.checked && "Notification" in window && Notification.permission === "default") {
        Notification.requestPermission();
      }
    });
  }
  // Sound needs a gesture first (browsers block it otherwise): the first one unlocks it.
  const unlock = () => {
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!audio && Ctx) audio = new Ctx();
      if (audio && audio.state === "suspended") audio.resume();
    } catch (_) {
      audio = null;
    }
  };
  window.addEventListener("pointerdown", unlock, { once: true, capture: true });
  window.addEventListener("keydown", unlock, { once: true, capture: true });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      unseen = 0;
      setBadge(0);
      markRead();
    }
  });
  for (const t of document.querySelectorAll("time[data-ms]")) {
    t.textContent = formatDay(Number(t.dataset.ms)) + ", " + formatTime(Number(t.dataset.ms));
  }

  enableChat(false);
  connect();
})();
