// Driver for scripts/browser_play.sh: Debian's chromium (headless, via playwright-core) plays an
// HLS title with hls.js and a DASH title with dash.js through Arrow, twice each (the second time
// in a fresh browser context, so nothing comes from the browser's own cache), and checks
//   - every play ends (the 'ended' event) without a stall ('waiting' after playback started,
//     outside the seek and the last 0.25 s),
//   - the seek (seekFrom -> seekTo) resumes playback at the target,
//   - no player/video error,
//   - during the second play the origin received no segment request (playlists/manifests only),
//   - a third play from a page of another origin works too (Vary: Origin: Arrow asks the origin
//     again, and every answer carries that page's Access-Control-Allow-Origin).
//
// Environment: ARROW_URL (http://127.0.0.1:PORT), ORIGIN_LOG (the origin's JSON-lines log),
// NODE_MODULES (with playwright-core, hls.js, dashjs), PAGE_DIR (tests/browser), CHROMIUM
// (default /usr/bin/chromium), ACCESS_LOG (Arrow's, optional), RESULT_JSON (where to write the full result), PLAY_TIMEOUT_S (45).
// Exit: 0 pass, 1 fail (details on stdout), 2 could not run (reason on stderr).
"use strict";
const fs = require("fs");
const http = require("http");
const path = require("path");

const NM = process.env.NODE_MODULES;
const ARROW = process.env.ARROW_URL;
const ORIGIN_LOG = process.env.ORIGIN_LOG;
const PAGE_DIR = process.env.PAGE_DIR;
const ACCESS_LOG = process.env.ACCESS_LOG;  // Arrow's access log (optional)
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const PLAY_TIMEOUT_MS = 1000 * Number(process.env.PLAY_TIMEOUT_S || 45);
// The players keep ~4 s of buffer ahead, so at 3 s the target (9 s, in the 8-10 s segment) is
// not buffered yet and the seek has to fetch through Arrow.
const SEEK_FROM = 3, SEEK_TO = 9;

function cannot(msg) {
  console.error("[browser-play] cannot run: " + msg);
  process.exit(2);
}
if (!NM || !ARROW || !ORIGIN_LOG || !PAGE_DIR) cannot("NODE_MODULES, ARROW_URL, ORIGIN_LOG, PAGE_DIR must be set");

let chromium;
try { ({ chromium } = require(path.join(NM, "playwright-core"))); }
catch (e) { cannot("playwright-core not found under " + NM + ": " + e.message); }

const FILES = {
  "/player.html": [path.join(PAGE_DIR, "player.html"), "text/html; charset=utf-8"],
  "/lib/hls.min.js": [path.join(NM, "hls.js/dist/hls.min.js"), "text/javascript"],
  "/lib/dash.all.min.js": [path.join(NM, "dashjs/dist/modern/umd/dash.all.min.js"), "text/javascript"],
};
for (const [u, [f]] of Object.entries(FILES)) if (!fs.existsSync(f)) cannot("missing " + f + " (for " + u + ")");

const TITLES = [
  { kind: "hls", path: "/hls/master.m3u8" },
  { kind: "dash", path: "/dash/manifest.mpd" },
];
const isPlaylist = p => /\.(m3u8|mpd)(\?|$)/.test(p);

function originLines(fromByte) {
  const buf = fs.readFileSync(ORIGIN_LOG);
  const lines = buf.subarray(fromByte).toString("utf8").split("\n").filter(Boolean).map(l => JSON.parse(l));
  return { lines, end: buf.length };
}
const fileSize = f => { try { return fs.statSync(f).size; } catch (e) { return 0; } };
const sleep = ms => new Promise(r => setTimeout(r, ms));

async function main() {
  // the test page, on its own port: requests to Arrow are cross-origin. A second page server
  // (another port, so another Origin) plays each title a third time: with Vary: Origin the
  // origin must be asked again and every answer must carry that page's own
  // Access-Control-Allow-Origin (a cache that ignored Vary would replay the first page's one
  // and the browser would block the media).
  const servePage = (req, res) => {
    const u = new URL(req.url, "http://x");
    const f = FILES[u.pathname];
    if (!f) { res.writeHead(404); return res.end("not found"); }
    res.writeHead(200, { "Content-Type": f[1], "Cache-Control": "no-store" });
    fs.createReadStream(f[0]).pipe(res);
  };
  const server = http.createServer(servePage), server2 = http.createServer(servePage);
  await new Promise(r => server.listen(0, "127.0.0.1", r));
  await new Promise(r => server2.listen(0, "127.0.0.1", r));
  const pageBase = "http://127.0.0.1:" + server.address().port;
  const pageBase2 = "http://127.0.0.1:" + server2.address().port;
  const closeServers = () => { server.close(); server2.close(); };

  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
             "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions",
             "--disable-background-timer-throttling", "--disable-renderer-backgrounding"],
      timeout: 60000,
    });
  } catch (e) {
    closeServers();
    cannot("chromium (" + CHROMIUM + ") did not start: " + e.message.split("\n")[0]);
  }
  const version = browser.version();
  const results = { chromium: version, page: pageBase, page2: pageBase2, arrow: ARROW, plays: [] };

  // can this chromium play the codecs (Debian's chromium ships H.264/AAC via its ffmpeg)?
  {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    await p.goto(pageBase + "/player.html?kind=none");
    const sup = await p.evaluate(() => ({
      mse: typeof MediaSource !== "undefined",
      avc: typeof MediaSource !== "undefined" && MediaSource.isTypeSupported('video/mp4; codecs="avc1.42c00d"'),
      aac: typeof MediaSource !== "undefined" && MediaSource.isTypeSupported('audio/mp4; codecs="mp4a.40.2"'),
    }));
    await ctx.close();
    if (!sup.mse || !sup.avc || !sup.aac) {
      await browser.close(); closeServers();
      cannot("chromium " + version + " lacks MSE/H.264/AAC support: " + JSON.stringify(sup));
    }
  }

  const failures = [];
  for (const title of TITLES) {
    for (const n of [1, 2, 3]) {
      const base = n === 3 ? pageBase2 : pageBase;
      const label = title.kind + " play " + n + (n === 3 ? " (another page origin)" : "");
      await sleep(300);  // let the previous play's last requests reach the origin log
      const before = originLines(0).end;
      const accessBefore = ACCESS_LOG ? fs.statSync(ACCESS_LOG).size : 0;
      const ctx = await browser.newContext();  // fresh profile: empty browser cache
      const page = await ctx.newPage();
      const arrowResponses = [], failedRequests = [], consoleErrors = [];
      page.on("response", r => {
        if (!r.url().startsWith(ARROW)) return;
        const h = r.headers();
        arrowResponses.push({ url: r.url().slice(ARROW.length), status: r.status(),
          xcache: h["x-cache"] || "", age: h["age"] || "", acao: h["access-control-allow-origin"] || "",
          vary: h["vary"] || "" });
      });
      // net::ERR_ABORTED is the page cancelling its own request (dash.js abandons a fragment on
      // a seek or a quality switch): not a failure of the server. Every other failure counts.
      page.on("requestfailed", r => {
        const why = (r.failure() && r.failure().errorText) || "";
        if (why === "net::ERR_ABORTED") return;
        failedRequests.push(r.url() + " " + why);
      });
      page.on("console", m => { if (m.type() === "error") consoleErrors.push(m.text().slice(0, 300)); });
      const url = base + "/player.html?kind=" + title.kind + "&src=" + encodeURIComponent(ARROW + title.path) +
        "&seekFrom=" + SEEK_FROM + "&seekTo=" + SEEK_TO;
      const t0 = Date.now();
      let st = null;
      try {
        await page.goto(url);
        await page.waitForFunction(() => window.__st && window.__st.done, null,
                                   { timeout: PLAY_TIMEOUT_MS, polling: 250 });
      } catch (e) {
        consoleErrors.push("driver: " + e.message.split("\n")[0]);
      }
      try { st = await page.evaluate(() => window.__st); } catch (e) { st = null; }
      const wall = Date.now() - t0;
      await ctx.close();
      await sleep(300);
      const origin = originLines(before).lines.filter(l => l.path !== "/");
      const originSegments = origin.filter(l => !isPlaylist(l.path));
      // what Arrow itself answered (its access log; the page's response events also count
      // replays from the browser's own cache, e.g. dash.js re-reading init segments on a seek)
      const xcache = {};
      if (ACCESS_LOG) {
        const lines = (fs.existsSync(ACCESS_LOG) ? fs.readFileSync(ACCESS_LOG) : Buffer.alloc(0)).subarray(accessBefore).toString("utf8").split("\n");
        for (const l of lines) {
          const m = l.match(/" \d{3} \d+ "[^"]*" "[^"]*" (\S+)/);
          if (m) xcache[m[1]] = (xcache[m[1]] || 0) + 1;
        }
      } else {
        for (const r of arrowResponses) xcache[r.xcache || "(none)"] = (xcache[r.xcache || "(none)"] || 0) + 1;
      }
      const wrongAcao = arrowResponses.filter(r => r.acao !== base);

      const problems = [];
      if (!st) problems.push("the page never reported (no window.__st)");
      else {
        if (!st.done) problems.push("did not end within " + PLAY_TIMEOUT_MS / 1000 + " s (at " + st.lastTime.toFixed(2) + " s)");
        else if (!st.ended && !st.endWithoutEvent) problems.push("stopped before the end: " + st.doneReason);
        if (st.errors.length) problems.push("errors: " + st.errors.join("; "));
        if (st.stalls.length) problems.push(st.stalls.length + " stall(s) at " + st.stalls.map(s => s.t.toFixed(2) + " s").join(", "));
        if (!st.seek.requested) problems.push("the seek was never made (playback did not reach " + SEEK_FROM + " s)");
        else if (!st.seek.ok) problems.push("the seek to " + SEEK_TO + " s did not resume playback there (" + JSON.stringify(st.seek) + ")");
      }
      if (wrongAcao.length)
        problems.push("Access-Control-Allow-Origin is not " + base + " on: " +
          wrongAcao.map(r => r.url + " (" + (r.acao || "absent") + ", X-Cache " + r.xcache + ")").join(", "));
      if (n === 3 && originSegments.length === 0)
        problems.push("a page of another origin was served without the origin being asked: Vary: Origin ignored?");
      if (failedRequests.length) problems.push("failed requests: " + failedRequests.join("; "));
      if (n === 2 && originSegments.length)
        problems.push("second play cost the origin " + originSegments.length + " segment request(s): " +
          originSegments.map(l => l.method + " " + l.path + " -> " + l.status + (l.conditional ? " (conditional)" : "")).join(", "));
      const play = { label, wall_ms: wall, ok: problems.length === 0, problems,
        state: st && { ended: st.ended, endWithoutEvent: !!st.endWithoutEvent, doneReason: st.doneReason, duration: st.duration, lastTime: st.lastTime,
                       startedAt: st.startedAt, endedAt: st.endedAt, stalls: st.stalls, seekWaits: st.seekWaits,
                       endWaits: st.endWaits, seek: st.seek, errors: st.errors, nonFatal: st.nonFatal },
        arrow_xcache: xcache, arrow_responses: arrowResponses,
        origin_requests: origin, console_errors: consoleErrors, events: st && st.log };
      results.plays.push(play);
      // one line per play for people
      console.log(`${play.ok ? "PASS" : "FAIL"} ${label}: ${wall} ms` +
        (st ? `, started ${st.startedAt} ms, ${st.ended ? "ended" : st.endWithoutEvent ? "reached the end (no 'ended' event)" : "NOT ended"} at ${st.lastTime.toFixed(2)}/${(st.duration || 0).toFixed(2)} s` +
              `, stalls ${st.stalls.length}, seek ${st.seek.requested ? (st.seek.from.toFixed(2) + "->" + SEEK_TO + (st.seek.ok ? " ok" : " FAILED") + (st.seek.targetBuffered ? " (target was buffered)" : " (target not buffered)")) : "not made"}` : "") +
        `; Arrow X-Cache ${JSON.stringify(xcache)}; origin got ${origin.length} request(s): ` +
        origin.map(l => `${l.method} ${l.path} ${l.status}${l.conditional ? " cond" : ""}`).join(", "));
      for (const p of problems) console.log("    - " + p);
      if (!play.ok) failures.push(label + ": " + problems.join(" | "));
      if (!play.ok && consoleErrors.length) console.log("    console: " + consoleErrors.slice(0, 5).join(" | "));
    }
  }
  await browser.close();
  closeServers();
  if (process.env.RESULT_JSON) fs.writeFileSync(process.env.RESULT_JSON, JSON.stringify(results, null, 1));
  console.log(failures.length ? `\nFAIL: ${failures.length} play(s) failed` : "\nPASS: every play ended without a stall, the seeks worked, the second plays cost the origin no segment, another page origin got its own CORS answers");
  process.exit(failures.length ? 1 : 0);
}

main().catch(e => { console.error("[browser-play] driver crashed: " + (e.stack || e)); process.exit(2); });
