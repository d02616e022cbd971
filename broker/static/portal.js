// Live expiry countdown and copy buttons on the credentials page. Everything works without it.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-countdown]").forEach((element) => {
    const expires = Number(element.dataset.countdown) * 1000;
    const tick = () => {
      const left = Math.max(0, Math.round((expires - Date.now()) / 1000));
      const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      element.textContent = left === 0 ? "expired" : `${h}h ${String(m).padStart(2, "0")}m ${String(s).padStart(2, "0")}s left`;
    };
    tick();
    setInterval(tick, 1000);
  });
  document.querySelectorAll("button[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try { await navigator.clipboard.writeText(text); button.textContent = "Copied"; }
      catch { button.textContent = "Select and copy"; }
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  });
});
