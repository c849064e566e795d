// The mmq console's only script (no build step, no dependency). It:
// - shows every <time data-ts> in the viewer's local time;
// - refreshes the parts of a page marked data-poll (their HTML comes from the server, escaped there)
//   while data-live="1", every data-poll-ms; data-load="now" loads a part as soon as the page opens;
// - asks before the forms marked data-confirm are sent (cancel, retry);
// - loads a <details data-src> (raw JSON) when it is first opened, as text;
// - marks thumbnails that do not load, so the table shows an empty cell instead of a broken image.
"use strict";
(() => {
  const localize = (root) => {
    for (const t of root.querySelectorAll("time[data-ts]")) {
      const d = new Date(Number(t.dataset.ts) * 1000);
      if (!Number.isNaN(d.getTime())) {
        t.textContent = d.toLocaleString();
        t.title = d.toISOString();
      }
    }
  };

  const enhance = (root) => {
    localize(root);
    for (const form of root.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", (ev) => {
        if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
      });
    }
    for (const img of root.querySelectorAll("img.thumb")) {
      img.addEventListener("error", () => img.classList.add("broken"), { once: true });
    }
    for (const box of root.querySelectorAll("details[data-src]")) {
      box.addEventListener("toggle", async () => {
        if (!box.open || box.dataset.loaded) return;
        box.dataset.loaded = "1";
        const pre = box.querySelector("pre");
        pre.textContent = "Loading…";
        try {
          const r = await fetch(box.dataset.src, { credentials: "same-origin", cache: "no-store" });
          pre.textContent = r.ok ? JSON.stringify(await r.json(), null, 2) : `(${r.status} ${r.statusText})`;
        } catch (e) {
          pre.textContent = "(could not load it)";
          box.dataset.loaded = "";
        }
      });
    }
  };

  const schedule = (el, now) => {
    if (!el.dataset.poll || (!now && el.dataset.live !== "1")) return;
    const every = Number(el.dataset.pollMs || 3000);
    // a tab in the background polls four times less often
    window.setTimeout(() => refresh(el), now ? 0 : document.hidden ? 4 * every : every);
  };

  const refresh = async (el) => {
    if (!el.isConnected) return;
    let html = null;
    try {
      const r = await fetch(el.dataset.poll, { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) {
        window.location.reload(); // the session ended: the page itself goes to sign-in
        return;
      }
      if (r.ok) html = await r.text();
    } catch (e) {
      html = null; // the server is away for a moment: try again later
    }
    if (html === null) {
      window.setTimeout(() => refresh(el), 5000);
      return;
    }
    const tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    const fresh = tpl.content.firstElementChild;
    if (!fresh || !el.isConnected) return;
    el.replaceWith(fresh);
    enhance(fresh);
    schedule(fresh, false);
  };

  enhance(document);
  for (const el of document.querySelectorAll("[data-poll]")) schedule(el, el.dataset.load === "now");
})();
