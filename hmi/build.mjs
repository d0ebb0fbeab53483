// Bundle hmi/src/ (ES modules) into mosquitto/hmi/app.js: one classic script (an IIFE), because
// Mosquitto's http_dir sends no Content-Type and a browser refuses ES modules without one.
// Run by scripts/build-hmi (`node build.mjs` in hmi/); esbuild is pinned in package.json.
// Not minified: the page is small (about 40 kB), and a stack trace in the browser's console
// should name our functions and lines.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));

await build({
  entryPoints: [here("src/main.js")],
  outfile: here("../mosquitto/hmi/app.js"),
  bundle: true,
  format: "iife",
  platform: "browser",
  target: ["chrome100", "firefox100", "safari15"],
  charset: "utf8",
  legalComments: "none",
  logLevel: "warning",
  banner: {
    js:
      "/* OpenSPC HMI, built by scripts/build-hmi from hmi/src/ (esbuild): do not edit here.\n" +
      " * Globals used: mqtt (vendor/mqtt.min.js) and uPlot (vendor/uPlot.iife.min.js). See docs/hmi.md. */",
  },
});
