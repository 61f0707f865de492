#!/usr/bin/env node
// Plays onair's HLS with hls.js in headless Chromium and reports what the players saw.
//
//   node hls-test.mjs PLAYLIST_URL [--low-latency] [--seconds N] [--clients N] [--title T]
//                                  [--max-behind-ms MS] [--catch-up RATE]
//
// Each client is a page on another origin (so CORS is exercised) running hls.js from npm on an
// <audio> element. After N seconds of playback (default 20) every client must have:
//   - no fatal hls.js error, and audio time advanced by at least N - 3 seconds;
//   - with --low-latency: loaded parts,
//     and under MS (default 5000) behind live by the wall clock (Date.now() minus
//     hls.playingDate, which comes from EXT-X-PROGRAM-DATE-TIME);
//   - with --title T: an ID3 TIT2 cue with text T.
// --catch-up RATE lets hls.js play up to RATE x speed to reach its target latency
// (maxLiveSyncPlaybackRate; hls.js's default 1 never catches up, AVPlayer does by itself).
// Prints one JSON line per client, then "ok" lines; exits 0 when all pass, 1 otherwise.
//
// Needs Debian's Chromium at /usr/bin/chromium and `npm ci --prefix tests/browser`.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const args = process.argv.slice(2);
const playlist = args.find((a) => !a.startsWith('--'));
const flag = (name) => args.includes(name);
const option = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
if (!playlist) {
  console.error('usage: node hls-test.mjs PLAYLIST_URL [--low-latency] [--seconds N] [--clients N] [--title T]');
  process.exit(2);
}
const lowLatency = flag('--low-latency');
const seconds = Number(option('--seconds', '20'));
const clients = Number(option('--clients', '1'));
const title = option('--title', null);
const MAX_BEHIND_MS = Number(option('--max-behind-ms', '5000'));
const catchUp = Number(option('--catch-up', '1'));

const require = createRequire(import.meta.url);
const hlsJs = readFileSync(require.resolve('hls.js/dist/hls.min.js'), 'utf8');

const page_html = `<!doctype html><meta charset="utf-8"><title>hls.js</title>
<audio id="a"></audio><script src="/hls.js"></script>
<script>
const report = window.report = { errors: [], fatal: null, parts: 0, fragments: 0, waiting: 0 };
const audio = document.getElementById('a');
audio.addEventListener('waiting', () => { report.waiting += 1; });
const hls = window.hls = new Hls({ lowLatencyMode: ${lowLatency}, maxLiveSyncPlaybackRate: ${catchUp} });
hls.on(Hls.Events.ERROR, (_, d) => {
  report.errors.push(d.details + (d.fatal ? ' (fatal)' : ''));
  if (d.fatal) report.fatal = d.details;
});
hls.on(Hls.Events.FRAG_LOADED, (_, d) => { if (d.part) report.parts += 1; else report.fragments += 1; });
hls.on(Hls.Events.MANIFEST_PARSED, () => { audio.play().catch((e) => report.errors.push('play: ' + e.message)); });
hls.loadSource(${JSON.stringify(playlist)});
hls.attachMedia(audio);
window.state = () => {
  const titles = new Set();
  for (const track of audio.textTracks) {
    for (const cue of track.cues || []) {
      if (cue.value && cue.value.key === 'TIT2') titles.add(cue.value.data);
    }
  }
  return {
    ...report,
    currentTime: audio.currentTime,
    paused: audio.paused,
    behindMs: hls.playingDate ? Date.now() - hls.playingDate.getTime() : null,
    latency: hls.latency,
    titles: [...titles],
    buffered: [...Array(audio.buffered.length).keys()].map((i) => [audio.buffered.start(i), audio.buffered.end(i)]),
  };
};
</script>`;

// The player page is served from another origin (a port of this script's), on the loopback
// like onair: Chromium lets a loopback page reach 127.0.0.1, and hls.js must pass CORS.
const pageServer = createServer((req, res) => {
  const [type, body] = req.url === '/hls.js' ? ['text/javascript', hlsJs] : ['text/html', page_html];
  res.writeHead(200, { 'content-type': type });
  res.end(body);
});
await new Promise((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
const PAGE = `http://127.0.0.1:${pageServer.address().port}/player.html`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let failed = 0;
const check = (cond, msg) => {
  if (cond) console.log(`ok - ${msg}`);
  else { failed += 1; console.log(`not ok - ${msg}`); }
};

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
    '--autoplay-policy=no-user-gesture-required', '--disable-quic'],
  timeout: 30_000,
});
try {
  const context = await browser.newContext();
  const pages = [];
  for (let i = 0; i < clients; i += 1) {
    const page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') console.error(`client ${i} console: ${m.text()}`); });
    page.on('requestfailed', (r) => console.error(`client ${i} request failed: ${r.url()} ${r.failure()?.errorText}`));
    await page.goto(PAGE);
    pages.push(page);
  }
  // Playback begins once the first parts are in; the N seconds count from there.
  const start = await Promise.all(pages.map(async (p) => {
    for (let i = 0; i < 60; i += 1) {
      const s = await p.evaluate(() => window.state());
      if (s.currentTime > 0 || s.fatal) return s.currentTime;
      await sleep(250);
    }
    return 0;
  }));
  await sleep(seconds * 1000);
  const states = await Promise.all(pages.map((p) => p.evaluate(() => window.state())));
  states.forEach((s, i) => {
    console.log(JSON.stringify({ client: i, ...s, errors: s.errors.slice(0, 10) }));
    const played = s.currentTime - start[i];
    check(!s.fatal, `client ${i}: no fatal error (${s.fatal || 'none'})`);
    check(played >= seconds - 3, `client ${i}: played ${played.toFixed(1)} s of ${seconds}`);
    if (lowLatency) {
      check(s.parts > 0, `client ${i}: loaded ${s.parts} parts`);
      check(s.behindMs !== null && s.behindMs < MAX_BEHIND_MS,
        `client ${i}: ${s.behindMs} ms behind live (limit ${MAX_BEHIND_MS})`);
    }
    if (title !== null) {
      check(s.titles.includes(title), `client ${i}: ID3 title cue ${JSON.stringify(title)} in ${JSON.stringify(s.titles)}`);
    }
  });
} finally {
  await browser.close();
  pageServer.close();
}
console.log(failed ? `${failed} failed` : '0 failed');
process.exit(failed ? 1 : 0);
