// Typesets the formulas that pymdownx.arithmatex (generic mode) leaves as
// <span class="arithmatex">\(...\)</span> and <div class="arithmatex">\[...\]</div>,
// with the KaTeX shipped in docs/assets/katex (no network). A formula KaTeX cannot
// parse is reported on the console and left visible as its source.
(function () {
  function typeset(root) {
    root.querySelectorAll(".arithmatex").forEach(function (el) {
      if (el.dataset.typeset) return;
      var src = el.textContent.trim();
      var display = el.tagName === "DIV";
      var m = src.match(display ? /^\\\[([\s\S]*)\\\]$/ : /^\\\(([\s\S]*)\\\)$/);
      if (!m) return;
      try {
        katex.render(m[1], el, { displayMode: display, throwOnError: true, strict: "error" });
        el.dataset.typeset = "1";
      } catch (err) {
        console.error("KaTeX could not typeset " + JSON.stringify(m[1]) + ": " + err.message);
      }
    });
  }
  if (typeof document$ !== "undefined") {
    document$.subscribe(function () { typeset(document); });   // Material's page observable
  } else {
    document.addEventListener("DOMContentLoaded", function () { typeset(document); });
  }
})();
