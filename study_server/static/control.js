// The dashboard's live sections, refreshed in place from /admin/live.json every few
// seconds while the page is visible. Without JavaScript the page is complete as served,
// with a "Refresh now" link. The sections arrive as HTML rendered (and escaped) by the
// server's own templates.
(function () {
  "use strict";
  const status = document.getElementById("live-status");
  if (!status || !window.fetch) {
    return;
  }
  const source = status.dataset.source;
  const every = Number(status.dataset.every) * 1000;
  const updated = status.querySelector(".updated");

  async function refresh() {
    if (document.hidden) {
      return;
    }
    try {
      const response = await fetch(source, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const type = response.headers.get("Content-Type") || "";
      if (!response.ok || !type.includes("application/json")) {
        throw new Error("no live figures (logged out?)");
      }
      const data = await response.json();
      for (const [id, html] of Object.entries(data.sections)) {
        const section = document.getElementById(id);
        if (section) {
          section.innerHTML = html;
        }
      }
      updated.textContent = data.generated_at;
      status.classList.remove("stale");
    } catch (error) {
      updated.textContent = "the figures could not be refreshed; reload the page";
      status.classList.add("stale");
    }
  }

  setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
})();
