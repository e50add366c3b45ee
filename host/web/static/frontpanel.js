// smartPDU: the virtual front panel (R13), shown when the unit has no GPIO front panel (a
// PC, the virtual PDU): the RUN LED flashes once per heartbeat the server reports
// (view.frontpanel.beats; a stalled or unhealthy service sends none), DATA TX flashes when
// the server sent (view.frontpanel.tx), RESET restarts the web server (admin + CSRF).
// Reads app.js's state (window.smartpdu); puts nothing from the unit in the page as HTML.
"use strict";

(() => {
  const API = "/api/v1";
  const RUN_FLASH_MS = 150;
  const TX_FLASH_MS = 120;
  const POLL_MS = 50;
  let last = null; // the beats and sends last seen
  const timers = new Map();

  function $(sel) { return document.querySelector(sel); }

  function flash(node, ms) {
    node.classList.add("on");
    clearTimeout(timers.get(node));
    timers.set(node, setTimeout(() => node.classList.remove("on"), ms));
  }

  function tick() {
    const box = $("#frontpanel");
    const S = window.smartpdu;
    const fp = S && S.view ? S.view.frontpanel : null;
    const virtual = Boolean(fp && fp.source === "virtual");
    if (box.hidden === virtual) box.hidden = !virtual;
    if (!virtual) { last = null; return; }
    const run = $("#fp-run");
    const tx = $("#fp-tx");
    if (last && fp.beats !== last.beats) flash(run, RUN_FLASH_MS);
    if (last && fp.tx !== last.tx) flash(tx, TX_FLASH_MS);
    run.dataset.healthy = String(fp.healthy);
    const title = fp.healthy ? `RUN: heartbeat every ${fp.heartbeat_s} s` : `RUN off: ${fp.problem}`;
    if (run.title !== title) run.title = title;
    if (!tx.title) tx.title = "DATA TX: the web server is sending";
    last = { beats: fp.beats, tx: fp.tx };
  }

  async function reset() {
    const S = window.smartpdu;
    const status = $("#fp-status");
    if (!S || !S.session.logged_in) {
      status.textContent = "log in as admin to press RESET";
      $("#login-button").click();
      return;
    }
    if (!confirm("RESET: restart the web server? Monitoring and recording go on; you log in again.")) return;
    let response = null;
    try {
      response = await fetch(`${API}/frontpanel/reset`, {
        method: "POST", credentials: "same-origin", cache: "no-store",
        headers: { Accept: "application/json", "X-CSRF-Token": S.session.csrf_token || "" },
      });
    } catch (err) {
      response = null;
    }
    status.textContent = response && response.ok ? "web server restarting…"
      : `RESET refused (${response ? response.status : "no answer"})`;
    setTimeout(() => { status.textContent = ""; }, 5000);
  }

  $("#fp-reset").addEventListener("click", reset);
  setInterval(tick, POLL_MS);
})();
