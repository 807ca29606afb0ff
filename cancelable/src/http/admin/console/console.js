// The cancelable operator console: live updates and the cancel action.
// The page and its updates are HTML rendered (and escaped) by the server;
// this script only swaps that HTML in and sets text with `textContent`.
// The one request that changes anything is the JSON cancel of the admin
// API.
"use strict";
(function () {
  const EVERY_MS = 1000;
  const root = document.documentElement;
  root.classList.remove("no-js");
  root.classList.add("js");

  const body = document.body;
  const base = body.dataset.base || "";
  const state = document.getElementById("state");
  const updated = document.getElementById("updated");
  const outcome = document.getElementById("outcome");
  const dialog = document.getElementById("cancel-dialog");
  const form = document.getElementById("cancel-form");
  const title = document.getElementById("cancel-title");
  const reason = document.getElementById("cancel-reason");
  const message = document.getElementById("cancel-message");
  const keep = document.getElementById("cancel-keep");

  let lastUpdate = Date.now();
  let failure = null;
  let timer = null;
  let target = null;

  // "Updated n s ago", so that a stale page is obvious.
  function showAge() {
    const age = Math.max(0, Math.floor((Date.now() - lastUpdate) / 1000));
    let text = "Updated " + age + " s ago";
    if (failure !== null) {
      text += " · the last update failed: " + failure;
    }
    updated.textContent = text;
    updated.classList.toggle("stale", age >= 3 || failure !== null);
  }

  // Replaces the state part, keeping the keyboard focus on the same
  // operation's button when it is still there.
  function swap(html) {
    const active = document.activeElement;
    let focusId = null;
    if (active && state.contains(active) && /^\d+$/.test(active.dataset.id || "")) {
      focusId = active.dataset.id;
    }
    state.innerHTML = html;
    if (focusId !== null) {
      const again = state.querySelector('button.cancel[data-id="' + focusId + '"]');
      (again || document.getElementById("live-title")).focus({ preventScroll: true });
    }
  }

  async function refresh() {
    clearTimeout(timer);
    const started = performance.now();
    try {
      const response = await fetch(base + "/console/state" + window.location.search, {
        cache: "no-store",
        credentials: "same-origin",
      });
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      const html = await response.text();
      const fetched = performance.now();
      swap(html);
      void state.offsetHeight; // lay it out, so that the time counts it
      const done = performance.now();
      body.dataset.updateMs = (done - started).toFixed(1);
      body.dataset.renderMs = (done - fetched).toFixed(1);
      body.dataset.updates = String(Number(body.dataset.updates || "0") + 1);
      lastUpdate = Date.now();
      failure = null;
    } catch (error) {
      failure = (error && error.message) || String(error);
    }
    showAge();
    timer = setTimeout(refresh, EVERY_MS);
  }

  function say(kind, text) {
    outcome.textContent = text;
    outcome.className = "outcome " + kind;
    outcome.dataset.kind = kind;
    outcome.hidden = false;
    outcome.focus();
  }

  async function cancel(chosen, reasonValue, messageValue) {
    const request = { reason: reasonValue };
    if (messageValue.trim() !== "") {
      request.message = messageValue;
    }
    const what = chosen.name + " #" + chosen.id;
    try {
      const response = await fetch(base + "/operations/" + chosen.id + "/cancel", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(request),
      });
      let answer = {};
      try {
        answer = await response.json();
      } catch (_) {
        // Not JSON (a proxy's error page): the status says enough.
      }
      if (response.ok && answer.cancelled) {
        say("cancelled", "Cancellation requested for " + what + ": " + answer.outcome);
      } else if (response.ok) {
        say("unchanged", "Already being cancelled: " + answer.outcome);
      } else if (response.status === 409) {
        say("finished", "Already finished: " + answer.error);
      } else if (response.status === 404) {
        say("not-found", "Not found: " + answer.error);
      } else {
        say("error", "Not cancelled (HTTP " + response.status + "): " + (answer.error || response.statusText));
      }
    } catch (error) {
      say("error", "Not cancelled: the server did not answer (" + ((error && error.message) || error) + ")");
    }
    refresh();
  }

  state.addEventListener("click", function (event) {
    const button = event.target.closest("button.cancel");
    if (!button || !/^\d+$/.test(button.dataset.id || "")) {
      return;
    }
    target = { id: button.dataset.id, name: button.dataset.name || "(unnamed)" };
    title.textContent = "Cancel " + target.name + " #" + target.id + "?";
    form.reset();
    dialog.showModal();
    reason.focus();
  });

  keep.addEventListener("click", function () {
    dialog.close("keep");
  });

  dialog.addEventListener("close", function () {
    if (dialog.returnValue !== "confirm" && target !== null) {
      const button = state.querySelector('button.cancel[data-id="' + target.id + '"]');
      if (button) {
        button.focus();
      }
      target = null;
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (target === null) {
      return;
    }
    const chosen = target;
    const reasonValue = reason.value;
    const messageValue = message.value;
    target = null;
    dialog.close("confirm");
    cancel(chosen, reasonValue, messageValue);
  });

  showAge();
  setInterval(showAge, 1000);
  timer = setTimeout(refresh, EVERY_MS);
})();
