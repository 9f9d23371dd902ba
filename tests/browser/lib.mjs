// What the browser scripts (chat.mjs, mall.mjs) share: their environment, launching headless
// Chromium, collecting the pages' console and script errors, the waits on a chat page, and the
// report of a failed run.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

/** The value of environment variable `name`; exits 2 when it is unset. */
export function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return value;
}

/** Where screenshots go ($SCREENSHOT_DIR, created). */
export const SHOTS = env("SCREENSHOT_DIR");
mkdirSync(SHOTS, { recursive: true });

/** Headless Chromium ($CHROMIUM, default /usr/bin/chromium). */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
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
}

/** The console errors and script errors of the watched pages. */
export const problems = [];

/** Records the console errors and script errors of `page` under `name`. */
export function watch(page, name) {
  page.on("console", (msg) => {
    const url = msg.location()?.url || "";
    // Chromium asks for /favicon.ico on its own; there is none.
    if (msg.type() === "error" && !url.endsWith("/favicon.ico")) {
      problems.push(`${name} console: ${msg.text()} (${url})`);
    }
  });
  page.on("pageerror", (err) => problems.push(`${name} script error: ${err.message}`));
}

/** Throws when a watched page had a problem. */
export function assertNoProblems() {
  if (problems.length) throw new Error(`page problems:\n${problems.join("\n")}`);
}

/** The text of the page's status line. */
export const statusOf = (page) => page.locator("#status").first().textContent();

/** A full-page screenshot of `page` saved as `name`. */
export const shot = (page, name) => page.screenshot({ path: join(SHOTS, name), fullPage: true });

/** Waits until the page's status line starts with `prefix`. */
export const statusStartsWith = (page, prefix) =>
  page.waitForFunction(
    (want) => (document.getElementById("status")?.textContent || "").startsWith(want),
    prefix,
  );

/** Waits until the page's status line includes `text`. */
export const statusIncludes = (page, text) =>
  page.waitForFunction(
    (want) => (document.getElementById("status")?.textContent || "").includes(want),
    text,
  );

/** Waits until the chat page lets its user write. */
export const writable = (page) =>
  page.waitForFunction(() => !document.getElementById("text")?.disabled);

/** Waits until the chat page shows a message with text `text`. */
export const shows = (page, text) =>
  page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li .text")].some((e) => e.textContent === t),
    text,
  );

/**
 * Waits until the chat page of `who` shows exactly the messages `texts`, in order (the author's
 * own copy appears on its ack, which may come a moment after the others get the message).
 */
export async function showsConversation(page, who, texts) {
  const expected = texts.join("|");
  await page
    .waitForFunction(
      (want) => [...document.querySelectorAll("#messages li .text")].map((e) => e.textContent).join("|") === want,
      expected,
      { timeout: 10000 },
    )
    .catch(async () => {
      const seen = await page.$$eval("#messages li .text", (els) => els.map((e) => e.textContent));
      throw new Error(`${who} sees ${JSON.stringify(seen)}`);
    });
}

/**
 * Reports a failed run: the error, the page problems, and for each of `pages` (`[name, page]`,
 * the page possibly unset) a screenshot `${prefix}${name}.png`, its URL and its status line.
 */
export async function reportFailure(err, pages, prefix) {
  console.error(`FAILED: ${err && err.stack ? err.stack : err}`);
  for (const p of problems) console.error(p);
  for (const [name, page] of pages) {
    if (page) {
      try {
        await shot(page, `${prefix}${name}.png`);
        console.error(`${name} at ${page.url()}: ${await statusOf(page)}`);
      } catch (_) {
        // the page is gone
      }
    }
  }
}
