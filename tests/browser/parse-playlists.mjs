#!/usr/bin/env node
// Parses onair's HLS playlists with npm hls-parser in strict mode: the multivariant playlist,
// and for each of its variants the media playlist whole, as a delta update (_HLS_skip=YES) and
// after a blocking reload for the hinted part. Strict mode throws on any syntax or rule the
// parser knows (attribute formats, PART-TARGET exceeded, tags in the wrong playlist type).
//
//   node parse-playlists.mjs BASE_URL
//
// Prints one "ok" line per playlist with what it found; exits 1 on the first failure.

import HLS from 'hls-parser';

const base = (process.argv[2] || '').replace(/\/+$/, '');
if (!base) {
  console.error('usage: node parse-playlists.mjs BASE_URL');
  process.exit(2);
}
HLS.setOptions({ strictMode: true, silent: true });

async function fetchText(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return res.text();
}

function parse(url, text) {
  try {
    return HLS.parse(text);
  } catch (e) {
    // The head and the tail: where the rules a playlist breaks show.
    const lines = text.split('\n');
    const shown = lines.length > 60 ? [...lines.slice(0, 15), '...', ...lines.slice(-30)] : lines;
    throw new Error(`${url}: ${e.message}\n${shown.join('\n')}`);
  }
}

function fail(msg) {
  console.log(`not ok - ${msg}`);
  process.exit(1);
}

try {
  const masterUrl = `${base}/hls/master.m3u8`;
  const master = parse(masterUrl, await fetchText(masterUrl));
  if (!master.isMasterPlaylist) fail(`${masterUrl} is not a multivariant playlist`);
  if (master.variants.length === 0) fail(`${masterUrl} lists no variant`);
  for (const v of master.variants) {
    if (!v.codecs || !v.bandwidth || !v.averageBandwidth) fail(`variant ${v.uri}: CODECS, BANDWIDTH and AVERAGE-BANDWIDTH are required`);
  }
  console.log(`ok - ${masterUrl}: ${master.variants.map((v) => `${v.uri} (${v.codecs}, ${v.bandwidth})`).join(', ')}`);

  for (const v of master.variants) {
    const url = new URL(v.uri, masterUrl).href;
    const media = parse(url, await fetchText(url));
    if (media.isMasterPlaylist) fail(`${url} is not a media playlist`);
    const target = media.partTargetDuration;
    // hls-parser lists the preload hint as a part with `hint: true`.
    const all = media.segments.flatMap((s) => s.parts || []);
    const parts = all.filter((p) => !p.hint);
    const hints = all.filter((p) => p.hint);
    if (!target || parts.length === 0) fail(`${url}: no PART-INF or no parts`);
    if (!media.lowLatencyCompatibility?.canBlockReload) fail(`${url}: no CAN-BLOCK-RELOAD`);
    // Every segment, the one being built included; not the entry hls-parser makes for a hint
    // that begins the next segment before it has a part.
    const real = media.segments.filter((s) => s.uri || (s.parts || []).some((p) => !p.hint));
    const undated = real.filter((s) => !s.programDateTime);
    if (undated.length) fail(`${url}: segment ${undated[0].mediaSequenceNumber} has no PROGRAM-DATE-TIME`);
    if (hints.length !== 1) fail(`${url}: ${hints.length} preload hints, not one`);
    if (media.renditionReports.length !== master.variants.length - 1) fail(`${url}: ${media.renditionReports.length} rendition reports`);
    console.log(`ok - ${url}: ${media.segments.length} segments from ${media.mediaSequenceBase}, ${parts.length} parts listed, PART-TARGET ${target}`);

    const delta = parse(`${url}?_HLS_skip=YES`, await fetchText(`${url}?_HLS_skip=YES`));
    // Segments may be skipped while what is left lasts CAN-SKIP-UNTIL or more.
    const skipped = delta.skip || 0;
    const canSkipUntil = media.lowLatencyCompatibility.canSkipUntil;
    const total = media.segments.filter((s) => s.uri).reduce((t, s) => t + s.duration, 0);
    const skippable = total - media.segments[0].duration >= canSkipUntil;
    if (skippable && skipped <= 0) fail(`${url}?_HLS_skip=YES: no EXT-X-SKIP in a ${total.toFixed(1)} s window`);
    if (!skippable && skipped > 0) fail(`${url}?_HLS_skip=YES: skips ${skipped} of a ${total.toFixed(1)} s window`);
    // The playlist may have gained a segment between the two requests.
    const covered = skipped + delta.segments.length - media.segments.length;
    if (covered < 0 || covered > 1) fail(`${url}?_HLS_skip=YES: skips ${skipped} and lists ${delta.segments.length}, the whole lists ${media.segments.length}`);
    console.log(`ok - ${url}?_HLS_skip=YES: skips ${skipped}, lists ${delta.segments.length} (window ${total.toFixed(1)} s)`);

    // The next part: the last listed plus one (or part 0 of the next segment).
    const last = media.segments[media.segments.length - 1];
    const lastParts = (last.parts || []).filter((p) => !p.hint);
    const [msn, part] = last.uri ? [last.mediaSequenceNumber + 1, 0] : [last.mediaSequenceNumber, lastParts.length];
    const blockingUrl = `${url}?_HLS_msn=${msn}&_HLS_part=${part}`;
    const blocked = parse(blockingUrl, await fetchText(blockingUrl));
    console.log(`ok - ${blockingUrl}: ${blocked.segments.length} segments`);
  }
  console.log('0 failed');
} catch (e) {
  fail(e.message);
}
