// Background script of the CHmail Chat add-on: enables the Chat button of the message display
// toolbar when the user's own mail server says `chmail=pass` in its Authentication-Results field
// for a CHmail header of the displayed mail with a matching CHmail-Link, says why in the button's
// tooltip otherwise, and opens that link in the default browser when the button is clicked.
//
// Nothing is sent anywhere until the user clicks: the headers are read locally, and the click only
// opens the link that is in the mail. There is no signature check here (no DNS TXT access): the
// server's CHmail milter verifies the headers on the way in and reports its verdict.
//
// SPDX-License-Identifier: GPL-3.0-or-later

import { chatState } from "./chmail.js";

// Per tab, a counter of display events: a slow getFull for a mail that is no longer shown must not
// enable the button for the mail that replaced it.
const generation = new Map();

function bump(tabId) {
  const n = (generation.get(tabId) ?? 0) + 1;
  generation.set(tabId, n);
  return n;
}

/** The authserv-id of the user's server from the add-on's settings ("" when not set). */
async function authservId() {
  try {
    const { authservId: id } = await messenger.storage.local.get({ authservId: "" });
    return typeof id === "string" ? id : "";
  } catch (e) {
    console.warn("CHmail: cannot read the settings", e);
    return "";
  }
}

/** The button state of a message: `{ url, title }`, url null when off (also when unreadable). */
async function stateOf(messageId) {
  try {
    const full = await messenger.messages.getFull(messageId);
    return chatState(full?.headers ?? {}, { authservId: await authservId() });
  } catch (e) {
    console.warn("CHmail: cannot read the message headers", e);
    return { url: null, title: "Chat: cannot read the headers of this mail" };
  }
}

async function setButton(tabId, state) {
  await messenger.messageDisplayAction.setTitle({ tabId, title: state.title });
  if (state.url) {
    await messenger.messageDisplayAction.enable(tabId);
  } else {
    await messenger.messageDisplayAction.disable(tabId);
  }
}

const OFF = { url: null, title: "Chat" };
const SEVERAL = { url: null, title: "Chat: several mails are selected" };

async function onDisplayed(tab, message) {
  const gen = bump(tab.id);
  await setButton(tab.id, OFF);
  if (!message) return;
  const state = await stateOf(message.id);
  if (generation.get(tab.id) === gen) await setButton(tab.id, state);
}

// Disabled everywhere until a displayed mail proves otherwise.
messenger.messageDisplayAction.disable();

messenger.messageDisplay.onMessageDisplayed.addListener((tab, message) => {
  onDisplayed(tab, message).catch((e) => console.error("CHmail:", e));
});

// Several mails selected at once: no single chat to open.
messenger.messageDisplay.onMessagesDisplayed?.addListener((tab, messages) => {
  if (Array.isArray(messages) && messages.length !== 1) {
    bump(tab.id);
    setButton(tab.id, SEVERAL).catch((e) => console.error("CHmail:", e));
  }
});

messenger.tabs.onRemoved.addListener((tabId) => generation.delete(tabId));

messenger.messageDisplayAction.onClicked.addListener(async (tab) => {
  // Derived again from the mail shown now, never from state kept since it was displayed.
  const message = await messenger.messageDisplay.getDisplayedMessage(tab.id);
  const state = message ? await stateOf(message.id) : OFF;
  const url = state.url;
  if (!url) {
    await setButton(tab.id, state);
    return;
  }
  if (messenger.windows.openDefaultBrowser) {
    await messenger.windows.openDefaultBrowser(url);
  } else {
    await messenger.tabs.create({ url });
  }
});
