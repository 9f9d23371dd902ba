// The CHmail chat pages in a real headless Chromium (driven by chatd/tests/browser.rs, which
// starts chatd, creates a room whose mail named its people and began with a text, and passes the
// URLs):
//
// - context A, a recipient on a phone-sized screen, opens the CHmail-Link: the head names the
//   sender, the mail's text is the first item; A picks its address and writes at once;
// - context B, the sender on a desktop-sized screen, signed in by a link on /me: A's message
//   counts as unread and rings B (no Chat press needed); B accepts and is taken into the room;
// - both exchange messages: names instead of addresses, markup stays text, an http(s) link is
//   clickable and a javascript: one is not, A's message shows "Read" once B has seen it; a
//   picture A sends shows on B's side;
// - B's tab is hidden: A's next message puts the count in B's title and shows a notification;
// - B writes 30 more: A's newest message and composer stay in view; after a reload A scrolls up
//   and older messages load;
// - axe-core finds no serious or critical violation in any of these states;
// - screenshots of both pages at both sizes go to $SCREENSHOT_DIR.
//
// Environment: ROOM_URL, SIGNIN_URL, RECIPIENT, RECIPIENT_NAME, SENDER, SENDER_NAME, OPENING,
// SCREENSHOT_DIR, CHROMIUM (default /usr/bin/chromium). Prints "OK" as its last line on success;
// exits 1 otherwise.

import {
  assertAccessible,
  assertInView,
  assertNoProblems,
  env,
  launch,
  recordNotifications,
  reportFailure,
  setHidden,
  screen,
  SHOTS,
  shows,
  showsConversation,
  statusIncludes,
  statusOf,
  statusStartsWith,
  watch,
  writable,
} from "./lib.mjs";

const ROOM_URL = env("ROOM_URL");
const SIGNIN_URL = env("SIGNIN_URL");
const RECIPIENT = env("RECIPIENT");
const RECIPIENT_NAME = env("RECIPIENT_NAME");
const SENDER = env("SENDER");
const SENDER_NAME = env("SENDER_NAME");
const OPENING = env("OPENING");

const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 800 };

const browser = await launch();

/** The texts of the authors shown on `page`'s messages. */
const authors = (page) => page.$$eval("#messages .author", (els) => els.map((e) => e.textContent));

let recipientPage;
let senderPage;
try {
  const origin = new URL(ROOM_URL).origin;
  const a = await browser.newContext({ viewport: PHONE, hasTouch: true });
  const b = await browser.newContext({ viewport: DESKTOP });
  await b.grantPermissions(["notifications"], { origin });
  await recordNotifications(b);
  a.setDefaultTimeout(20000);
  b.setDefaultTimeout(20000);
  recipientPage = await a.newPage();
  senderPage = await b.newPage();
  watch(recipientPage, "recipient");
  watch(senderPage, "sender");

  // B: the sender signs in with the mailed link and lands on /me, online.
  // The link opens a page whose button signs in (mail scanners fetch links; only the post counts).
  await senderPage.goto(SIGNIN_URL);
  await senderPage.click("#signin");
  await senderPage.waitForURL(/\/me$/);
  await statusStartsWith(senderPage, "Online");

  // A: the head names the sender; the mail that started the chat is the first item.
  await recipientPage.goto(ROOM_URL);
  const title = await recipientPage.locator("#title").textContent();
  if (title !== SENDER_NAME) throw new Error(`the head says ${JSON.stringify(title)}`);
  const opening = await recipientPage.locator("#scroller > #opening").textContent();
  if (!opening.includes(OPENING) || !opening.includes(`${SENDER_NAME} wrote`)) {
    throw new Error(`the first item is ${JSON.stringify(opening)}`);
  }
  const firstItem = await recipientPage.evaluate(() => {
    const first = document.querySelector("#scroller > :not([hidden]):not(#older)");
    return first && first.id;
  });
  if (firstItem !== "opening") throw new Error(`the first item is #${firstItem}`);
  await assertAccessible(recipientPage, "recipient, before joining (phone)");
  await screen(recipientPage, "recipient-landing-phone.png");

  // A says who it is and writes at once: the message rings B, who is online elsewhere.
  await recipientPage.selectOption("#as", RECIPIENT);
  await recipientPage.click("#join");
  await writable(recipientPage);
  const early = "Are you there?";
  await recipientPage.fill("#text", early);
  await recipientPage.click("#send");
  await recipientPage.waitForFunction(() => {
    const li = document.querySelector("#messages li.mine");
    return li && li.dataset.state === "sent";
  });
  await senderPage.locator("#ring").waitFor({ state: "visible" });
  const ringText = await senderPage.locator("#ring-text").textContent();
  if (!ringText.includes(RECIPIENT_NAME)) throw new Error(`ring text ${JSON.stringify(ringText)} lacks the caller's name`);
  const room = new URL(ROOM_URL).pathname.split("/").pop();
  await senderPage.waitForFunction((r) => {
    const unread = document.querySelector(`#rooms [data-room="${r}"] .unread`);
    return unread && unread.textContent === "1" && !unread.classList.contains("zero");
  }, room);
  await statusIncludes(recipientPage, `Ringing ${SENDER_NAME}`);
  await assertAccessible(recipientPage, "recipient, ringing (phone)");
  await assertAccessible(senderPage, "sender's chats, ringing (desktop)");
  await screen(senderPage, "sender-ringing.png");
  await screen(recipientPage, "recipient-ringing.png");

  // B accepts and is taken into the room; A sees the sender join.
  await senderPage.click("#accept");
  await senderPage.waitForURL(/\/c\/\d+\/[^/]+$/);
  await statusIncludes(recipientPage, `${SENDER_NAME} joined`);
  await writable(senderPage);

  // Messages both ways: names, not addresses; markup stays text.
  const hello = "Hello from the recipient";
  await recipientPage.fill("#text", hello);
  await recipientPage.click("#send");
  await shows(senderPage, hello);
  const reply = "Hi! <b>not bold</b> & fine";
  await senderPage.fill("#text", reply);
  await senderPage.press("#text", "Enter");
  await shows(recipientPage, reply);
  if ((await recipientPage.$$("#messages b")).length !== 0) throw new Error("chat text was rendered as HTML");
  await showsConversation(recipientPage, "recipient", [early, hello, reply]);
  await showsConversation(senderPage, "sender", [early, hello, reply]);
  for (const [page, who, expected] of [[senderPage, "sender", RECIPIENT_NAME], [recipientPage, "recipient", SENDER_NAME]]) {
    const names = await authors(page);
    if (!names.length || names.some((n) => n !== expected)) throw new Error(`${who} sees authors ${JSON.stringify(names)}`);
    const bubbles = await page.$$eval("#messages .bubble", (els) => els.map((e) => e.textContent).join(" "));
    if (bubbles.includes(SENDER) || bubbles.includes(RECIPIENT)) throw new Error(`${who} sees raw addresses: ${bubbles}`);
  }

  // A's messages show "Read" once B's page has shown them.
  await recipientPage.waitForFunction(() =>
    [...document.querySelectorAll("#messages li.mine")].every((li) => li.dataset.state === "read"),
  );

  // Links: http(s) clickable and safe; javascript: stays text.
  const links = "The teapot: https://shop.example/teapot?id=7. Not this: javascript:alert(1)";
  await recipientPage.fill("#text", links);
  await recipientPage.click("#send");
  await shows(senderPage, links);
  const anchors = await senderPage.$$eval("#messages .text a", (els) =>
    els.map((a) => ({ href: a.getAttribute("href"), rel: a.rel, text: a.textContent, target: a.target })),
  );
  if (
    anchors.length !== 1 ||
    anchors[0].href !== "https://shop.example/teapot?id=7" ||
    anchors[0].rel !== "noopener noreferrer nofollow" ||
    anchors[0].target !== "_blank"
  ) {
    throw new Error(`links: ${JSON.stringify(anchors)}`);
  }

  // A picture: sent from A's phone, shown on B's side (loaded, from this chat's server).
  const picture = new URL("../../chatd/static/demo/teapot-red.png", import.meta.url).pathname;
  await recipientPage.setInputFiles("#picture", picture);
  await senderPage.waitForFunction(() =>
    [...document.querySelectorAll("#messages .picture img")].some((img) => img.complete && img.naturalWidth > 0),
  );
  const src = await senderPage.$eval("#messages .picture img", (img) => new URL(img.src).pathname);
  if (!/^\/c\/\d+\/[^/]+\/pictures\/\d+$/.test(src)) throw new Error(`the picture comes from ${src}`);
  await recipientPage.waitForFunction(() =>
    [...document.querySelectorAll("#messages li.mine .picture img")].some((img) => img.complete && img.naturalWidth > 0),
  );

  // B's tab goes to the background: A's next message counts in B's title and notifies.
  await setHidden(senderPage, true);
  const meanwhile = "Ping while you are away";
  await recipientPage.fill("#text", meanwhile);
  await recipientPage.click("#send");
  await senderPage.waitForFunction(() => document.title.startsWith("(1) "));
  const notes = await senderPage.evaluate(() => window.__notes || []);
  if (!notes.some((n) => n.title === RECIPIENT_NAME && n.body.includes("Ping"))) {
    throw new Error(`notifications: ${JSON.stringify(notes)}`);
  }
  await setHidden(senderPage, false);
  await senderPage.waitForFunction(() => !document.title.startsWith("("));

  // Thirty answers: on A's phone the newest message and the composer stay in view.
  for (let i = 1; i <= 30; i++) {
    await senderPage.fill("#text", `Answer number ${i}`);
    await senderPage.press("#text", "Enter");
  }
  await shows(recipientPage, "Answer number 30");
  await recipientPage.waitForTimeout(300);
  // Carol, on Cc, never opened the chat: the sender is told once, beside the newest message.
  await senderPage.waitForFunction(() => {
    const notes = [...document.querySelectorAll("#messages .reach")];
    const last = [...document.querySelectorAll("#messages li.mine")].pop();
    return notes.length === 1 && last && last.contains(notes[0]);
  });
  const reach = await senderPage.locator("#messages .reach").textContent();
  if (!reach.includes("carol@c.example") || !reach.includes("not opened this chat")) {
    throw new Error(`the note says ${JSON.stringify(reach)}`);
  }
  await assertInView(recipientPage, "#messages li", "recipient (phone), newest message");
  await assertInView(recipientPage, "#composer", "recipient (phone), composer");
  await assertInView(senderPage, "#messages li", "sender (desktop), newest message");
  await assertInView(senderPage, "#composer", "sender (desktop), composer");
  await assertAccessible(recipientPage, "recipient, chatting (phone)");
  await assertAccessible(senderPage, "sender, chatting (desktop)");
  await screen(recipientPage, "recipient-chat.png");
  await screen(senderPage, "sender-chat.png");

  // The other sizes, for the screenshots and the layout.
  await recipientPage.setViewportSize(DESKTOP);
  await senderPage.setViewportSize(PHONE);
  await recipientPage.waitForTimeout(200);
  await assertInView(recipientPage, "#composer", "recipient (desktop), composer");
  await assertInView(senderPage, "#composer", "sender (phone), composer");
  await screen(recipientPage, "recipient-chat-desktop.png");
  await screen(senderPage, "sender-chat-phone.png");
  await recipientPage.setViewportSize(PHONE);

  // A reloads: the newest page is shown at the bottom; scrolling up loads older messages.
  await recipientPage.reload();
  await writable(recipientPage);
  await shows(recipientPage, "Answer number 30");
  await assertInView(recipientPage, "#messages li", "recipient after reload, newest message");
  const before = await recipientPage.$$eval("#messages li[data-id]", (els) => els.length);
  for (let i = 0; i < 10; i++) {
    await recipientPage.evaluate(() => {
      document.getElementById("scroller").scrollTop = 0;
    });
    await recipientPage.waitForTimeout(250);
    if (await recipientPage.evaluate((t) => [...document.querySelectorAll("#messages .text")].some((e) => e.textContent === t), early)) break;
  }
  const after = await recipientPage.$$eval("#messages li[data-id]", (els) => els.length);
  if (after <= before) throw new Error(`scrolling up loaded nothing (${before} -> ${after})`);
  await shows(recipientPage, early);

  const status = await statusOf(recipientPage);
  assertNoProblems();
  console.log(`recipient status: ${status}`);
  console.log(`screenshots in ${SHOTS}`);
  console.log("OK");
} catch (err) {
  await reportFailure(err, [["recipient", recipientPage], ["sender", senderPage]], "failure-");
  await browser.close();
  process.exit(1);
}
await browser.close();
