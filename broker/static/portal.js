// The portal's enhancements. Every page works without them: panels are <details>, credentials come
// from a form POST, the filter is a GET form, the shells' sections are shown one after another.
// With them: credentials are fetched into their panel (the address stays "/", so a reload issues
// nothing), the shells become tabs, Copy buttons appear, the accounts filter applies as you type, and
// the expiry is counted down on screen and announced at 15, 5 and 1 minutes and at expiry only.
"use strict";

const THRESHOLDS_MINUTES = [15, 5, 1];
const SHELL_KEY = "portal.shell";

function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  setTimeout(() => { region.textContent = message; }, 50);  // a change, even for the same words
}

// --- copy buttons ----------------------------------------------------------------------------------

async function copy(button) {
  const target = document.getElementById(button.dataset.copy);
  const label = button.dataset.copyLabel || "text";
  try {
    await navigator.clipboard.writeText(target.textContent);
    button.firstChild.textContent = "Copied";
    announce(`Copied: ${label}.`);
  } catch {
    const range = document.createRange();
    range.selectNodeContents(target);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    button.firstChild.textContent = "Selected";
    announce(`${label} is selected: press Control+C or Command+C to copy it.`);
  }
  setTimeout(() => { button.firstChild.textContent = "Copy"; }, 2000);
}

// --- tabs (WAI-ARIA tabs, automatic activation) ------------------------------------------------------

function makeTabs(container) {
  const panels = Array.from(container.querySelectorAll(":scope > .tab-panel"));
  if (panels.length < 2) return;
  const list = document.createElement("div");
  list.className = "tablist";
  list.setAttribute("role", "tablist");
  list.setAttribute("aria-label", "Your system");
  const tabs = panels.map((panel) => {
    const tab = document.createElement("button");
    tab.type = "button";
    tab.id = `${panel.id}-tab`;
    tab.textContent = panel.dataset.tabLabel;
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-controls", panel.id);
    panel.setAttribute("role", "tabpanel");
    panel.setAttribute("aria-labelledby", tab.id);
    panel.querySelector(".tab-title").classList.add("visually-hidden");  // the tab names it on screen
    list.append(tab);
    return tab;
  });
  const select = (index, focus) => {
    tabs.forEach((tab, i) => {
      tab.setAttribute("aria-selected", String(i === index));
      tab.tabIndex = i === index ? 0 : -1;
      panels[i].hidden = i !== index;
    });
    if (focus) tabs[index].focus();
  };
  list.addEventListener("click", (event) => {
    const index = tabs.indexOf(event.target.closest("[role=tab]"));
    if (index < 0) return;
    select(index, false);
    try { localStorage.setItem(SHELL_KEY, panels[index].dataset.tabLabel); } catch { /* private mode */ }
  });
  list.addEventListener("keydown", (event) => {
    const current = tabs.indexOf(document.activeElement);
    const moves = { ArrowRight: current + 1, ArrowLeft: current - 1, Home: 0, End: tabs.length - 1 };
    if (current < 0 || !(event.key in moves)) return;
    event.preventDefault();
    select((moves[event.key] + tabs.length) % tabs.length, true);
  });
  container.prepend(list);
  let saved = null;
  try { saved = localStorage.getItem(SHELL_KEY); } catch { /* private mode */ }
  select(Math.max(0, panels.findIndex((panel) => panel.dataset.tabLabel === saved)), false);
}

// --- the expiry countdown ---------------------------------------------------------------------------

function countdown(element) {
  const expires = Number(element.dataset.countdown) * 1000;
  const what = element.closest("[data-credentials]").querySelector("h3").textContent;
  const secondsLeft = () => Math.max(0, Math.round((expires - Date.now()) / 1000));
  // Thresholds already behind at load are not announced: only those crossed while the page is open.
  const pending = THRESHOLDS_MINUTES.filter((minutes) => secondsLeft() > minutes * 60);
  let timer = null;
  const tick = () => {
    if (!element.isConnected) {  // replaced by newer credentials: their own countdown speaks for them
      clearInterval(timer);
      return;
    }
    const left = secondsLeft();
    const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    element.textContent = left === 0 ? "expired" : `${h}h ${String(m).padStart(2, "0")}m ${String(s).padStart(2, "0")}s left`;
    if (left === 0) {
      announce(`${what}: they have expired. Get new ones from their panel.`);
      clearInterval(timer);
      return;
    }
    const crossed = pending.filter((minutes) => left <= minutes * 60);
    if (crossed.length) {
      const minutes = Math.min(...crossed);
      pending.splice(0, pending.length, ...pending.filter((t) => t < minutes));
      announce(`${what}: they expire in ${minutes} minute${minutes === 1 ? "" : "s"}.`);
    }
  };
  tick();
  timer = setInterval(tick, 1000);
}

// --- everything above, for a page or a panel just put in it --------------------------------------------

function enhance(root) {
  root.querySelectorAll("button.copy[hidden]").forEach((button) => { button.hidden = false; });
  root.querySelectorAll("[data-tabs]").forEach(makeTabs);
  root.querySelectorAll("[data-countdown]").forEach(countdown);
}

// --- credentials fetched into their panel ------------------------------------------------------------

function problemNotice(doc) {
  // An error page (session ended, access denied, AWS unavailable): its words, in the panel.
  const notice = document.createElement("div");
  notice.className = "notice error";
  notice.setAttribute("role", "alert");
  const heading = document.createElement("h3");
  heading.textContent = (doc.querySelector("main h1") || {}).textContent || "Something went wrong";
  notice.append(heading);
  doc.querySelectorAll("main p").forEach((p) => notice.append(document.importNode(p, true)));
  return notice;
}

async function issue(form) {
  const panel = document.getElementById(form.dataset.issue);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  panel.querySelectorAll(".notice.error").forEach((old) => old.remove());
  let doc;
  try {
    const response = await fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { Accept: "text/html", "X-Portal-Fragment": "panel" },  // the panel alone, not the whole page
    });
    doc = new DOMParser().parseFromString(await response.text(), "text/html");
  } catch {
    doc = new DOMParser().parseFromString(
      "<main><h1>The portal could not be reached</h1><p>Check your connection and try again.</p></main>", "text/html");
  }
  const fresh = doc.getElementById(panel.id);
  if (fresh && fresh.querySelector("[data-credentials]")) {
    const placed = document.importNode(fresh, true);
    panel.replaceWith(placed);
    enhance(placed);
    placed.querySelector("[data-credentials] h3").focus();
    return;
  }
  button.disabled = false;
  const notice = problemNotice(doc);
  form.after(notice);
}

// --- the accounts filter ----------------------------------------------------------------------------

function filterAccounts(input) {
  const wanted = input.value.trim().replace(/\s+/g, " ").toLowerCase();
  const count = document.querySelector("[data-filter-count]");
  let shown = 0;
  document.querySelectorAll("[data-filter-text]").forEach((item) => {
    const match = item.dataset.filterText.includes(wanted);
    item.hidden = !match;
    if (match) {
      shown += 1;
      if (wanted) item.querySelector("details.account").open = true;
    }
  });
  const total = Number(count.dataset.total);
  const plural = total === 1 ? "" : "s";
  count.textContent = wanted
    ? `${shown} of ${total} account${plural} match “${input.value.trim()}”.`
    : `${total} account${plural}. Open an account, then a role's access keys.`;
  document.querySelector("[data-filter-empty]").hidden = shown > 0;
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (button) copy(button);
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.matches("form[data-issue]")) {
    event.preventDefault();
    issue(form);
  } else if (form.matches("form[data-filter]")) {
    event.preventDefault();  // already applied as typed
    filterAccounts(form.querySelector("input"));
  }
});

document.addEventListener("input", (event) => {
  if (event.target.closest("form[data-filter]")) filterAccounts(event.target);
});

document.addEventListener("DOMContentLoaded", () => enhance(document));
