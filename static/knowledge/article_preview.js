// Article admin: the preview under the Markdown body follows the text as it is typed. The server
// renders it (the same Markdown and cleaning as the saved preview), a moment after typing stops.
(function () {
  "use strict";

  var DELAY_MS = 300;

  function start() {
    var body = document.getElementById("id_body");
    var preview = document.querySelector(".field-body_preview .readonly");
    var token = document.querySelector("input[name=csrfmiddlewaretoken]");
    var path = window.location.pathname;
    var at = path.indexOf("/knowledge/article/");
    if (!body || !preview || !token || at < 0) return;
    var url = path.slice(0, at) + "/knowledge/article/preview/";
    var timer = null;
    var sent = 0;

    function refresh() {
      var ticket = ++sent;
      var data = new FormData();
      data.append("body", body.value);
      fetch(url, {
        method: "POST",
        body: data,
        headers: { "X-CSRFToken": token.value },
        credentials: "same-origin",
      })
        .then(function (response) {
          return response.json();
        })
        .then(function (answer) {
          if (ticket !== sent) return; // an older answer arriving late
          if (answer.html !== undefined) {
            preview.innerHTML = answer.html; // cleaned on the server (bleach)
            preview.removeAttribute("data-error");
          } else {
            preview.setAttribute("data-error", answer.error || "");
          }
        })
        .catch(function () {
          /* offline: the saved preview stays */
        });
    }

    body.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, DELAY_MS);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
