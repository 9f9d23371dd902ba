// Unit tests of the add-on's header parsing: `node --test contrib/thunderbird/test/` (no npm install).
// SPDX-License-Identifier: GPL-3.0-or-later

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { parseChmail, parseLink, chatUrl, linkMatches, parseAuthResults, serverVerdict, chatState } from "../chmail.js";

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

// ---------------------------------------------------------------------------------------------
// Authentication-Results: the Chat button follows the verdict of the user's own server.

const SERVER = "mx.example.net";
const PASS = `${SERVER};\n\tchmail=pass header.d=example.com header.s=sel1 header.l=alice@example.com`;

/** The headers of the test vector mail with these Authentication-Results fields, topmost first. */
function mail(...results) {
  return { "authentication-results": results, chmail: [VECTOR.chmail], "chmail-link": [VECTOR["chmail-link"]] };
}

test("parseAuthResults reads comments, quoted strings, versions and several methods", () => {
  const got = parseAuthResults(
    '(our MX) "MX.Example.NET" 1 (v1);\r\n\tdkim=pass (good sig) header.d=example.com header.i=@example.com;\n' +
      '\tchmail = fail reason="signature does not verify (key sel1)" header.d=example.com\n\theader.s=sel1 header . l=alice@example.com;\n' +
      '\tspf=pass smtp.mailfrom="alice smith"@example.com',
  );
  assert.equal(got.error, undefined, got.error);
  assert.equal(got.authservId, "mx.example.net");
  assert.deepEqual(
    got.results.map((r) => [r.method, r.result, r.reason]),
    [
      ["dkim", "pass", null],
      ["chmail", "fail", "signature does not verify (key sel1)"],
      ["spf", "pass", null],
    ],
  );
  assert.deepEqual(got.results[1].props, { "header.d": "example.com", "header.s": "sel1", "header.l": "alice@example.com" });
  assert.equal(got.results[0].props["header.i"], "@example.com");
  assert.equal(got.results[2].props["smtp.mailfrom"], "alice smith@example.com");
  assert.deepEqual(parseAuthResults(`${SERVER}; none`), { authservId: SERVER, results: [] });
  assert.deepEqual(parseAuthResults(`${SERVER}; chmail=none`).results[0].result, "none");
});

test("parseAuthResults refuses malformed fields without throwing, keeping a readable authserv-id", () => {
  for (const bad of [
    "",
    "   ",
    "(an unclosed comment mx.example.net; chmail=pass",
    '"unclosed; chmail=pass',
    ";chmail=pass",
    "(only a comment)",
  ]) {
    const got = parseAuthResults(bad);
    assert.ok(got.error && got.authservId === undefined, `${JSON.stringify(bad)}: ${JSON.stringify(got)}`);
  }
  for (const bad of [
    SERVER,
    `${SERVER} chmail=pass`,
    `${SERVER}; chmail`,
    `${SERVER}; chmail=`,
    `${SERVER}; chmail=pass reason=`,
    `${SERVER}; chmail=pass header.d`,
    `${SERVER}; chmail=pass header=example.com`,
    `${SERVER}; chmail=pass header.d=example.com reason="late"`,
    `${SERVER}; chmail=pass (unclosed`,
    `${SERVER}; chmail=pass reason="unclosed`,
    `${SERVER}; chmail=pass\x01`,
    `${SERVER}; chmail=pass; ; dkim=pass`,
    `${SERVER} 2; chmail=pass`,
    `${SERVER}; chmail=pass)`,
  ]) {
    const got = parseAuthResults(bad);
    assert.ok(got.error, `${JSON.stringify(bad)} must be refused: ${JSON.stringify(got)}`);
    assert.equal(got.authservId, SERVER, JSON.stringify(bad));
  }
  for (const junk of [undefined, null, 42, {}, "x".repeat(20000)]) {
    assert.ok(parseAuthResults(junk).error);
  }
});

test("chmail=pass of the user's server shows the Chat button with the link", () => {
  for (const options of [{}, { authservId: SERVER }, { authservId: " MX.example.net. " }]) {
    assert.deepEqual(chatState(mail(PASS), options), { url: LINK, title: "Chat (chat.example.com)" }, JSON.stringify(options));
  }
  // The field the milter writes, unfolded as a client may hand it over.
  assert.equal(chatState(mail(PASS.replace("\n\t", " ")), { authservId: SERVER }).url, LINK);
});

test("fail, neutral, temperror and permerror hide the button and say why", () => {
  const cases = [
    ["fail", "signature does not verify", /mx\.example\.net says chmail=fail \(signature does not verify\)/],
    ["neutral", "CHmail version 2 is unknown", /chmail=neutral \(CHmail version 2 is unknown\)/],
    ["temperror", "DNS did not answer for sel1._chmail.example.com", /chmail=temperror \(DNS did not answer/],
    ["permerror", "no key record at sel1._chmail.example.com", /chmail=permerror \(no key record/],
  ];
  for (const [result, reason, title] of cases) {
    const field = `${SERVER}; chmail=${result} reason="${reason}" header.d=example.com header.s=sel1 header.l=alice@example.com`;
    for (const options of [{}, { authservId: SERVER }]) {
      const state = chatState(mail(field), options);
      assert.equal(state.url, null, `${result} ${JSON.stringify(options)}`);
      assert.match(state.title, title);
    }
  }
  const none = chatState(mail(`${SERVER}; chmail=none`), { authservId: SERVER });
  assert.equal(none.url, null);
  assert.match(none.title, /found no CHmail header/);
  const odd = chatState(mail(`${SERVER}; chmail=maybe`), {});
  assert.equal(odd.url, null);
  assert.match(odd.title, /unknown CHmail result maybe/);
});

test("without a verdict of the user's server the button is off and says so", () => {
  const noField = chatState({ chmail: [VECTOR.chmail], "chmail-link": [VECTOR["chmail-link"]] }, {});
  assert.equal(noField.url, null);
  assert.equal(noField.title, "Chat: no CHmail verdict from your mail server");
  const otherMethods = chatState(mail(`${SERVER}; dkim=pass header.d=example.com`), {});
  assert.equal(otherMethods.url, null);
  assert.match(otherMethods.title, /no CHmail verdict/);
  const named = chatState(mail(`${SERVER}; dkim=pass header.d=example.com`), { authservId: SERVER });
  assert.equal(named.title, `Chat: no CHmail verdict from ${SERVER}`);
});

test("a forged chmail=pass below the server's own field is ignored", () => {
  const own = `${SERVER}; chmail=fail reason="signature does not verify" header.d=example.com header.s=sel1`;
  // The sender wrote a passing field under the server's own name, below the server's real one.
  for (const options of [{}, { authservId: SERVER }]) {
    const state = chatState(mail(own, PASS), options);
    assert.equal(state.url, null, JSON.stringify(options));
    assert.match(state.title, /chmail=fail/);
  }
  // The server's field says nothing about CHmail (no chmail result): a lower pass does not count
  // when the server is named; only the default, which cannot tell, reads further down.
  const silent = `${SERVER}; dkim=pass header.d=example.com`;
  assert.equal(chatState(mail(silent, PASS), { authservId: SERVER }).url, null);
});

test("an Authentication-Results field of another authserv-id is ignored when the server is named", () => {
  const other = `mx.other.example; chmail=pass header.d=example.com header.s=sel1 header.l=alice@example.com`;
  // Above or below the server's own field, a pass of someone else does not count.
  const own = `${SERVER}; chmail=temperror reason="DNS did not answer" header.d=example.com header.s=sel1`;
  assert.equal(chatState(mail(other, own), { authservId: SERVER }).url, null);
  assert.match(chatState(mail(other, own), { authservId: SERVER }).title, /chmail=temperror/);
  assert.equal(chatState(mail(own, other), { authservId: SERVER }).url, null);
  // Only another server's field: no verdict at all.
  const alone = chatState(mail(other), { authservId: SERVER });
  assert.equal(alone.url, null);
  assert.equal(alone.title, `Chat: no CHmail verdict from ${SERVER}`);
  // The authserv-id is compared without regard to case, after comments, quoted or not.
  assert.equal(chatState(mail(`(x) "MX.EXAMPLE.NET"; chmail=pass`), { authservId: SERVER }).url, LINK);
});

test("a malformed field of the server hides the button; malformed fields of others are skipped", () => {
  const broken = `${SERVER}; chmail=pass reason="unclosed`;
  const state = chatState(mail(broken, PASS), { authservId: SERVER });
  assert.equal(state.url, null);
  assert.match(state.title, /cannot be read/);
  assert.deepEqual(serverVerdict(mail(broken, PASS), SERVER).error !== undefined, true);
  // Without a named server, a field that cannot be read says nothing and the next one counts.
  assert.equal(chatState(mail("(garbage", PASS), {}).url, LINK);
  assert.equal(chatState(mail("(garbage", PASS), { authservId: SERVER }).url, LINK);
});

test("a pass counts only for the CHmail header it names, and the link must still match", () => {
  const otherHeader = `${SERVER}; chmail=pass header.d=other.example header.s=sel1`;
  const state = chatState(mail(otherHeader), { authservId: SERVER });
  assert.equal(state.url, null);
  assert.match(state.title, /no CHmail-Link of this mail matches/);
  const badLink = { ...mail(PASS), "chmail-link": ["<https://evil.example/c/20417/Xk3Fq9LmZ2pT7vRw4sYb8A>"] };
  assert.equal(chatState(badLink, { authservId: SERVER }).url, null);
  // Two CHmail headers, one result each: the pass of the second is enough.
  const two = `${SERVER}; chmail=permerror reason="tag d= is no host name"; chmail=pass header.d=example.com header.s=sel1`;
  assert.equal(chatState(mail(two), {}).url, LINK);
  // A pass result without header.d still counts (another verifier may write fewer properties).
  assert.equal(chatState(mail(`${SERVER}; chmail=pass`), {}).url, LINK);
});
