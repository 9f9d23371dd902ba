// Settings page of the CHmail Chat add-on: reads and stores the authserv-id of the user's server
// (`storage.local` key `authservId`, "" for the default).
//
// SPDX-License-Identifier: GPL-3.0-or-later

import { normalizeAuthservId } from "./chmail.js";

const form = document.getElementById("settings");
const input = document.getElementById("authserv-id");
const status = document.getElementById("status");

messenger.storage.local.get({ authservId: "" }).then(({ authservId }) => {
  input.value = typeof authservId === "string" ? authservId : "";
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const authservId = normalizeAuthservId(input.value);
  if (/[\s;()"\\]/.test(authservId)) {
    status.textContent = "An authserv-id has no spaces, ';', '(', ')', '\"' or '\\'.";
    return;
  }
  await messenger.storage.local.set({ authservId });
  input.value = authservId;
  status.textContent = authservId === "" ? "Saved: the topmost field with a CHmail result is trusted." : `Saved: only ${authservId} is trusted.`;
});
