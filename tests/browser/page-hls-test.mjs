#!/usr/bin/env node
// The listener page falls back to HLS where the browser cannot play a mount's codec over plain
// HTTP: headless Chromium, told by an init script that it cannot play `audio/aac`, must load
// the AAC mount's HLS playlist in its <audio> element and play it (Chromium plays HLS natively).
//
//   node page-hls-test.mjs BASE_URL MOUNT
//
// Prints "ok" lines; exits 0 when all pass, 1 on the first failure.

import { chromium } from 'playwright-core';

const [baseArg, mount] = process.argv.slice(2);
if (!baseArg || !mount) {
  console.error('usage: node page-hls-test.mjs BASE_URL MOUNT');
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, '');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fail = (msg) => { console.log(`not ok - ${msg}`); process.exitCode = 1; throw new Error(msg); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--autoplay-policy=no-user-gesture-required'],
  timeout: 30_000,
});
try {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    const real = HTMLMediaElement.prototype.canPlayType;
    HTMLMediaElement.prototype.canPlayType = function (type) {
      return /^audio\/aac/.test(type) ? '' : real.call(this, type);
    };
  });
  const page = await context.newPage();
  await page.goto(base + '/', { waitUntil: 'domcontentloaded', timeout: 15_000 });
  const audio = page.locator(`audio[data-mount="${mount}"]`);
  await audio.waitFor({ timeout: 10_000 });
  const src = await audio.getAttribute('src');
  if (src !== `/hls${mount}/live.m3u8`) fail(`${mount} plays ${src}, not its HLS playlist`);
  console.log(`ok - ${mount} uses ${src} where audio/aac cannot play`);
  const other = await page.$$eval('audio[data-mount]', (as) => as.map((a) => [a.dataset.mount, a.getAttribute('src')]));
  for (const [m, s] of other) {
    if (m !== mount && s !== m) fail(`${m} plays ${s}: only the unplayable codec falls back`);
  }
  console.log('ok - the other mounts play their streams');
  await audio.evaluate((a) => a.play().catch(() => {}));
  let state = null;
  for (let i = 0; i < 60; i += 1) {
    state = await audio.evaluate((a) => ({ t: a.currentTime, err: a.error && a.error.code, paused: a.paused }));
    if (state.t > 3) break;
    await sleep(500);
  }
  if (!(state.t > 3)) fail(`the HLS fallback does not play: ${JSON.stringify(state)}`);
  console.log(`ok - it plays (currentTime ${state.t.toFixed(1)} s)`);
  console.log('0 failed');
} catch (e) {
  if (!process.exitCode) console.log(`not ok - ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
