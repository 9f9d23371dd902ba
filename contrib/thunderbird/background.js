// Background script of the CHmail Chat add-on: enables the Chat button of the message display
// toolbar when the displayed mail has a CHmail header with a matching CHmail-Link, and opens that
// link in the default browser when the button is clicked.
//
// Nothing is sent anywhere until the user clicks: the headers are read locally, and the click only
// opens the link that is in the mail. There is no signature check (no DNS TXT access here): the
// CHmail milter verifies headers on the way in and removes forged ones.
//
// SPDX-License-Identifier: GPL-3.0-or-later

import { chatUrl } from "./chmail.js";

// Per tab, a counter of display events: a slow getFull for a mail that is no longer shown must not
// enable the button for the mail that replaced it.
const generation = new Map();

function bump(tabId) {
  const n = (generation.get(tabId) ?? 0) + 1;
  generation.set(tabId, n);
  return n;
}

/** The chat URL of a message, or null (also when it cannot be read). */
async function urlOf(messageId) {
  try {
    const full = await messenger.messages.getFull(messageId);
    return chatUrl(full?.headers ?? {});
  } catch (e) {
    console.warn("CHmail: cannot read the message headers", e);
    return null;
  }
}

async function setButton(tabId, url) {
  if (url) {
    await messenger.messageDisplayAction.setTitle({ tabId, title: `Chat (${new URL(url).host})` });
    await messenger.messageDisplayAction.enable(tabId);
  } else {
    await messenger.messageDisplayAction.setTitle({ tabId, title: "Chat: no CHmail link in this mail" });
    await messenger.messageDisplayAction.disable(tabId);
  }
}

async function onDisplayed(tab, message) {
  const gen = bump(tab.id);
  await setButton(tab.id, null);
  if (!message) return;
  const url = await urlOf(message.id);
  if (generation.get(tab.id) === gen) await setButton(tab.id, url);
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
    setButton(tab.id, null).catch((e) => console.error("CHmail:", e));
  }
});

messenger.tabs.onRemoved.addListener((tabId) => generation.delete(tabId));

messenger.messageDisplayAction.onClicked.addListener(async (tab) => {
  // Derived again from the mail shown now, never from state kept since it was displayed.
  const message = await messenger.messageDisplay.getDisplayedMessage(tab.id);
  const url = message ? await urlOf(message.id) : null;
  if (!url) {
    await setButton(tab.id, null);
    return;
  }
  if (messenger.windows.openDefaultBrowser) {
    await messenger.windows.openDefaultBrowser(url);
  } else {
    await messenger.tabs.create({ url });
  }
});
