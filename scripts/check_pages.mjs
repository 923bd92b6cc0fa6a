// Check the built book as a reader's browser shows it: no kernel, no network, a 1300-px window.
//
//   node scripts/check_pages.mjs _build/html [book/02_distances.html ...]
//
// Serves the built HTML from a local http server and opens each page (default: every
// page of the book) in headless Chromium (Debian's `chromium`, driven by npm's
// playwright-core) at 1300 x 900 px. On each page it checks:
//   - widgets (pages with saved widget state): for every slider, focuses its handle,
//     presses ArrowRight and checks that the view beside it (the widget box holding the
//     slider) changed. A slider over a single view (min = max) is reported as fixed;
//   - equations: every Sphinx math block was typeset by MathJax (served by the book),
//     without a TeX error;
//   - width: no table reaches past the page's content column, no table or printed output
//     scrolls sideways in its box (book.css's output box, the theme's table container, a
//     printed output's own box: its content wider than the box shows), and the page itself
//     does not scroll sideways.
// Any request that leaves the local server is blocked and counted as a failure, so the
// JavaScript and fonts must come from the book itself. With SCREENSHOTS=DIR, a full-page
// PNG of each page is written there (`make book` keeps them in _build/screenshots/).
// Prints one JSON line per page; exits 1 if any page fails any check.
// Environment: CHROMIUM (default /usr/bin/chromium), SCREENSHOTS.

import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css",
  ".png": "image/png", ".svg": "image/svg+xml", ".woff": "font/woff", ".woff2": "font/woff2",
  ".ttf": "font/ttf", ".eot": "application/vnd.ms-fontobject", ".json": "application/json" };

function serve(root) {
  const server = http.createServer((req, res) => {
    const file = path.join(root, decodeURIComponent(new URL(req.url, "http://x").pathname));
    if (!file.startsWith(root) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] || "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

function bookPages(root) {
  const pages = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory() && !entry.name.startsWith("_")) walk(full);
      else if (entry.name.endsWith(".html") && !["genindex.html", "search.html"].includes(entry.name))
        pages.push(path.relative(root, full));
    }
  };
  walk(root);
  return pages.sort();
}

// What a reader sees inside the widget box of slider i: visible text and images.
function viewOf(i) {
  const handle = document.querySelectorAll(".widget-slider .noUi-handle")[i];
  let box = handle.closest(".widget-slider");
  // Climb to the outermost widget box: the slider plus the views it drives.
  while (box.parentElement && box.parentElement.closest(".widget-box")) {
    box = box.parentElement.closest(".widget-box");
  }
  // Visible, and not part of a slider (its own readout is not the view).
  const shown = (el) => el.offsetParent !== null && el.getClientRects().length > 0 &&
    !el.closest(".widget-slider");
  const images = [...box.querySelectorAll("img")].filter(shown).map((img) => img.src);
  const texts = [...box.querySelectorAll(".widget-label, .widget-html-content")]
    .filter(shown).map((el) => el.innerHTML);
  const fixed = handle.getAttribute("aria-valuemin") === handle.getAttribute("aria-valuemax");
  return JSON.stringify({ value: handle.getAttribute("aria-valuenow"), fixed, images, texts });
}

async function checkPage(context, base, page) {
  const tab = await context.newPage();
  const errors = [];
  tab.on("pageerror", (err) => {
    // Jupyter Book 1.0.4 writes sphinx-thebe's inline config twice on every page
    // (`const THEBE_JS_URL` redeclared); harmless, and no part of the widgets.
    if (!String(err).includes("THEBE_JS_URL")) errors.push(String(err));
  });
  tab.on("response", (res) => {
    if (res.status() >= 400) errors.push(`HTTP ${res.status()} ${res.url()}`);
  });
  await tab.goto(`${base}/${page}`, { waitUntil: "load" });
  const widgets = await tab.locator('script[type="application/vnd.jupyter.widget-state+json"]').count() > 0;
  // The widget manager renders the saved state after load.
  if (widgets)
    await tab.waitForSelector(".widget-slider .noUi-handle", { timeout: 20000 }).catch(() => {});
  const math = await tab.evaluate(mathTypeset);
  const width = await tab.evaluate(tableWidths);
  const count = await tab.locator(".widget-slider .noUi-handle").count();
  const sliders = [];
  for (let i = 0; i < count; i++) {
    const handle = tab.locator(".widget-slider .noUi-handle").nth(i);
    await handle.scrollIntoViewIfNeeded();
    const before = await tab.evaluate(viewOf, i);
    await handle.focus();
    await tab.keyboard.press("ArrowRight");
    await tab.waitForTimeout(300);
    const after = await tab.evaluate(viewOf, i);
    const b = JSON.parse(before);
    const a = JSON.parse(after);
    const viewChanged = JSON.stringify([b.images, b.texts]) !== JSON.stringify([a.images, a.texts]);
    // A slider over a single view (min = max, e.g. in a smoke build) cannot move.
    sliders.push(b.fixed ? { from: b.value, fixed: true } : { from: b.value, to: a.value, viewChanged });
  }
  if (process.env.SCREENSHOTS) {
    const file = path.join(process.env.SCREENSHOTS, page.replace(/[\\/]/g, "_").replace(/\.html$/, ".png"));
    fs.mkdirSync(process.env.SCREENSHOTS, { recursive: true });
    await tab.screenshot({ path: file, fullPage: true });
  }
  await tab.close();
  return { page, widgets, sliders, math, width, errors };
}

// Equations: how many Sphinx math blocks there are, how many MathJax typeset without a
// TeX error (MathJax shows an error in place of the formula, as <mjx-merror>).
async function mathTypeset() {
  const blocks = document.querySelectorAll("div.math, span.math");
  if (blocks.length && window.MathJax && MathJax.startup) await MathJax.startup.promise;
  const typeset = [...blocks].filter((el) => el.querySelector("mjx-container") &&
    !el.querySelector("mjx-merror")).length;
  return { blocks: blocks.length, typeset };
}

// Tables whose right edge passes the content column's, not inside a sideways-scrolling box
// (tooWide), and tables or printed outputs wider than the sideways-scrolling box that holds
// them, themselves or a box up to the content column (scrolling): a reader sees only part.
function tableWidths() {
  const column = document.querySelector("main article, main, article") || document.body;
  if (!column) return { tooWide: 0, scrolling: 0, pageScrolls: false };   // a redirect page
  const right = column.getBoundingClientRect().right;
  const sideways = (e) => ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
  const scrolls = (el) => {
    for (let e = el.parentElement; e && e !== column; e = e.parentElement) {
      if (sideways(e) && e.getBoundingClientRect().right <= right + 1) return true;
    }
    return false;
  };
  const overflows = (t) => {
    for (let e = t; e; e = e.parentElement) {
      const wide = e === t ? t.scrollWidth : t.getBoundingClientRect().width;
      if (sideways(e) && wide > e.clientWidth + 1) return true;
      if (e === column) break;
    }
    return false;
  };
  const tables = [...document.querySelectorAll("table")];
  const tooWide = tables.filter((t) => t.getBoundingClientRect().right > right + 1 && !scrolls(t));
  // Printed outputs too: a line of text wider than its box is cut off for the reader.
  const printed = [...document.querySelectorAll("div.cell_output pre")];
  const scrolling = [...tables, ...printed].filter(overflows);
  // Each failing table by its caption (or first cell), so that a reader knows which to mend.
  const name = (t) => (t.querySelector("caption") || t.querySelector("th, td") || t)
    .textContent.trim().replace(/\s+/g, " ").slice(0, 80);
  return {
    tooWide: tooWide.length,
    scrolling: scrolling.length,
    pageScrolls: document.documentElement.scrollWidth > window.innerWidth,
    ...(tooWide.length || scrolling.length
      ? { failing: [...tooWide, ...scrolling].map((t) => `${name(t)} (${t.scrollWidth} px)`) } : {}),
  };
}

async function main() {
  const [rootArg, ...pageArgs] = process.argv.slice(2);
  if (!rootArg) {
    console.error("usage: node scripts/check_pages.mjs HTML_ROOT [PAGE.html ...]");
    process.exit(2);
  }
  const root = path.resolve(rootArg);
  const pages = pageArgs.length ? pageArgs : bookPages(root);
  if (!pages.length) {
    console.error(`no page under ${root}`);
    process.exit(1);
  }
  const server = await serve(root);
  const base = `http://127.0.0.1:${server.address().port}`;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "check-widgets-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1300, height: 900 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      // No network beyond the local server: everything else goes to a dead proxy.
      "--proxy-server=http://127.0.0.1:9"],
  });
  const outside = [];
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(base) || url.startsWith("blob:") || url.startsWith("data:")) return route.continue();
    outside.push(url);
    return route.abort();
  });
  let ok = true;
  try {
    for (const page of pages) {
      const result = await checkPage(context, base, page);
      const slidersOk = !result.widgets || (result.sliders.length > 0 &&
        result.sliders.every((s) => s.fixed || (s.viewChanged && s.from !== s.to)));
      const pageOk = slidersOk && result.errors.length === 0 &&
        result.math.typeset === result.math.blocks && result.width.tooWide === 0 &&
        result.width.scrolling === 0 && !result.width.pageScrolls;
      ok = ok && pageOk;
      console.log(JSON.stringify({ ...result, ok: pageOk }));
    }
  } finally {
    await context.close();
    server.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  if (outside.length) {
    ok = false;
    console.log(JSON.stringify({ outsideRequests: [...new Set(outside)] }));
  }
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
