// gnomon dashboard: time zones, live updates and actions without reloading.
// Served as a file (the Content-Security-Policy allows no inline script).
"use strict";
(function () {
  var ZONE_KEY = "gnomon.zone";
  var select = document.getElementById("zone");
  var schedulerZone = select ? select.getAttribute("data-scheduler-zone") : "";

  function chosenZone() {
    var saved = null;
    try { saved = window.localStorage.getItem(ZONE_KEY); } catch (e) { saved = null; }
    if (saved === null) {
      saved = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    }
    return saved;
  }

  function fillZones() {
    if (!select) { return; }
    var zones = [];
    try { zones = Intl.supportedValuesOf("timeZone"); } catch (e) { zones = ["UTC"]; }
    var current = chosenZone();
    var browser = Intl.DateTimeFormat().resolvedOptions().timeZone;
    zones.forEach(function (zone) {
      var option = document.createElement("option");
      option.value = zone;
      option.textContent = zone === browser ? zone + " (yours)" : zone;
      select.appendChild(option);
    });
    select.value = current === schedulerZone ? "" : current;
    if (select.value !== current && current !== schedulerZone) { select.value = ""; }
    select.addEventListener("change", function () {
      try { window.localStorage.setItem(ZONE_KEY, select.value || schedulerZone); } catch (e) { /* private mode */ }
      showTimes(document);
    });
  }

  function showTimes(root) {
    var zone = chosenZone();
    var times = root.querySelectorAll("time.t");
    times.forEach(function (element) {
      var old = element.querySelector(".viewer");
      if (old) { old.remove(); }
      if (!zone || zone === schedulerZone) { return; }
      var moment = new Date(element.getAttribute("datetime"));
      if (isNaN(moment.getTime())) { return; }
      var text;
      try {
        text = new Intl.DateTimeFormat("sv-SE", {
          timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
          hour: "2-digit", minute: "2-digit", second: "2-digit"
        }).format(moment);
      } catch (e) { return; }
      var span = document.createElement("span");
      span.className = "viewer";
      span.textContent = text + " " + zone;
      element.appendChild(span);
    });
  }

  function busy(region) {
    // Leave a region alone while the reader works in it: typing, a selection, an open
    // details element they opened themselves.
    var active = document.activeElement;
    if (active && region.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) {
      return true;
    }
    var selection = window.getSelection ? window.getSelection() : null;
    if (selection && !selection.isCollapsed && selection.anchorNode && region.contains(selection.anchorNode)) {
      return true;
    }
    return false;
  }

  function openDetails(region) {
    var open = [];
    region.querySelectorAll("details").forEach(function (element, index) {
      if (element.open) { open.push(index); }
    });
    return open;
  }

  function apply(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    document.querySelectorAll("[data-live][id]").forEach(function (region) {
      var replacement = fresh.getElementById(region.id);
      if (!replacement || busy(region)) { return; }
      if (replacement.innerHTML === region.getAttribute("data-html")) { return; }
      var open = openDetails(region);
      region.innerHTML = replacement.innerHTML;
      region.setAttribute("data-html", replacement.innerHTML);
      region.querySelectorAll("details").forEach(function (element, index) {
        if (open.indexOf(index) >= 0) { element.open = true; }
      });
      showTimes(region);
    });
    var notice = fresh.getElementById("notice");
    var here = document.getElementById("notice");
    if (notice && here && notice.textContent.trim()) { here.textContent = notice.textContent; }
  }

  var inFlight = false;
  function refresh(url) {
    if (inFlight) { return Promise.resolve(); }
    inFlight = true;
    return fetch(url || window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html) { apply(html); } })
      .catch(function () { /* the next poll tries again */ })
      .then(function () { inFlight = false; });
  }

  function poll() {
    var every = parseInt(document.body.getAttribute("data-poll"), 10) || 5000;
    window.setInterval(function () {
      if (!document.hidden) { refresh(); }
    }, every);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { refresh(); }
    });
  }

  function actions() {
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (!form.classList || !form.classList.contains("act")) { return; }
      event.preventDefault();
      var button = form.querySelector("button");
      if (button) { button.disabled = true; }
      var body = new URLSearchParams(new FormData(form));
      fetch(form.action, { method: "POST", body: body, credentials: "same-origin" })
        .then(function (response) {
          return response.text().then(function (text) { return { response: response, text: text }; });
        })
        .then(function (result) {
          var here = document.getElementById("notice");
          if (!result.response.ok) {
            if (here) { here.textContent = "Refused (" + result.response.status + "): " + result.text.slice(0, 200); }
            return;
          }
          var fresh = new DOMParser().parseFromString(result.text, "text/html");
          var notice = fresh.getElementById("notice");
          if (here && notice) { here.textContent = notice.textContent; }
          inFlight = false;
          return refresh();
        })
        .catch(function () {
          var here = document.getElementById("notice");
          if (here) { here.textContent = "The dashboard did not answer."; }
        })
        .then(function () { if (button) { button.disabled = false; } });
    });
  }

  document.querySelectorAll("[data-live][id]").forEach(function (region) {
    region.setAttribute("data-html", region.innerHTML);
  });
  fillZones();
  showTimes(document);
  actions();
  poll();
})();
