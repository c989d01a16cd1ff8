// Live progress for the console's long operations (rebuilds, checks of the
// hash chains): each element with data-operation is refreshed from
// /console/operations/<id> until the operation ends, then the page reloads
// to show what came of it.
"use strict";

function refresh(element) {
  const id = element.getAttribute("data-operation");
  fetch("/console/operations/" + encodeURIComponent(id), {credentials: "same-origin"})
    .then(function (response) {
      if (!response.ok) { throw new Error("operation " + id + ": " + response.status); }
      return response.json();
    })
    .then(function (op) {
      const bar = element.querySelector("progress");
      if (bar) { bar.value = op.percent; bar.textContent = op.percent + "%"; }
      for (const field of element.querySelectorAll("[data-field]")) {
        const name = field.getAttribute("data-field");
        if (name in op) { field.textContent = op[name]; }
      }
      if (op.state === "running") {
        window.setTimeout(function () { refresh(element); }, 400);
      } else if (element.getAttribute("data-state") !== op.state) {
        window.location.reload();
      }
    })
    .catch(function () {
      window.setTimeout(function () { refresh(element); }, 2000);
    });
}

document.addEventListener("DOMContentLoaded", function () {
  for (const element of document.querySelectorAll("[data-operation]")) {
    const state = element.querySelector("[data-field=state]");
    element.setAttribute("data-state", state ? state.textContent : "");
    if (element.getAttribute("data-state") === "running") { refresh(element); }
  }
});
