// smshub's little script. Pages work without it; it only adds:
// - the live part count under a message box (mirrors PartCount in src/outbound/local.rs; the
//   server computes the same when the page is rendered and decides on send);
// - after a send in a Provet "new window", a "reload" message to the Provet page that opened it.
"use strict";
(function () {
  var BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u001bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var EXTENSION = "\f^{}\\[~]|€";
  function septets(c) {
    if (c !== "\u001b" && BASIC.indexOf(c) >= 0) return 1;
    if (EXTENSION.indexOf(c) >= 0) return 2;
    return 0;
  }
  function count(text) {
    var chars = Array.from(text), gsm = true, forcedBy = null, i;
    for (i = 0; i < chars.length; i++) {
      if (septets(chars[i]) === 0) { gsm = false; forcedBy = chars[i]; break; }
    }
    var single = gsm ? 160 : 70, part = gsm ? 153 : 67, total = 0, units = [];
    for (i = 0; i < chars.length; i++) {
      var n = gsm ? septets(chars[i]) : chars[i].length; // surrogate pairs count two
      units.push(n);
      total += n;
    }
    var parts = 1;
    if (total > single) {
      parts = 1; var used = 0;
      for (i = 0; i < units.length; i++) {
        if (used + units[i] > part) { parts++; used = 0; }
        used += units[i];
      }
    }
    var words = parts === 1 ? "1 part" : parts + " parts";
    if (!gsm) return words + ", UCS-2 — the " + forcedBy + " forces UCS-2";
    return words + ", GSM-7";
  }
  function wire(box) {
    var out = document.getElementById(box.getAttribute("data-part-count"));
    if (!out) return;
    var update = function () { out.textContent = count(box.value); };
    box.addEventListener("input", update);
    update();
  }
  document.addEventListener("DOMContentLoaded", function () {
    var boxes = document.querySelectorAll("textarea[data-part-count]");
    for (var i = 0; i < boxes.length; i++) wire(boxes[i]);
    // The Provet page's origin is one of these; a message to any other is dropped by the browser.
    var sent = document.querySelector("[data-sent-reload-origins]");
    if (sent && window.opener) {
      var origins = sent.getAttribute("data-sent-reload-origins").split(" ");
      for (var j = 0; j < origins.length; j++) {
        try { window.opener.postMessage("reload", origins[j]); } catch (e) { /* closed or bad origin */ }
      }
    }
  });
})();
