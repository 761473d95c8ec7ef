#!/usr/bin/env node
/* azfront: Azurite behind a front that enforces blob immutability policies (test server only;
 * issue 16). Azurite 3 accepts Set Blob Immutability Policy in no useful way and never refuses a
 * delete, so this process listens in front of it and, for the blobs that pass through it:
 *   - PUT ?comp=immutabilityPolicies with x-ms-immutability-policy-until-date (RFC 1123) and
 *     x-ms-immutability-policy-mode (Unlocked or Locked) sets the blob's policy (404 BlobNotFound
 *     for a blob it has not seen written; shortening a Locked policy is 409
 *     ImmutabilityPolicyCannotBeShortened); the request is not forwarded, so its authorization is
 *     checked only to be present (Azurite checks every other request's);
 *   - Get Blob / Get Blob Properties answers carry x-ms-immutability-policy-until-date and -mode;
 *   - a Delete Blob, or a Put Blob / Put Block List over the blob, while its policy has not ended
 *     is 409 BlobImmutableDueToPolicy, as Azure answers.
 * Delete rights are Azurite's own: an account SAS without 'd' is refused there (403
 * AuthorizationPermissionMismatch), as on Azure.
 *   - With --clock-file FILE: policies are judged at the real time plus the seconds FILE holds.
 *   - With --audit 1: every Delete Blob and every write over an existing blob is logged as
 *     "azfront: audit DELETE|OVERWRITE PATH", every policy set as "azfront: retain PATH MODE DATE".
 * Every refusal is logged as "azfront: refused STATUS CODE METHOD PATH".
 *
 *   node azfront.js --upstream HOST:PORT [--address 127.0.0.1] [--port 0] [--clock-file FILE]
 *                   [--audit 1]
 * Prints "azfront listening on ADDRESS:PORT". Bodies are held in memory (test objects are small). */
'use strict';

const front = require('./front');

function parseArgs(argv) {
  const o = { address: '127.0.0.1', port: 0 };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in { upstream: 1, address: 1, port: 1, 'clock-file': 1, audit: 1 }) || i + 1 >= argv.length) {
      console.error(`azfront: bad argument ${argv[i]}`);
      process.exit(2);
    }
    o[k] = argv[i + 1];
  }
  if (!o.upstream || !/^[^:]+:\d+$/.test(o.upstream)) {
    console.error('azfront: --upstream HOST:PORT is required');
    process.exit(2);
  }
  return o;
}

const opts = parseArgs(process.argv);
const [upHost, upPort] = opts.upstream.split(':');
const upstream = { host: upHost, port: Number(upPort) };
const audit = opts.audit !== undefined && opts.audit !== '0';
const policies = new Map(); // blob path -> { mode, until (ms) }
const written = new Set();  // blob paths written (and not deleted) through this front

const active = (path) => {
  const p = policies.get(path);
  return p && p.until > front.lockNow(opts['clock-file']) ? p : null;
};

function xmlError(res, status, code, message, method, path) {
  console.error(`azfront: refused ${status} ${code} ${method} ${path}`);
  const body = '\ufeff<?xml version="1.0" encoding="utf-8"?>' +
    `<Error><Code>${code}</Code><Message>${message}\nRequestId:0\nTime:${new Date().toISOString()}</Message></Error>`;
  res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body),
    'x-ms-error-code': code });
  res.end(body);
}

async function handle(req, res, body) {
  const q = req.url.indexOf('?');
  const path = decodeURIComponent(q < 0 ? req.url : req.url.slice(0, q));
  const query = new URLSearchParams(q < 0 ? '' : req.url.slice(q + 1));
  const comp = query.get('comp');
  const isBlob = path.split('/').filter((x) => x).length >= 3 && !query.has('restype');
  if (isBlob && comp === 'immutabilityPolicies' && req.method === 'PUT') {
    if (!req.headers.authorization && !query.has('sig'))
      return xmlError(res, 403, 'AuthenticationFailed', 'Server failed to authenticate the request.', req.method, path);
    if (!written.has(path))
      return xmlError(res, 404, 'BlobNotFound', 'The specified blob does not exist.', req.method, path);
    const until = Date.parse(req.headers['x-ms-immutability-policy-until-date'] || '');
    const mode = req.headers['x-ms-immutability-policy-mode'] || 'Unlocked';
    if (Number.isNaN(until) || (mode !== 'Unlocked' && mode !== 'Locked'))
      return xmlError(res, 400, 'InvalidHeaderValue', 'The value for one of the HTTP headers is not in the correct format.', req.method, path);
    const have = active(path);
    if (have && have.mode === 'Locked' && (until < have.until || mode !== 'Locked'))
      return xmlError(res, 409, 'ImmutabilityPolicyCannotBeShortened', 'A locked immutability policy can only be extended.', req.method, path);
    policies.set(path, { mode, until });
    if (audit) console.log(`azfront: retain ${path} ${mode} ${new Date(until).toISOString()}`);
    res.writeHead(200, { 'x-ms-immutability-policy-until-date': new Date(until).toUTCString(),
      'x-ms-immutability-policy-mode': mode.toLowerCase(), 'x-ms-version': '2021-12-02', 'Content-Length': '0' });
    return res.end();
  }
  const writes = isBlob && req.method === 'PUT' && (comp === null || comp === 'blocklist');
  const deletes = isBlob && req.method === 'DELETE' && comp === null;
  if (deletes) {
    if (audit) console.log(`azfront: audit DELETE ${path}`);
    // Azure checks the SAS's permissions before the blob's policy: a SAS without 'd' is refused
    // first (Azurite would say the same, after the policy check below)
    if (query.has('sig') && !(query.get('sp') || '').includes('d'))
      return xmlError(res, 403, 'AuthorizationPermissionMismatch', 'This request is not authorized to perform this operation using this permission.', req.method, path);
    if (active(path))
      return xmlError(res, 409, 'BlobImmutableDueToPolicy', 'This operation is not permitted as the blob is immutable due to a policy.', req.method, path);
  }
  if (writes) {
    if (active(path))
      return xmlError(res, 409, 'BlobImmutableDueToPolicy', 'This operation is not permitted as the blob is immutable due to a policy.', req.method, path);
    if (audit && written.has(path) && req.headers['if-none-match'] !== '*')
      console.log(`azfront: audit OVERWRITE ${path}`);
  }
  const reply = await front.forward(upstream, req, body);
  const ok = reply.status >= 200 && reply.status < 300;
  if (ok && writes) written.add(path);
  if (ok && deletes) {
    written.delete(path);
    policies.delete(path);
  }
  const h = { ...reply.headers };
  delete h['transfer-encoding'];
  const p = isBlob && (req.method === 'GET' || req.method === 'HEAD') && comp === null ? policies.get(path) : null;
  if (p) {
    h['x-ms-immutability-policy-until-date'] = new Date(p.until).toUTCString();
    h['x-ms-immutability-policy-mode'] = p.mode.toLowerCase();
  }
  if (req.method !== 'HEAD') h['content-length'] = String(reply.body.length);
  res.writeHead(reply.status, h);
  res.end(req.method === 'HEAD' ? undefined : reply.body);
}

front.serve('azfront', opts.address, opts.port, handle, (f) => {
  console.log(`azfront listening on ${f.address}:${f.port} (azurite on ${opts.upstream})`);
});
