// Digits and ages as the page shows them (docs/hmi.md "Numbers").
import assert from "node:assert/strict";
import { test } from "node:test";

import { age, capabilityClass, decimalsFor, fmt } from "../src/format.js";

test("digits resolve about a fifth of a sigma", () => {
  assert.equal(decimalsFor({ limits: { center_line: 10, ucl: 10.06 } }), 3, "sigma 0.02 -> 10.012");
  assert.equal(decimalsFor({ limits: { center_line: 500, ucl: 503 } }), 1, "sigma 1 -> 503.3");
  assert.equal(decimalsFor({ limits: null, meta: { usl: 10.05, lsl: 9.95 } }), 3, "spec width / 6");
  assert.equal(decimalsFor({ limits: null, meta: {} }), 3);
  assert.equal(decimalsFor({ limits: { center_line: 0, ucl: 3e-9 } }), 6, "at most 6");
  assert.equal(fmt(10.0123, 3), "10.012");
  assert.equal(fmt(null, 3), "\u2014");
});

test("a sample's age shows once it is a minute old", () => {
  const now = Date.parse("2026-12-07T12:00:00Z");
  assert.equal(age("2026-12-07T11:59:30Z", now), "");
  assert.equal(age("2026-12-07T11:48:00Z", now), " (12 min ago)");
  assert.equal(age("2026-12-07T09:00:00Z", now), " (3 h ago)");
  assert.equal(age("2026-12-01T12:00:00Z", now), " (6 days ago)");
  assert.equal(age("garbage", now), "");
});

test("Cpk colours", () => {
  assert.equal(capabilityClass(1.5), "cap-good");
  assert.equal(capabilityClass(1.2), "cap-warn");
  assert.equal(capabilityClass(0.8), "cap-bad");
  assert.equal(capabilityClass(null), "");
});
