// CHmail sender page (/me), and every mall page of a signed-in viewer (body `data-watch`): keeps
// the sender online (S113), rings, visibly and audibly, when a recipient presses Chat
// (S107-S115), and keeps the rooms' unread counts current (each room's on /me, their sum in the
// mall bar's badge). Protocol: docs/protocol.md. Plain JavaScript, no build step; text from the
// server is inserted with textContent only.
"use strict";

(function () {
  const body = document.body;
  if (!body || (body.dataset.page !== "me" && body.dataset.watch === undefined)) return;

  const $ = (id) => document.getElementById(id);
  const statusEl = $("status");
  const ringBox = $("ring");
  const ringText = $("ring-text");
  const acceptButton = $("accept");
  const declineButton = $("decline");
  const notifyButton = $("notify");
  const totalBadge = $("unread-total");
  const pageTitle = document.title;

  // The badge's rooms and counts: rendered as "room=count ..." (rooms with unread messages), then
  // each `unread` frame replaces its room's count, and the badge shows the sum.
  const roomCounts = new Map();
  if (totalBadge && totalBadge.dataset.rooms) {
    for (const pair of totalBadge.dataset.rooms.split(" ")) {
      const at = pair.lastIndexOf("=");
      const n = Number(pair.slice(at + 1));
      if (at > 0 && Number.isFinite(n)) roomCounts.set(pair.slice(0, at), n);
    }
  }

  let ws = null;
  let backoff = 1000;
  let current = null; // the ring shown: {ring, room, port, caller, subject, attempt}
  let answered = null; // the ring id this page accepted
  let answeredTarget = ""; // and the room page to open
  let audio = null;
  let notification = null;

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

  // Sound: a synthesized two-tone ring (the CSP allows no remote media, and none is needed).
  // Browsers only start audio after a user gesture: the first click anywhere unlocks it.
  function unlockAudio() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!audio) {
      try {
        audio = new Ctx();
      } catch (_) {
        audio = null;
        return;
      }
    }
    if (audio.state === "suspended") audio.resume().catch(() => {});
  }

  function playRing() {
    if (!audio || audio.state !== "running") return;
    const now = audio.currentTime;
    for (let burst = 0; burst < 2; burst++) {
      const start = now + burst * 0.5;
      const gain = audio.createGain();
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.25, start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.4);
      gain.connect(audio.destination);
      for (const freq of [440, 480]) {
        const osc = audio.createOscillator();
        osc.type = "sine";
        osc.frequency.value = freq;
        osc.connect(gain);
        osc.start(start);
        osc.stop(start + 0.42);
      }
    }
  }

  // The caller by name when the room knows one, with the address beside it.
  function callerOf(r) {
    return r.caller_name ? r.caller_name + " (" + r.caller + ")" : r.caller;
  }

  function ringLine(r) {
    let line = callerOf(r) + " wants to chat";
    if (r.subject) line += " about \u201c" + r.subject + "\u201d";
    if (r.attempt > 1) line += " (ringing " + r.attempt + " times)";
    return line;
  }

  function showRing(r) {
    current = r;
    if (ringText) ringText.textContent = ringLine(r);
    if (ringBox) ringBox.hidden = false;
    playRing();
    if ("Notification" in window && Notification.permission === "granted" && document.hidden) {
      try {
        if (notification) notification.close();
        notification = new Notification("CHmail: " + (r.caller_name || r.caller), {
          body: ringLine(r),
          tag: "chmail-ring-" + r.ring,
        });
        notification.onclick = () => {
          window.focus();
          if (notification) notification.close();
        };
      } catch (_) {
        notification = null;
      }
    }
    document.title = "\u260e " + (r.caller_name || r.caller) + " - CHmail";
  }

  function hideRing() {
    current = null;
    if (ringBox) ringBox.hidden = true;
    if (notification) {
      notification.close();
      notification = null;
    }
    document.title = pageTitle;
  }

  // The `unread` frame: the new count of one room (on /me, rooms made after the page loaded are
  // not listed; a reload shows them; the badge counts them at once).
  function setUnread(room, count) {
    const n = Number(count);
    if (!Number.isFinite(n) || n < 0) return;
    if (totalBadge) {
      roomCounts.set(room, n);
      let total = 0;
      for (const c of roomCounts.values()) total += c;
      totalBadge.textContent = String(total);
      totalBadge.dataset.count = String(total);
      totalBadge.classList.toggle("zero", total === 0);
    }
    for (const li of document.querySelectorAll("#rooms li")) {
      if (li.dataset.room !== room) continue;
      const span = li.querySelector(".unread");
      if (!span) continue;
      span.textContent = String(n);
      span.dataset.count = String(n);
      span.classList.toggle("zero", n === 0);
    }
  }

  function roomUrl(port, room) {
    return "/c/" + encodeURIComponent(String(port)) + "/" + encodeURIComponent(room);
  }

  function onFrame(f) {
    switch (f.type) {
      case "hello":
        backoff = 1000;
        send({ type: "watch", v: 1 });
        break;
      case "watching":
        body.dataset.online = "true";
        setStatus("Online: your chats ring here while this page is open.");
        break;
      case "ring":
        showRing(f);
        break;
      case "unread":
        setUnread(f.room, f.count);
        break;
      case "ring_over":
        if (answered === f.ring) {
          if (f.state === "accepted") {
            window.location.href = answeredTarget;
            return;
          }
          answered = null; // "over": another device answered first
        }
        if (current && current.ring === f.ring) {
          hideRing();
          if (f.state === "accepted") setStatus("Answered on another device.");
          else if (f.state === "timed_out") setStatus("Missed call: the caller gets a reminder mail for you.");
          else if (f.state === "cancelled") setStatus("The caller left.");
        }
        break;
      case "error":
        if (f.code === "forbidden") setStatus("Please sign in again.");
        else if (f.code !== "ring_over") setStatus(f.message || "Something went wrong.");
        break;
      default:
        break; // frames of later versions
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
      delete body.dataset.online;
      setStatus("Offline: reconnecting\u2026");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 30000);
    };
  }

  if (acceptButton) {
    acceptButton.addEventListener("click", () => {
      if (!current) return;
      answered = current.ring;
      answeredTarget = roomUrl(current.port, current.room);
      send({ type: "accept", ring: current.ring, room: current.room });
      setStatus("Opening the chat\u2026");
    });
  }
  if (declineButton) {
    declineButton.addEventListener("click", () => {
      if (!current) return;
      send({ type: "decline", ring: current.ring, room: current.room });
      hideRing();
      setStatus("Declined.");
    });
  }
  if (notifyButton) {
    if (!("Notification" in window) || Notification.permission === "granted") notifyButton.hidden = true;
    notifyButton.addEventListener("click", () => {
      unlockAudio();
      if (!("Notification" in window)) return;
      Notification.requestPermission().then((p) => {
        if (p === "granted") notifyButton.hidden = true;
      });
    });
  }
  document.addEventListener("click", unlockAudio);
  document.addEventListener("keydown", unlockAudio);

  connect();
})();
