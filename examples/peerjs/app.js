// PeerJS through ferry, in three steps:
//   1. ask ferry's credentials API for a short-lived TURN credential and a
//      ready iceServers list;
//   2. create a Peer on the PeerServer with those iceServers (relay only, so
//      every byte provably goes through ferry);
//   3. connect to another peer and exchange messages.
//
// Query parameters: ferry=<ferry's HTTP API base URL> (default
// http://127.0.0.1:8080), relay=0 to also allow direct paths.
const params = new URLSearchParams(location.search);
const FERRY = params.get('ferry') || 'http://127.0.0.1:8080';
const RELAY_ONLY = params.get('relay') !== '0';

const $ = (id) => document.getElementById(id);
// window.app lets you (and the tests) look at the live objects.
const app = (window.app = { peer: null, conn: null, received: [] });

function log(line) {
  $('log').textContent += line + '\n';
}

function setStatus(s) {
  $('status').textContent = s;
}

// Step 1: POST /v1/credentials. This page's origin must be in ferry's
// http.cors-origins. A production page would call its own backend instead,
// which holds a ferry API key and asks ferry with
//   Authorization: Bearer <key>
async function fetchIceServers() {
  const res = await fetch(`${FERRY}/v1/credentials`, { method: 'POST' });
  const body = await res.json();
  if (!res.ok) {
    throw new Error(`ferry answered ${res.status}: ${body.error}`);
  }
  log(`ferry: credential ${body.username}, valid ${body.ttl}s`);
  return body.iceServers;
}

function attach(conn) {
  app.conn = conn;
  conn.on('open', () => {
    setStatus(`connected to ${conn.peer}`);
    $('message').disabled = false;
    $('send').disabled = false;
    log(`connected to ${conn.peer}`);
  });
  conn.on('data', (data) => {
    app.received.push(data);
    log(`${conn.peer}: ${data}`);
  });
  conn.on('close', () => setStatus('disconnected'));
  conn.on('error', (err) => log(`connection error: ${err}`));
}

async function main() {
  const iceServers = await fetchIceServers();
  // Step 2: the Peer, on the PeerServer that served this page.
  const peer = (app.peer = new Peer({
    host: location.hostname,
    port: Number(location.port) || (location.protocol === 'https:' ? 443 : 80),
    secure: location.protocol === 'https:',
    path: '/peerjs',
    config: { iceServers, iceTransportPolicy: RELAY_ONLY ? 'relay' : 'all' },
  }));
  peer.on('open', (id) => {
    $('my-id').textContent = id;
    setStatus('ready: open this page in another tab and connect to this id');
  });
  peer.on('connection', attach);
  peer.on('error', (err) => log(`peer error: ${err.type}: ${err.message}`));

  // Step 3: connect and talk.
  $('connect-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const id = $('remote-id').value.trim();
    if (id) {
      setStatus(`connecting to ${id}`);
      attach(peer.connect(id, { reliable: true }));
    }
  });
  $('send-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('message').value;
    if (app.conn && text) {
      app.conn.send(text);
      log(`me: ${text}`);
      $('message').value = '';
    }
  });
}

main().catch((err) => {
  setStatus('error');
  log(String(err));
});
