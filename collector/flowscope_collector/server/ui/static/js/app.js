// The run explorer: hash routes, so every view has a URL a person can paste.
//   #/runs?flow=..&status=..      runs list          #/runs/<id>                run
//   #/runs/<id>/span/<span_id>    run, span detail    #/runs/<id>/step/<k>       run, step detail
//   #/runs/<id>/state/<k>         time travel         #/compare/<a>/<b>          two runs
//   #/costs?group_by=model        costs

import { AuthError, forgetKey, getKey, setKey, tryKey } from "./api.js";
import { errorBox, h, replace } from "./dom.js";
import { renderCompare } from "./pages/compare.js";
import { renderCosts } from "./pages/costs.js";
import { renderRun } from "./pages/run.js";
import { renderRuns } from "./pages/runs.js";

const main = document.getElementById("main");
let cleanup = null;
let current = null;

export function parseHash(hash) {
  const raw = (hash || "").replace(/^#/, "") || "/runs";
  const q = raw.indexOf("?");
  const path = q < 0 ? raw : raw.slice(0, q);
  const params = new URLSearchParams(q < 0 ? "" : raw.slice(q + 1));
  const parts = path.split("/").filter(Boolean).map((p) => decodeURIComponent(p));
  return { parts, params, path };
}

export function go(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

function pageOf(parts) {
  switch (parts[0]) {
    case undefined:
    case "runs":
      return parts[1] ? "run" : "runs";
    case "compare":
      return "compare";
    case "costs":
      return "costs";
    default:
      return "missing";
  }
}

function markNav(page) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    const on = a.dataset.nav === (page === "run" ? "runs" : page);
    if (on) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function showSession() {
  const el = document.getElementById("session");
  if (!el) return;
  if (getKey()) {
    replace(el, h("button", {
      type: "button", class: "link", onclick: () => { forgetKey(); if (cleanup) cleanup(); cleanup = null; route(true); },
    }, "Forget API key"));
  } else {
    replace(el);
  }
}

function keyPrompt(err) {
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const remember = h("input", { id: "remember", type: "checkbox" });
  const msg = h("p", { class: "form-error", role: "alert" });
  const form = h("form", {
    class: "key-form card",
    onsubmit: async (ev) => {
      ev.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      try {
        const res = await tryKey(key);
        if (!res.ok) {
          msg.textContent = res.message;
          input.focus();
          return;
        }
      } catch (e) {
        msg.textContent = e.message;
        return;
      }
      setKey(key, remember.checked);
      route(true);
    },
  },
  h("h1", null, "API key required"),
  h("p", null, "This collector requires an API key. Enter a key with the read scope; you will see its project's runs only."),
  err && err.status === 403 ? h("p", { class: "form-error" }, err.message) : null,
  h("label", { for: "api-key" }, "API key"),
  input,
  h("label", { class: "check", for: "remember" }, remember, " Remember on this device (otherwise until the tab closes)"),
  h("button", { type: "submit" }, "Continue"),
  msg);
  replace(main, form);
  input.focus();
}

async function route(force) {
  performance.mark("flowscope:route-start");
  document.documentElement.dataset.ready = "0";
  const r = parseHash(window.location.hash);
  const page = pageOf(r.parts);
  const same = current && current.page === page && page === "run" && current.parts[1] === r.parts[1] && !force;
  markNav(page);
  showSession();
  if (!same && cleanup) {
    cleanup();
    cleanup = null;
  }
  current = { page, parts: r.parts };
  const ctx = {
    main, parts: r.parts, params: r.params, go, same,
    onAuth: (err) => keyPrompt(err),
    setCleanup: (fn) => { cleanup = fn; },
  };
  try {
    if (page === "runs") await renderRuns(ctx);
    else if (page === "run") await renderRun(ctx);
    else if (page === "compare") await renderCompare(ctx);
    else if (page === "costs") await renderCosts(ctx);
    else replace(main, h("h1", null, "Not found"), h("p", null, h("a", { href: "#/runs" }, "Back to the runs")));
  } catch (err) {
    if (err instanceof AuthError) keyPrompt(err);
    else if (err && err.name === "AbortError") { /* navigated away */ }
    else replace(main, errorBox(err));
  }
  // how long the view took, from the route change (and from navigation start) to its last paint of data;
  // read by benchmarks/bench_ui.py
  performance.mark("flowscope:route-done");
  const took = performance.measure("flowscope:route", "flowscope:route-start", "flowscope:route-done");
  document.documentElement.dataset.routeMs = took.duration.toFixed(1);
  document.documentElement.dataset.sinceNavigationMs = performance.now().toFixed(1);
  document.documentElement.dataset.routes = String(Number(document.documentElement.dataset.routes || 0) + 1);
  document.documentElement.dataset.ready = "1";
}

window.addEventListener("hashchange", () => route());
route();
