/* crontick console: auto-refresh with a pause control, a JSON check on the payload, select all.
   No inline scripts (the Content-Security-Policy allows scripts from this origin only); htmx
   does the partial page loads. Everything here only enhances pages that work without it. */
(function () {
  "use strict";
  var PAUSED_KEY = "crontick.console.refresh-paused";

  function isPaused() {
    try { return window.localStorage.getItem(PAUSED_KEY) === "1"; } catch (e) { return false; }
  }

  function setPaused(value) {
    try { window.localStorage.setItem(PAUSED_KEY, value ? "1" : "0"); } catch (e) { /* private mode: per page only */ }
  }

  function setupRefresh() {
    var seconds = parseInt(document.body.getAttribute("data-refresh-seconds") || "0", 10);
    var control = document.querySelector("[data-refresh-control]");
    if (!control || !document.querySelector("[data-live]") || !(seconds > 0) || typeof htmx === "undefined") { return; }
    var button = control.querySelector("[data-refresh-toggle]");
    var status = control.querySelector("[data-refresh-status]");
    var pausedHere = isPaused();
    function show() {
      button.textContent = pausedHere ? "Resume auto-refresh" : "Pause auto-refresh";
      button.setAttribute("aria-pressed", pausedHere ? "true" : "false");
      status.textContent = pausedHere ? "auto-refresh paused" : "refreshing every " + seconds + " s";
      control.classList.toggle("paused", pausedHere);
    }
    button.addEventListener("click", function () { pausedHere = !pausedHere; setPaused(pausedHere); show(); });
    control.hidden = false;
    show();
    window.setInterval(function () {
      var live = document.querySelector("[data-live]");
      // Never pull the page from under someone: not while paused, hidden, or something in it is selected or focused.
      if (pausedHere || document.hidden || !live || live.querySelector("input:checked") || live.contains(document.activeElement)) { return; }
      htmx.trigger(live, "crontick:refresh");
    }, seconds * 1000);
  }

  function checkJson(form, event) {
    var areas = form.querySelectorAll("textarea[data-json]");
    for (var i = 0; i < areas.length; i++) {
      var area = areas[i];
      var error = document.getElementById(area.id + "-client-error");
      var message = "";
      try {
        var value = JSON.parse(area.value.trim() || "{}");
        if (value === null || typeof value !== "object" || Array.isArray(value)) {
          message = "payload must be a JSON object, such as {\"msg\": \"hello\"}";
        }
      } catch (e) {
        message = "payload is not valid JSON: " + e.message;
      }
      if (error) { error.textContent = message; error.hidden = !message; }
      if (message) {
        event.preventDefault();
        area.setAttribute("aria-invalid", "true");
        area.focus();
      } else {
        area.removeAttribute("aria-invalid");
      }
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupRefresh();
    var forms = document.querySelectorAll("form[data-check-json]");
    for (var i = 0; i < forms.length; i++) {
      forms[i].addEventListener("submit", checkJson.bind(null, forms[i]));
    }
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.matches && target.matches("[data-select-all]")) {
      var boxes = document.querySelectorAll("input[name=ids]");
      for (var i = 0; i < boxes.length; i++) { boxes[i].checked = target.checked; }
    }
  });
})();
