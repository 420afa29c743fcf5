// The course website's script: every navigation button of sphinx-book-theme works, and wide inline maths scrolls.
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

// Inline maths wider than its line (a long formula on a phone) scrolls sideways instead of being cut off at the
// edge. Only such formulas get the scrolling box: the theme cuts every formula at its own box, and a box that
// scrolled for the few pixels a hat or a tilde overhangs would draw a scroll bar under many small formulas.
const markWideMaths = () => document.querySelectorAll("span.math").forEach((span) => {
  span.classList.toggle("course-wide-maths", span.scrollWidth > span.clientWidth + 4);
});
document.addEventListener("DOMContentLoaded", () => {
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return;
  MathJax.startup.promise.then(() => {
    markWideMaths();
    window.addEventListener("resize", markWideMaths);
  });
});
