// What the browser scripts (chat.mjs, mall.mjs) share: their environment, launching headless
// Chromium, collecting the pages' console and script errors, the waits on a chat page, and the
// report of a failed run.

import { mkdirSync, readFileSync } from "node:fs";
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

/** A screenshot of what the screen of `page` shows (a chat fills the screen; no more to see). */
export const screen = (page, name) => page.screenshot({ path: join(SHOTS, name) });

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

/** The source of axe-core, run in a page to check its accessibility. */
const AXE = readFileSync(new URL("./node_modules/axe-core/axe.min.js", import.meta.url), "utf8");

/**
 * Runs axe-core on `page` (`label` names the state in the report) and throws on any violation of
 * impact serious or critical. axe is evaluated through the driver, so the page's content security
 * policy (no inline script) stays as it is.
 */
export async function assertAccessible(page, label) {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const result = await axe.run(document, { resultTypes: ["violations"] });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
  });
  if (violations.length) throw new Error(`axe on ${label}:\n${violations.join("\n")}`);
  console.log(`axe: ${label}: no serious or critical violation`);
}

/** Throws unless the element `selector` of `page` lies wholly inside the viewport. */
export async function assertInView(page, selector, label) {
  const box = await page.evaluate((sel) => {
    const els = document.querySelectorAll(sel);
    const el = els[els.length - 1];
    if (!el) return null;
    const r = el.getBoundingClientRect();
    return { top: r.top, bottom: r.bottom, height: window.innerHeight };
  }, selector);
  if (!box) throw new Error(`${label}: no ${selector}`);
  if (box.top < 0 || box.bottom > box.height + 0.5) {
    throw new Error(`${label}: ${selector} is out of view (${box.top}..${box.bottom} of ${box.height})`);
  }
}

/**
 * Makes `page` behave as a hidden tab: `document.visibilityState` says "hidden" until
 * `setHidden(page, false)`; the page hears `visibilitychange` both ways.
 */
export async function setHidden(page, hidden) {
  await page.evaluate((h) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (h ? "hidden" : "visible") });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => h });
    document.dispatchEvent(new Event("visibilitychange"));
  }, hidden);
}

/** Records every system notification the pages of `context` show, in `window.__notes`. */
export async function recordNotifications(context) {
  await context.addInitScript(() => {
    const Real = window.Notification;
    if (!Real) return;
    window.__notes = [];
    class Recorded extends Real {
      constructor(title, options) {
        super(title, options);
        window.__notes.push({ title, body: (options && options.body) || "" });
      }
    }
    Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
    Recorded.requestPermission = (...args) => Real.requestPermission(...args);
    window.Notification = Recorded;
  });
}
