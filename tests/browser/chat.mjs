// The CHmail chat pages in a real headless Chromium (driven by chatd/tests/browser.rs, which
// starts chatd, creates the room and passes the URLs):
//
// - context A, a recipient, opens the CHmail-Link, picks its address, writes, and presses Chat;
// - context B, the sender, follows a sign-in link to /me (pressing its Sign in button), sees the
//   unread count of the room rise with A's first message, sees the ring and accepts;
// - both exchange messages that appear on the other side (as text, never as HTML);
// - screenshots of both pages go to $SCREENSHOT_DIR.
//
// Environment: ROOM_URL, SIGNIN_URL, RECIPIENT, SENDER, SCREENSHOT_DIR, CHROMIUM (default
// /usr/bin/chromium). Prints "OK" as its last line on success; exits 1 otherwise.

import {
  assertNoProblems,
  env,
  launch,
  reportFailure,
  shot,
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
const SENDER = env("SENDER");

const browser = await launch();

let recipientPage;
let senderPage;
try {
  const a = await browser.newContext();
  const b = await browser.newContext();
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

  // A: the recipient opens the link, says who they are and writes first; B's list counts the
  // message as unread while B's page is open.
  await recipientPage.goto(ROOM_URL);
  await recipientPage.selectOption("#as", RECIPIENT);
  await recipientPage.click("#join");
  await writable(recipientPage);
  const early = "Are you there?";
  await recipientPage.fill("#text", early);
  await recipientPage.click("#send");
  await senderPage.waitForFunction(() => {
    const unread = document.querySelector("#rooms .unread");
    return unread && unread.textContent === "1" && !unread.classList.contains("zero");
  });

  // A presses Chat.
  await recipientPage.click("#chat-button");
  await statusIncludes(recipientPage, `ringing ${SENDER}`);

  // B rings.
  await senderPage.locator("#ring").waitFor({ state: "visible" });
  const ringText = await senderPage.locator("#ring-text").textContent();
  if (!ringText.includes(RECIPIENT)) throw new Error(`ring text ${JSON.stringify(ringText)} lacks the caller`);
  await shot(senderPage, "sender-ringing.png");
  await shot(recipientPage, "recipient-ringing.png");

  // B accepts and is taken into the room; A sees the sender join.
  await senderPage.click("#accept");
  await senderPage.waitForURL(/\/c\/\d+\/[^/]+$/);
  await statusIncludes(recipientPage, `${SENDER} joined`);
  await writable(senderPage);

  // Messages both ways; markup stays text.
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

  await shot(recipientPage, "recipient-chat.png");
  await shot(senderPage, "sender-chat.png");
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
