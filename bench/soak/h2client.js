// HTTP/2 load for the soak: CLIENTS sessions to URL (TLS, certificate not checked), each
// sending RPS requests a second for SECONDS, one JSON line per request on stdout:
// {"t": start (epoch s), "end": end, "ok": bool, "status": N, "err": "..."}.
// A session that got GOAWAY or closed is replaced before the next request, as a browser
// does; the requests it still carried finish on it.
'use strict';
const http2 = require('http2');

const [url, clients, rps, seconds] = process.argv.slice(2);
const paths = ['/sleep?ms=5', '/', '/big?kib=32', '/sleep?ms=50'];
const deadline = Date.now() + Number(seconds) * 1000;
let pending = 0;

function line(fields) {
  process.stdout.write(JSON.stringify(fields) + '\n');
}

function session() {
  const s = http2.connect(url, { rejectUnauthorized: false });
  s.usable = true;
  s.on('goaway', () => { s.usable = false; });
  s.on('close', () => { s.usable = false; });
  s.on('error', () => { s.usable = false; });
  return s;
}

function client(n) {
  let s = session();
  let i = n;
  const timer = setInterval(() => {
    if (Date.now() > deadline) {
      clearInterval(timer);
      const wait = setInterval(() => {
        if (pending === 0) { clearInterval(wait); s.close(); }
      }, 50);
      return;
    }
    if (!s.usable || s.closed || s.destroyed) {
      s.close();
      s = session();
    }
    const path = paths[i++ % paths.length];
    const start = Date.now() / 1000;
    let status = 0;
    let done = false;
    const finish = (ok, err) => {
      if (done) return;
      done = true;
      pending--;
      line({ t: start, end: Date.now() / 1000, ok, status, path, err });
    };
    pending++;
    let req;
    try {
      req = s.request({ ':path': path, 'accept-encoding': 'gzip' });
    } catch (e) {
      finish(false, String(e.code || e.message));
      return;
    }
    req.setTimeout(30000, () => { finish(false, 'timeout'); req.close(); });
    req.on('response', (h) => { status = h[':status']; });
    req.on('data', () => {});
    req.on('end', () => finish(status === 200, status === 200 ? undefined : 'status'));
    req.on('error', (e) => finish(false, String(e.code || e.message)));
    req.on('close', () => finish(status === 200 && req.rstCode === 0, `closed rst=${req.rstCode}`));
    req.end();
  }, 1000 / Number(rps));
}

for (let n = 0; n < Number(clients); n++) client(n);
