// Copy the part of MathJax 3 that the site loads at run time from node_modules/ into _vendor/mathjax/.
//
// Run by `npm ci` (the postinstall script of package.json). _config.yml serves _vendor/ at the site's
// root (html_extra_path) and points Sphinx's mathjax_path at mathjax/tex-chtml.js, so math renders with
// no network. Copied: the tex-chtml component (TeX input, CommonHTML output, the menu), its woff-v2
// fonts, and the TeX extensions it autoloads on first use of a macro such as \boldsymbol or \cancel;
// about 2 MB of the package's 24 MB. Not copied: the speech rule engine (sre/) and the accessibility
// explorers (a11y/), which MathJax fetches only when a reader turns them on in its context menu.
"use strict";
const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "..");
const source = path.join(root, "node_modules", "mathjax");
const es5 = path.join(source, "es5");
const target = path.join(root, "_vendor", "mathjax");

if (!fs.existsSync(path.join(es5, "tex-chtml.js"))) {
  console.error(`vendor_mathjax: ${es5} has no tex-chtml.js; run \`npm ci\` in ${root}`);
  process.exit(1);
}

fs.rmSync(target, { recursive: true, force: true });
const copy = (from, to = from, filter = () => true) =>
  fs.cpSync(path.join(es5, from), path.join(target, to), { recursive: true, filter });

copy("tex-chtml.js");
copy(path.join("output", "chtml", "fonts", "woff-v2"));
// all-packages.js bundles every extension (for `[tex]/all-packages`); autoload never asks for it.
copy(path.join("input", "tex", "extensions"), undefined, (file) => path.basename(file) !== "all-packages.js");
fs.copyFileSync(path.join(source, "LICENSE"), path.join(target, "LICENSE"));

let bytes = 0;
let files = 0;
const walk = (dir) => {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full);
    else { bytes += fs.statSync(full).size; files += 1; }
  }
};
walk(target);
const version = JSON.parse(fs.readFileSync(path.join(source, "package.json"), "utf8")).version;
console.log(`vendor_mathjax: MathJax ${version}, ${files} files, ${(bytes / 1e6).toFixed(1)} MB in ${path.relative(root, target)}/`);
