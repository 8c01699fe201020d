// Weir Console: the only script. Pages work without it; it adds the live tail (server-sent
// events of rows the server rendered and escaped) and nothing else.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const start = document.getElementById("tail-start");
  const stop = document.getElementById("tail-stop");
  const status = document.getElementById("tail-status");
  const body = document.getElementById("records-body");
  if (!start || !body) return;
  let source = null;
  const finish = (text) => {
    if (source) source.close();
    source = null;
    start.hidden = false;
    stop.hidden = true;
    status.textContent = text;
  };
  start.addEventListener("click", () => {
    source = new EventSource(start.dataset.url);
    start.hidden = true;
    stop.hidden = false;
    status.textContent = "following new records…";
    source.addEventListener("record", (e) => {
      // The row is HTML the server built with every record field escaped.
      body.insertAdjacentHTML("afterbegin", e.data);
      const row = body.firstElementChild;
      if (row) row.classList.add("new");
    });
    source.addEventListener("end", (e) => finish("tail ended: " + e.data));
    source.addEventListener("failed", (e) => finish("tail failed: " + e.data));
    source.onerror = () => { if (source && source.readyState === EventSource.CLOSED) finish("tail closed"); };
  });
  stop.addEventListener("click", () => finish("tail stopped"));
});
