#!/usr/bin/env node
/* s3front: s3rver behind a front that checks what AWS S3 checks and s3rver does not (test server
 * only; issue 6). s3rver 3.7.1 accepts any Signature V4 and ignores If-None-Match, so a driver bug
 * in signing, or a lost conditional create, would pass unnoticed. This process runs s3rver (the
 * library, on an internal loopback port) and listens in front of it:
 *   - Signature V4 (Authorization header form): the canonical request is rebuilt from what
 *     arrived (path segments and query re-encoded per RFC 3986, query sorted, the signed headers
 *     trimmed), the signing key derived from the known secret; a wrong key id is 403
 *     InvalidAccessKeyId, a wrong signature 403 SignatureDoesNotMatch, a scope for another region
 *     or service 400 AuthorizationHeaderMalformed, a clock more than 15 minutes off 403
 *     RequestTimeTooSkewed, an unsigned host/x-amz-date/x-amz-content-sha256 403, and a body whose
 *     SHA-256 is not x-amz-content-sha256 400 XAmzContentSHA256Mismatch. No Authorization: 403
 *     AccessDenied (the tests never use anonymous access).
 *   - If-None-Match: * on PUT: 412 PreconditionFailed when the key exists. Conditional PUTs of one
 *     key are serialised here, so of racing creators exactly one wins (as on S3).
 * Every refusal is logged as "s3front: refused STATUS CODE METHOD PATH" (no secrets).
 *
 *   - With --session-token TOKEN (temporary credentials, as an instance profile's): every request
 *     must carry x-amz-security-token: TOKEN among its signed headers, else 403
 *     InvalidToken / AccessDenied.
 *
 *   - Object lock (issue 16), as a bucket with Object Lock and a bucket policy would: a
 *     retention per object, set by PutObjectRetention (PUT ?retention, Content-MD5 required and
 *     checked; shortening a COMPLIANCE retention, or a GOVERNANCE one without
 *     x-amz-bypass-governance-retention, is 403 AccessDenied) or by a PUT with
 *     x-amz-object-lock-mode / x-amz-object-lock-retain-until-date (Content-MD5 required, as S3
 *     does), read by GetObjectRetention (404 NoSuchObjectLockConfiguration when none). A DELETE or
 *     an overwriting PUT of an object whose retention has not ended is 403 AccessDenied. Real S3
 *     keeps versions (a plain DELETE there adds a delete marker and the locked version stays;
 *     deleting that version is what is refused): this front has no versions and refuses the
 *     DELETE itself, which is what a backup tool sees when the data is protected.
 *   - With --prune-credentials FILE: a second key pair, the only one allowed to DELETE (the first
 *     one gets 403 AccessDenied, as a bucket policy denying s3:DeleteObject to the capture
 *     identity answers).
 *   - With --clock-file FILE: retention is judged at the real time plus the number of seconds
 *     FILE holds (absent or empty: 0), so a test can move past a retention without waiting.
 *     Signatures are still checked against the real clock.
 *   - With --audit 1: every DELETE and every PUT (or multipart completion) over an existing key
 *     is logged as "s3front: audit DELETE|OVERWRITE PATH by ACCESS_KEY_ID" (a test asserts that
 *     an append-only writer sent none); every retention set as "s3front: retain PATH MODE DATE".
 *
 *   node s3front.js --directory DIR --credentials FILE [--address 127.0.0.1] [--port 0]
 *                   [--region us-east-1] [--conditional-delay-ms N] [--session-token TOKEN]
 *                   [--prune-credentials FILE] [--clock-file FILE] [--audit 1]
 * --conditional-delay-ms holds every If-None-Match PUT that long before it is decided, so that
 * racing creators all pass a client's own existence check first (tests of the losing side).
 * FILE (mode 0600) holds "ACCESS_KEY_ID SECRET_ACCESS_KEY". Prints
 * "s3front listening on ADDRESS:PORT" once both servers are up. Bodies are held in memory (test
 * objects are small; the largest upload part is 8 MiB). */
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const S3rver = require('s3rver');
const front = require('./front');

function parseArgs(argv) {
  const o = { address: '127.0.0.1', port: 0, region: 'us-east-1', 'conditional-delay-ms': 0 };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in { directory: 1, credentials: 1, address: 1, port: 1, region: 1, 'conditional-delay-ms': 1, 'session-token': 1,
      'prune-credentials': 1, 'clock-file': 1, audit: 1 }) || i + 1 >= argv.length) {
      console.error(`s3front: bad argument ${argv[i]}`);
      process.exit(2);
    }
    o[k] = argv[i + 1];
  }
  if (!o.directory || !o.credentials) {
    console.error('s3front: --directory and --credentials are required');
    process.exit(2);
  }
  return o;
}

const opts = parseArgs(process.argv);
function readPair(file) {
  const c = fs.readFileSync(file, 'utf8').trim().split(/\s+/);
  if (c.length !== 2) {
    console.error('s3front: a credentials file must hold "ACCESS_KEY_ID SECRET"');
    process.exit(2);
  }
  return c;
}
const cred = readPair(opts.credentials);
const keys = new Map([[cred[0], cred[1]]]);
let pruneKey = null; // the only key id that may DELETE, when set
if (opts['prune-credentials'] !== undefined) {
  const p = readPair(opts['prune-credentials']);
  keys.set(p[0], p[1]);
  pruneKey = p[0];
  // s3rver checks signatures too, against its own key registry (S3RVER/S3RVER): register this pair
  require('s3rver/lib/models/account').DUMMY_ACCOUNT.createKeyPair(p[0], p[1]);
}
const audit = opts.audit !== undefined && opts.audit !== '0';
const retention = new Map(); // path (without query) -> { mode, until (ms) }

function lockedUntil(path) {
  const r = retention.get(path);
  return r && r.until > front.lockNow(opts['clock-file']) ? r : null;
}
const md5b64 = (data) => crypto.createHash('md5').update(data).digest('base64');
function accessKeyOf(req) {
  const m = /Credential=([^/,\s]+)\//.exec(req.headers.authorization || '');
  return m ? m[1] : '';
}

const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');
const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();
// RFC 3986: encodeURIComponent leaves !'()* alone; S3's canonical form encodes them.
const enc = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
const dec = (s) => {
  try {
    return decodeURIComponent(s);
  } catch (e) {
    return null;
  }
};

function xmlError(res, status, code, message, method, path) {
  console.error(`s3front: refused ${status} ${code} ${method} ${path.split('?')[0]}`);
  const body = '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
  res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/* null when the request is signed correctly, else [status, code, message]. */
function checkSignature(req, body) {
  const auth = req.headers.authorization;
  if (!auth) return [403, 'AccessDenied', 'Anonymous access is not allowed'];
  const m = /^AWS4-HMAC-SHA256 (.*)$/.exec(auth);
  if (!m) return [400, 'InvalidArgument', 'Unsupported Authorization Type'];
  const parts = {};
  for (const p of m[1].split(',')) {
    const i = p.indexOf('=');
    if (i > 0) parts[p.slice(0, i).trim()] = p.slice(i + 1).trim();
  }
  if (!parts.Credential || !parts.SignedHeaders || !parts.Signature)
    return [400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed'];
  const [akid, day, region, service, term] = parts.Credential.split('/');
  const secret = keys.get(akid);
  if (secret === undefined)
    return [403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.'];
  if (region !== opts.region || service !== 's3' || term !== 'aws4_request')
    return [400, 'AuthorizationHeaderMalformed', `The authorization header is malformed; the region or service is wrong; expecting '${opts.region}' and 's3'`];
  const amzDate = req.headers['x-amz-date'] || '';
  const t = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!t || amzDate.slice(0, 8) !== day)
    return [403, 'AccessDenied', 'AWS authentication requires a valid x-amz-date matching the credential scope'];
  const when = Date.UTC(+t[1], +t[2] - 1, +t[3], +t[4], +t[5], +t[6]);
  if (Math.abs(Date.now() - when) > 15 * 60 * 1000)
    return [403, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.'];
  const signed = parts.SignedHeaders.split(';');
  for (const h of ['host', 'x-amz-date', 'x-amz-content-sha256'])
    if (!signed.includes(h)) return [403, 'AccessDenied', `The header ${h} must be signed`];
  if (opts['session-token'] !== undefined) {
    if (req.headers['x-amz-security-token'] !== opts['session-token'])
      return [403, 'InvalidToken', 'The provided token is malformed or otherwise invalid.'];
    if (!signed.includes('x-amz-security-token'))
      return [403, 'AccessDenied', 'The header x-amz-security-token must be signed'];
  }
  const payload = req.headers['x-amz-content-sha256'];
  if (!payload) return [400, 'InvalidRequest', 'Missing required header for this request: x-amz-content-sha256'];
  if (payload !== 'UNSIGNED-PAYLOAD' && payload !== sha256(body))
    return [400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed."];

  // Canonical request.
  const q = req.url.indexOf('?');
  const rawPath = q < 0 ? req.url : req.url.slice(0, q);
  const rawQuery = q < 0 ? '' : req.url.slice(q + 1);
  const segs = rawPath.split('/').map(dec);
  if (segs.some((s) => s === null)) return [400, 'InvalidURI', 'Could not parse the specified URI.'];
  const canonPath = segs.map(enc).join('/');
  const qs = [];
  for (const p of rawQuery ? rawQuery.split('&') : []) {
    const i = p.indexOf('=');
    const k = dec(i < 0 ? p : p.slice(0, i));
    const v = dec(i < 0 ? '' : p.slice(i + 1));
    if (k === null || v === null) return [400, 'InvalidURI', 'Could not parse the specified URI.'];
    qs.push([enc(k), enc(v)]);
  }
  qs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  const values = new Map();
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const n = req.rawHeaders[i].toLowerCase();
    const v = req.rawHeaders[i + 1].trim().replace(/\s+/g, ' ');
    values.set(n, values.has(n) ? values.get(n) + ',' + v : v);
  }
  let headers = '';
  for (const h of signed) {
    if (!values.has(h)) return [403, 'AccessDenied', `The signed header ${h} is missing`];
    headers += `${h}:${values.get(h)}\n`;
  }
  const canonical = [req.method, canonPath, qs.map((x) => x.join('=')).join('&'), headers,
    parts.SignedHeaders, payload].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const kDate = hmac('AWS4' + secret, day);
  const kSigning = hmac(hmac(hmac(kDate, region), 's3'), 'aws4_request');
  const expect = hmac(kSigning, toSign).toString('hex');
  const got = Buffer.from(parts.Signature);
  if (got.length !== expect.length || !crypto.timingSafeEqual(got, Buffer.from(expect)))
    return [403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.'];
  return null;
}

let upstream; // { host, port } of s3rver
const keyLocks = new Map(); // path -> promise of the conditional PUT in progress

const forward = (req, body) => front.forward(upstream, req, body);

function exists(path) {
  return new Promise((resolve, reject) => {
    const up = http.request({ host: upstream.host, port: upstream.port, method: 'HEAD', path }, (r) => {
      r.resume();
      r.on('end', () => resolve(r.statusCode === 200));
    });
    up.on('error', reject);
    up.end();
  });
}

function xmlReply(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/* Object lock and delete rights (see the note above); true when it answered the request. */
async function lockRules(req, res, body) {
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : req.url.slice(q + 1));
  const who = accessKeyOf(req);
  if (query.has('retention')) {
    if (req.method === 'GET') {
      const r = retention.get(path);
      if (!r) {
        xmlError(res, 404, 'NoSuchObjectLockConfiguration', 'The specified object does not have a ObjectLock configuration', req.method, req.url);
        return true;
      }
      xmlReply(res, 200, '<?xml version="1.0" encoding="UTF-8"?>\n<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
        `<Mode>${r.mode}</Mode><RetainUntilDate>${new Date(r.until).toISOString()}</RetainUntilDate></Retention>`);
      return true;
    }
    if (req.method !== 'PUT') return false;
    const md5 = req.headers['content-md5'];
    if (!md5) {
      xmlError(res, 400, 'InvalidRequest', 'Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters', req.method, req.url);
      return true;
    }
    if (md5 !== md5b64(body)) {
      xmlError(res, 400, 'InvalidDigest', 'The Content-MD5 you specified did not match what we received.', req.method, req.url);
      return true;
    }
    if (!(await exists(path))) {
      xmlError(res, 404, 'NoSuchKey', 'The specified key does not exist.', req.method, req.url);
      return true;
    }
    const text = body.toString('utf8');
    const mode = (/<Mode>([^<]*)<\/Mode>/.exec(text) || [])[1];
    const date = (/<RetainUntilDate>([^<]*)<\/RetainUntilDate>/.exec(text) || [])[1];
    const until = date ? Date.parse(date) : NaN;
    if ((mode !== 'COMPLIANCE' && mode !== 'GOVERNANCE') || Number.isNaN(until)) {
      xmlError(res, 400, 'MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema', req.method, req.url);
      return true;
    }
    const have = lockedUntil(path);
    const bypass = req.headers['x-amz-bypass-governance-retention'] === 'true';
    if (have && (until < have.until || mode !== have.mode) && (have.mode === 'COMPLIANCE' || !bypass)) {
      xmlError(res, 403, 'AccessDenied', 'Access Denied because object protected by object lock.', req.method, req.url);
      return true;
    }
    retention.set(path, { mode, until });
    if (audit) console.log(`s3front: retain ${path} ${mode} ${new Date(until).toISOString()}`);
    res.writeHead(200, { 'Content-Length': '0' });
    res.end();
    return true;
  }
  if (req.method === 'DELETE' && !query.has('uploadId')) {
    if (audit) console.log(`s3front: audit DELETE ${path} by ${who}`);
    if (pruneKey !== null && who !== pruneKey) {
      xmlError(res, 403, 'AccessDenied', 'Access Denied', req.method, req.url);
      return true;
    }
    if (lockedUntil(path)) {
      xmlError(res, 403, 'AccessDenied', 'Access Denied because object protected by object lock.', req.method, req.url);
      return true;
    }
    return false;
  }
  const writes = (req.method === 'PUT' && !query.has('partNumber') && /^\/[^/]+\/./.test(path)) ||
    (req.method === 'POST' && query.has('uploadId'));
  if (writes) {
    if (lockedUntil(path)) {
      xmlError(res, 403, 'AccessDenied', 'Access Denied because object protected by object lock.', req.method, req.url);
      return true;
    }
    if (audit && (await exists(path))) console.log(`s3front: audit OVERWRITE ${path} by ${who}`);
    const mode = req.headers['x-amz-object-lock-mode'];
    const date = req.headers['x-amz-object-lock-retain-until-date'];
    if ((mode || date) && req.method === 'PUT') {
      if (!req.headers['content-md5']) {
        xmlError(res, 400, 'InvalidRequest', 'Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters', req.method, req.url);
        return true;
      }
      req.lockAfter = { mode, until: Date.parse(date) };
    }
  }
  return false;
}

async function handle(req, res, body) {
  const bad = checkSignature(req, body);
  if (bad) return xmlError(res, bad[0], bad[1], bad[2], req.method, req.url);
  if (await lockRules(req, res, body)) return;
  const inm = req.headers['if-none-match'];
  let reply;
  if (req.method === 'PUT' && inm !== undefined) {
    if (inm.trim() !== '*')
      return xmlError(res, 501, 'NotImplemented', 'If-None-Match supports only *', req.method, req.url);
    const path = req.url.split('?')[0];
    const delay = Number(opts['conditional-delay-ms']);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    const prev = keyLocks.get(path) || Promise.resolve();
    let release;
    const mine = new Promise((r) => { release = r; });
    const chain = prev.then(() => mine);
    keyLocks.set(path, chain);
    await prev;
    try {
      if (await exists(path))
        return xmlError(res, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', req.method, req.url);
      const headers = { ...req.headers };
      delete headers['if-none-match'];
      reply = await forward({ method: req.method, url: req.url, headers }, body);
    } finally {
      release();
      if (keyLocks.get(path) === chain) keyLocks.delete(path);
    }
  } else {
    reply = await forward(req, body);
  }
  if (reply.status >= 200 && reply.status < 300) {
    const path = req.url.split('?')[0];
    if (req.method === 'DELETE') retention.delete(path);
    else if (req.lockAfter && !Number.isNaN(req.lockAfter.until)) {
      retention.set(path, req.lockAfter);
      if (audit) console.log(`s3front: retain ${path} ${req.lockAfter.mode} ${new Date(req.lockAfter.until).toISOString()}`);
    }
  }
  const h = { ...reply.headers };
  delete h['transfer-encoding'];
  if (req.method !== 'HEAD') h['content-length'] = String(reply.body.length);
  res.writeHead(reply.status, h);
  res.end(req.method === 'HEAD' ? undefined : reply.body);
}

async function main() {
  const s3 = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: opts.directory,
    vhostBuckets: false });
  const a = await s3.run();
  upstream = { host: a.address, port: a.port };
  front.serve('s3front', opts.address, opts.port, handle, (f) => {
    console.log(`s3front listening on ${f.address}:${f.port} (s3rver on ${a.address}:${a.port})`);
  });
}

main().catch((e) => {
  console.error(`s3front: ${e.stack || e}`);
  process.exit(1);
});
