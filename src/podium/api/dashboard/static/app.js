// podium dashboard: confirmations and the runs list's live refresh. No framework.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

function liveRuns() {
  const box = document.getElementById("runs");
  const url = box && box.getAttribute("data-live");
  if (!url) return;
  let busy = false;
  const refresh = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (response.ok && response.url.indexOf("/ui/login") < 0) box.innerHTML = await response.text();
    } catch (e) {
      // offline for a moment: the next tick tries again
    } finally {
      busy = false;
    }
  };
  window.setInterval(refresh, 3000);
}
document.addEventListener("DOMContentLoaded", liveRuns);
