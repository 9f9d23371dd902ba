// Unit tests of the add-on's header parsing: `node --test contrib/thunderbird/test/` (no npm install).
// SPDX-License-Identifier: GPL-3.0-or-later

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { parseChmail, parseLink, chatUrl, linkMatches } from "../chmail.js";

// The test vector "fields" of docs/header.md, copied (continuation lines begin with one tab).
const VECTOR_FIELDS = `CHmail: v=1; d=example.com; s=sel1; l=alice@example.com; h=chat.example.com;
	p=20417; r=Xk3Fq9LmZ2pT7vRw4sYb8A; t=1700000000;
	b=7/MtL+CyY0Io0vV5IH+aBHzW7tYqOMR7O5xvcsDtqqJaEtstWjP3O14Zuh6p+594pp4BNJzipXL
	DmA8Wv41xCA==
CHmail-Link: <https://chat.example.com/c/20417/Xk3Fq9LmZ2pT7vRw4sYb8A>`;

const SIG = "7/MtL+CyY0Io0vV5IH+aBHzW7tYqOMR7O5xvcsDtqqJaEtstWjP3O14Zuh6p+594pp4BNJzipXLDmA8Wv41xCA==";
const ROOM = "Xk3Fq9LmZ2pT7vRw4sYb8A";
const LINK = `https://chat.example.com/c/20417/${ROOM}`;

/** The field bodies of VECTOR_FIELDS, split at unfolded line starts, with LF or CRLF folds. */
function fields(text, eol = "\n") {
  const out = {};
  for (const field of text.split(/\n(?![ \t])/)) {
    const colon = field.indexOf(":");
    out[field.slice(0, colon).toLowerCase()] = field.slice(colon + 1).replace(/^ /, "").split("\n").join(eol);
  }
  return out;
}

const VECTOR = fields(VECTOR_FIELDS);
const EXPECTED = {
  v: 1,
  d: "example.com",
  s: "sel1",
  l: "alice@example.com",
  h: "chat.example.com",
  p: 20417,
  r: ROOM,
  t: 1700000000,
  b: SIG,
};

/** A header from tags, in the writer's order unless given otherwise. */
function header(tags) {
  return Object.entries(tags)
    .map(([k, v]) => `${k}=${v}`)
    .join("; ");
}
const TAGS = { v: "1", d: "example.com", s: "sel1", l: "alice@example.com", h: "chat.example.com", p: "20417", r: ROOM, t: "1700000000", b: SIG };
const withTags = (changes) => header({ ...TAGS, ...changes });
const without = (name) => header(Object.fromEntries(Object.entries(TAGS).filter(([k]) => k !== name)));

function assertError(value, pattern) {
  const got = parseChmail(value);
  assert.ok(got.error, `expected an error for ${JSON.stringify(value)}, got ${JSON.stringify(got)}`);
  if (pattern) assert.match(got.error, pattern);
}

test("the copied vector is still the one in docs/header.md", (t) => {
  const doc = fileURLToPath(new URL("../../../docs/header.md", import.meta.url));
  if (!existsSync(doc)) return t.skip("docs/header.md is not next to this checkout");
  const md = readFileSync(doc, "utf8");
  const m = /<!-- vector:fields -->\n```text\n([\s\S]*?)\n```/.exec(md);
  assert.ok(m, "the vector:fields block in docs/header.md");
  assert.equal(m[1], VECTOR_FIELDS);
});

test("the test vector header parses to its values", () => {
  assert.deepEqual(parseChmail(VECTOR.chmail), EXPECTED);
});

test("the test vector with CRLF folds and a final CRLF parses", () => {
  const crlf = fields(VECTOR_FIELDS, "\r\n");
  assert.ok(crlf.chmail.includes("\r\n\t"));
  assert.deepEqual(parseChmail(crlf.chmail + "\r\n"), EXPECTED);
});

test("folds with spaces, tabs and whitespace around tags, names and values parse", () => {
  const value = " v = 1 ;\r\n d=example.com;\t" +
    `s=sel1; l=alice@example.com;\r\n\th=chat.example.com; p=20417;\n r=${ROOM}; t=1700000000;\r\n\tb=${SIG.slice(0, 40)}\r\n\t ${SIG.slice(40)} ;`;
  assert.deepEqual(parseChmail(value), EXPECTED);
});

test("tags in any order and without the trailing ';' parse", () => {
  const value = header({ b: SIG, t: "1700000000", r: ROOM, p: "20417", h: "chat.example.com", l: "alice@example.com", s: "sel1", d: "example.com", v: "1" });
  assert.deepEqual(parseChmail(value), EXPECTED);
});

test("an unfolded header as a mail client may hand it over parses", () => {
  assert.deepEqual(parseChmail(VECTOR.chmail.replace(/\n\t/g, " ").replace(/XL DmA8/, "XLDmA8")), EXPECTED);
});

test("each missing tag is an error", () => {
  for (const name of Object.keys(TAGS)) {
    assertError(without(name), new RegExp(`tag ${name}= is missing`));
  }
});

test("each duplicated tag is an error", () => {
  for (const [name, value] of Object.entries(TAGS)) {
    assertError(`${withTags({})}; ${name}=${value}`, new RegExp(`tag ${name}= appears more than once`));
  }
});

test("unknown tags are rejected, even ones DKIM would ignore", () => {
  assertError(`${withTags({})}; x=1`, /x= is not defined/);
  assertError(`${withTags({})}; i=@example.com`, /i= is not defined/);
  assertError(`${withTags({})}; f=alice@example.com`, /f= is not defined/);
  // Tag names are case-sensitive: V= is not v=.
  assertError(`V=1; ${without("v")}`, /v= is missing/);
});

test("only v=1 is supported, and v is checked first", () => {
  assertError(withTags({ v: "2" }), /unsupported CHmail version v=2/);
  assertError(withTags({ v: "01" }), /unsupported/);
  assertError(withTags({ v: "1.0" }), /unsupported/);
  // A v=2 header may have other tags: the version error comes first.
  assertError(`v=2; q=new; ${without("v")}`, /unsupported CHmail version/);
});

test("bad ports are rejected", () => {
  for (const p of ["0", "65536", "99999", "020417", "+20417", "-1", "2041a", "123456", ""]) {
    assertError(withTags({ p }), p === "" ? /p=/ : /tag p= is not a port/);
  }
  assert.equal(parseChmail(withTags({ p: "1" })).p, 1);
  assert.equal(parseChmail(withTags({ p: "65535" })).p, 65535);
});

test("bad room ids are rejected: alphabet A-Z a-z 0-9 _ - and 22 to 64 characters", () => {
  assertError(withTags({ r: "a".repeat(21) }), /tag r= is not a room id/);
  assertError(withTags({ r: "a".repeat(65) }), /tag r= is not a room id/);
  for (const bad of ["+", "/", "=", ".", "%41", "é"]) {
    assertError(withTags({ r: "a".repeat(22) + bad }));
  }
  assert.equal(parseChmail(withTags({ r: "a".repeat(22) })).r, "a".repeat(22));
  assert.equal(parseChmail(withTags({ r: "A-_z".repeat(16) })).r, "A-_z".repeat(16));
});

test("bad signatures are rejected: strict base64 of exactly 64 bytes", () => {
  assertError(withTags({ b: SIG.slice(0, -2) }), /not valid base64/); // padding missing
  assertError(withTags({ b: SIG.replace("+", "-") }), /not valid base64/); // URL-safe alphabet
  assertError(withTags({ b: SIG.replace("CA==", "CB==") }), /not valid base64/); // trailing bits
  assertError(withTags({ b: "AAAA" }), /holds 3 bytes/);
  assertError(withTags({ b: SIG.slice(0, -4) + "CAA=" }), /holds 65 bytes/);
  assertError(withTags({ b: "" }), /base64|holds 0 bytes/);
  // Whitespace inside b is folding whitespace only: a no-break space is non-ASCII, so an error.
  assertError(withTags({ b: SIG.slice(0, 40) + "\u00a0" + SIG.slice(40) }), /non-ASCII/);
  assert.equal(parseChmail(withTags({ b: SIG.slice(0, 40) + " \t " + SIG.slice(40) })).b, SIG);
});

test("bad d, s, l, h and t values are rejected", () => {
  assertError(withTags({ d: "exa_mple.com" }), /tag d=/);
  assertError(withTags({ d: "example..com" }), /tag d=/);
  assertError(withTags({ d: "a".repeat(64) + ".com" }), /tag d=/);
  assertError(withTags({ s: "s".repeat(64) }), /tag s=/);
  // Host names: no hyphen first or last in a label, and a key name DNS can hold.
  assertError(withTags({ d: "-x.bank.example" }), /tag d=/);
  assertError(withTags({ d: "bank-.example" }), /tag d=/);
  assertError(withTags({ s: "-s1" }), /tag s=/);
  assert.equal(parseChmail(withTags({ d: "x-y.example.com" })).d, "x-y.example.com");
  const long = `${"b".repeat(63)}.${"b".repeat(63)}.${"b".repeat(55)}`;
  assertError(withTags({ s: "a".repeat(63), d: long }), /key record name .* 255 characters/);
  assertError(withTags({ l: "x".repeat(321) }), /tag l=/);
  assertError(withTags({ l: "a\u0000b" }), /control character/);
  assertError(withTags({ l: "alice@exämple.com" }), /non-ASCII/);
  for (const h of ["https://chat.example.com", "chat.example.com:0", "chat.example.com:65536", "chat.example.com:", "[2001:db8::1", "[]", "a:1:2"]) {
    assertError(withTags({ h }), /tag h=/);
  }
  assertError(withTags({ t: "-1" }), /tag t=/);
  assertError(withTags({ t: "18446744073709551616" }), /tag t=/);
  assert.equal(parseChmail(withTags({ t: "0" })).t, 0);
  assert.equal(parseChmail(withTags({ h: "[2001:db8::1]:8443" })).h, "[2001:db8::1]:8443");
});

test("whitespace inside values other than b is rejected", () => {
  assertError(withTags({ d: "example .com" }), /tag d=/);
  assertError(withTags({ l: "alice @example.com" }), /tag l=/);
});

test("garbage is rejected, never thrown", () => {
  const garbage = [
    "",
    "   ",
    "\r\n",
    "hello world",
    ";",
    ";;",
    "v=1;;",
    `${withTags({})};;`,
    "=1",
    "v",
    "<https://chat.example.com/c/20417/" + ROOM + ">",
    withTags({}).replace("; t=", ";\r\nt="), // a line break that is not a fold
    withTags({}).replace("; t=", ";\nt="),
    withTags({}).replace("; t=", ";\rt="),
    withTags({}).replace("; t=", "; t=") + "\r\n\r\n",
    "v=1\u0000",
    "x".repeat(5000),
    `${withTags({})} ${"\t".repeat(4096)}`,
  ];
  for (const g of garbage) assertError(g);
  for (const notText of [undefined, null, 42, {}, ["v=1"]]) assert.ok(parseChmail(notText).error);
});

test("parseLink takes <URL>, folded or not, and gives the URL", () => {
  assert.equal(parseLink(VECTOR["chmail-link"]), LINK);
  assert.equal(parseLink(` <${LINK}>\r\n`), LINK);
  assert.equal(parseLink(`\r\n\t<${LINK}>`), LINK);
  assert.equal(parseLink(`<https://Chat.Example.COM:8443/base/c/1/${ROOM}>`), `https://chat.example.com:8443/base/c/1/${ROOM}`);
  assert.equal(parseLink(`<http://localhost:8080/c/1/${ROOM}>`), `http://localhost:8080/c/1/${ROOM}`);
  assert.equal(parseLink(`<http://127.0.0.1:8080/c/1/${ROOM}>`), `http://127.0.0.1:8080/c/1/${ROOM}`);
  assert.equal(parseLink(`<http://[::1]:8080/c/1/${ROOM}>`), `http://[::1]:8080/c/1/${ROOM}`);
});

test("parseLink refuses what is not a plain https link", () => {
  for (const bad of [
    LINK, // no angle brackets
    `<${LINK}`,
    `<${LINK}> <${LINK}>`,
    `<http://chat.example.com/c/20417/${ROOM}>`, // http to a remote host
    `<javascript:alert(1)>`,
    `<data:text/html,hi>`,
    `<file:///etc/passwd>`,
    `<ftp://chat.example.com/c/20417/${ROOM}>`,
    `<https://evil@chat.example.com/c/20417/${ROOM}>`,
    `<https://chat.example.com/c/20417/${ROOM}?x=1>`,
    `<https://chat.example.com/c/20417/${ROOM}#x>`,
    `<https://chat.example.com/c/20417/${ROOM}?>`,
    `<https://chat.example.com/c/20417/\r\n\t${ROOM}>`, // whitespace inside
    `<https://chät.example.com/c/20417/${ROOM}>`,
    `<https://chat.example.com\r/c/20417/${ROOM}>`,
    "<>",
    "",
    undefined,
  ]) {
    assert.equal(parseLink(bad), null, JSON.stringify(bad));
  }
});

test("chatUrl gives the link of the test vector", () => {
  assert.equal(chatUrl({ chmail: [VECTOR.chmail], "chmail-link": [VECTOR["chmail-link"]] }), LINK);
  // A single string instead of an array works too.
  assert.equal(chatUrl({ chmail: VECTOR.chmail, "chmail-link": VECTOR["chmail-link"] }), LINK);
});

test("chatUrl refuses a link that does not match its header", () => {
  const mismatched = [
    `<https://evil.example.net/c/20417/${ROOM}>`, // other host
    `<https://chat.example.com.evil.example.net/c/20417/${ROOM}>`,
    `<https://evil.example.net/chat.example.com/c/20417/${ROOM}>`,
    `<https://chat.example.com:8443/c/20417/${ROOM}>`, // other port
    `<https://chat.example.com/c/20418/${ROOM}>`, // other chat port
    `<https://chat.example.com/c/20417/Xk3Fq9LmZ2pT7vRw4sYb8B>`, // other room
    `<https://chat.example.com/c/20417/${ROOM}x>`,
    `<https://chat.example.com/c/20417/${ROOM}/>`,
    `<https://chat.example.com/c/20417/%58k3Fq9LmZ2pT7vRw4sYb8A>`,
    `<http://chat.example.com/c/20417/${ROOM}>`, // http to a remote host
  ];
  for (const link of mismatched) {
    assert.equal(chatUrl({ chmail: [VECTOR.chmail], "chmail-link": [link] }), null, link);
  }
});

test("chatUrl matches ports, base paths, case and IPv6 the way the browser resolves them", () => {
  const url = (h, link) => chatUrl({ chmail: [withTags({ h })], "chmail-link": [`<${link}>`] });
  assert.equal(url("chat.example.com:8443", `https://chat.example.com:8443/c/20417/${ROOM}`), `https://chat.example.com:8443/c/20417/${ROOM}`);
  assert.equal(url("chat.example.com:8443", `https://chat.example.com/c/20417/${ROOM}`), null);
  assert.equal(url("chat.example.com:443", `https://chat.example.com/c/20417/${ROOM}`), `https://chat.example.com/c/20417/${ROOM}`);
  assert.equal(url("Chat.Example.com", `https://chat.example.com/base/c/20417/${ROOM}`), `https://chat.example.com/base/c/20417/${ROOM}`);
  assert.equal(url("[2001:DB8:0::1]:8443", `https://[2001:db8::1]:8443/c/20417/${ROOM}`), `https://[2001:db8::1]:8443/c/20417/${ROOM}`);
  assert.equal(url("localhost:8080", `http://localhost:8080/c/20417/${ROOM}`), `http://localhost:8080/c/20417/${ROOM}`);
  assert.equal(url("localhost:8080", `http://localhost/c/20417/${ROOM}`), null);
  assert.equal(url("localhost", `http://localhost:8080/c/20417/${ROOM}`), null);
  assert.equal(linkMatches({ h: "not a host", p: 1, r: ROOM }, `https://x/c/1/${ROOM}`), false);
});

test("chatUrl needs a header that parses", () => {
  const link = [VECTOR["chmail-link"]];
  assert.equal(chatUrl({ "chmail-link": link }), null);
  assert.equal(chatUrl({ chmail: [withTags({ v: "2" })], "chmail-link": link }), null);
  assert.equal(chatUrl({ chmail: [withTags({ b: "AAAA" })], "chmail-link": link }), null);
  assert.equal(chatUrl({ chmail: [VECTOR.chmail] }), null);
  assert.equal(chatUrl({ chmail: [VECTOR.chmail], "chmail-link": [] }), null);
  assert.equal(chatUrl({}), null);
  assert.equal(chatUrl(undefined), null);
  assert.equal(chatUrl({ chmail: [42], "chmail-link": [null] }), null);
});

test("with several headers and links, the link that matches a parsed header is used", () => {
  const other = withTags({ h: "chat.other.example", p: "7", r: "B".repeat(22) });
  const otherLink = `https://chat.other.example/c/7/${"B".repeat(22)}`;
  // A forged link first, the right one second.
  assert.equal(
    chatUrl({ chmail: [VECTOR.chmail], "chmail-link": [`<https://evil.example.net/c/20417/${ROOM}>`, VECTOR["chmail-link"]] }),
    LINK,
  );
  // A broken header next to a good one; links in any order.
  assert.equal(chatUrl({ chmail: ["v=1; garbage", other], "chmail-link": [VECTOR["chmail-link"], `<${otherLink}>`] }), otherLink);
  // Two good headers: the first (topmost) header with a matching link wins.
  assert.equal(chatUrl({ chmail: [other, VECTOR.chmail], "chmail-link": [VECTOR["chmail-link"], `<${otherLink}>`] }), otherLink);
  // Two headers, neither link matches.
  assert.equal(chatUrl({ chmail: [other, VECTOR.chmail], "chmail-link": [`<https://evil.example.net/c/7/${"B".repeat(22)}>`] }), null);
});
