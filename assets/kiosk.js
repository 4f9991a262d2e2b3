// Kiosk: after __IDLE_MS__ ms without a touch, key or pointer, reload the page so the next
// visitor starts fresh (the server deletes cached uploads on the same schedule).
(function () {
  var idleMs = __IDLE_MS__, last = Date.now(), touched = false;
  function activity() { last = Date.now(); touched = true; }
  ["pointerdown", "keydown", "touchstart", "wheel"].forEach(function (name) {
    window.addEventListener(name, activity, { passive: true, capture: true });
  });
  setInterval(function () {
    if (touched && Date.now() - last > idleMs) { window.location.reload(); }
  }, 5000);
})();
