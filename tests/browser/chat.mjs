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

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return value;
};
const ROOM_URL = env("ROOM_URL");
const SIGNIN_URL = env("SIGNIN_URL");
const RECIPIENT = env("RECIPIENT");
const SENDER = env("SENDER");
const SHOTS = env("SCREENSHOT_DIR");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

const problems = [];
function watch(page, name) {
  page.on("console", (msg) => {
    const url = msg.location()?.url || "";
    // Chromium asks for /favicon.ico on its own; there is none.
    if (msg.type() === "error" && !url.endsWith("/favicon.ico")) {
      problems.push(`${name} console: ${msg.text()} (${url})`);
    }
  });
  page.on("pageerror", (err) => problems.push(`${name} script error: ${err.message}`));
}

const statusOf = (page) => page.locator("#status").textContent();
const texts = (page) =>
  page.$$eval("#messages li:not(.pending) .text", (els) => els.map((e) => e.textContent));

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
  await senderPage.waitForFunction(() =>
    (document.getElementById("status")?.textContent || "").startsWith("Online"),
  );

  // A: the recipient opens the link, says who they are and writes first; B's list counts the
  // message as unread while B's page is open.
  await recipientPage.goto(ROOM_URL);
  await recipientPage.selectOption("#as", RECIPIENT);
  await recipientPage.click("#join");
  await recipientPage.waitForFunction(() => !document.getElementById("text")?.disabled);
  const early = "Are you there?";
  await recipientPage.fill("#text", early);
  await recipientPage.click("#send");
  await senderPage.waitForFunction(() => {
    const unread = document.querySelector("#rooms .unread");
    return unread && unread.textContent === "1" && !unread.classList.contains("zero");
  });

  // A presses Chat.
  await recipientPage.click("#chat-button");
  await recipientPage.waitForFunction(
    (sender) => (document.getElementById("status")?.textContent || "").includes(`ringing ${sender}`),
    SENDER,
  );

  // B rings.
  await senderPage.locator("#ring").waitFor({ state: "visible" });
  const ringText = await senderPage.locator("#ring-text").textContent();
  if (!ringText.includes(RECIPIENT)) throw new Error(`ring text ${JSON.stringify(ringText)} lacks the caller`);
  await senderPage.screenshot({ path: join(SHOTS, "sender-ringing.png"), fullPage: true });
  await recipientPage.screenshot({ path: join(SHOTS, "recipient-ringing.png"), fullPage: true });

  // B accepts and is taken into the room; A sees the sender join.
  await senderPage.click("#accept");
  await senderPage.waitForURL(/\/c\/\d+\/[^/]+$/);
  await recipientPage.waitForFunction(
    (sender) => (document.getElementById("status")?.textContent || "").includes(`${sender} joined`),
    SENDER,
  );
  await senderPage.waitForFunction(() => !document.getElementById("text")?.disabled);

  // Messages both ways; markup stays text.
  const hello = "Hello from the recipient";
  await recipientPage.fill("#text", hello);
  await recipientPage.click("#send");
  await senderPage.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li .text")].some((e) => e.textContent === t),
    hello,
  );
  const reply = "Hi! <b>not bold</b> & fine";
  await senderPage.fill("#text", reply);
  await senderPage.press("#text", "Enter");
  await recipientPage.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li .text")].some((e) => e.textContent === t),
    reply,
  );
  if ((await recipientPage.$$("#messages b")).length !== 0) throw new Error("chat text was rendered as HTML");
  // The author's own copy appears on its ack, which may come a moment after the others get the
  // message: wait for both pages to show the whole conversation, in order.
  const expected = [early, hello, reply].join("|");
  for (const [who, page] of [["recipient", recipientPage], ["sender", senderPage]]) {
    try {
      await page.waitForFunction(
        (want) => [...document.querySelectorAll("#messages li .text")].map((e) => e.textContent).join("|") === want,
        expected,
        { timeout: 10000 },
      );
    } catch {
      throw new Error(`${who} sees ${JSON.stringify(await texts(page))}`);
    }
  }

  await recipientPage.screenshot({ path: join(SHOTS, "recipient-chat.png"), fullPage: true });
  await senderPage.screenshot({ path: join(SHOTS, "sender-chat.png"), fullPage: true });
  const status = await statusOf(recipientPage);
  if (problems.length) throw new Error(`page problems:\n${problems.join("\n")}`);
  console.log(`recipient status: ${status}`);
  console.log(`screenshots in ${SHOTS}`);
  console.log("OK");
} catch (err) {
  console.error(`FAILED: ${err && err.stack ? err.stack : err}`);
  for (const p of problems) console.error(p);
  for (const [name, page] of [["recipient", recipientPage], ["sender", senderPage]]) {
    if (page) {
      try {
        await page.screenshot({ path: join(SHOTS, `failure-${name}.png`), fullPage: true });
        console.error(`${name} status: ${await statusOf(page)}`);
      } catch (_) {
        // the page is gone
      }
    }
  }
  await browser.close();
  process.exit(1);
}
await browser.close();
