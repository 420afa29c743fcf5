// The course website's one script: make every navigation button of sphinx-book-theme work.
//
// The theme draws two ☰ buttons (.primary-toggle) and two contents buttons (.secondary-toggle): one in the
// top bar that this site hides, one in the article's header that a reader sees. Both theme scripts
// (pydata-sphinx-theme opens the panel as a dialog; sphinx-book-theme folds the sidebar away on a wide screen)
// bind to the first button of each kind only, so the visible one did nothing. A click on any other button of
// a kind is handed to the first one, where the themes' own code does the rest.
document.addEventListener("click", (event) => {
  const button = event.target.closest(".primary-toggle, .secondary-toggle");
  if (!button) return;
  const kind = button.classList.contains("primary-toggle") ? ".primary-toggle" : ".secondary-toggle";
  const first = document.querySelector(kind);
  if (first === button) return;
  event.preventDefault();
  event.stopPropagation();
  button.blur();
  first.click();
});
