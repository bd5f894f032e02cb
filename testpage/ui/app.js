// ferry's "Does my TURN work?" page. Plain JavaScript, no library.
//
// Steps: get a credential (ferry's credentials API, a pasted iceServers
// list, or a URL with a user name and credential); test each URL on its own
// RTCPeerConnection (relay only for turn:/turns:); open a relay-only data
// channel between two connections of this page through the first working
// TURN URL and measure round-trip time and throughput; offer the working
// servers as an iceServers list. Beside it, poll /v1/status and draw the
// relayed traffic.
//
// Every verdict is in data attributes for tests: the rows of #rows are
// tr[data-url][data-kind][data-status=ok|fail][data-cause], #cred-status
// and #relay-result carry data-status and data-cause, #relay-result also
// data-rtt-ms and data-throughput (bytes/s); body[data-state] is "running"
// during a run and "done" after it. window.testpage.result holds the same
// as one object.
'use strict';

(() => {
  const GATHER_TIMEOUT_MS = 8000; // no candidate and no error by then: "timeout"
  const GATHER_GRACE_MS = 1500; // after the first wanted candidate, wait this long for the rest
  const OPEN_TIMEOUT_MS = 15000;
  const PING_COUNT = 20;
  const THROUGHPUT_MS = 3000;
  const CHUNK_BYTES = 16 * 1024;
  const MAX_BUFFERED = 1024 * 1024;
  const POLL_MS = 3000;
  const CHART_WINDOW_MS = 5 * 60 * 1000;

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // What the page knows of the server's clock, from /v1/status:
  // serverMinusLocalMs is ferry's clock minus this computer's.
  const clock = { serverMinusLocalMs: null };

  // CSP violations (the page's connect-src is its own origin when ferry
  // serves it), to tell them from an unreachable server.
  const violations = [];
  document.addEventListener('securitypolicyviolation', (e) => violations.push(e.blockedURI || ''));

  // Causes of a failed URL: what the error means and how to fix it.
  const CAUSES = {
    auth: {
      why: 'The server refused the credential (401 Unauthorized): it is wrong or has expired.',
      fix: 'Check the user name and credential. REST credentials (the credentials API, ferry creds) expire after their ttl: get a fresh one, and check that the clocks of ferry and of whatever minted the credential agree (NTP).',
    },
    forbidden: {
      why: 'The server refused the request (403 Forbidden): its peer policy does not let the relay reach that peer.',
      fix: 'ferry relays only to globally reachable addresses unless relay.allowed-peers opens a range (relay.allow-loopback-peers for local tests).',
    },
    quota: {
      why: 'This user already has as many allocations as its quota allows (486 Allocation Quota Reached).',
      fix: 'Close other calls of this user, or raise quota.user-allocations.',
    },
    capacity: {
      why: 'The server is at capacity or draining (508 Insufficient Capacity).',
      fix: 'Use another server or wait until the drain ends; check quota.total-allocations and the relay port range (relay.ports).',
    },
    unreachable: {
      why: 'The browser cannot reach the server (701).',
      fix: 'Check the host name, port and transport, and that no firewall blocks them from here. For turns: URLs the TLS certificate must be valid for the host name and trusted by this browser.',
    },
    timeout: {
      why: `Nothing came back from the server within ${GATHER_TIMEOUT_MS / 1000} s: no candidate from it and no error.`,
      fix: 'The port is blocked on the way, or nothing listens there (a stopped listener, a wrong port or transport): check that ferry listens on it and that a firewall lets it through.',
    },
    'no-candidate': {
      why: 'Gathering ended without the candidate this URL should give.',
      fix: 'The server answered nothing usable; look at its log and at the browser\'s webrtc-internals.',
    },
    'bad-url': {
      why: 'The browser refused this URL or server entry.',
      fix: 'URLs look like stun:host:3478, turn:host:3478?transport=udp, turn:host:3478?transport=tcp or turns:host:5349?transport=tcp; TURN URLs need a user name and credential.',
    },
    other: {
      why: 'The server answered with an error.',
      fix: 'See the error text and the server\'s log.',
    },
  };
  const CODE_CAUSES = { 401: 'auth', 403: 'forbidden', 486: 'quota', 508: 'capacity', 701: 'unreachable' };

  const causeOf = (errors) => {
    for (const code of [401, 403, 486, 508]) {
      if (errors.some((e) => e.errorCode === code)) return CODE_CAUSES[code];
    }
    if (errors.some((e) => e.errorCode === 701)) return 'unreachable';
    return errors.length ? 'other' : 'timeout';
  };

  // --- credentials ---------------------------------------------------

  class CredError extends Error {
    constructor(cause, why, fix) {
      super(why);
      this.cause = cause;
      this.fix = fix || '';
    }
  }

  const apiBase = () => ($('api-base').value.trim() || location.origin).replace(/\/+$/, '');

  // servers returns [{url, username, credential}], one per URL.
  async function servers() {
    const source = document.querySelector('input[name=source]:checked').value;
    if (source === 'json') return fromJSON($('ice-json').value);
    if (source === 'manual') {
      const urls = $('m-urls').value.split(/\s+/).filter(Boolean);
      if (!urls.length) throw new CredError('no-urls', 'Enter at least one URL.');
      return urls.map((url) => ({ url, username: $('m-username').value, credential: $('m-credential').value }));
    }
    return fromAPI();
  }

  function fromJSON(text) {
    let v;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new CredError('bad-json', `The iceServers list is not JSON: ${e.message}`,
        'Paste a JSON array like [{"urls": [...], "username": "...", "credential": "..."}], or the whole answer of the credentials API.');
    }
    if (v && !Array.isArray(v) && Array.isArray(v.iceServers)) v = v.iceServers;
    if (v && !Array.isArray(v) && v.urls) v = [v];
    if (!Array.isArray(v)) throw new CredError('bad-json', 'The JSON is not an iceServers list.');
    return flatten(v);
  }

  function flatten(iceServers) {
    const out = [];
    for (const s of iceServers) {
      if (!s || !s.urls) continue;
      for (const url of [].concat(s.urls)) {
        out.push({ url: String(url), username: s.username || '', credential: s.credential || '' });
      }
    }
    if (!out.length) throw new CredError('no-urls', 'The iceServers list names no URL.');
    return out;
  }

  async function fromAPI() {
    const base = apiBase();
    const headers = { 'Content-Type': 'application/json' };
    const key = $('api-key').value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    let res;
    const seen = violations.length;
    try {
      res = await fetch(`${base}/v1/credentials`, {
        method: 'POST', headers, cache: 'no-store', body: JSON.stringify({ user: 'testpage', ttl: 600 }),
      });
    } catch (e) {
      throw await unreadable(base, seen, e);
    }
    let body = {};
    try {
      body = await res.json();
    } catch (_) {
      // not JSON: reported by status below
    }
    if (res.ok) {
      if (!Array.isArray(body.iceServers)) throw new CredError('api-error', 'The credentials API answered without an iceServers list.');
      return flatten(body.iceServers);
    }
    const said = body.error ? `ferry said: ${body.error}` : `HTTP ${res.status}`;
    switch (res.status) {
      case 401:
        throw new CredError('api-key', `The credentials API wants a valid API key (401). ${said}`,
          'Enter one of http.api-keys, or allow this origin without a key (http.allow-anonymous-origins with the origin in http.cors-origins). Or paste a credential.');
      case 403:
        throw new CredError('origin', `The credentials API refused this page's origin ${location.origin} (403). ${said}`,
          `Add ${location.origin} to http.cors-origins (and send SIGHUP), or paste a credential.`);
      case 429:
        throw new CredError('rate-limited', `The credentials API is rate limiting this caller (429). ${said}`, 'Wait and try again.');
      case 503:
        throw new CredError('no-secret', `ferry has no REST secret to sign credentials with (503). ${said}`, 'Configure auth.secrets.');
      default:
        throw new CredError('api-error', `The credentials API answered ${res.status}. ${said}`);
    }
  }

  // unreadable explains a fetch that failed without an answer the page may
  // read: blocked by this page's CSP, refused by CORS (ferry answers other
  // origins 403 without CORS headers), or ferry unreachable.
  async function unreadable(base, seen, err) {
    await sleep(50); // securitypolicyviolation is dispatched after the fetch fails
    if (violations.slice(seen).some((u) => u && base.startsWith(new URL(u, location.href).origin))) {
      return new CredError('csp', `This page may not connect to ${base}: its Content-Security-Policy allows only its own origin.`,
        `Open the test page that ferry serves at ${base}/ instead.`);
    }
    let reachable = false;
    try {
      await fetch(`${base}/healthz`, { mode: 'no-cors', cache: 'no-store' });
      reachable = true;
    } catch (_) {
      // unreachable
    }
    if (reachable) {
      return new CredError('origin',
        `ferry at ${base} answers, but the browser may not read its credentials API from this page's origin ${location.origin}: the origin is not in http.cors-origins (CORS refused).`,
        `Add ${location.origin} to http.cors-origins (and send SIGHUP), open the page ferry serves at ${base}/, or paste a credential.`);
    }
    return new CredError('api-unreachable', `Cannot reach ferry's credentials API at ${base} (${err.message}).`,
      'Check the address and that http.listen is on, or paste a credential.');
  }

  // --- one URL ---------------------------------------------------------

  const kindOf = (url) => (/^turns?:/i.test(url) ? 'turn' : 'stun');

  // candidateOf reads type, address, port, protocol of an RTCIceCandidate.
  // A relay candidate's relayProtocol (browser to server) comes from the
  // URL when the browser leaves it out.
  function candidateOf(c, url) {
    const f = c.candidate.split(' ');
    const type = c.type || f[7];
    let relayProtocol = c.relayProtocol || '';
    if (type === 'relay' && !relayProtocol) {
      relayProtocol = /^turns:/i.test(url) ? 'tls' : /[?&]transport=tcp/i.test(url) ? 'tcp' : 'udp';
    }
    return {
      type,
      address: c.address || f[4],
      port: c.port || Number(f[5]),
      protocol: c.protocol || (f[2] || '').toLowerCase(),
      relayProtocol,
    };
  }

  async function testURL(s, row) {
    const kind = kindOf(s.url);
    const want = kind === 'turn' ? 'relay' : 'srflx';
    const r = { url: s.url, kind, status: 'running', cause: '', candidates: [], errors: [], firstMs: null, detail: '' };
    let pc;
    try {
      const server = kind === 'turn' ? { urls: [s.url], username: s.username, credential: s.credential } : { urls: [s.url] };
      pc = new RTCPeerConnection({ iceServers: [server], iceTransportPolicy: kind === 'turn' ? 'relay' : 'all' });
    } catch (e) {
      r.status = 'fail';
      r.cause = 'bad-url';
      r.detail = e.message;
      return r;
    }
    const t0 = performance.now();
    let finish;
    const done = new Promise((resolve) => { finish = resolve; });
    let grace;
    pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate) return;
      const c = candidateOf(e.candidate, s.url);
      c.ms = Math.round(performance.now() - t0);
      r.candidates.push(c);
      row.show(r);
      if (c.type === want && r.firstMs === null) {
        r.firstMs = c.ms;
        grace = setTimeout(finish, GATHER_GRACE_MS);
      }
    };
    pc.onicecandidateerror = (e) => {
      r.errors.push({ url: e.url, errorCode: e.errorCode, errorText: e.errorText, ms: Math.round(performance.now() - t0) });
      row.show(r);
    };
    pc.onicegatheringstatechange = () => {
      if (pc.iceGatheringState === 'complete') finish();
    };
    const deadline = setTimeout(finish, GATHER_TIMEOUT_MS);
    try {
      pc.createDataChannel('ferry-test');
      await pc.setLocalDescription(await pc.createOffer());
      await done;
    } catch (e) {
      r.cause = 'bad-url';
      r.detail = e.message;
    }
    clearTimeout(deadline);
    clearTimeout(grace);
    pc.close();
    r.status = 'fail';
    if (r.cause) return r;
    if (r.candidates.some((c) => c.type === want)) {
      r.status = 'ok';
    } else if (r.errors.length || performance.now() - t0 >= GATHER_TIMEOUT_MS - 50) {
      r.cause = causeOf(r.errors);
    } else {
      r.cause = 'no-candidate';
    }
    return r;
  }

  // A row of #rows, updated as its test goes.
  function newRow(url) {
    const tr = el('tr', { 'data-url': url, 'data-kind': kindOf(url), 'data-status': 'running', 'data-cause': '' });
    const cands = el('ul', { class: 'cands' });
    const first = el('td', { class: 'first' }, '…');
    const verdict = el('td', { class: 'verdict', 'data-status': 'running' }, el('span', { class: 'badge' }, 'testing'));
    tr.append(el('td', { class: 'url' }, url), el('td', {}, cands), first, verdict);
    $('rows').tBodies[0].append(tr);
    return {
      show(r) {
        cands.replaceChildren(...r.candidates.map((c) =>
          el('li', {}, `${c.type} ${c.address}:${c.port} ${c.protocol}${c.relayProtocol ? ` (to server: ${c.relayProtocol})` : ''}`)));
        if (!r.candidates.length && (r.errors.length || r.status !== 'running')) cands.replaceChildren(el('li', {}, 'none'));
        first.textContent = r.firstMs === null ? '–' : `${r.firstMs} ms`;
      },
      verdict(r) {
        this.show(r);
        tr.dataset.status = r.status;
        tr.dataset.cause = r.cause;
        verdict.dataset.status = r.status;
        if (r.status === 'ok') {
          const what = r.kind === 'turn' ? 'relay candidate' : 'server reflexive address';
          verdict.replaceChildren(el('span', { class: 'badge ok' }, 'works'),
            el('span', { class: 'why' }, `${what} in ${r.firstMs} ms`));
          return;
        }
        const c = CAUSES[r.cause] || CAUSES.other;
        const kids = [el('span', { class: 'badge fail' }, 'fails'), el('span', { class: 'why' }, c.why)];
        for (const e of r.errors) kids.push(el('span', { class: 'fix' }, `error ${e.errorCode}: ${e.errorText || '(no text)'}`));
        if (r.detail) kids.push(el('span', { class: 'fix' }, r.detail));
        const extra = r.cause === 'auth' ? clockHint(r) : '';
        kids.push(el('span', { class: 'fix' }, c.fix + extra));
        verdict.replaceChildren(...kids);
      },
    };
  }

  // clockHint looks for an expired REST credential or a skewed clock.
  function clockHint(r) {
    const s = lastServers.find((x) => x.url === r.url);
    const m = s && /^(\d{9,})(:|$)/.exec(s.username);
    const serverNow = Date.now() + (clock.serverMinusLocalMs || 0);
    let hint = '';
    if (m && Number(m[1]) * 1000 < serverNow) {
      hint += ` This REST credential expired at ${new Date(Number(m[1]) * 1000).toISOString()} by the server's clock.`;
    }
    if (clock.serverMinusLocalMs !== null && Math.abs(clock.serverMinusLocalMs) > 30000) {
      hint += ` This computer's clock is ${Math.round(clock.serverMinusLocalMs / -1000)} s off the server's.`;
    }
    return hint;
  }

  // --- the relay data channel ----------------------------------------

  async function selectedLocal(pc) {
    const stats = await pc.getStats();
    let pair;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) return null;
    const lc = stats.get(pair.localCandidateId);
    return lc ? { type: lc.candidateType, address: lc.address, port: lc.port, relayProtocol: lc.relayProtocol || '' } : null;
  }

  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };

  async function relayTest(s) {
    const r = { url: s.url, status: 'fail', cause: '', errors: [], rttMs: null, throughput: null, a: null, b: null, detail: '' };
    const config = { iceServers: [{ urls: [s.url], username: s.username, credential: s.credential }], iceTransportPolicy: 'relay' };
    const a = new RTCPeerConnection(config);
    const b = new RTCPeerConnection(config);
    const timers = [];
    const within = (p, ms, what) => Promise.race([p, new Promise((_, reject) => {
      timers.push(setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms));
    })]);
    try {
      for (const pc of [a, b]) {
        pc.onicecandidateerror = (e) => r.errors.push({ url: e.url, errorCode: e.errorCode, errorText: e.errorText });
      }
      a.onicecandidate = (e) => { if (e.candidate) b.addIceCandidate(e.candidate).catch(() => {}); };
      b.onicecandidate = (e) => { if (e.candidate) a.addIceCandidate(e.candidate).catch(() => {}); };
      const ca = a.createDataChannel('ferry-test', { ordered: true });
      ca.binaryType = 'arraybuffer';
      const cbP = new Promise((resolve) => { b.ondatachannel = (e) => resolve(e.channel); });
      const openA = new Promise((resolve) => { ca.onopen = resolve; });
      await a.setLocalDescription();
      await b.setRemoteDescription(a.localDescription);
      await b.setLocalDescription();
      await a.setRemoteDescription(b.localDescription);
      try {
        await within(Promise.all([openA, cbP]), OPEN_TIMEOUT_MS, 'the data channel to open');
      } catch (e) {
        r.cause = r.errors.length ? causeOf(r.errors) : 'timeout';
        r.detail = `${e.message} (ICE state ${a.iceConnectionState}/${b.iceConnectionState})`;
        return r;
      }
      const cb = await cbP;
      cb.binaryType = 'arraybuffer';

      // Round trips: b echoes each ping.
      let received = 0;
      let lastAt = 0;
      let pong;
      cb.onmessage = (m) => {
        if (typeof m.data === 'string') {
          cb.send(m.data);
          return;
        }
        received += m.data.byteLength;
        lastAt = performance.now();
      };
      ca.onmessage = (m) => { if (pong) pong(m.data); };
      const rtts = [];
      for (let i = 0; i < PING_COUNT; i++) {
        const got = new Promise((resolve) => { pong = resolve; });
        const t = performance.now();
        ca.send(`ping ${i}`);
        const echo = await within(got, 5000, `pong ${i}`);
        if (echo === `ping ${i}`) rtts.push(performance.now() - t);
      }
      r.rttMs = Math.round(median(rtts) * 100) / 100;

      // Throughput: a sends for THROUGHPUT_MS, b counts.
      const chunk = new Uint8Array(CHUNK_BYTES);
      ca.bufferedAmountLowThreshold = MAX_BUFFERED / 2;
      let sent = 0;
      const t0 = performance.now();
      while (performance.now() - t0 < THROUGHPUT_MS) {
        if (ca.bufferedAmount > MAX_BUFFERED) {
          await Promise.race([new Promise((resolve) => { ca.onbufferedamountlow = resolve; }), sleep(50)]);
          continue;
        }
        ca.send(chunk);
        sent += chunk.byteLength;
      }
      const drainBy = performance.now() + 5000;
      while (received < sent && performance.now() < drainBy) await sleep(20);
      const secs = ((lastAt || performance.now()) - t0) / 1000;
      r.throughput = secs > 0 ? Math.round(received / secs) : 0;
      r.sent = sent;
      r.received = received;
      r.a = await selectedLocal(a);
      r.b = await selectedLocal(b);
      const relayed = r.a && r.b && r.a.type === 'relay' && r.b.type === 'relay';
      if (!relayed) {
        r.cause = 'not-relayed';
        r.detail = `the selected candidates are ${r.a && r.a.type} and ${r.b && r.b.type}, not relay`;
      } else if (!(r.rttMs > 0) || !(r.throughput > 0)) {
        r.cause = 'no-data';
        r.detail = 'the channel opened but carried no data';
      } else {
        r.status = 'ok';
      }
      return r;
    } catch (e) {
      r.cause = r.cause || 'error';
      r.detail = e.message;
      return r;
    } finally {
      timers.forEach(clearTimeout);
      a.close();
      b.close();
    }
  }

  const human = (bps) => {
    const bits = bps * 8;
    if (bits >= 1e9) return `${(bits / 1e9).toFixed(2)} Gbit/s`;
    if (bits >= 1e6) return `${(bits / 1e6).toFixed(1)} Mbit/s`;
    return `${(bits / 1e3).toFixed(0)} kbit/s`;
  };

  function showRelay(r) {
    const box = $('relay-result');
    box.dataset.status = r.status;
    box.dataset.cause = r.cause;
    box.dataset.url = r.url || '';
    box.dataset.rttMs = r.rttMs === null ? '' : String(r.rttMs);
    box.dataset.throughput = r.throughput === null ? '' : String(r.throughput);
    if (r.status === 'ok') {
      const at = (c) => `${c.address}:${c.port}${c.relayProtocol ? ` over ${c.relayProtocol}` : ''}`;
      box.replaceChildren(
        el('span', { class: 'badge ok' }, 'relayed'), ' ',
        el('span', { class: 'metric', id: 'relay-rtt' }, `${r.rttMs} ms`), ` round trip (median of ${PING_COUNT}) `,
        el('span', { class: 'metric', id: 'relay-throughput' }, human(r.throughput)), ` (${(r.throughput / 1e6).toFixed(2)} MB/s for ${THROUGHPUT_MS / 1000} s)`,
        el('span', { class: 'fix' }, `through ${r.url}; relay addresses ${at(r.a)} and ${at(r.b)}`));
      return;
    }
    const c = CAUSES[r.cause] || { why: 'The relayed data channel failed.', fix: 'See the per-URL results above.' };
    const kids = [el('span', { class: 'badge fail' }, 'fails'), ' ', el('span', { class: 'why' }, r.cause === 'no-turn' ? 'No working TURN URL to relay through.' : c.why)];
    for (const e of r.errors) kids.push(el('span', { class: 'fix' }, `error ${e.errorCode}: ${e.errorText || '(no text)'} (${e.url})`));
    if (r.detail) kids.push(el('span', { class: 'fix' }, r.detail));
    if (r.cause !== 'no-turn') kids.push(el('span', { class: 'fix' }, c.fix));
    box.replaceChildren(...kids);
  }

  // --- working servers -------------------------------------------------

  function workingIceServers(rows) {
    const groups = new Map();
    for (const r of rows) {
      if (r.status !== 'ok') continue;
      const s = lastServers.find((x) => x.url === r.url);
      const k = r.kind === 'turn' ? JSON.stringify([s.username, s.credential]) : '';
      if (!groups.has(k)) groups.set(k, { s, urls: [] });
      groups.get(k).urls.push(r.url);
    }
    return [...groups.entries()].map(([k, g]) => (k ? { urls: g.urls, username: g.s.username, credential: g.s.credential } : { urls: g.urls }));
  }

  async function copyWorking() {
    const text = $('working').value;
    const note = $('copy-status');
    try {
      await navigator.clipboard.writeText(text);
      note.textContent = 'copied';
    } catch (_) {
      $('working').select();
      note.textContent = document.execCommand && document.execCommand('copy') ? 'copied' : 'select the text and copy it';
    }
  }

  // --- the run ---------------------------------------------------------

  let lastServers = [];

  async function run() {
    const result = { credential: null, rows: [], relay: null, working: [] };
    window.testpage.result = null;
    document.body.dataset.state = 'running';
    $('run').disabled = true;
    $('copy-ice').disabled = true;
    $('working').value = '';
    $('rows').tBodies[0].replaceChildren();
    const credBox = $('cred-status');
    const relayBox = $('relay-result');
    relayBox.dataset.status = '';
    relayBox.dataset.cause = '';
    relayBox.replaceChildren();
    credBox.dataset.status = 'running';
    credBox.dataset.cause = '';
    credBox.replaceChildren(el('span', { class: 'badge' }, 'getting a credential'));
    try {
      try {
        lastServers = await servers();
        credBox.dataset.status = 'ok';
        const users = [...new Set(lastServers.map((s) => s.username).filter(Boolean))];
        credBox.replaceChildren(el('span', { class: 'badge ok' }, 'ok'), ` ${lastServers.length} URLs` +
          (users.length ? `, user name ${users.join(', ')}` : ''));
        result.credential = { status: 'ok', urls: lastServers.map((s) => s.url) };
      } catch (e) {
        const cause = e instanceof CredError ? e.cause : 'error';
        credBox.dataset.status = 'fail';
        credBox.dataset.cause = cause;
        credBox.replaceChildren(el('span', { class: 'badge fail' }, 'fails'), el('span', { class: 'why' }, e.message),
          ...(e.fix ? [el('span', { class: 'fix' }, e.fix)] : []));
        result.credential = { status: 'fail', cause, error: e.message };
        return result;
      }
      // Fresh clock reading for the hints.
      poll();

      result.rows = await Promise.all(lastServers.map(async (s) => {
        const row = newRow(s.url);
        const r = await testURL(s, row);
        row.verdict(r);
        return r;
      }));

      const turn = result.rows.find((r) => r.kind === 'turn' && r.status === 'ok');
      relayBox.dataset.status = 'running';
      relayBox.replaceChildren(el('span', { class: 'badge' }, 'testing'), turn ? ` through ${turn.url}` : '');
      result.relay = turn ? await relayTest(lastServers.find((s) => s.url === turn.url))
        : { status: 'fail', cause: 'no-turn', errors: [], rttMs: null, throughput: null };
      showRelay(result.relay);

      result.working = workingIceServers(result.rows);
      $('working').value = JSON.stringify(result.working, null, 2);
      $('copy-ice').disabled = result.working.length === 0;
      return result;
    } finally {
      window.testpage.result = result;
      $('run').disabled = false;
      document.body.dataset.state = 'done';
      poll();
    }
  }

  // --- server status -------------------------------------------------

  const samples = []; // {t (ms, local clock), bytes, packets}
  let polling = false;

  async function poll() {
    if (polling) return;
    polling = true;
    const note = $('status-note');
    const box = $('status');
    try {
      const t0 = Date.now();
      const res = await fetch(`${apiBase()}/v1/status`, { cache: 'no-store' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const st = await res.json();
      const t1 = Date.now();
      const serverMs = Date.parse(st.time);
      if (!Number.isNaN(serverMs)) clock.serverMinusLocalMs = serverMs - (t0 + t1) / 2;
      box.dataset.status = 'ok';
      note.textContent = '';
      $('st-version').textContent = st.version || '–';
      $('st-realm').textContent = st.realm || '–';
      $('st-urls').replaceChildren(...(st.urls || []).map((u) => el('span', {}, u)));
      $('st-allocations').textContent = String(st.allocations);
      $('st-relayed').textContent = `${st.relayed.packets} packets, ${bytes(st.relayed.bytes)}`;
      $('st-state').textContent = st.draining ? 'draining (refuses new allocations)' : 'serving';
      const skew = Math.round(clock.serverMinusLocalMs / 1000);
      $('st-clock').textContent = Math.abs(skew) <= 2 ? 'agrees with this computer' : `${Math.abs(skew)} s ${skew > 0 ? 'ahead of' : 'behind'} this computer`;
      const last = samples[samples.length - 1];
      if (last && st.relayed.bytes < last.bytes) samples.length = 0; // ferry restarted
      samples.push({ t: t1, bytes: st.relayed.bytes, packets: st.relayed.packets });
      while (samples.length > 2 && samples[1].t < t1 - CHART_WINDOW_MS) samples.shift();
      chart();
    } catch (e) {
      box.dataset.status = 'fail';
      note.textContent = `Server status not available from this page (${e.message}): /v1/status is read only by the page ferry serves itself.`;
    } finally {
      polling = false;
    }
  }

  const bytes = (n) => {
    if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
    if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
    if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
    return `${n} B`;
  };

  // chart draws relayed bytes per second between samples as an SVG.
  function chart() {
    const NS = 'http://www.w3.org/2000/svg';
    const W = 320;
    const H = 120;
    const PAD = 14;
    const svg = (tag, attrs) => {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
      return e;
    };
    const points = [];
    for (let i = 1; i < samples.length; i++) {
      const dt = (samples[i].t - samples[i - 1].t) / 1000;
      if (dt > 0) points.push({ t: samples[i].t, rate: (samples[i].bytes - samples[i - 1].bytes) / dt });
    }
    const now = samples.length ? samples[samples.length - 1].t : Date.now();
    const max = Math.max(1, ...points.map((p) => p.rate));
    const x = (t) => PAD + ((t - (now - CHART_WINDOW_MS)) / CHART_WINDOW_MS) * (W - 2 * PAD);
    const y = (v) => H - PAD - (v / max) * (H - 2 * PAD);
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'relayed bytes per second over the last 5 minutes' });
    root.append(svg('line', { class: 'grid', x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD }));
    root.append(svg('line', { class: 'grid', x1: PAD, y1: PAD, x2: W - PAD, y2: PAD }));
    if (points.length) {
      const xy = points.map((p) => `${x(p.t).toFixed(1)},${y(p.rate).toFixed(1)}`);
      root.append(svg('polygon', { class: 'area', points: `${x(points[0].t).toFixed(1)},${H - PAD} ${xy.join(' ')} ${x(points[points.length - 1].t).toFixed(1)},${H - PAD}` }));
      root.append(svg('polyline', { class: 'line', points: xy.join(' ') }));
    }
    const label = (text, attrs) => {
      const t = svg('text', { class: 'axis', ...attrs });
      t.textContent = text;
      root.append(t);
    };
    label(points.some((p) => p.rate > 0) ? `${bytes(max)}/s` : 'no traffic', { x: PAD + 2, y: PAD - 3 });
    label('5 min ago', { x: PAD, y: H - 2 });
    label('now', { x: W - PAD, y: H - 2, 'text-anchor': 'end' });
    const c = $('chart');
    c.dataset.points = String(points.length);
    c.dataset.max = String(Math.round(max));
    c.replaceChildren(root);
  }

  // --- wiring ----------------------------------------------------------

  function init() {
    const q = new URLSearchParams(location.search);
    $('api-base').value = q.get('server') || location.origin;
    const pick = () => {
      const v = document.querySelector('input[name=source]:checked').value;
      for (const d of document.querySelectorAll('.source')) d.hidden = d.dataset.source !== v;
    };
    for (const r of document.querySelectorAll('input[name=source]')) r.addEventListener('change', pick);
    const source = q.get('source');
    if (source && document.querySelector(`input[name=source][value="${CSS.escape(source)}"]`)) {
      document.querySelector(`input[name=source][value="${CSS.escape(source)}"]`).checked = true;
    }
    pick();
    $('run').addEventListener('click', () => { run(); });
    $('copy-ice').addEventListener('click', copyWorking);
    chart();
    poll();
    setInterval(poll, POLL_MS);
  }

  window.testpage = { run, result: null };
  init();
})();
