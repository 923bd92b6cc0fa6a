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
