// The trials of the trial designs (study_server/pages.py: TrialPage, its pair trials and
// FeedbackPage). An answer: the key its option carries (data-key: F = Peaky, J = Stretchy
// in forward and counterfactual simulation; F = Right, J = Wrong in verification; F =
// explanation A, J = B in distinction) chooses it and, when nothing else is asked, sends
// it; the time from the scene shown (the img[data-scene]: a trial's picture, a pair's
// changed picture) to the answer goes with it.
// Feedback: F, J or the space bar goes on to the next picture.
(function () {
  "use strict";
  const form = document.querySelector("form[data-trial]");
  if (!form) {
    return;
  }
  const scene = document.querySelector("img[data-scene]");
  let shown = performance.now();
  if (scene && !scene.complete) {
    scene.addEventListener("load", function () { shown = performance.now(); }, { once: true });
  }
  const timing = form.querySelector("input[name=response_ms]");
  form.addEventListener("submit", function () {
    if (timing) {
      timing.value = String(Math.round(performance.now() - shown));
    }
  });
  let sent = false;
  function send() {
    if (!sent) {
      sent = true;
      form.requestSubmit();
    }
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) {
      return;
    }
    const key = event.key.toUpperCase();
    if (form.dataset.trial === "feedback") {
      if (key === "F" || key === "J" || key === " ") {
        event.preventDefault();
        send();
      }
      return;
    }
    const option = form.querySelector('input[data-key="' + key + '"]');
    if (!option) {
      return;
    }
    event.preventDefault();
    option.checked = true;
    if (!form.querySelector("input[name=confidence]")) {
      send();
    }
  });
})();
