// Progressive enhancement only: every page works without this file.
// Refreshes the live signature count from count.json (served from memory, cached briefly).
(function () {
  "use strict";
  var el = document.getElementById("count");
  if (!el || !el.dataset.countUrl || !window.fetch) { return; }
  var url = el.dataset.countUrl;
  function refresh() {
    fetch(url, { credentials: "omit" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && typeof data.signature_count === "number") {
          el.textContent = data.signature_count.toLocaleString("en");
        }
      })
      .catch(function () { /* offline or rate-limited: keep the number we have */ });
  }
  window.setInterval(refresh, 10000);
})();
