// provisioner's only script (no inline scripts, so a strict CSP holds).
// 1. Tell the server the viewer's time zone, so times are shown in it.
// 2. Copy buttons for the host's link and passcode.
(function () {
  "use strict";
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && document.cookie.indexOf("tz=" + encodeURIComponent(zone)) === -1) {
      var secure = location.protocol === "https:" ? "; Secure" : "";
      document.cookie = "tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; SameSite=Lax" + secure;
      // First visit: the server did not know the zone yet, so preselect it here.
      var select = document.querySelector("select[data-default-tz]");
      if (select && select.querySelector("option[value='" + zone + "']")) { select.value = zone; }
    }
  } catch (e) { /* no Intl: the meeting's own zone is shown */ }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) { return; }
    var field = document.getElementById(button.getAttribute("data-copy"));
    var status = document.querySelector(".copied");
    if (!field) { return; }
    var done = function () { if (status) { status.textContent = button.textContent.replace("Copy ", "") + " copied"; } };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { field.select(); });
    } else {
      field.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
    }
  });
})();
