// Follow a "send me the latest issue now" job: poll its JSON status until it is sent or failed.
document.addEventListener("DOMContentLoaded", function () {
  var box = document.querySelector("[data-send-job]");
  if (!box) return;
  var statusEl = box.querySelector("[data-job-status]");
  var messageEl = box.querySelector("[data-job-message]");
  var delay = 500;
  function poll() {
    fetch(box.getAttribute("data-send-job"), { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (job) {
        statusEl.textContent = job.label;
        messageEl.textContent = job.message;
        if (job.status === "sent" || job.status === "failed") return;
        delay = Math.min(delay * 1.5, 5000);
        setTimeout(poll, delay);
      })
      .catch(function () {
        // A failed poll is not the job failing: say so, and keep looking.
        messageEl.textContent = "Could not check the progress just now; trying again …";
        setTimeout(poll, 5000);
      });
  }
  poll();
});
