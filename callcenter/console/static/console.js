// The supervisor console's only script: no library, nothing the pages need to work.
// - A call page whose ticket is being created polls its state and reloads once it is known.
// - Forms with data-confirm ask before they are sent.
(function () {
  "use strict";

  function pollTicket(panel) {
    var url = panel.getAttribute("data-poll");
    var deadline = Date.now() + 2 * 60 * 1000;
    function check() {
      if (Date.now() > deadline) {
        return;
      }
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (data && data.state && data.state !== "pending") {
            window.location.reload();
          } else {
            window.setTimeout(check, 1500);
          }
        })
        .catch(function () { window.setTimeout(check, 3000); });
    }
    window.setTimeout(check, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(pollTicket);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) {
          event.preventDefault();
        }
      });
    });
  });
})();
