// The mall's inquiry loop in a real headless Chromium (driven by chatd/tests/mall_browser.rs,
// which starts chatd with the demo data, reads the mails chatd sends and passes their links on
// this script's standard input):
//
// - context A, a visitor, opens the home page and a product, joins from the product page, and
//   confirms the address with the mailed link (first line on stdin), which brings them back to
//   the product; they ask a question and land on their inquiry page, online;
// - context B, the ad's host, signs in with a sign-in link, opens the CHmail-Link of the mailed
//   question (second line on stdin), picks their address and presses Chat;
// - A's page rings; A accepts and is taken into the chat; both exchange messages (as text,
//   never as HTML);
// - screenshots of the home page, the product page, the ringing inquiry page and both chat pages
//   go to $SCREENSHOT_DIR.
//
// Environment: BASE_URL, PRODUCT_PATH, HOST_SIGNIN_URL, MEMBER, HOST, SCREENSHOT_DIR, CHROMIUM
// (default /usr/bin/chromium). Prints "OK" as its last line on success; exits 1 otherwise.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return value;
};
const BASE_URL = env("BASE_URL");
const PRODUCT_PATH = env("PRODUCT_PATH");
const HOST_SIGNIN_URL = env("HOST_SIGNIN_URL");
const MEMBER = env("MEMBER");
const HOST = env("HOST");
const SHOTS = env("SCREENSHOT_DIR");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const PASSWORD = "a long enough password";

mkdirSync(SHOTS, { recursive: true });

// The links chatd mails, one a line, written by the test when the mail has been sent.
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
async function nextLine(what) {
  console.log(`waiting for ${what}`);
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`no ${what} on stdin`)), 30000),
  );
  const { value, done } = await Promise.race([lines.next(), timeout]);
  if (done || !value) throw new Error(`stdin ended before the ${what}`);
  return value.trim();
}

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

const statusOf = (page) => page.locator("#status").first().textContent();
const shot = (page, name) => page.screenshot({ path: join(SHOTS, name), fullPage: true });
// Pictures below the fold load lazily: load them all before a full-page screenshot.
async function loadPictures(page) {
  await page.evaluate(() => {
    for (const img of document.images) img.loading = "eager";
  });
  await page.waitForFunction(() => [...document.images].every((i) => i.complete && i.naturalWidth > 0));
}

let memberPage;
let hostPage;
let exitCode = 0;
try {
  // A phone-sized visitor and a desktop-sized host.
  const a = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const b = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  a.setDefaultTimeout(20000);
  b.setDefaultTimeout(20000);
  memberPage = await a.newPage();
  hostPage = await b.newPage();
  watch(memberPage, "member");
  watch(hostPage, "host");

  // A: the home page and the product.
  await memberPage.goto(`${BASE_URL}/mall`);
  await memberPage.locator(".product").first().waitFor();
  await loadPictures(memberPage);
  await shot(memberPage, "mall-home.png");
  await memberPage.goto(`${BASE_URL}${PRODUCT_PATH}`);
  await memberPage.locator("#ask-join").waitFor();
  await loadPictures(memberPage);
  await shot(memberPage, "mall-product.png");

  // A joins from the product page and confirms by the mailed link, which brings them back.
  await memberPage.click("#ask-join");
  await memberPage.waitForURL(/\/mall\/signup\?next=/);
  await memberPage.fill("#address", MEMBER);
  await memberPage.fill("#name", "Ana Lima");
  await memberPage.fill("#password", PASSWORD);
  await memberPage.click("#signup");
  await memberPage.getByRole("heading", { name: "Check your mail" }).waitFor();
  const confirmUrl = await nextLine("confirm link");
  await memberPage.goto(confirmUrl);
  await memberPage.click("#confirm");
  await memberPage.waitForURL((url) => url.pathname === PRODUCT_PATH);

  // A asks and lands on the inquiry page, online.
  await memberPage.fill("#question", "Does it hold a whole litre? <b>Tell me</b>");
  await memberPage.click("#ask-button");
  await memberPage.waitForURL(/\/mall\/inquiry\/\d+$/);
  await memberPage.waitForFunction(() =>
    (document.getElementById("status")?.textContent || "").startsWith("Online"),
  );

  // B: the host signs in with a link, opens the mailed CHmail-Link and presses Chat.
  const chatLink = await nextLine("CHmail-Link");
  await hostPage.goto(HOST_SIGNIN_URL);
  await hostPage.click("#signin");
  await hostPage.waitForURL(/\/me$/);
  await hostPage.goto(chatLink);
  await hostPage.selectOption("#as", HOST);
  await hostPage.click("#join");
  await hostPage.waitForFunction(() => !document.getElementById("text")?.disabled);
  await hostPage.click("#chat-button");
  await hostPage.waitForFunction(
    (member) => (document.getElementById("status")?.textContent || "").includes(`ringing ${member}`),
    MEMBER,
  );

  // A's inquiry page rings; A accepts and is taken into the chat.
  await memberPage.locator("#ring").waitFor({ state: "visible" });
  const ringText = await memberPage.locator("#ring-text").textContent();
  if (!ringText.includes(HOST)) throw new Error(`ring text ${JSON.stringify(ringText)} lacks the host`);
  await shot(memberPage, "mall-member-ringing.png");
  await memberPage.click("#accept");
  await memberPage.waitForURL(/\/c\/\d+\/[^/]+$/);
  await hostPage.waitForFunction(
    (member) => (document.getElementById("status")?.textContent || "").includes(`${member} joined`),
    MEMBER,
  );
  await memberPage.waitForFunction(() => !document.getElementById("text")?.disabled);

  // Messages both ways; markup stays text.
  const answer = "Yes: 0.9 litres, <i>lid</i> included.";
  await hostPage.fill("#text", answer);
  await hostPage.click("#send");
  await memberPage.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li .text")].some((e) => e.textContent === t),
    answer,
  );
  const thanks = "Great, I will take it!";
  await memberPage.fill("#text", thanks);
  await memberPage.press("#text", "Enter");
  await hostPage.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li .text")].some((e) => e.textContent === t),
    thanks,
  );
  if ((await memberPage.$$("#messages i")).length !== 0) throw new Error("chat text was rendered as HTML");
  const expected = [answer, thanks].join("|");
  for (const [who, page] of [["member", memberPage], ["host", hostPage]]) {
    await page.waitForFunction(
      (want) => [...document.querySelectorAll("#messages li .text")].map((e) => e.textContent).join("|") === want,
      expected,
      { timeout: 10000 },
    ).catch(async () => {
      const seen = await page.$$eval("#messages li .text", (els) => els.map((e) => e.textContent));
      throw new Error(`${who} sees ${JSON.stringify(seen)}`);
    });
  }

  await shot(memberPage, "mall-member-chat.png");
  await shot(hostPage, "mall-host-chat.png");
  if (problems.length) throw new Error(`page problems:\n${problems.join("\n")}`);
  console.log(`host status: ${await statusOf(hostPage)}`);
  console.log(`screenshots in ${SHOTS}`);
  console.log("OK");
} catch (err) {
  console.error(`FAILED: ${err && err.stack ? err.stack : err}`);
  for (const p of problems) console.error(p);
  for (const [name, page] of [["member", memberPage], ["host", hostPage]]) {
    if (page) {
      try {
        await shot(page, `mall-failure-${name}.png`);
        console.error(`${name} at ${page.url()}: ${await statusOf(page)}`);
      } catch (_) {
        // the page is gone
      }
    }
  }
  exitCode = 1;
}
await browser.close();
stdin.close();
process.exit(exitCode);
