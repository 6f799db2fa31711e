// Live progress of an analysis: poll the app's status endpoint, update the words, reload when done.
// A 401 means the session has ended: reload once to show that page, and stop polling.
(function () {
  "use strict";
  var section = document.getElementById("progress");
  var url = section && section.getAttribute("data-status-url");
  if (!url) { return; }
  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return undefined; }
        return response.ok ? response.json() : null;
      })
      .then(function (state) {
        if (state === undefined) { return; }
        if (!state) { setTimeout(poll, 3000); return; }
        state.jobs.forEach(function (job) {
          var item = section.querySelector('li[data-job="' + job.id + '"] .status');
          if (item && item.textContent !== job.label) { item.textContent = job.label; }
        });
        if (state.finished) { window.location.reload(); } else { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 500);
})();
