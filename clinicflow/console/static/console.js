// clinicflow console: live run pages. A run still in progress follows the API's event stream (SSE); on
// each new event the server-rendered part of the page is fetched again and swapped in.
(function () {
  "use strict";
  var live = document.getElementById("run-live");
  if (!live || live.dataset.live !== "true" || !window.EventSource) {
    return;
  }
  var busy = false;
  var again = false;
  var finished = false;
  var source = new EventSource(live.dataset.events + "?after=" + encodeURIComponent(live.dataset.after));

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(live.dataset.fragment, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        live.innerHTML = html;
      })
      .catch(function () {
        again = false;
      })
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        } else if (finished) {
          live.dataset.live = "false";
        }
      });
  }

  source.onmessage = refresh;
  ["run.started", "node.started", "model.tokens", "tool.call", "tool.result", "approval.required",
    "approval.decided", "answer"].forEach(function (type) {
    source.addEventListener(type, refresh);
  });
  source.addEventListener("run.finished", function () {
    finished = true;
    source.close();
    refresh();
  });
})();
