#!/usr/bin/env node
// Checks the listener page of a running onair server in headless Chromium.
//
//   node page-test.mjs BASE_URL [SCREENSHOT_PATH]
//   env: ONAIR_ADMIN_USER (default "admin"), ONAIR_ADMIN_PASSWORD (required),
//        ONAIR_SOURCE_PASSWORD (required: a DJ goes on air with ffmpeg, at /live)
//
// Needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium) and
// playwright-core (npm ci --prefix tests/browser); it never downloads a browser.
// Prints one line per passed check; exits 0 when all pass, 1 on the first failure.

import { spawn } from 'node:child_process';
import { chromium } from 'playwright-core';

const HARD_TIMEOUT_MS = 90_000;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
  '--autoplay-policy=no-user-gesture-required',
];

const [baseArg, screenshotPath] = process.argv.slice(2);
if (!baseArg || baseArg === '-h' || baseArg === '--help') {
  console.error('usage: node page-test.mjs BASE_URL [SCREENSHOT_PATH]\n' +
    'env: ONAIR_ADMIN_USER (default admin), ONAIR_ADMIN_PASSWORD');
  process.exit(baseArg ? 0 : 2);
}
const base = baseArg.replace(/\/+$/, '');
const adminUser = process.env.ONAIR_ADMIN_USER || 'admin';
const adminPassword = process.env.ONAIR_ADMIN_PASSWORD;
const sourcePassword = process.env.ONAIR_SOURCE_PASSWORD;
const DJ_NAME = 'Night Shift';
let dj = null;

const started = Date.now();
let passed = 0;
let browser = null;
let page = null;
const pageErrors = [];

class CheckFailed extends Error {}
const fail = (msg) => { throw new CheckFailed(msg); };
const secs = () => ((Date.now() - started) / 1000).toFixed(1) + 's';
function ok(msg) {
  passed += 1;
  console.log(`ok ${passed} - ${msg} (${secs()})`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Fetch a URL from node with a timeout; returns the Response. */
async function get(path, { timeout = 5000, headers = {} } = {}) {
  try {
    return await fetch(base + path, { headers, signal: AbortSignal.timeout(timeout), redirect: 'manual' });
  } catch (e) {
    fail(`GET ${path}: ${e.cause?.message || e.message}`);
  }
}
async function nowplaying() {
  const res = await get('/api/nowplaying');
  if (!res.ok) fail(`GET /api/nowplaying: HTTP ${res.status}`);
  try {
    return await res.json();
  } catch (e) {
    fail(`GET /api/nowplaying: not JSON (${e.message})`);
  }
}
const apiTitle = (np) => np?.now_playing?.title ?? '';
const text = (selector) =>
  page.$eval(selector, (e) => e.textContent.trim()).catch(() => null);
const shown = (t) => (t === null ? 'no such element' : `it shows ${JSON.stringify(t)}`);

/**
 * Poll fn() every `every` ms until its first value is truthy (then return that value)
 * or `ms` pass. fn returns [done, detail]; detail describes the last state for the failure message.
 */
async function until(ms, what, fn, every = 250) {
  const deadline = Date.now() + ms;
  let detail = '';
  for (;;) {
    const [done, d] = await fn();
    if (done) return done;
    detail = d;
    if (Date.now() >= deadline) fail(`${what} within ${ms / 1000} s${detail ? `: ${detail}` : ''}`);
    await sleep(every);
  }
}

async function run() {
  if (!adminPassword) fail('ONAIR_ADMIN_PASSWORD is not set');
  if (!sourcePassword) fail('ONAIR_SOURCE_PASSWORD is not set');

  // 0. The API answers.
  const np0 = await nowplaying();
  const stationName = np0?.station?.name;
  if (typeof stationName !== 'string' || !stationName) fail('/api/nowplaying has no station.name');
  ok(`/api/nowplaying answers (station "${stationName}")`);

  // Playwright's launch() runs Chromium with a fresh temporary --user-data-dir of its own
  // (it refuses one in args) and deletes it on close.
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30_000,
    });
  } catch (e) {
    fail(`cannot launch ${CHROMIUM}: ${e.message.split('\n')[0]}`);
  }
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (e) => pageErrors.push(e.message));

  // 1. The page loads.
  const res = await page.goto(base + '/', { waitUntil: 'domcontentloaded', timeout: 15_000 })
    .catch((e) => fail(`GET / in Chromium: ${e.message.split('\n')[0]}`));
  if (!res || !res.ok()) fail(`GET / in Chromium: HTTP ${res?.status()}`);
  await page.evaluate(() => { window.__onairNoReload = true; });
  ok('page / loads');

  // 2. Station name.
  await until(10_000, `#station-name shows "${stationName}"`, async () => {
    const t = await text('#station-name');
    return [t === stationName, shown(t)];
  });
  ok(`#station-name is "${stationName}"`);

  // 3. Now playing title, as the API says (re-read both: a short track may end meanwhile).
  const title0 = await until(10_000, '#now-title equals /api/nowplaying now_playing.title', async () => {
    const want = apiTitle(await nowplaying());
    const t = await text('#now-title');
    return [want !== '' && t === want && t, `page ${JSON.stringify(t)}, API ${JSON.stringify(want)}`];
  });
  ok(`#now-title is "${title0}"`);

  // 4. A player per mount, and it plays.
  const audioCount = await until(10_000, 'an <audio data-mount> element appears', async () => {
    const n = await page.locator('audio[data-mount]').count();
    return [n > 0 && n, `${n} found`];
  });
  const mounts = (np0.mounts || []).map((m) => m.path);
  for (const m of mounts) {
    if (await page.locator(`audio[data-mount="${m}"]`).count() !== 1) fail(`no <audio data-mount="${m}"> on the page`);
  }
  const preloads = await page.$$eval('audio', (as) => as.map((a) => a.getAttribute('preload')));
  if (preloads.some((p) => p !== 'none')) fail(`every <audio> needs preload="none", found ${JSON.stringify(preloads)}`);
  ok(`${audioCount} <audio> player(s): ${mounts.join(', ')}`);

  const first = page.locator('audio').first();
  const how = (await page.locator('#play').count()) ? 'the play button' : 'audio.play()';
  if (how === 'the play button') await page.click('#play', { timeout: 5000 });
  else await first.evaluate((a) => a.play().catch(() => {}));
  await until(15_000, `the first <audio> plays (currentTime past 1.5 s after ${how})`, async () => {
    const s = await first.evaluate((a) => ({
      t: a.currentTime, paused: a.paused, rs: a.readyState, ns: a.networkState, err: a.error && a.error.code,
    }));
    return [s.t > 1.5, `currentTime ${s.t.toFixed(2)}, paused ${s.paused}, readyState ${s.rs}, networkState ${s.ns}, error ${s.err}`];
  }, 500);
  const mountPath = await first.getAttribute('data-mount');
  ok(`${mountPath} plays in the page (${how}, currentTime > 1.5 s)`);

  // 5. Live listener count.
  await until(10_000, '#listeners shows at least 1 listener while playing', async () => {
    const t = await text('#listeners');
    return [/^\d+$/.test(t || '') && Number(t) >= 1, shown(t)];
  });
  ok(`#listeners is ${await text('#listeners')}`);

  // 6. Skip with the admin API: the page follows without a reload.
  const before = await text('#now-title');
  const auth = 'Basic ' + Buffer.from(`${adminUser}:${adminPassword}`).toString('base64');
  const skip = await get('/admin/next?mount=/radio.mp3', { headers: { Authorization: auth } });
  if (!skip.ok) fail(`GET /admin/next?mount=/radio.mp3 as ${adminUser}: HTTP ${skip.status}`);
  await skip.arrayBuffer().catch(() => {});
  const title1 = await until(15_000, '#now-title changes to the new /api/nowplaying title after /admin/next', async () => {
    const t = await text('#now-title');
    if (t === before) return [false, `still ${JSON.stringify(t)}`];
    const want = apiTitle(await nowplaying());
    return [want !== '' && t === want && t, `page ${JSON.stringify(t)}, API ${JSON.stringify(want)}`];
  });
  if (!(await page.evaluate(() => window.__onairNoReload === true))) fail('the page reloaded instead of updating live');
  ok(`#now-title followed /admin/next live: "${before}" -> "${title1}"`);

  await until(5000, `#history lists the previous track "${before}"`, async () => {
    const items = await page.$$eval('#history li', (lis) => lis.map((li) => li.textContent));
    return [items.some((t) => t.includes(before)), `${items.length} item(s)`];
  });
  ok('#history lists the previous track');

  // 7. A DJ goes on air (ffmpeg as the source client): the page says who, then the AutoDJ.
  const played = await first.evaluate((a) => a.currentTime);
  const server = new URL(base);
  dj = spawn('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'sine=frequency=880:sample_rate=44100',
    '-ac', '2', '-c:a', 'libmp3lame', '-b:a', '128k', '-ice_name', DJ_NAME, '-content_type', 'audio/mpeg',
    '-f', 'mp3', `icecast://source:${encodeURIComponent(sourcePassword)}@${server.host}/live`,
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  const badge = async () => ({
    show: await page.$eval('#live', (e) => e.dataset.show).catch(() => null),
    label: await text('#live-label'),
    eyebrow: await text('#now-label'),
    streamer: await text('#live-streamer'),
    hidden: await page.$eval('#live-show', (e) => e.hidden).catch(() => null),
  });
  await until(20_000, `the page shows "${DJ_NAME}" live`, async () => {
    const b = await badge();
    return [b.show === 'live' && b.label === 'Live' && b.eyebrow === 'Live now'
      && b.streamer === DJ_NAME && b.hidden === false, JSON.stringify(b)];
  });
  const live = (await nowplaying()).live;
  if (!live?.is_live || live.streamer !== DJ_NAME) fail(`/api/nowplaying live is ${JSON.stringify(live)}`);
  ok(`the page shows the DJ live: "${DJ_NAME}" (${await text('#live-show')})`);
  dj.kill('SIGINT');
  await until(15_000, 'the page is back to the AutoDJ after the DJ leaves', async () => {
    const b = await badge();
    return [b.show === 'autodj' && b.label === 'On air' && b.eyebrow === 'Now playing' && b.hidden === true,
      JSON.stringify(b)];
  });
  const after = await first.evaluate((a) => ({ t: a.currentTime, paused: a.paused }));
  if (after.paused || after.t < played + 2) {
    fail(`the player stopped during the show: currentTime ${played.toFixed(1)} -> ${after.t.toFixed(1)}, paused ${after.paused}`);
  }
  ok(`back to the AutoDJ; the player went on through the show (${played.toFixed(1)} s -> ${after.t.toFixed(1)} s)`);

  if (pageErrors.length) fail(`JavaScript errors on the page: ${pageErrors.join(' | ')}`);
  ok('no JavaScript errors on the page');

  if (screenshotPath) {
    await page.screenshot({ path: screenshotPath, fullPage: true, timeout: 10_000 });
    console.log(`screenshot: ${screenshotPath}`);
  }
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = null;
  await Promise.race([b.close().catch(() => {}), sleep(5000)]);
}

async function main() {
  let code = 0;
  const hard = setTimeout(async () => {
    console.error(`FAIL: the whole test took longer than ${HARD_TIMEOUT_MS / 1000} s`);
    console.log(`${passed} passed, 1 failed`);
    await closeBrowser();
    process.exit(1);
  }, HARD_TIMEOUT_MS);
  try {
    await run();
    console.log(`${passed} passed, 0 failed (${secs()})`);
  } catch (e) {
    code = 1;
    console.error(`FAIL: ${e instanceof CheckFailed ? e.message : e.stack || e}`);
    if (pageErrors.length) console.error(`page errors: ${pageErrors.join(' | ')}`);
    if (page && screenshotPath) {
      await page.screenshot({ path: screenshotPath, fullPage: true, timeout: 5000 })
        .then(() => console.error(`screenshot of the failure: ${screenshotPath}`), () => {});
    }
    console.log(`${passed} passed, 1 failed`);
  } finally {
    if (dj && dj.exitCode === null) dj.kill('SIGKILL');
    await closeBrowser();
    clearTimeout(hard);
  }
  process.exit(code);
}

main();
