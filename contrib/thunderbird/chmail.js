// CHmail header parsing for the Thunderbird add-on: pure functions, no browser API, so that the same
// module runs in the add-on's background script and under `node --test`.
//
// The grammar is docs/header.md (CHmail v=1); the checks follow chmail::header::ChmailHeader::parse.
// There is no signature verification here: a mail client has no DNS TXT access. The CHmail milter
// verifies every CHmail header on the way in and removes forged ones (and their CHmail-Link).
//
// SPDX-License-Identifier: GPL-3.0-or-later

/** The tags of v=1, in the order the milter writes them; any other tag is rejected. */
const TAGS = ["v", "d", "s", "l", "h", "p", "r", "t", "b"];

/** Longest field body, in octets (docs/header.md). All legal values are ASCII. */
const MAX_HEADER_LEN = 4096;
const MAX_DOMAIN_LEN = 253;
const MAX_SELECTOR_LEN = 63;
const MAX_LOGIN_LEN = 320;
const MAX_HOST_LEN = MAX_DOMAIN_LEN + 6;
const SIGNATURE_LEN = 64;
const MAX_TIME = 18446744073709551615n; // u64::MAX

const ROOM_RE = /^[A-Za-z0-9_-]{22,64}$/;
/** A host name label: 1-63 letters, digits and hyphens, no hyphen first or last (RFC 1123). */
const LABEL_RE = /^(?=[A-Za-z0-9-]{1,63}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/;
/** Longest key record name `<s>._chmail.<d>`: what a DNS name holds. */
const MAX_KEY_NAME_LEN = 253;
const TAG_NAME_RE = /^[A-Za-z][A-Za-z0-9_]*$/;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

class HeaderError extends Error {}

/**
 * Undoes header folding as docs/header.md says: CRLF (or a bare LF) followed by a space or tab is
 * whitespace, one final CRLF or LF is dropped, any other CR or LF and every other control character
 * except tab is an error. Non-ASCII is an error too (all CHmail values are ASCII).
 */
function unfold(text) {
  if (text.endsWith("\r\n")) text = text.slice(0, -2);
  else if (text.endsWith("\n")) text = text.slice(0, -1);
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const code = text.charCodeAt(i);
    if (c === "\r" && text[i + 1] === "\n") continue;
    if (c === "\n" && (text[i + 1] === " " || text[i + 1] === "\t")) continue;
    if (c === "\r" || c === "\n") throw new HeaderError("a line break not followed by a space or tab");
    if (c === "\t") {
      out += c;
      continue;
    }
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) {
      throw new HeaderError(`control character U+${code.toString(16).toUpperCase().padStart(4, "0")}`);
    }
    if (code > 0x7f) throw new HeaderError("a non-ASCII character");
    out += c;
  }
  return out;
}

/** Trims spaces and tabs (only those: anything else was rejected by unfold or is not whitespace). */
function trimWsp(s) {
  return s.replace(/^[ \t]+|[ \t]+$/g, "");
}

/** At most 40 characters of `s`, for error texts that echo input. */
function clip(s) {
  return s.slice(0, 40);
}

/** `tag=value; ...` as [name, value] pairs: no empty tag-spec except after the last `;`, no duplicate. */
function splitTags(text) {
  const specs = text.split(";");
  const last = specs.length - 1;
  const tags = new Map();
  for (let i = 0; i < specs.length; i++) {
    const spec = trimWsp(specs[i]);
    if (spec === "") {
      if (i === last && i > 0) break;
      throw new HeaderError("an empty tag between ';'");
    }
    const eq = spec.indexOf("=");
    if (eq < 0) throw new HeaderError(`${JSON.stringify(clip(spec))} is not tag=value`);
    const name = trimWsp(spec.slice(0, eq));
    const value = trimWsp(spec.slice(eq + 1));
    if (!TAG_NAME_RE.test(name)) throw new HeaderError(`${JSON.stringify(clip(name))} is not a tag name`);
    if (tags.has(name)) throw new HeaderError(`tag ${clip(name)}= appears more than once`);
    tags.set(name, value);
  }
  return tags;
}

/** A plain decimal: 1 to maxDigits digits, no sign, no leading zero except "0"; a BigInt or null. */
function parseDecimal(s, maxDigits) {
  if (s.length < 1 || s.length > maxDigits || !/^[0-9]+$/.test(s)) return null;
  if (s !== "0" && s.startsWith("0")) return null;
  return BigInt(s);
}

/** A port 1..65535 in plain decimal, or null. */
function parsePort(s) {
  const n = parseDecimal(s, 5);
  return n !== null && n >= 1n && n <= 65535n ? Number(n) : null;
}

function checkDnsName(tag, s, max) {
  if (s.length === 0 || s.length > max) throw new HeaderError(`tag ${tag}= must be 1 to ${max} characters long`);
  if (!s.split(".").every((label) => LABEL_RE.test(label))) {
    throw new HeaderError(`tag ${tag}= holds a character or shape it does not allow`);
  }
}

function checkLogin(s) {
  if (s.length === 0 || s.length > MAX_LOGIN_LEN) {
    throw new HeaderError(`tag l= must be 1 to ${MAX_LOGIN_LEN} characters long`);
  }
  if (!/^[\x21-\x3a\x3c-\x7e]+$/.test(s)) throw new HeaderError("tag l= holds a character or shape it does not allow");
}

/**
 * Splits an `h=` value into { host, port }: host is a DNS name or a bracketed IPv6 literal
 * (brackets kept), port the number after `:` or null. Throws on anything else.
 */
function splitHost(s) {
  const bad = () => new HeaderError("tag h= holds a character or shape it does not allow");
  if (s.length === 0 || s.length > MAX_HOST_LEN) {
    throw new HeaderError(`tag h= must be 1 to ${MAX_HOST_LEN} characters long`);
  }
  let host;
  let port = null;
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close < 0) throw bad();
    const addr = s.slice(1, close);
    if (!/^[0-9A-Fa-f:.]+$/.test(addr)) throw bad();
    host = s.slice(0, close + 1);
    const after = s.slice(close + 1);
    if (after !== "") {
      if (!after.startsWith(":")) throw bad();
      port = after.slice(1);
    }
  } else {
    const colon = s.indexOf(":");
    host = colon < 0 ? s : s.slice(0, colon);
    if (colon >= 0) port = s.slice(colon + 1);
    try {
      checkDnsName("h", host, MAX_DOMAIN_LEN);
    } catch {
      throw bad();
    }
  }
  if (port !== null) {
    port = parsePort(port);
    if (port === null) throw bad();
  }
  return { host, port };
}

/** Strict standard base64 (alphabet, `=` padding, zero trailing bits); the decoded length or -1. */
function base64Length(s) {
  if (!BASE64_RE.test(s)) return -1;
  const pad = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
  if (pad > 0) {
    // The last character before the padding may not carry bits beyond the data.
    const lastBits = B64.indexOf(s[s.length - pad - 1]);
    const unused = pad === 2 ? 0x0f : 0x03;
    if ((lastBits & unused) !== 0) return -1;
  }
  return (s.length / 4) * 3 - pad;
}

/**
 * Parses a `CHmail:` field body (what follows `CHmail:`), folded or not.
 *
 * Returns { v, d, s, l, h, p, r, t, b } with v, p and t as numbers (t is rounded above 2^53, which
 * is 285 million years away) and b the base64 signature without whitespace, or { error } naming the
 * first problem. As in docs/header.md, an unparseable header (permerror) or one of another version
 * (neutral) is never trusted and shows no button.
 */
export function parseChmail(value) {
  try {
    return parseOrThrow(value);
  } catch (e) {
    if (e instanceof HeaderError) return { error: e.message };
    throw e;
  }
}

function parseOrThrow(raw) {
  if (typeof raw !== "string") throw new HeaderError("the CHmail field is not text");
  if (raw.length > MAX_HEADER_LEN) {
    throw new HeaderError(`the CHmail field is ${raw.length} characters long, more than the limit of ${MAX_HEADER_LEN}`);
  }
  const text = unfold(raw);
  if (trimWsp(text) === "") throw new HeaderError("the CHmail field is empty");
  const tags = splitTags(text);
  const get = (name) => {
    if (!tags.has(name)) throw new HeaderError(`tag ${name}= is missing`);
    return tags.get(name);
  };
  // The version decides what the rest means, so it is checked before anything else.
  const version = get("v");
  if (version !== "1") throw new HeaderError(`unsupported CHmail version v=${clip(version)}`);
  for (const name of tags.keys()) {
    if (!TAGS.includes(name)) throw new HeaderError(`tag ${clip(name)}= is not defined by CHmail v=1`);
  }
  for (const [name, value] of tags) {
    if (name !== "b" && /[ \t]/.test(value)) {
      throw new HeaderError(`tag ${name}= holds a character or shape it does not allow`);
    }
  }
  const [d, s, l, h, p, r, t, b] = ["d", "s", "l", "h", "p", "r", "t", "b"].map(get);

  const port = parsePort(p);
  if (port === null) throw new HeaderError(`tag p= is not a port from 1 to 65535: ${JSON.stringify(clip(p))}`);
  if (!ROOM_RE.test(r)) throw new HeaderError(`tag r= is not a room id: ${JSON.stringify(clip(r))}`);
  const time = parseDecimal(t, 20);
  if (time === null || time > MAX_TIME) {
    throw new HeaderError(`tag t= is not a Unix time in seconds: ${JSON.stringify(clip(t))}`);
  }
  checkDnsName("d", d, MAX_DOMAIN_LEN);
  checkDnsName("s", s, MAX_SELECTOR_LEN);
  const keyName = `${s}._chmail.${d}`.length;
  if (keyName > MAX_KEY_NAME_LEN) {
    throw new HeaderError(`the key record name of s= and d= is ${keyName} characters long, DNS allows ${MAX_KEY_NAME_LEN}`);
  }
  checkLogin(l);
  splitHost(h);
  const sig = b.replace(/[ \t]/g, "");
  const len = base64Length(sig);
  if (len < 0) throw new HeaderError("tag b= is not valid base64");
  if (len !== SIGNATURE_LEN) throw new HeaderError(`tag b= holds ${len} bytes, an Ed25519 signature has ${SIGNATURE_LEN}`);
  return { v: 1, d, s, l, h, p: port, r, t: Number(time), b: sig };
}

/** Whether a URL's host is this machine, the one case where plain http is allowed. */
function isLoopback(url) {
  const name = url.hostname;
  return name === "localhost" || name === "[::1]" || /^127(?:\.[0-9]{1,3}){3}$/.test(name);
}

/**
 * Parses a `CHmail-Link:` field body: `<URL>`, folded or not, surrounding whitespace ignored.
 *
 * Returns the URL (normalized, as `URL.href`) or null. Only https URLs, or http to localhost; no
 * user name or password, query or fragment, and no whitespace or non-ASCII inside the brackets.
 * Whether the link belongs to a CHmail header is chatUrl's business.
 */
export function parseLink(value) {
  if (typeof value !== "string" || value.length > MAX_HEADER_LEN) return null;
  let text;
  try {
    text = trimWsp(unfold(value));
  } catch {
    return null;
  }
  const m = /^<([\x21-\x3b\x3d\x3f-\x7e]+)>$/.exec(text);
  if (!m) return null;
  let url;
  try {
    url = new URL(m[1]);
  } catch {
    return null;
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopback(url))) return null;
  if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") return null;
  // A "?" or "#" with nothing after it leaves search and hash empty; refuse those too.
  if (/[?#]/.test(m[1])) return null;
  return url.href;
}

/**
 * Whether `link` (a URL from parseLink) is the chat link of `header` (from parseChmail): same host
 * as `h` (compared the way the browser will resolve both), same port (`h`'s port, or the scheme's
 * default when `h` has none), and a path ending in `/c/<p>/<r>`.
 */
export function linkMatches(header, link) {
  let url;
  let hostUrl;
  let hostPort;
  try {
    url = new URL(link);
    const { host, port } = splitHost(header.h);
    hostPort = port;
    // The same normalization for both sides: case, IPv6 compression, IDNA.
    hostUrl = new URL(`${url.protocol}//${host}/`);
  } catch {
    return false;
  }
  const defaultPort = url.protocol === "https:" ? 443 : 80;
  const linkPort = url.port === "" ? defaultPort : Number(url.port);
  if (url.hostname !== hostUrl.hostname) return false;
  if ((hostPort ?? defaultPort) !== linkPort) return false;
  return url.pathname.endsWith(`/c/${header.p}/${header.r}`);
}

/** The values of one header name in a Thunderbird headers object (an array of strings, or one). */
function values(headers, name) {
  const v = headers?.[name];
  if (Array.isArray(v)) return v.filter((x) => typeof x === "string");
  return typeof v === "string" ? [v] : [];
}

/**
 * The chat URL of a mail, from its headers as `messages.getFull` gives them (lowercased names,
 * arrays of values): the first CHmail-Link that matches a CHmail header that parses, or null.
 * Headers that do not parse and links that match no header are ignored.
 */
export function chatUrl(headers) {
  const parsed = values(headers, "chmail").map(parseChmail).filter((h) => !h.error);
  if (parsed.length === 0) return null;
  for (const header of parsed) {
    for (const raw of values(headers, "chmail-link")) {
      const link = parseLink(raw);
      if (link !== null && linkMatches(header, link)) return link;
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Authentication-Results (RFC 8601): the verdict of the user's own mail server.

/** The method name of CHmail results (docs/header.md, "Authentication-Results"). */
const METHOD = "chmail";
/** The results a CHmail verifier writes; any other result of method chmail is unreadable. */
const CHMAIL_RESULTS = ["pass", "fail", "neutral", "temperror", "permerror", "none"];
/** Longest Authentication-Results field body read, in characters; longer ones are unreadable. */
const MAX_AUTH_RESULTS_LEN = 16 * 1024;
/** Characters that end a token (RFC 2045 tspecials, white space and controls); "." is in tokens. */
const TSPECIALS = '()<>@,;:\\"/[]?= \t';

class ResultsError extends Error {}

/**
 * The tokens of an Authentication-Results body: `{ kind: "token" | "quoted" | "special", text,
 * space }`, where `space` says white space or a comment came before it. Comments (nested, with
 * backslash escapes) and folding are dropped; quoted strings are unescaped.
 */
function tokenize(text) {
  const out = [];
  let space = false;
  let i = 0;
  const controlAt = (j) => {
    const code = text.charCodeAt(j);
    return (code < 0x20 && text[j] !== "\t") || code === 0x7f;
  };
  while (i < text.length) {
    const c = text[i];
    if (c === " " || c === "\t" || c === "\r" || c === "\n") {
      space = true;
      i++;
    } else if (c === "(") {
      let depth = 0;
      for (; i < text.length; i++) {
        if (text[i] === "\\") i++;
        else if (text[i] === "(") depth++;
        else if (text[i] === ")" && --depth === 0) break;
      }
      if (depth !== 0) throw new ResultsError("an unclosed comment");
      i++;
      space = true;
    } else if (c === '"') {
      let value = "";
      let closed = false;
      for (i++; i < text.length; i++) {
        if (controlAt(i) && text[i] !== "\r" && text[i] !== "\n") throw new ResultsError("a control character");
        if (text[i] === "\\" && i + 1 < text.length) value += text[++i];
        else if (text[i] === '"') {
          closed = true;
          break;
        } else if (text[i] !== "\r" && text[i] !== "\n") value += text[i];
      }
      if (!closed) throw new ResultsError("an unclosed quoted string");
      i++;
      out.push({ kind: "quoted", text: value, space });
      space = false;
    } else if (controlAt(i)) {
      throw new ResultsError("a control character");
    } else if (TSPECIALS.includes(c)) {
      if (c === ")") throw new ResultsError("a ')' without '('");
      out.push({ kind: "special", text: c, space });
      space = false;
      i++;
    } else {
      let j = i;
      while (j < text.length && !TSPECIALS.includes(text[j]) && !controlAt(j) && text[j] !== "\r" && text[j] !== "\n") j++;
      out.push({ kind: "token", text: text.slice(i, j), space });
      space = false;
      i = j;
    }
  }
  return out;
}

/** A cursor over tokens with the few reads the grammar needs. */
class Tokens {
  constructor(list) {
    this.list = list;
    this.at = 0;
  }
  peek() {
    return this.list[this.at];
  }
  next() {
    return this.list[this.at++];
  }
  isSpecial(c) {
    const t = this.peek();
    return t !== undefined && t.kind === "special" && t.text === c;
  }
  expectSpecial(c, what) {
    if (!this.isSpecial(c)) throw new ResultsError(`expected '${c}' ${what}`);
    this.next();
  }
  token(what) {
    const t = this.next();
    if (!t || t.kind !== "token") throw new ResultsError(`expected ${what}`);
    return t.text;
  }
  /** A value: a token or a quoted string (RFC 2045). */
  value(what) {
    const t = this.next();
    if (!t || (t.kind !== "token" && t.kind !== "quoted")) throw new ResultsError(`expected ${what}`);
    return t.text;
  }
}

/** A Keyword of RFC 8601: letters, digits and hyphens, not ending in a hyphen. */
const KEYWORD_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/;

/**
 * A property value (RFC 8601 `pvalue`): a value, `local@domain`, or `@domain`, without white
 * space inside `local@domain`.
 */
function readPvalue(tokens) {
  let out = "";
  if (!tokens.isSpecial("@")) out = tokens.value("a property value");
  if (tokens.isSpecial("@") && (out === "" || !tokens.peek().space)) {
    tokens.next();
    const domain = tokens.next();
    if (!domain || domain.kind !== "token" || domain.space) throw new ResultsError("expected a domain after '@'");
    out += `@${domain.text}`;
  }
  return out;
}

/** One `method=result [reason=..] [ptype.property=value ..]` after a ';'. */
function readResinfo(tokens) {
  const method = tokens.token("a method").toLowerCase();
  if (!KEYWORD_RE.test(method)) throw new ResultsError(`method ${clip(method)} is no keyword`);
  let version = null;
  if (tokens.isSpecial("/")) {
    tokens.next();
    version = tokens.token("a method version");
    if (!/^[0-9]+$/.test(version)) throw new ResultsError("a method version that is no number");
  }
  tokens.expectSpecial("=", "after the method");
  const result = tokens.token("a result").toLowerCase();
  if (!KEYWORD_RE.test(result)) throw new ResultsError(`result ${clip(result)} is no keyword`);
  const info = { method, version, result, reason: null, props: {} };
  while (tokens.peek() && !tokens.isSpecial(";")) {
    // A name: "reason", or "ptype.property" (one token, or spelled with spaces around the dot).
    let name = tokens.token("a reason or a property");
    while (tokens.peek()?.kind === "token" && (name.endsWith(".") || tokens.peek().text.startsWith("."))) {
      name += tokens.next().text;
    }
    name = name.toLowerCase();
    tokens.expectSpecial("=", `after ${clip(name)}`);
    if (name === "reason") {
      if (info.reason !== null || Object.keys(info.props).length > 0) {
        throw new ResultsError("a reason that is not right after the result");
      }
      info.reason = tokens.value("a reason");
    } else if (/^[a-z0-9-]+\.[a-z0-9_-]+$/.test(name)) {
      info.props[name] = readPvalue(tokens);
    } else {
      throw new ResultsError(`${clip(name)} is neither reason nor ptype.property`);
    }
  }
  return info;
}

/**
 * Parses an `Authentication-Results:` field body (RFC 8601 section 2.2): the authserv-id (a token
 * or a quoted string, after white space or comments), an optional version, then `none` or results
 * `method[/version]=result [reason=value] [ptype.property=pvalue ...]` separated by ';'. Comments,
 * quoted strings and folding are handled anywhere CFWS may stand.
 *
 * Returns `{ authservId, results: [{ method, version, result, reason, props }] }` with the
 * authserv-id, methods, results and property names ASCII-lowercased (`results` empty for `none`);
 * `{ error }` when not even the authserv-id can be read; and `{ authservId, error }` when the id
 * is readable but the rest is not, so that a malformed field of the user's own server still counts
 * as that server's (and says nothing) rather than letting a field below it speak. Never throws.
 */
export function parseAuthResults(value) {
  if (typeof value !== "string") return { error: "not a string" };
  if (value.length > MAX_AUTH_RESULTS_LEN) return { error: "too long" };
  let tokens;
  try {
    tokens = new Tokens(tokenize(value));
  } catch (e) {
    // Even a broken field may begin with a readable id: read it up to the first ';'.
    const id = /^[ \t\r\n]*([^ \t\r\n;()"]+)/.exec(value);
    return id ? { authservId: id[1].toLowerCase(), error: e.message } : { error: e.message };
  }
  let authservId;
  try {
    authservId = tokens.value("an authserv-id").toLowerCase();
    if (authservId === "") throw new ResultsError("an empty authserv-id");
  } catch (e) {
    return { error: e.message };
  }
  try {
    if (tokens.peek()?.kind === "token" && /^[0-9]+$/.test(tokens.peek().text)) {
      const version = tokens.next().text;
      if (Number(version) !== 1) throw new ResultsError(`unknown Authentication-Results version ${clip(version)}`);
    }
    const results = [];
    tokens.expectSpecial(";", "after the authserv-id");
    if (tokens.peek()?.kind === "token" && tokens.peek().text.toLowerCase() === "none" && tokens.list.length === tokens.at + 1) {
      return { authservId, results };
    }
    for (;;) {
      results.push(readResinfo(tokens));
      if (tokens.peek() === undefined) break;
      tokens.expectSpecial(";", "between results");
      // A final ';' is tolerated (some writers add one).
      if (tokens.peek() === undefined) break;
    }
    return { authservId, results };
  } catch (e) {
    return { authservId, error: e.message };
  }
}

/** An authserv-id as configured: trimmed, lowercased, no final dot; "" means "not set". */
export function normalizeAuthservId(id) {
  return typeof id === "string" ? id.trim().replace(/\.$/, "").toLowerCase() : "";
}

/**
 * The CHmail verdict of the user's server among the mail's Authentication-Results fields (topmost
 * first, as `messages.getFull` lists them).
 *
 * With `authservId` set, only the topmost field with that authserv-id counts: fields below it may
 * have been written by anyone on the way, the sender included. Without it, the topmost field that
 * parses and holds a `chmail` result counts (the CHmail milter puts its field on top and removes
 * any other under its own id).
 *
 * Returns `{ authservId, results }` (the chmail results of that field, in order) or
 * `{ authservId, error }` when the server's field cannot be read, or null when there is no
 * verdict.
 */
export function serverVerdict(headers, authservId = "") {
  const wanted = normalizeAuthservId(authservId);
  for (const raw of values(headers, "authentication-results")) {
    const parsed = parseAuthResults(raw);
    if (wanted !== "") {
      if (parsed.authservId !== wanted) continue;
      if (parsed.error) return { authservId: wanted, error: parsed.error };
      const results = parsed.results.filter((r) => r.method === METHOD);
      return results.length > 0 ? { authservId: wanted, results } : null;
    }
    if (parsed.error) continue;
    const results = parsed.results.filter((r) => r.method === METHOD);
    if (results.length > 0) return { authservId: parsed.authservId, results };
  }
  return null;
}

/** Whether a passing result names `header` (by header.d and header.s when it gives them). */
function resultNames(result, header) {
  const d = result.props["header.d"];
  const s = result.props["header.s"];
  if (d !== undefined && d.toLowerCase() !== header.d.toLowerCase()) return false;
  if (s !== undefined && s !== header.s) return false;
  return true;
}

/** A reason for the tooltip: printable, at most 120 characters. */
function shortReason(reason) {
  // eslint-disable-next-line no-control-regex
  const text = String(reason).replace(/[\x00-\x1f\x7f]+/g, " ").trim();
  return text.length > 120 ? `${text.slice(0, 119)}…` : text;
}

/**
 * What the Chat button shows for a mail: `{ url, title }`, `url` null when the button is off and
 * `title` saying why. The chat opens only when the user's server (see serverVerdict) says
 * `chmail=pass` for a CHmail header of the mail and a CHmail-Link matches that header (chatUrl's
 * checks). Options: `{ authservId }`, the authserv-id of the user's server ("" to trust the
 * topmost field with a chmail result).
 */
export function chatState(headers, options = {}) {
  const verdict = serverVerdict(headers, options.authservId);
  const server = normalizeAuthservId(options.authservId) || "your mail server";
  if (verdict === null) {
    return { url: null, title: `Chat: no CHmail verdict from ${server}` };
  }
  if (verdict.error) {
    return { url: null, title: `Chat: the Authentication-Results of ${verdict.authservId} cannot be read (${shortReason(verdict.error)})` };
  }
  const passed = verdict.results.filter((r) => r.result === "pass");
  if (passed.length === 0) {
    const first = verdict.results[0];
    if (first.result === "none") {
      return { url: null, title: `Chat: ${verdict.authservId} found no CHmail header in this mail` };
    }
    const known = CHMAIL_RESULTS.includes(first.result);
    const why = first.reason ? ` (${shortReason(first.reason)})` : "";
    return {
      url: null,
      title: known
        ? `Chat: ${verdict.authservId} says chmail=${first.result}${why}`
        : `Chat: ${verdict.authservId} gives an unknown CHmail result ${clip(first.result)}`,
    };
  }
  const parsed = values(headers, "chmail").map(parseChmail).filter((h) => !h.error);
  const links = values(headers, "chmail-link").map(parseLink).filter((l) => l !== null);
  for (const header of parsed) {
    if (!passed.some((r) => resultNames(r, header))) continue;
    const link = links.find((l) => linkMatches(header, l));
    if (link) return { url: link, title: `Chat (${new URL(link).host})` };
  }
  return { url: null, title: `Chat: ${verdict.authservId} says chmail=pass, but no CHmail-Link of this mail matches the header` };
}
