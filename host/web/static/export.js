// smartPDU: CSV export, the show energy report and the phase-balance advice (pane C).
// Read-only: nothing here switches anything. Like app.js, every string from the unit is put
// in the page as text, never parsed as HTML. Uses window.smartpdu (app.js's state) for the
// unit's view.
"use strict";

(() => {
  const API = "/api/v1";
  const BALANCE_EVERY_MS = 5000;

  function $(sel) { return document.querySelector(sel); }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function view() { return window.smartpdu && window.smartpdu.view; }
  function unitPath() { return `${API}/units/${encodeURIComponent(view().unit.id)}`; }
  function pad(n) { return String(n).padStart(2, "0"); }
  function amps(a) { return a === null || a === undefined ? "—" : Number(a).toFixed(a < 10 ? 2 : 1); }
  function kwh(v) { return v === null || v === undefined ? "—" : Number(v).toFixed(3); }

  function localInput(t) {
    const d = new Date(t * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function stamp(t) {
    const d = new Date(t * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  // ------------------------------------------------------------------ time range

  function setRange(seconds) {
    const end = Date.now() / 1000;
    $("#export-start").value = localInput(end - seconds);
    $("#export-end").value = "";  // empty: up to now
  }

  function range() {
    const startText = $("#export-start").value;
    const endText = $("#export-end").value;
    const end = endText ? new Date(endText).getTime() / 1000 : Date.now() / 1000;
    const start = startText ? new Date(startText).getTime() / 1000 : end - 3600;
    if (!(isFinite(start) && isFinite(end)) || start >= end) return null;
    return { start: Math.floor(start), end: Math.ceil(end) };
  }

  function say(text, isError) {
    const node = $("#export-status");
    node.textContent = text;
    node.className = isError ? "error" : "muted";
  }

  function download(path) {
    const a = el("a", { href: path, download: "" });
    document.body.append(a);
    a.click();
    a.remove();
  }

  function fillSelect() {
    const v = view();
    const select = $("#export-select");
    if (!v || select.dataset.unit === v.unit.id) return;
    select.dataset.unit = v.unit.id;
    const options = [el("option", { value: "mains", text: "Mains (phase sums and meter)" })];
    for (const letter of v.group_order) {
      options.push(el("option", { value: letter, text: `Group ${letter} (all outputs)` }));
    }
    for (const letter of v.group_order) {
      for (let n = 1; n <= 12; n++) {
        const id = `${letter}${n}`;
        const c = v.channels[id];
        options.push(el("option", { value: id, text: c && c.label ? `${id} · ${c.label}` : id }));
      }
    }
    select.replaceChildren(...options);
  }

  function exportHistory() {
    const r = range();
    if (!r) { say("the start must be before the end", true); return; }
    const what = encodeURIComponent($("#export-select").value || "mains");
    download(`${unitPath()}/export/history.csv?select=${what}&start=${r.start}&end=${r.end}`);
    say(`history CSV of ${stamp(r.start)} – ${stamp(r.end)} requested`);
  }

  function exportEvents() {
    const r = range();
    if (!r) { say("the start must be before the end", true); return; }
    download(`${unitPath()}/export/events.csv?start=${r.start}&end=${r.end}`);
    say(`event log CSV of ${stamp(r.start)} – ${stamp(r.end)} requested`);
  }

  // ------------------------------------------------------------------ energy report

  function table(head, rows) {
    return el("table", { className: "report-table" },
      el("thead", null, el("tr", null, ...head.map((h) => el("th", { text: h })))),
      el("tbody", null, ...rows.map((r) => el("tr", null, ...r.map((c) => el("td", { text: c }))))));
  }

  function renderReport(rep) {
    const parts = [
      el("p", { className: "muted", text: `${rep.name || rep.unit} (${rep.unit}) · ${stamp(rep.start)} – ${stamp(rep.end)} · generated ${stamp(rep.generated_at)}` }),
      el("p", { id: "report-total", text: `Meter total: ${kwh(rep.meter_total_kwh)} kWh (readings cover ${rep.meter_coverage_pct.toFixed(0)} % of the span)` }),
      el("h4", { text: "Per phase" }),
      table(["Phase", "Meter kWh", "Outputs kVAh", "Peak meter A", "Peak outputs A", "Meter method"],
        rep.phases.map((p) => [p.phase, kwh(p.meter_kwh), kwh(p.channels_kwh), amps(p.peak_meter_a), amps(p.peak_channels_a), p.meter_method])),
      el("h4", { text: "Per group" }),
      table(["Group", "kVAh", "L1", "L2", "L3", "Peak A", "Voltage"],
        rep.groups.map((g) => [g.group, kwh(g.kwh), kwh(g.phase_kwh.L1), kwh(g.phase_kwh.L2), kwh(g.phase_kwh.L3), amps(g.peak_a), g.voltage_source])),
      el("h4", { text: "Outputs with energy" }),
      table(["Output", "Label", "Phase", "kVAh", "Peak A", "Voltage"],
        rep.channels.filter((c) => c.kwh > 0 || c.peak_a > 0).map((c) => [c.id, c.label, c.phase, kwh(c.kwh), amps(c.peak_a), c.voltage_source])),
      el("h4", { text: `Alarms and warnings (${rep.alarms.length}${rep.alarms_truncated ? "+" : ""})` }),
      rep.alarms.length
        ? table(["Time", "Severity", "Where", "What"], rep.alarms.map((e) => [stamp(e.time), e.severity, e.channel || (e.group ? `group ${e.group}` : ""), e.message]))
        : el("p", { className: "muted", text: "none in this span" }),
      el("ul", { className: "report-notes" }, ...rep.notes.map((n) => el("li", { text: n }))),
    ];
    $("#report-body").replaceChildren(...parts);
  }

  async function openReport() {
    const r = range();
    if (!r) { say("the start must be before the end", true); return; }
    const dialog = $("#dlg-report");
    $("#report-body").replaceChildren(el("p", { className: "muted", text: "computing…" }));
    dialog.dataset.start = String(r.start);
    dialog.dataset.end = String(r.end);
    if (!dialog.open) dialog.showModal();
    let data = null;
    try {
      const response = await fetch(`${unitPath()}/report?start=${r.start}&end=${r.end}`, { credentials: "same-origin", cache: "no-store" });
      data = await response.json();
      if (!response.ok) throw new Error(data && data.error ? data.error.message : `HTTP ${response.status}`);
    } catch (err) {
      $("#report-body").replaceChildren(el("p", { className: "error", text: `report not available: ${err.message}` }));
      return;
    }
    renderReport(data);
  }

  function reportCsv() {
    const dialog = $("#dlg-report");
    download(`${unitPath()}/report?start=${dialog.dataset.start}&end=${dialog.dataset.end}&format=csv`);
  }

  // ------------------------------------------------------------------ balance (pane C)

  function renderBalance(b) {
    const p = b.phases_a;
    const measured = b.meter_neutral_a === null ? "" : ` · meter N ${amps(b.meter_neutral_a)} A`;
    const parts = [
      el("div", { className: "kv" },
        el("span", { className: "k", text: "L1 / L2 / L3" }), el("b", { className: "v", text: `${amps(p.L1)} / ${amps(p.L2)} / ${amps(p.L3)} A` }),
        el("span", { className: "k", text: "N (computed)" }), el("b", { className: "v", id: "balance-neutral", text: `${amps(b.neutral_a)} A${measured}` }),
        el("span", { className: "k", text: "Imbalance" }), el("b", { className: "v", text: `${b.imbalance_pct.toFixed(0)} % (spread ${amps(b.spread_a)} A)` })),
    ];
    if (b.moves.length) {
      parts.push(el("ol", { id: "balance-moves" }, ...b.moves.map((m) => el("li", null,
        `Move ${m.channel}${m.label ? ` “${m.label}”` : ""} (${amps(m.current_a)} A, ${m.from_phase}) to ${m.to} (${m.to_phase}): N ${amps(b.neutral_a)} → ${amps(m.neutral_after_a)} A`,
        m.also_free.length ? el("span", { className: "muted", text: ` (or ${m.also_free.join(", ")})` }) : null))));
    } else {
      parts.push(el("p", { id: "balance-moves", className: "muted", text: b.notes.length ? b.notes.join("; ") : "balanced: no move would help" }));
    }
    parts.push(el("p", { className: "hint", text: `Advice only, nothing is switched. Assumes ${b.assumption}.` }));
    $("#balance").replaceChildren(...parts);
  }

  async function refreshBalance() {
    if (!view() || document.hidden) return;
    try {
      const response = await fetch(`${unitPath()}/balance`, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) renderBalance(await response.json());
    } catch (_err) { /* the link pane shows a lost connection */ }
  }

  // ------------------------------------------------------------------ wiring

  $("#export-history").addEventListener("click", exportHistory);
  $("#export-events").addEventListener("click", exportEvents);
  $("#events-csv").addEventListener("click", exportEvents);
  $("#export-report").addEventListener("click", openReport);
  $("#report-print").addEventListener("click", () => window.print());
  $("#report-csv").addEventListener("click", reportCsv);
  for (const b of document.querySelectorAll("#export-quick button")) {
    b.addEventListener("click", () => setRange(Number(b.dataset.seconds)));
  }
  setRange(3600);
  const ready = setInterval(() => {
    if (!view()) return;
    clearInterval(ready);
    fillSelect();
    refreshBalance();
    setInterval(() => { fillSelect(); refreshBalance(); }, BALANCE_EVERY_MS);
  }, 200);
})();
