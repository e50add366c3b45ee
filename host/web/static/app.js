// smartPDU monitoring interface. Plain JavaScript, no libraries, nothing fetched from the
// internet (the show LAN has none). Every string that comes from the unit or a user is put
// in the page as text (textContent / text nodes), never parsed as HTML.
"use strict";

(() => {
  const API = "/api/v1";
  const SVGNS = "http://www.w3.org/2000/svg";
  const S = {
    view: null,
    seq: 0,
    session: { logged_in: false, csrf_token: null, read_open: true, password_set: false },
    ws: null,
    wsDelay: 500,
    clockOffset: 0, // local seconds - server seconds
    lastMessage: 0,
    refs: { channels: {}, groups: {}, meter: {}, panels: {} },
    skeletonKey: "",
    meterKey: "",
    historySeries: null,
    historyRange: "hour",
    chartSeries: null,
    chartRange: "hour",
    events: [],
    eventsTimer: null,
    afterLogin: null,
    editing: null,
    stats: { messages: 0, bytes: 0, renderMs: 0 },
    link: "connecting",
  };
  window.smartpdu = S; // for the console and the tests

  // ------------------------------------------------------------------ DOM helpers

  function $(sel, root) { return (root || document).querySelector(sel); }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === "text") node.textContent = String(value);
        else if (key === "className") node.className = value;
        else if (key === "dataset") Object.assign(node.dataset, value);
        else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function fill(node, ...children) {
    node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
  }

  // Live numbers change many times a second: a node holding one text node keeps it and
  // only its data changes (no new node, no layout object rebuilt).
  function setText(node, text) {
    const value = text === null || text === undefined ? "" : String(text);
    const first = node.firstChild;
    if (first !== null && first.nodeType === 3 && first.nextSibling === null) {
      if (first.data !== value) first.data = value;
    } else if (node.textContent !== value) {
      node.textContent = value;
    }
  }

  function setHidden(node, hidden) {
    if (node.hidden !== hidden) node.hidden = hidden;
  }

  function setClass(node, className) {
    if (node.className !== className) node.className = className;
  }

  function setData(node, key, value) {
    const v = String(value);
    if (node.dataset[key] !== v) node.dataset[key] = v;
  }

  const ICONS = {
    pen: [["path", { d: "M4 20h4L19 9l-4-4L4 16v4z" }], ["path", { d: "M13.5 6.5l4 4" }]],
    eye: [["path", { d: "M2 12s3.6-7 10-7 10 7 10 7-3.6 7-10 7S2 12 2 12z" }], ["circle", { cx: 12, cy: 12, r: 3 }]],
    triangle: [["path", { d: "M12 3L2 21h20L12 3z", fill: "currentColor", stroke: "currentColor" }],
      ["path", { d: "M12 10v5", stroke: "#000", "stroke-width": 2.4 }], ["circle", { cx: 12, cy: 18, r: 1.3, fill: "#000", stroke: "none" }]],
  };

  function icon(name) {
    const root = svg("svg", { viewBox: "0 0 24 24", class: "ico", "aria-hidden": "true", focusable: "false" });
    for (const [tag, attrs] of ICONS[name]) root.append(svg(tag, attrs));
    return root;
  }

  // ------------------------------------------------------------------ formatting

  function fmtAmps(a) {
    if (a === null || a === undefined) return "—";
    if (a < 10) return a.toFixed(2);
    if (a < 100) return a.toFixed(1);
    return a.toFixed(0);
  }

  function fmtNum(v, unit) {
    if (v === null || v === undefined) return "—";
    const d = { A: 2, V: 1, Hz: 2, W: 0, VAr: 0, VA: 0, kWh: 2, kVArh: 2, "": 3 }[unit];
    return Number(v).toFixed(d === undefined ? 2 : d);
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function fmtTime(t) {
    if (!t) return "—";
    const d = new Date(t * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtDateTime(t) {
    if (!t) return "—";
    const d = new Date(t * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtTime(t)}`;
  }

  function fmtAge(s) {
    if (s === null || s === undefined || !isFinite(s)) return "—";
    if (s < 0) s = 0;
    if (s < 10) return `${s.toFixed(1)} s`;
    if (s < 120) return `${Math.round(s)} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    return `${Math.round(s / 3600)} h`;
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return "—";
    if (s < 60) return `${Math.round(s)} s`;
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return `${d} d ${h} h`;
    if (h) return `${h} h ${m} min`;
    return `${m} min ${Math.floor(s % 60)} s`;
  }

  function serverNow() { return Date.now() / 1000 - S.clockOffset; }

  function unitPath() { return `${API}/units/${encodeURIComponent(S.view.unit.id)}`; }

  // ------------------------------------------------------------------ API

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && S.session.csrf_token) headers["X-CSRF-Token"] = S.session.csrf_token;
    let response;
    try {
      response = await fetch(path, {
        method, headers, credentials: "same-origin", cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      return { ok: false, status: 0, data: { error: { message: "the unit cannot be reached" } } };
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  function errorText(result) {
    const e = result.data && result.data.error;
    return e && e.message ? e.message : `request failed (${result.status || "no answer"})`;
  }

  // A change: needs the login; asks for it and tries again once.
  async function write(method, path, body) {
    let result = await api(method, path, body);
    if (result.status === 401 || (result.status === 403 && !S.session.logged_in)) {
      const loggedIn = await askLogin();
      if (!loggedIn) return result;
      result = await api(method, path, body);
    }
    return result;
  }

  async function loadSession() {
    const result = await api("GET", `${API}/session`);
    if (result.ok && result.data) S.session = result.data;
    renderSession();
    return S.session;
  }

  function renderSession() {
    const button = $("#login-button");
    setText(button, S.session.logged_in ? "Log out" : "Log in");
    button.title = S.session.logged_in ? "Logged in as admin" : "Log in as admin to change names and supervision";
  }

  // ------------------------------------------------------------------ dialogs

  function openDialog(dialog) {
    if (!dialog.open) dialog.showModal();
  }

  function closeDialog(dialog) {
    if (dialog.open) dialog.close();
  }

  for (const dialog of document.querySelectorAll("dialog")) {
    dialog.addEventListener("click", (ev) => {
      if (ev.target instanceof Element && ev.target.closest("[data-close]")) closeDialog(dialog);
    });
  }

  function askLogin() {
    return new Promise((resolve) => {
      const dialog = $("#dlg-login");
      setText($("#login-error"), S.session.password_set === false
        ? "No admin password is set on this unit yet: run 'smartpdu passwd' on it." : "");
      $("#login-password").value = "";
      S.afterLogin = resolve;
      const onClose = () => {
        dialog.removeEventListener("close", onClose);
        if (S.afterLogin) { S.afterLogin(false); S.afterLogin = null; }
      };
      dialog.addEventListener("close", onClose);
      openDialog(dialog);
      $("#login-password").focus();
    });
  }

  $("#form-login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const result = await api("POST", `${API}/login`, { password: $("#login-password").value });
    if (!result.ok) {
      setText($("#login-error"), errorText(result));
      return;
    }
    S.session.logged_in = true;
    S.session.csrf_token = result.data.csrf_token;
    renderSession();
    const done = S.afterLogin;
    S.afterLogin = null;
    closeDialog($("#dlg-login"));
    if (done) done(true);
    if (!S.ws) connect();
  });

  $("#login-button").addEventListener("click", async () => {
    if (S.session.logged_in) {
      await api("POST", `${API}/logout`, {});
      S.session.logged_in = false;
      S.session.csrf_token = null;
      renderSession();
    } else {
      await askLogin();
    }
  });

  // Name of the unit (pane B) or label of a channel (pane D): the manual's "Set name".
  function openNameDialog(target) {
    S.editing = target;
    const v = S.view;
    if (target.kind === "unit") {
      setText($("#dlg-name-title"), "Set name");
      setText($("#name-target"), `Unit ${v.unit.id}`);
      $("#name-input").value = v.unit.custom_name || "";
    } else {
      const c = v.channels[target.id];
      setText($("#dlg-name-title"), "Set name");
      setText($("#name-target"), `Channel ${target.id}`);
      $("#name-input").value = c ? c.label : "";
    }
    setText($("#name-error"), "");
    openDialog($("#dlg-name"));
    $("#name-input").focus();
    $("#name-input").select();
  }

  $("#form-name").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const target = S.editing;
    if (!target) return;
    const text = $("#name-input").value;
    if ([...text.trim()].length > 32) {
      setText($("#name-error"), "a name has at most 32 characters");
      return;
    }
    const result = target.kind === "unit"
      ? await write("PUT", `${unitPath()}/name`, { name: text })
      : await write("PUT", `${unitPath()}/channels/${encodeURIComponent(target.id)}/label`, { label: text });
    if (!result.ok) {
      setText($("#name-error"), errorText(result));
      return;
    }
    closeDialog($("#dlg-name"));
  });

  function openSupervisionDialog(id) {
    S.editing = { kind: "supervision", id };
    const c = S.view.channels[id];
    setText($("#sup-target"), c && c.label ? `Channel ${id} · ${c.label}` : `Channel ${id}`);
    $("#sup-min").value = c ? String(c.sup_min) : "0";
    $("#sup-max").value = c ? String(c.sup_max) : "16";
    setText($("#sup-status"), c ? supervisionText(c) : "");
    setText($("#sup-error"), "");
    openDialog($("#dlg-supervision"));
    $("#sup-min").focus();
  }

  function supervisionText(c) {
    if (!c.sup_on) return "Not supervised.";
    const state = { ok: "within range", below_min: "BELOW MINIMUM", above_max: "ABOVE MAXIMUM", unsupervised: "not supervised" }[c.sup_status] || c.sup_status;
    return `Supervised ${c.sup_min}–${c.sup_max} A: ${state}.`;
  }

  async function sendSupervision(body) {
    const id = S.editing && S.editing.id;
    if (!id) return;
    const result = await write("PUT", `${unitPath()}/channels/${encodeURIComponent(id)}/supervision`, body);
    if (!result.ok) {
      setText($("#sup-error"), errorText(result));
      return;
    }
    closeDialog($("#dlg-supervision"));
  }

  $("#form-supervision").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const min = Number($("#sup-min").value), max = Number($("#sup-max").value);
    if ($("#sup-min").value === "" || $("#sup-max").value === "" || !isFinite(min) || !isFinite(max)) {
      setText($("#sup-error"), "enter the minimum and maximum current in A");
      return;
    }
    if (min < 0 || max > 63 || min > max) {
      setText($("#sup-error"), "need 0 ≤ minimum ≤ maximum ≤ 63 A");
      return;
    }
    sendSupervision({ enabled: true, min_a: min, max_a: max });
  });
  $("#sup-off").addEventListener("click", () => sendSupervision({ enabled: false }));
  $("#rename-unit").append(icon("pen"));
  $("#rename-unit").addEventListener("click", () => openNameDialog({ kind: "unit" }));

  // ------------------------------------------------------------------ live link

  function setLink(state, text) {
    S.link = state;
    setData(document.body, "link", state);
    setText($("#link-status"), text);
    setHidden($("#no-data"), state === "live");
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}${API}/ws`);
    S.ws = ws;
    ws.onmessage = (ev) => {
      const started = performance.now();
      let msg;
      try { msg = JSON.parse(ev.data); } catch (err) { return; }
      S.lastMessage = Date.now();
      S.wsDelay = 500;
      if (msg.type === "full") {
        S.view = msg.view;
        S.seq = msg.seq;
        onView(null);
      } else if (msg.type === "patch" && S.view) {
        S.view = mergePatch(S.view, msg.patch);
        S.seq = msg.seq;
        onView(msg.patch);
      }
      S.stats.messages += 1;
      S.stats.bytes += ev.data.length;
      S.stats.renderMs += performance.now() - started;
      // Applied: ready for the next frame (the server keeps one in flight per page).
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ack", seq: S.seq }));
    };
    ws.onopen = () => setLink("connecting", "connected, waiting for data…");
    ws.onclose = () => {
      if (S.ws !== ws) return;
      S.ws = null;
      setLink("offline", "NO LIVE DATA: reconnecting…");
      const delay = S.wsDelay;
      S.wsDelay = Math.min(5000, S.wsDelay * 2);
      setTimeout(async () => {
        const session = await loadSession();
        if (session.read_open || session.logged_in) connect();
        else askLogin();
      }, delay);
    };
  }

  // Merge patch (host/web/view.py merge_diff): objects merge member by member, anything
  // else replaces (null included); {"$replace": value} replaces an object whole.
  function applyPatch(target, patch) {
    if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
    if (Object.prototype.hasOwnProperty.call(patch, "$replace")) return patch.$replace;
    const result = target && typeof target === "object" && !Array.isArray(target) ? { ...target } : {};
    for (const [key, value] of Object.entries(patch)) result[key] = applyPatch(result[key], value);
    return result;
  }

  // The same, merged into the view in place: a frame touches a few channels of the view,
  // the rest of it is not copied.
  function mergePatch(target, patch) {
    if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
    if (Object.prototype.hasOwnProperty.call(patch, "$replace")) return patch.$replace;
    if (!target || typeof target !== "object" || Array.isArray(target)) return applyPatch(null, patch);
    for (const key in patch) target[key] = mergePatch(target[key], patch[key]);
    return target;
  }

  function replaced(part) { return Boolean(part && typeof part === "object" && "$replace" in part); }

  function onView(patch) {
    const v = S.view;
    S.clockOffset = Date.now() / 1000 - v.taken_at;
    if (S.link !== "live") setLink("live", "live");
    const key = v.group_order.join("") + ":" + v.unit.id;
    if (!patch || key !== S.skeletonKey || replaced(patch.channels) || replaced(patch.groups) || "meter_quantities" in patch) {
      buildSkeleton();
      renderAll();
      return;
    }
    if (patch.channels) for (const id in patch.channels) renderChannel(id);
    if (patch.groups) {
      let boards = false;
      for (const letter in patch.groups) {
        const g = patch.groups[letter];
        renderGroup(letter);
        if (g && "panel" in g) {
          if (v.groups[letter].panel && !S.refs.panels[letter]) buildPanels();
          renderPanel(letter);
          for (const id of v.groups[letter].channels) renderChannel(id);
        }
        if (g && g.board && boardTableChanged(g.board)) boards = true;
      }
      if (boards) renderBoards();
    }
    if (patch.unit) renderUnitName();
    if (patch.units || patch.unit || "triangle" in patch) renderUnits();
    if (patch.meter) renderMeter();
    if (patch.breaker || patch.mains) { renderBreaker(); renderMains(); }
    if (patch.conditions) renderConditions();
    if (patch.events) scheduleEvents();
  }

  // last_seen moves with every report and is shown as an age once a second (renderAges);
  // frames_ok is not shown.
  function boardTableChanged(boardPatch) {
    for (const key in boardPatch) if (key !== "last_seen" && key !== "frames_ok") return true;
    return false;
  }

  function renderAll() {
    renderUnitName();
    renderUnits();
    for (const letter of S.view.group_order) renderGroup(letter);
    for (const id of Object.keys(S.view.channels)) renderChannel(id);
    renderMeter();
    renderBreaker();
    renderMains();
    renderBoards(true);
    renderConditions();
    renderPanels();
    renderHistorySeries();
    scheduleEvents(0);
  }

  // ------------------------------------------------------------------ pane A

  function renderUnits() {
    const v = S.view;
    const list = $("#units");
    const ids = v.units.map((u) => `${u.id}:${u.trust || ""}`).join("\n");
    if (!S.refs.units || S.refs.units.ids !== ids) {
      S.refs.units = { ids, rows: {} };
      const rows = v.units.map((u) => buildUnitRow(u));
      list.replaceChildren(...rows);
    }
    for (const u of v.units) updateUnitRow(u);
  }

  // A unit found on the LAN but not adopted: name, address and key only (nothing that can
  // alarm), and the admin's one-click adoption.
  function buildDiscoveredRow(u) {
    const name = el("span", { className: "u-name" });
    const message = el("span", { className: "u-message", role: "status" });
    const adopt = el("button", {
      className: "small primary", type: "button", text: "Adopt",
      title: `Trust this unit (key ${u.fingerprint}) on every unit of the site`,
    });
    adopt.addEventListener("click", async () => {
      adopt.disabled = true;
      const result = await write("POST", `${API}/peers/adopt`, { unit_id: u.id, fingerprint: u.fingerprint });
      adopt.disabled = false;
      setText(message, result.ok ? "adopted" : errorText(result));
    });
    // Its own name is its claim, not a fact: shown as such, under the id.
    const claim = u.custom_name ? `calls itself “${u.custom_name}” · ` : "";
    const row = el("div", { className: "unit-row discovered", role: "listitem", dataset: { unit: u.id } },
      name, el("span", { className: "badge discovered", text: "Discovered" }),
      el("span", { className: "u-addr", text: `${claim}${u.url || "no address"}` }),
      el("span", { className: "u-fp", text: `key ${u.fingerprint}` }),
      el("span", { className: "u-actions" }, adopt, message));
    S.refs.units.rows[u.id] = { row, name, discovered: true };
    return row;
  }

  function removeButton(u) {
    const button = el("button", { className: "small", type: "button", text: "Remove", title: `Stop trusting ${u.id} (key ${u.fingerprint})` });
    button.addEventListener("click", async (ev) => {
      ev.stopPropagation();
      if (!confirm(`Remove ${u.name} (key ${u.fingerprint}) from the site? Its figures are no longer shown.`)) return;
      const result = await write("POST", `${API}/peers/remove`, { unit_id: u.id });
      if (!result.ok) alert(errorText(result));
    });
    button.addEventListener("keydown", (ev) => ev.stopPropagation());
    return button;
  }

  function buildUnitRow(u) {
    if (u.trust === "discovered") return buildDiscoveredRow(u);
    const local = u.local !== false && u.id === S.view.unit.id;
    const name = el("span", { className: "u-name" });
    const flags = el("span", { className: "u-flags" });
    const phases = [];
    const phase = (k) => {
      const value = el("span", { className: "v" });
      phases.push(value);
      return el("span", { className: "u-phase" }, el("span", { className: "k", text: k }), value);
    };
    const source = el("span", { className: "u-source" });
    const row = el("div", {
      className: "unit-row", role: "listitem", tabindex: "0", dataset: { unit: u.id },
      "aria-current": local ? "true" : "false", title: local ? "This unit" : `Open ${u.url}`,
    }, name, flags, el("span", { className: "u-currents" }, phase("L1 A"), phase("L2 A"), phase("L3 A"), phase("N A")),
    local || !u.fingerprint ? source : el("span", { className: "u-source u-peer" }, source, removeButton(u)));
    const select = () => {
      if (local) $("#pane-b").scrollIntoView({ behavior: "smooth", block: "start" });
      else if (u.url) location.href = u.url;
    };
    row.addEventListener("click", select);
    row.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(); } });
    S.refs.units.rows[u.id] = { row, name, flags, phases, source, flagKey: null };
    return row;
  }

  function updateUnitRow(u) {
    const r = S.refs.units.rows[u.id];
    if (!r) return;
    if (r.discovered) return setText(r.name, u.id);
    setText(r.name, u.name);
    [u.l1, u.l2, u.l3, u.n].forEach((value, i) => {
      const none = value === null || value === undefined;
      const text = none ? "—" : Number(value).toFixed(1);
      setText(r.phases[i], text);
      r.phases[i].classList.toggle("none", none);
      // "125.4" would not fit the box on a phone at the full size (see .u-phase .v.long).
      r.phases[i].classList.toggle("long", text.length > 4);
    });
    setText(r.source, u.source === "meter" ? "main meter" : u.source === "channels" ? "sum of the outputs (meter not live)" : "no live data");
    const flagKey = `${u.warning}|${u.tripped}|${u.online}|${u.alarms}`;
    if (flagKey === r.flagKey) return;
    r.flagKey = flagKey;
    const flags = [];
    if (u.warning) {
      const tri = el("span", { className: "triangle", title: "A supervised channel is out of its range", role: "img", "aria-label": "warning: supervised channel out of range" });
      tri.append(icon("triangle"));
      flags.push(tri);
    }
    if (u.tripped) flags.push(el("span", { className: "badge tripped", text: "Main breaker tripped" }));
    if (!u.online) flags.push(el("span", { className: "badge offline", text: "Offline" }));
    if (u.alarms) flags.push(el("span", { className: "badge alarm", text: `${u.alarms} alarm${u.alarms > 1 ? "s" : ""}` }));
    r.flags.replaceChildren(...flags);
  }

  // ------------------------------------------------------------------ pane B

  function renderUnitName() {
    const u = S.view.unit;
    setText($("#unit-name"), u.name);
    document.title = `${u.name} · smartPDU monitoring`;
    setText($("#unit-sub"), `${u.id} · smartPDU ${u.model}${u.number ? ` · unit ${u.number} in detection order` : ""}`);
  }

  // ------------------------------------------------------------------ pane D

  function buildSkeleton() {
    const v = S.view;
    S.skeletonKey = v.group_order.join("") + ":" + v.unit.id;
    S.refs.channels = {};
    S.refs.groups = {};
    const groups = [];
    for (const letter of v.group_order) {
      const g = v.groups[letter];
      // The numbers that move with every frame each sit in a fixed box of their own.
      const total = el("span", { className: "g-num" });
      const phases = el("span", { className: "g-num" });
      const status = el("span", { className: "badge" });
      // Which output the group's LOAD CURRENT display shows (the blue button on the board).
      const shows = el("span", { className: "g-shows" });
      const load = el("span", { className: "g-load", title: "The output selected on the board's front panel: its button is blue and the LOAD CURRENT display shows its current" },
        el("span", { className: "muted", text: "LOAD CURRENT " }), shows);
      const fw = el("span", { className: "muted" });
      const tiles = [];
      for (const id of g.channels) tiles.push(buildChannel(id));
      const section = el("div", { className: "group", dataset: { group: letter } },
        el("div", { className: "group-head" }, el("h3", { text: `Group ${letter}` }),
          el("span", { className: "g-total" }, total), el("span", { className: "g-phases muted" }, phases), load, status, fw),
        el("div", { className: "channels" }, ...tiles));
      S.refs.groups[letter] = { section, total, phases, status, fw, shows };
      groups.push(section);
    }
    $("#groups").replaceChildren(...groups);
    S.refs.units = null;
    buildBoards();
    buildMeter();
    buildPanels();
  }

  function buildChannel(id) {
    const c = S.view.channels[id];
    const led = el("span", { className: "btn-led", title: "monitor button" });
    const num = el("span", { className: "ch-num", text: String(c.n) });
    const label = el("span", { className: "ch-label" });
    const pen = el("button", { type: "button", className: "icon", dataset: { action: "label" }, "aria-label": `Set name of channel ${id}`, title: "Set name" });
    pen.append(icon("pen"));
    pen.addEventListener("click", () => openNameDialog({ kind: "channel", id }));
    const eye = el("button", { type: "button", className: "icon", dataset: { action: "supervision" }, "aria-label": `Supervision of channel ${id}`, title: "Channel supervision" });
    eye.append(icon("eye"));
    eye.addEventListener("click", () => openSupervisionDialog(id));
    const amps = el("span", { className: "amps" });
    const current = el("div", { className: "ch-current", title: "History of this channel", role: "button", tabindex: "0" }, amps, el("span", { className: "unit", text: "A" }));
    current.addEventListener("click", () => openChart(id));
    current.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openChart(id); });
    const phase = el("span", { className: "phase" });
    const ttt = el("span", { className: "ttt" });
    const sup = el("span", { className: "sup" });
    const tile = el("div", { className: "ch", dataset: { ch: id } },
      el("div", { className: "ch-head" }, led, num, label, pen, eye),
      current,
      el("div", { className: "ch-foot" }, phase, ttt, sup));
    S.refs.channels[id] = { tile, label, amps, phase, ttt, sup };
    return tile;
  }

  function renderChannel(id) {
    const c = S.view.channels[id];
    const r = S.refs.channels[id];
    if (!c || !r) return;
    setText(r.amps, c.over_range ? `≥${fmtAmps(c.current_a)}` : fmtAmps(c.current_a));
    // A frame mostly moves the current: the rest is redrawn only when one of its inputs changed.
    const key = `${c.state}|${c.freshness}|${c.selected}|${c.sup_on}|${c.sup_status}|${c.sup_min}|${c.sup_max}|${c.phase}|${c.ttt_s}|${c.label}`;
    if (r.key === key) return;
    r.key = key;
    const live = c.freshness === "live";
    setData(r.tile, "state", live ? c.state : "unknown");
    setData(r.tile, "fresh", c.freshness);
    setData(r.tile, "selected", Boolean(c.selected));
    setData(r.tile, "sup", c.sup_on && (c.sup_status === "below_min" || c.sup_status === "above_max") ? "warning" : c.sup_on ? "on" : "off");
    setData(r.tile, "labelled", Boolean(c.label));
    if (r.label.textContent !== c.label) { r.label.textContent = c.label; r.label.title = c.label; }
    setText(r.phase, c.phase);
    let ttt = "";
    if (live && c.state === "tripped") ttt = "TRIPPED";
    else if (live && (c.state === "slight" || c.state === "serious")) {
      if (c.ttt_s === null || c.ttt_s === undefined) ttt = c.state === "serious" ? "may trip now" : "overload";
      else if (c.ttt_s <= 0) ttt = "trip due now";
      else ttt = `trips in ~${fmtDuration(c.ttt_s)}`;
    }
    setText(r.ttt, ttt);
    let sup = "";
    if (c.sup_on) {
      sup = c.sup_status === "below_min" ? `▼ below ${c.sup_min} A` : c.sup_status === "above_max" ? `▲ above ${c.sup_max} A` : `${c.sup_min}–${c.sup_max} A`;
    }
    setText(r.sup, sup);
    r.sup.classList.toggle("warn", c.sup_status === "below_min" || c.sup_status === "above_max");
  }

  function renderGroup(letter) {
    const g = S.view.groups[letter];
    const r = S.refs.groups[letter];
    if (!g || !r) return;
    setText(r.total, `${fmtAmps(g.current_a)} A`);
    setText(r.phases, `L1 ${fmtAmps(g.phases[0])} · L2 ${fmtAmps(g.phases[1])} · L3 ${fmtAmps(g.phases[2])}`);
    const sel = g.selected ? String(g.selected) : "";
    if (r.section.dataset.selected !== sel) {
      r.section.dataset.selected = sel;
      setText(r.shows, sel ? `${letter}${sel}` : "—");
      r.shows.title = sel ? `output ${letter}${sel} is selected` : "nothing selected";
    }
    setText(r.status, g.board.online ? "board online" : "board OFFLINE");
    setClass(r.status, g.board.online ? "badge ok" : "badge offline");
    setText(r.fw, g.board.firmware ? `fw ${g.board.firmware}${g.board.firmware_mismatch ? " (mismatch)" : ""}` : "");
  }

  // ------------------------------------------------------------------ pane C

  function buildMeter() {
    const q = S.view.meter_quantities;
    S.meterKey = q.map((x) => x[0]).join(",");
    S.refs.meter = {};
    const cells = [];
    for (const [name, label, unit] of q) {
      const value = el("span", { className: "v" });
      const cell = el("div", { className: "mq", dataset: { q: name } },
        el("span", { className: "k", text: label }), value, el("span", { className: "u", text: unit }));
      S.refs.meter[name] = { cell, value, unit };
      cells.push(cell);
    }
    $("#meter").replaceChildren(...cells);
  }

  function renderMeter() {
    const m = S.view.meter;
    const badge = $("#meter-fresh");
    const fresh = m.enabled ? m.freshness : "disabled";
    setText(badge, { live: "live", stale: "stale", offline: "offline", no_data: "no data", disabled: "not fitted" }[fresh] || fresh);
    setClass(badge, `badge ${fresh}`);
    const err = $("#meter-error");
    setHidden(err, !m.last_error);
    setText(err, m.last_error || "");
    for (const [name, r] of Object.entries(S.refs.meter)) {
      const reading = m.readings[name];
      const f = reading ? reading.f : "no_data";
      setData(r.cell, "fresh", f);
      setText(r.value, reading && (f === "live" || f === "stale") ? fmtNum(reading.v, r.unit) : "—");
    }
    renderAges();
  }

  function renderAges() {
    if (!S.view) return;
    const m = S.view.meter;
    setText($("#meter-age"), m.last_reading_at ? `data age ${fmtAge(serverNow() - m.last_reading_at)}` : "");
    renderBoards(true);
    if (S.ws && S.lastMessage && Date.now() - S.lastMessage > 10000) {
      setText($("#link-status"), `live link idle for ${fmtAge((Date.now() - S.lastMessage) / 1000)}`);
    }
  }

  // Key-value lists are updated in place (they change with every status frame).
  function kv(container, pairs) {
    const key = pairs.map((p) => p[0]).join("\n");
    if (container.dataset.keys !== key) {
      container.dataset.keys = key;
      const nodes = [];
      for (const [k] of pairs) nodes.push(el("span", { className: "k", text: k }), el("span", { className: "v" }));
      container.replaceChildren(...nodes);
    }
    const values = container.children;
    pairs.forEach(([, v, cls], i) => {
      const node = values[2 * i + 1];
      setText(node, v);
      const className = cls ? `v ${cls}` : "v";
      if (node.className !== className) node.className = className;
    });
  }

  function renderBreaker() {
    const v = S.view;
    const b = v.breaker, m = v.mains;
    setText($("#breaker-type"), b.type);
    const pos = m.freshness === "live" || m.freshness === "stale" ? m.breaker : "unknown";
    const posText = { closed: "CLOSED (on)", open: "OPEN (off)", tripped: "TRIPPED", unknown: "position unknown" }[pos] || pos;
    const posEl = $("#breaker-position");
    setText(posEl, posText + (m.freshness === "stale" ? " (stale)" : ""));
    setClass(posEl, `big-state ${pos}`);
    const bar = $("#breaker-bar");
    const pct = b.load_pct;
    const live = b.freshness === "live";
    const scale = `scaleX(${pct === null ? 0 : (Math.min(150, pct) / 150).toFixed(3)})`;
    if (bar.style.transform !== scale) bar.style.transform = scale;
    setClass(bar, "gauge-bar" + (!live ? " stale" : pct >= 100 ? " over" : pct >= 90 ? " near" : ""));
    const phasePct = b.phase_pct.map((p, i) => `L${i + 1} ${p === null ? "—" : p.toFixed(0)} %`).join(" · ");
    const pairs = [
      ["Load", pct === null ? "—" : `${pct.toFixed(0)} % of IR (${b.settings.ir_a} A)${b.highest_phase ? ` on ${b.highest_phase}` : ""}${live ? "" : " — not live"}`, live ? "" : "muted"],
      ["Per phase", phasePct],
      ["Neutral", b.neutral_pct === null ? "—" : `${b.neutral_pct.toFixed(0)} % of ${b.settings.inn ? "InN" : "In"}`],
      ["Status LED", b.led_text],
      ["Level", b.level_text],
    ];
    if (b.time_to_trip_s !== null && b.time_to_trip_s !== undefined) pairs.push(["Trips in", `~${fmtDuration(b.time_to_trip_s)} if the load stays`, "bad"]);
    kv($("#breaker-load"), pairs);
    kv($("#breaker-settings"), b.settings_text);
    const trip = $("#breaker-trip");
    const last = b.last_trip;
    const tripKey = last ? `${pos}|${JSON.stringify(last)}` : "";
    if (trip.dataset.key === tripKey) return;
    trip.dataset.key = tripKey;
    if (last) {
      trip.hidden = false;
      const items = last.evidence.map((e) => el("li", { text: e }));
      fill(trip,
        el("div", { className: "cause", text: `${pos === "tripped" ? "Tripped" : "Last trip"}: ${last.cause_text}` }),
        el("div", { text: `${fmtDateTime(last.at)} · ${last.confidence === "likely" ? "likely cause" : last.confidence === "certain" ? "cause identified by the sensors" : "cause not identified"}` }),
        items.length ? el("ul", null, ...items) : null);
    } else {
      trip.hidden = true;
      trip.replaceChildren();
    }
  }

  function renderMains() {
    const m = S.view.mains;
    const badge = $("#mains-fresh");
    setText(badge, m.online ? (m.freshness === "live" ? "live" : m.freshness) : "offline");
    setClass(badge, `badge ${m.online ? m.freshness : "offline"}`);
    const yn = (value, yes, no) => value === null || value === undefined ? "unknown" : value ? yes : no;
    kv($("#mains"), [
      ["Emergency Stop", yn(m.emergency_stop, "PRESSED", "released"), m.emergency_stop ? "bad" : ""],
      ["Neutral", yn(m.neutral_lost, "LOST", "present"), m.neutral_lost ? "bad" : ""],
      ["Temperature", m.temperature_fault ? "sensor fault" : m.temperature_c === null ? "—" : `${m.temperature_c.toFixed(1)} °C`],
      ["Trips counted", m.trip_count === null ? "—" : String(m.trip_count)],
      ["Latched cause", m.latched_cause ? m.latched_cause.replace("_", " ") : "none"],
      ["Data age", m.updated_at ? fmtAge(serverNow() - m.updated_at) : "—"],
    ]);
  }

  function buildBoards() {
    S.refs.boards = {};
    const rows = [];
    for (const letter of S.view.group_order) {
      const cells = [0, 1, 2, 3, 4, 5, 6].map(() => el("td"));
      setText(cells[0], letter);
      S.refs.boards[letter] = cells;
      rows.push(el("tr", { dataset: { group: letter } }, ...cells));
    }
    $("#boards tbody").replaceChildren(...rows);
  }

  // Ages move every frame: they are redrawn once a second (renderAges), not per frame.
  function renderBoards(withAges) {
    if (!S.view || !S.refs.boards) return;
    for (const letter of S.view.group_order) {
      const b = S.view.groups[letter].board;
      const c = S.refs.boards[letter];
      if (!c) continue;
      setText(c[1], b.online ? "online" : "OFFLINE");
      setClass(c[1], b.online ? "" : "bad");
      setText(c[2], b.firmware ? b.firmware + (b.firmware_mismatch ? " (mismatch)" : "") : "—");
      setClass(c[2], b.firmware_mismatch ? "bad" : "");
      setText(c[3], `${b.crc_errors} CRC, ${b.timeouts} t/o${b.rx_errors !== null ? `, ${b.rx_errors} rx` : ""}`);
      setText(c[4], b.latency_ms === null ? "—" : `${b.latency_ms} ms`);
      setText(c[5], b.uptime_s === null ? "—" : fmtDuration(b.uptime_s));
      if (withAges) setText(c[6], b.last_seen ? fmtAge(serverNow() - b.last_seen) : "—");
    }
  }

  function renderConditions() {
    const conditions = S.view.conditions;
    const nodes = conditions.map((c) => el("div", { className: `cond ${c.severity}` },
      el("div", { text: c.message }),
      el("div", { className: "since", text: `since ${fmtTime(c.since)}` })));
    $("#conditions").replaceChildren(...nodes);
    const alarms = conditions.filter((c) => c.severity === "alarm");
    const banner = $("#alarm-banner");
    setHidden(banner, alarms.length === 0);
    if (alarms.length) {
      fill(banner,
        el("span", { text: alarms[0].message }),
        alarms.length > 1 ? el("span", { className: "more", text: `+ ${alarms.length - 1} more alarm${alarms.length > 2 ? "s" : ""}` }) : null);
    } else {
      banner.replaceChildren();
    }
  }

  // ------------------------------------------------------------------ virtual panels

  function buildPanels() {
    const v = S.view;
    S.refs.panels = {};
    const nodes = [];
    for (const letter of v.group_order) {
      if (!v.groups[letter].panel) continue;
      const display = el("span", { className: "seg7", title: "LOAD CURRENT" });
      const buttons = [];
      for (let n = 1; n <= 12; n++) {
        const b = el("button", { type: "button", className: "vbtn", text: String(n), "aria-label": `Monitor button ${n} of group ${letter}`, dataset: { button: String(n) } });
        b.addEventListener("click", () => press(letter, n));
        buttons.push(b);
      }
      const panel = el("div", { className: "vpanel", dataset: { group: letter } },
        el("h3", { text: `Group ${letter}` }),
        el("div", null, el("span", { className: "muted", text: "LOAD CURRENT " }), display),
        el("div", { className: "vbuttons" }, ...buttons));
      S.refs.panels[letter] = { display, buttons };
      nodes.push(panel);
    }
    $("#vpanel-list").replaceChildren(...nodes);
    $("#vpanels").hidden = nodes.length === 0;
  }

  function renderPanels() { for (const letter of Object.keys(S.refs.panels)) renderPanel(letter); }

  function renderPanel(letter) {
    const p = S.view.groups[letter] && S.view.groups[letter].panel;
    const r = S.refs.panels[letter];
    if (!p || !r) return;
    setText(r.display, p.display);
    r.buttons.forEach((b, i) => {
      const colour = p.leds[i] || "#000000";
      if (b.dataset.led !== colour) {
        b.dataset.led = colour;
        b.style.backgroundColor = colour === "#000000" ? "#181c24" : colour;
      }
    });
  }

  async function press(letter, n) {
    const result = await write("POST", `${unitPath()}/groups/${letter}/panel/press`, { button: n });
    setText($("#vpanel-error"), result.ok || result.status === 401 ? "" : errorText(result));
  }

  // ------------------------------------------------------------------ charts

  function niceStep(span, ticks) {
    const raw = span / ticks;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / mag;
    return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  }

  // series: [{name, colour, points: [[t, min, avg, max], ...]}]; band drawn for one series.
  function drawChart(container, series, opts) {
    const W = 900, H = 280, L = 48, R = 12, T = 12, B = 28;
    const start = opts.start, end = opts.end;
    let ymax = 0;
    for (const s of series) for (const p of s.points) ymax = Math.max(ymax, p[3] === null ? 0 : p[3]);
    ymax = ymax <= 0 ? 1 : ymax * 1.1;
    const step = niceStep(ymax, 5);
    ymax = Math.ceil(ymax / step) * step;
    const x = (t) => L + ((t - start) / (end - start)) * (W - L - R);
    const y = (val) => T + (1 - val / ymax) * (H - T - B);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": opts.title || "chart" });
    for (let v = 0; v <= ymax + 1e-9; v += step) {
      root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      root.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", text: `${+v.toFixed(2)}` }));
    }
    const tStep = niceTimeStep(end - start);
    for (let t = Math.ceil(start / tStep) * tStep; t <= end; t += tStep) {
      root.append(svg("line", { x1: x(t), x2: x(t), y1: T, y2: H - B, class: "grid" }));
      const d = new Date(t * 1000);
      root.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle", text: timeLabel(d, tStep) }));
    }
    root.append(svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
    root.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
    root.append(svg("text", { x: 4, y: T + 4, text: opts.unit || "A" }));
    let any = false;
    for (const s of series) {
      const pts = s.points.filter((p) => p[2] !== null);
      if (!pts.length) continue;
      any = true;
      for (const run of splitGaps(pts)) {
        if (opts.band && run.length > 1) {
          const upper = run.map((p) => `${x(p[0]).toFixed(1)},${y(p[3]).toFixed(1)}`);
          const lower = run.slice().reverse().map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`);
          root.append(svg("polygon", { points: upper.concat(lower).join(" "), class: "band" }));
        }
        const line = svg("polyline", { points: run.map((p) => `${x(p[0]).toFixed(1)},${y(p[2]).toFixed(1)}`).join(" "), class: "line" });
        // Through the CSSOM: the page's CSP (no 'unsafe-inline' styles) refuses a style attribute.
        if (s.colour) line.style.stroke = s.colour;
        root.append(line);
      }
    }
    if (!any) root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty", text: "no data in this period" }));
    const legend = series.length > 1 || opts.legend ? el("div", { className: "legend" }, ...series.map((s) => {
      const swatch = el("i");
      swatch.style.background = s.colour;
      return el("span", null, swatch, s.name);
    })) : null;
    fill(container, root, legend);
  }

  // Below a minute the seconds are shown too: "12:34" alone would read as hours:minutes.
  function timeLabel(d, step) {
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return step >= 60 ? hm : `${hm}:${pad(d.getSeconds())}`;
  }

  function niceTimeStep(span) {
    for (const s of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]) if (span / s <= 8) return s;
    return 86400;
  }

  function splitGaps(points) {
    if (points.length < 3) return [points];
    const steps = [];
    for (let i = 1; i < points.length; i++) steps.push(points[i][0] - points[i - 1][0]);
    const sorted = steps.slice().sort((a, b) => a - b);
    const limit = Math.max(3, sorted[Math.floor(sorted.length / 2)] * 3);
    const runs = [[points[0]]];
    for (let i = 1; i < points.length; i++) {
      if (points[i][0] - points[i - 1][0] > limit) runs.push([]);
      runs[runs.length - 1].push(points[i]);
    }
    return runs;
  }

  async function loadHistory(series, range) {
    const result = await api("GET", `${unitPath()}/history?series=${encodeURIComponent(series)}&range=${range}&max_points=600`);
    return result.ok ? result.data : null;
  }

  const PHASE_SERIES = [
    ["L1", "meter.l1_current"], ["L2", "meter.l2_current"], ["L3", "meter.l3_current"], ["N", "meter.neutral_current"],
    ["Σ outputs L1", "sum.L1"], ["Σ outputs L2", "sum.L2"], ["Σ outputs L3", "sum.L3"],
  ];

  function renderHistorySeries() {
    if (!S.historySeries) S.historySeries = "meter.l1_current";
    const buttons = PHASE_SERIES.map(([name, series]) => {
      const b = el("button", { type: "button", text: name, dataset: { series }, "aria-pressed": String(series === S.historySeries) });
      b.addEventListener("click", () => { S.historySeries = series; renderHistorySeries(); });
      return b;
    });
    $("#history-series").replaceChildren(...buttons);
    refreshHistory();
  }

  async function refreshHistory() {
    if (!S.view) return;
    const data = await loadHistory(S.historySeries, S.historyRange);
    if (data) drawChart($("#history-chart"), [{ name: S.historySeries, colour: "#5aa0ff", points: data.points }], { start: data.start, end: data.end, band: true, title: `History of ${S.historySeries}` });
  }

  for (const b of document.querySelectorAll("#history-range button")) {
    b.addEventListener("click", () => {
      S.historyRange = b.dataset.range;
      for (const o of document.querySelectorAll("#history-range button")) o.setAttribute("aria-pressed", String(o === b));
      refreshHistory();
    });
  }

  async function openChart(id) {
    S.chartSeries = id;
    const c = S.view.channels[id];
    setText($("#dlg-chart-title"), `Channel ${id}${c && c.label ? ` · ${c.label}` : ""}`);
    openDialog($("#dlg-chart"));
    await refreshChart();
  }

  async function refreshChart() {
    const body = $("#chart-body");
    body.replaceChildren(el("p", { className: "muted", text: "loading…" }));
    const data = await loadHistory(S.chartSeries, S.chartRange);
    if (data) drawChart(body, [{ name: S.chartSeries, colour: "#5aa0ff", points: data.points }], { start: data.start, end: data.end, band: true, title: `History of ${S.chartSeries}` });
    else body.replaceChildren(el("p", { className: "error", text: "history not available" }));
  }

  for (const b of document.querySelectorAll("#chart-range button")) {
    b.addEventListener("click", () => {
      S.chartRange = b.dataset.range;
      for (const o of document.querySelectorAll("#chart-range button")) o.setAttribute("aria-pressed", String(o === b));
      refreshChart();
    });
  }

  setInterval(() => { if (S.view && !document.hidden) refreshHistory(); }, 30000);

  // ------------------------------------------------------------------ events, black box

  function scheduleEvents(delay) {
    if (S.eventsTimer) return;
    S.eventsTimer = setTimeout(() => { S.eventsTimer = null; loadEvents(false); }, delay === undefined ? 1500 : delay);
  }

  async function loadEvents(older) {
    if (!S.view) return;
    let path = `${unitPath()}/events?limit=100`;
    if (older && S.events.length) path += `&before_id=${S.events[S.events.length - 1].id}`;
    const result = await api("GET", path);
    if (!result.ok) return;
    S.events = older ? S.events.concat(result.data.events) : result.data.events;
    renderEvents();
  }

  function renderEvents() {
    const onlyAlarms = $("#events-alarms-only").checked;
    const rows = [];
    for (const e of S.events) {
      if (onlyAlarms && e.severity === "info") continue;
      const where = e.channel || (e.group ? `group ${e.group}` : "");
      let action = null;
      if (e.has_black_box) {
        action = el("button", { type: "button", className: "small", text: "Black box", dataset: { event: String(e.id) } });
        action.addEventListener("click", () => openBlackBox(e));
      }
      rows.push(el("tr", { className: `sev-${e.severity}`, dataset: { kind: e.kind } },
        el("td", { text: fmtDateTime(e.time) }),
        el("td", { text: e.severity }),
        el("td", { text: where }),
        el("td", { text: e.message }),
        el("td", null, action)));
    }
    $("#event-table tbody").replaceChildren(...rows);
  }

  $("#events-alarms-only").addEventListener("change", renderEvents);
  $("#events-more").addEventListener("click", () => loadEvents(true));

  const PALETTE = ["#5aa0ff", "#ff6b6b", "#19c26b", "#ffb300", "#c77dff", "#00d0d0", "#ff8fd0", "#b5e61d", "#ff9f40", "#9aa6ff", "#e0e0e0", "#8d6e63"];

  async function openBlackBox(event) {
    setText($("#dlg-bb-title"), `Black box · ${fmtDateTime(event.time)}`);
    setText($("#bb-message"), event.message);
    const body = $("#bb-body");
    body.replaceChildren(el("p", { className: "muted", text: "loading…" }));
    openDialog($("#dlg-blackbox"));
    const result = await api("GET", `${unitPath()}/events/${event.id}/black-box`);
    if (!result.ok) { body.replaceChildren(el("p", { className: "error", text: errorText(result) })); return; }
    const box = result.data;
    const parts = [];
    let start = Infinity, end = -Infinity;
    for (const rows of Object.values(box.groups || {})) for (const r of rows) { start = Math.min(start, r[0]); end = Math.max(end, r[0]); }
    for (const r of box.meter || []) { start = Math.min(start, r[0]); end = Math.max(end, r[0]); }
    if (!isFinite(start) || end <= start) { start = event.time - (box.window_s || 30); end = event.time; }
    for (const [letter, rows] of Object.entries(box.groups || {}).sort((a, b) => a[0].localeCompare(b[0]))) {
      const series = [];
      for (let ch = 0; ch < 12; ch++) {
        const points = rows.map((r) => { const a = r[1][ch]; return [r[0], a, a, a]; });
        if (!points.some((p) => p[2])) continue;
        const id = `${letter}${ch + 1}`;
        const c = S.view.channels[id];
        series.push({ name: c && c.label ? `${id} ${c.label}` : id, colour: PALETTE[ch], points });
      }
      if (!series.length) continue;
      const box2 = el("div", { className: "chart" });
      parts.push(el("h4", { text: `Group ${letter} outputs` }), box2);
      drawChart(box2, series, { start, end, legend: true, title: `Group ${letter} in the black box` });
    }
    if ((box.meter || []).length) {
      const names = [["l1_current", "L1"], ["l2_current", "L2"], ["l3_current", "L3"], ["neutral_current", "N"]];
      const series = names.map(([key, name], i) => ({
        name, colour: PALETTE[i], points: box.meter.filter((r) => r[1][key] !== undefined).map((r) => [r[0], r[1][key], r[1][key], r[1][key]]),
      }));
      const box3 = el("div", { className: "chart" });
      parts.push(el("h4", { text: "Main meter currents" }), box3);
      drawChart(box3, series, { start, end, legend: true, title: "Main meter in the black box" });
    }
    if (!parts.length) parts.push(el("p", { className: "muted", text: "the black box holds no samples" }));
    body.replaceChildren(...parts);
  }

  // ------------------------------------------------------------------ start

  setInterval(() => { if (S.view) { renderAges(); renderMains(); } }, 1000);

  (async () => {
    const session = await loadSession();
    if (session.read_open || session.logged_in) connect();
    else {
      setLink("offline", "log in to see this unit");
      const ok = await askLogin();
      if (ok && !S.ws) connect();
    }
  })();
})();
