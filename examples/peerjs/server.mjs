// The PeerJS example's server: serves the page and runs a PeerServer (PeerJS
// signaling) on one port. ferry is not involved here: the page asks ferry
// for TURN credentials itself.
//
//   npm ci && npm start            # http://127.0.0.1:9000/
//   PORT=0 HOST=127.0.0.1 npm start  # any free port (tests)
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { ExpressPeerServer } from 'peer';

const dir = path.dirname(fileURLToPath(import.meta.url));
const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT ?? 9000);

const app = express();
app.get('/', (req, res) => res.sendFile(path.join(dir, 'index.html')));
app.get('/app.js', (req, res) => res.sendFile(path.join(dir, 'app.js')));
app.get('/peerjs.min.js', (req, res) =>
  res.sendFile(path.join(dir, 'node_modules', 'peerjs', 'dist', 'peerjs.min.js')));

const server = app.listen(port, host, () => {
  const { address, port } = server.address();
  const h = address.includes(':') ? `[${address}]` : address;
  console.log(`PeerJS example on http://${h}:${port}/ (PeerServer at /peerjs)`);
});
// PeerServer's WebSocket and HTTP endpoints live under /peerjs.
app.use('/peerjs', ExpressPeerServer(server, { path: '/' }));

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
