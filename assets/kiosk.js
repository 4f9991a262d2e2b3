// Kiosk: after __IDLE_MS__ ms without a touch, key or pointer, reload the page so the next
// visitor starts fresh (the server deletes cached uploads on the same schedule). Nothing the
// browser keeps for a page (run history, settings) outlives a visitor: storage is emptied first.
(function () {
  var idleMs = __IDLE_MS__, last = Date.now(), touched = false;
  function activity() { last = Date.now(); touched = true; }
  function forget() {
    try { window.localStorage.clear(); } catch (e) {}
    try { window.sessionStorage.clear(); } catch (e) {}
  }
  ["pointerdown", "keydown", "touchstart", "wheel"].forEach(function (name) {
    window.addEventListener(name, activity, { passive: true, capture: true });
  });
  forget();
  setInterval(function () {
    if (touched && Date.now() - last > idleMs) { forget(); window.location.reload(); }
  }, 5000);
})();
