// The mall's inquiry loop in a real headless Chromium (driven by chatd/tests/mall_browser.rs,
// which starts chatd with the demo data, reads the mails chatd sends and passes their links on
// this script's standard input):
//
// - context A, a visitor, opens the home page and a product, joins from the product page, and
//   confirms the address with the mailed link (first line on stdin), which brings them back to
//   the product; they ask a question and land on their inquiry page, online;
// - A browses on to the mall's home page, which keeps them online and links their chats;
// - context B, the ad's host, signs in with a sign-in link and opens the CHmail-Link of the
//   mailed question (second line on stdin): in the chat as themselves at once, the member named,
//   the question first; the host presses Ring;
// - A's mall page rings; A accepts and is taken into the chat; both exchange messages (as text,
//   never as HTML); axe-core checks both chat pages;
// - A goes back to the mall; B writes again; the bar's badge counts it at once and leads to
//   A's chats (/me), where the room shows it unread;
// - B leaves; A opens the chat again and writes: the follow-up goes out to the host by mail
//   (the test checks the mail), with no note that it reaches nobody;
// - screenshots of the home page, the product page, the ringing mall page and both chat pages
//   go to $SCREENSHOT_DIR.
//
// Environment: BASE_URL, PRODUCT_PATH, HOST_SIGNIN_URL, MEMBER, HOST, SCREENSHOT_DIR, CHROMIUM
// (default /usr/bin/chromium). Prints "OK" as its last line on success; exits 1 otherwise.

import { createInterface } from "node:readline";
import {
  assertAccessible,
  assertNoProblems,
  env,
  launch,
  reportFailure,
  screen,
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

const BASE_URL = env("BASE_URL");
const PRODUCT_PATH = env("PRODUCT_PATH");
const HOST_SIGNIN_URL = env("HOST_SIGNIN_URL");
const MEMBER = env("MEMBER");
const HOST = env("HOST");
const PASSWORD = "a long enough password";
const MEMBER_NAME = "Ana Lima";
const QUESTION = "Does it hold a whole litre? <b>Tell me</b>";
// The member's message after the host left: the test expects it in a mail to the host.
const FOLLOW_UP = "Is it waterproof?";

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

const browser = await launch();

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
  await memberPage.fill("#name", MEMBER_NAME);
  await memberPage.fill("#password", PASSWORD);
  await memberPage.click("#signup");
  await memberPage.getByRole("heading", { name: "Check your mail" }).waitFor();
  const confirmUrl = await nextLine("confirm link");
  await memberPage.goto(confirmUrl);
  await memberPage.fill("#password", PASSWORD);
  await memberPage.click("#confirm");
  await memberPage.waitForURL((url) => url.pathname === PRODUCT_PATH);

  // A asks and lands on the inquiry page, online.
  await memberPage.fill("#question", QUESTION);
  await memberPage.click("#ask-button");
  await memberPage.waitForURL(/\/mall\/inquiry\/\d+$/);
  await statusStartsWith(memberPage, "Online");

  // A browses on: every mall page keeps a signed-in member online, with their chats in the bar.
  await memberPage.goto(`${BASE_URL}/mall`);
  await memberPage.locator("#my-chats").waitFor();
  await memberPage.waitForFunction(() => document.body.dataset.online === "true");

  // B: the host signs in with a link and opens the mailed CHmail-Link: signed in, the host is
  // in the chat as themselves at once (no address to choose, no code to prove it), the member
  // named, the question as the chat's first item. The member is online: Ring is offered.
  const chatLink = await nextLine("CHmail-Link");
  await hostPage.goto(HOST_SIGNIN_URL);
  await hostPage.click("#signin");
  // A host's sign-in lands on their shop.
  await hostPage.waitForURL(/\/mall\/host$/);
  await hostPage.goto(chatLink);
  await writable(hostPage);
  if (await hostPage.$("#whoami")) throw new Error("a signed-in host was asked who they are");
  const title = await hostPage.locator("#title").textContent();
  if (title !== MEMBER_NAME) throw new Error(`the host's chat is headed ${JSON.stringify(title)}`);
  const opening = await hostPage.locator("#opening").textContent();
  if (!opening.includes(QUESTION)) throw new Error(`the first item is ${JSON.stringify(opening)}`);
  await assertAccessible(hostPage, "host, in the chat (desktop)");
  await hostPage.locator("#chat-button").waitFor({ state: "visible" });
  await hostPage.click("#chat-button");
  await statusIncludes(hostPage, `Ringing ${MEMBER_NAME}`);

  // A's mall page rings; A accepts and is taken into the chat.
  await memberPage.locator("#ring").waitFor({ state: "visible" });
  const ringText = await memberPage.locator("#ring-text").textContent();
  if (!ringText.includes(HOST)) throw new Error(`ring text ${JSON.stringify(ringText)} lacks the host`);
  await shot(memberPage, "mall-member-ringing.png");
  await memberPage.click("#accept");
  await memberPage.waitForURL(/\/c\/\d+\/[^/]+$/);
  await statusIncludes(hostPage, `${MEMBER_NAME} joined`);
  await writable(memberPage);
  const memberOpening = await memberPage.locator("#opening").textContent();
  if (!memberOpening.includes(QUESTION) || !memberOpening.includes("You wrote")) {
    throw new Error(`the member's first item is ${JSON.stringify(memberOpening)}`);
  }

  // Messages both ways; markup stays text.
  const answer = "Yes: 0.9 litres, <i>lid</i> included.";
  await hostPage.fill("#text", answer);
  await hostPage.click("#send");
  await shows(memberPage, answer);
  const thanks = "Great, I will take it!";
  await memberPage.fill("#text", thanks);
  await memberPage.press("#text", "Enter");
  await shows(hostPage, thanks);
  if ((await memberPage.$$("#messages i")).length !== 0) throw new Error("chat text was rendered as HTML");
  await showsConversation(memberPage, "member", [answer, thanks]);
  await showsConversation(hostPage, "host", [answer, thanks]);
  const shopName = await memberPage.locator("#messages .author").first().textContent();
  if (shopName.includes("@")) throw new Error(`the member sees the shop as ${JSON.stringify(shopName)}`);
  await assertAccessible(memberPage, "member, in the chat (phone)");
  await screen(memberPage, "mall-member-chat.png");
  await screen(hostPage, "mall-host-chat.png");

  // A goes back to the mall; B writes again; A's badge counts it and leads to A's chats.
  const memberChat = memberPage.url();
  await memberPage.goto(`${BASE_URL}/mall`);
  await memberPage.waitForFunction(() => document.body.dataset.online === "true");
  const later = "Shall I send it today?";
  await hostPage.fill("#text", later);
  await hostPage.click("#send");
  await memberPage.waitForFunction(() => document.getElementById("unread-total").textContent === "1");
  await memberPage.locator("#unread-total").waitFor({ state: "visible" });
  await memberPage.click("#my-chats");
  await memberPage.waitForURL((url) => url.pathname === "/me");
  await memberPage.locator('#rooms .unread[data-count="1"]').waitFor();
  await memberPage.locator("#to-mall").waitFor();

  // The host leaves; the member comes back to the chat and follows up: it reaches the host by
  // mail (the test reads it), with no note that it reaches nobody.
  await hostPage.goto(`${BASE_URL}/mall/host`);
  await memberPage.goto(memberChat);
  await writable(memberPage);
  await shows(memberPage, later);
  await memberPage.fill("#text", FOLLOW_UP);
  await memberPage.press("#text", "Enter");
  await memberPage.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li.mine")].some((li) => li.textContent.includes(t) && li.dataset.state === "sent"),
    FOLLOW_UP,
  );
  if ((await memberPage.$$("#messages .reach")).length !== 0) {
    throw new Error(`the follow-up says: ${await memberPage.locator("#messages .reach").textContent()}`);
  }
  assertNoProblems();
  console.log(`member status: ${await statusOf(memberPage)}`);
  console.log(`screenshots in ${SHOTS}`);
  console.log("OK");
} catch (err) {
  await reportFailure(err, [["member", memberPage], ["host", hostPage]], "mall-failure-");
  exitCode = 1;
}
await browser.close();
stdin.close();
process.exit(exitCode);
