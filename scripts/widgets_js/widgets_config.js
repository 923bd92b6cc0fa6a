// Loaded between require.js and html-manager's embed-amd.js (see _config.yml).
// Each AMD module of embed-amd.js loads its files (icon fonts) from the folder of
// its require.js module path, by default beside the page. Map every module into
// this static folder, so that every widget asset comes from the book itself.
(function () {
  var here = document.currentScript.src.replace(/[^/]*$/, "");
  var paths = {};
  ["base", "base7", "controls", "controls7", "html-manager", "html-manager/dist/libembed-amd"]
    .forEach(function (name) {
      paths["@jupyter-widgets/" + name] = here + name.replace(/.*\//, "");
    });
  require.config({ paths: paths });
})();

// html-manager 1.x typesets widget text with MathJax 2's call, MathJax.Hub.Queue(["Typeset",
// MathJax.Hub, element]); the book serves MathJax 3 (_config.yml, mathjax_path), which has no
// Hub. When MathJax 3 installs itself (a deferred script, after this one and before the
// widgets render), give it that one call, mapped onto MathJax 3's typesetPromise.
(function () {
  var mathjax = window.MathJax;
  function withHub(mj) {
    if (mj && mj.version && !mj.Hub) {
      mj.Hub = { Queue: function (job) {
        mj.startup.promise.then(function () { return mj.typesetPromise([job[2]]); });
      } };
    }
    return mj;
  }
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return mathjax; },
    set: function (value) { mathjax = withHub(value); },
  });
})();
