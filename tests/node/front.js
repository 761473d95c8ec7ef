/* front: what the test fronts s3front.js and azfront.js share (test servers only): forwarding a
 * request, body and all, to the server behind the front; the clock their retention rules judge by
 * (the real one moved by --clock-file); and the listening server that gathers each request's body
 * before its handler runs. Bodies are held in memory (test objects are small). */
'use strict';

const fs = require('fs');
const http = require('http');

/* Send req (method, url, headers) with body to upstream { host, port }; resolves
 * { status, headers, body }. */
function forward(upstream, req, body) {
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers, 'content-length': String(body.length) };
    delete headers['transfer-encoding'];
    const up = http.request({ host: upstream.host, port: upstream.port, method: req.method,
      path: req.url, headers }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => resolve({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks) }));
      r.on('error', reject);
    });
    up.on('error', reject);
    up.end(body);
  });
}

/* Now (ms) as the retention rules see it: the real clock plus the seconds clockFile holds (no
 * file, absent or empty: 0). */
function lockNow(clockFile) {
  let off = 0;
  if (clockFile !== undefined) {
    try {
      off = Number(fs.readFileSync(clockFile, 'utf8').trim() || '0') || 0;
    } catch (e) {
      off = 0;
    }
  }
  return Date.now() + off * 1000;
}

/* Listen on address:port and run handle(req, res, body) with each request's whole body; a handler
 * that fails is logged as "NAME: METHOD PATH: message" and answered 502. onListening gets the
 * bound { address, port }. SIGTERM and SIGINT end the process. */
function serve(name, address, port, handle, onListening) {
  const front = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch((e) => {
        console.error(`${name}: ${req.method} ${req.url.split('?')[0]}: ${e.message}`);
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
    });
  });
  front.keepAliveTimeout = 30000;
  front.listen(Number(port), address, () => onListening(front.address()));
  const stop = () => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return front;
}

module.exports = { forward, lockNow, serve };
