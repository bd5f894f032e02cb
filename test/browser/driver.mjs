// Drives headless Chromium for ferry's browser tests (browser_test.go).
//
//   node driver.mjs '<job JSON>'
//
// job: {scenario, url, chromium, userDataDir, chromiumArgs, timeoutMs} and, for
// the testpage scenario, testpage and screenshot.
// Prints one JSON line on stdout, {"ok": true, "result": ...} or
// {"ok": false, "error": "..."}; page console lines and progress go to
// stderr. Exits non-zero on failure and within timeoutMs in any case.
import { chromium } from 'playwright-core';

const job = JSON.parse(process.argv[2]);
const timeoutMs = job.timeoutMs || 40000;

// The flags every Chromium in this project runs with: no sandbox (root),
// nothing that reaches the internet (background networking, component
// updates, sync, QUIC). Playwright adds --headless and --user-data-dir.
const args = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  ...(job.chromiumArgs || []),
];

const say = (...a) => console.error('driver:', ...a);

function watch(page, name) {
  page.on('console', (m) => say(`${name} console.${m.type()}:`, m.text()));
  page.on('pageerror', (e) => say(`${name} page error:`, e.message));
}

// page: open url; the page sets window.result to a promise of its result.
async function pageScenario(ctx) {
  const page = await ctx.newPage();
  watch(page, 'page');
  await page.goto(job.url);
  await page.waitForFunction(() => window.result !== undefined);
  return await page.evaluate(() => window.result);
}

// selectedLocalCandidate returns the local candidate of the selected pair of
// a PeerJS page's data connection.
async function selectedLocalCandidate(page) {
  return await page.evaluate(async () => {
    const pc = window.app.conn.peerConnection;
    const stats = await pc.getStats();
    let pairId;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    if (!pairId) return null;
    const lc = stats.get(stats.get(pairId).localCandidateId);
    return { candidateType: lc.candidateType, address: lc.address, port: lc.port, relayProtocol: lc.relayProtocol, url: lc.url };
  });
}

// peerjs: two tabs of the PeerJS example; B connects to A through the UI,
// each sends a message, each must receive the other's.
async function peerjsScenario(ctx) {
  const a = await ctx.newPage();
  const b = await ctx.newPage();
  watch(a, 'A');
  watch(b, 'B');
  await Promise.all([a.goto(job.url), b.goto(job.url)]);
  const idOf = async (p) => {
    await p.waitForFunction(() => window.app.peer && window.app.peer.id && !window.app.peer.disconnected);
    return await p.evaluate(() => window.app.peer.id);
  };
  const [idA, idB] = await Promise.all([idOf(a), idOf(b)]);
  say('peer ids', idA, idB);
  await b.fill('#remote-id', idA);
  await b.click('#connect');
  await Promise.all([
    a.waitForSelector('#send:not([disabled])'),
    b.waitForSelector('#send:not([disabled])'),
  ]);
  say('data connection open');
  await b.fill('#message', 'hello from B');
  await b.click('#send');
  await a.waitForFunction(() => window.app.received.length > 0);
  await a.fill('#message', 'hello from A');
  await a.click('#send');
  await b.waitForFunction(() => window.app.received.length > 0);
  return {
    idA,
    idB,
    receivedA: await a.evaluate(() => window.app.received),
    receivedB: await b.evaluate(() => window.app.received),
    candidateA: await selectedLocalCandidate(a),
    candidateB: await selectedLocalCandidate(b),
    logA: await a.textContent('#log'),
    logB: await b.textContent('#log'),
  };
}

// testpage: ferry's own test page (testpage/). job.testpage says how to
// fill its credential form: {source: "api"|"json"|"manual", apiKey,
// server, iceJSON, urls, username, credential}; the driver runs the tests,
// waits for the verdicts, screenshots the page into job.screenshot (if
// set) and returns every verdict as the page's data attributes show it.
async function testpageScenario(ctx) {
  const tp = job.testpage || {};
  const page = await ctx.newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  watch(page, 'testpage');
  const violations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  await page.goto(job.url);
  await page.waitForFunction(() => window.testpage !== undefined);
  await page.check(`input[name=source][value=${tp.source || 'api'}]`);
  if (tp.server) await page.fill('#api-base', tp.server);
  if (tp.apiKey) await page.fill('#api-key', tp.apiKey);
  if (tp.iceJSON) await page.fill('#ice-json', tp.iceJSON);
  if (tp.urls) await page.fill('#m-urls', tp.urls.join('\n'));
  if (tp.username) await page.fill('#m-username', tp.username);
  if (tp.credential) await page.fill('#m-credential', tp.credential);
  const started = Date.now();
  await page.click('#run');
  await page.waitForSelector('body[data-state=done]');
  say(`testpage run took ${Date.now() - started}ms`);
  if (tp.waitChart) {
    // Two status polls after the relay test: the chart has a rate.
    await page.waitForFunction(() => Number(document.getElementById('chart').dataset.points) >= 2 &&
      Number(document.getElementById('chart').dataset.max) > 1);
  }
  const out = await page.evaluate(() => {
    const data = (e) => (e ? { ...e.dataset, text: e.innerText } : null);
    return {
      credential: data(document.getElementById('cred-status')),
      rows: [...document.querySelectorAll('#rows tbody tr')].map(data),
      relay: data(document.getElementById('relay-result')),
      working: document.getElementById('working').value,
      copyDisabled: document.getElementById('copy-ice').disabled,
      status: data(document.getElementById('status')),
      statusNote: document.getElementById('status-note').innerText,
      chart: data(document.getElementById('chart')),
      result: window.testpage.result,
    };
  });
  out.cspViolations = violations;
  if (!out.copyDisabled) {
    // The copy button puts the working servers on the clipboard.
    await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(job.url).origin });
    await page.click('#copy-ice');
    await page.waitForFunction(() => document.getElementById('copy-status').textContent !== '');
    out.copyStatus = await page.textContent('#copy-status');
    out.clipboard = await page.evaluate(() => navigator.clipboard.readText().catch((e) => `unreadable: ${e}`));
  }
  if (job.screenshot) {
    await page.screenshot({ path: job.screenshot, fullPage: true });
  }
  return out;
}

const scenarios = { page: pageScenario, peerjs: peerjsScenario, testpage: testpageScenario };

const timer = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: `driver timed out after ${timeoutMs}ms` }));
  process.exit(3);
}, timeoutMs);

let ctx;
try {
  const run = scenarios[job.scenario];
  if (!run) throw new Error(`unknown scenario ${job.scenario}`);
  ctx = await chromium.launchPersistentContext(job.userDataDir, {
    executablePath: job.chromium,
    headless: true,
    args,
    timeout: 20000,
  });
  ctx.setDefaultTimeout(Math.max(5000, timeoutMs - 10000));
  const result = await run(ctx);
  console.log(JSON.stringify({ ok: true, result }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String((e && e.stack) || e) }));
  process.exitCode = 1;
} finally {
  if (ctx) await ctx.close().catch(() => {});
  clearTimeout(timer);
}
