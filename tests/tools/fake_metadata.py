#!/usr/bin/env python3
"""fake_metadata: a small local stand-in for the cloud services that hand out credentials without
a key file, on loopback, for tests/integration/cli_identity.sh (issue 18):

  Azure managed identity (the instance metadata service's token route)
    GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R[&client_id=C]
        needs "Metadata: true"; answers a JWT for audience R (aud, iss https://sts.windows.net/
        TENANT/, iat, nbf, exp; unsigned: Azurite's oauth "basic" checks claims, not signatures)
  Azure workload identity (Entra ID's token endpoint, client-assertion grant)
    POST /TENANT/oauth2/v2.0/token   grant_type=client_credentials, client_id=--client-id,
        client_assertion_type=...jwt-bearer, client_assertion=the --federated-token-file's text,
        scope=R/.default; answers the same kind of JWT
  AWS instance profile (IMDSv2)
    PUT /latest/api/token                           needs X-aws-ec2-metadata-token-ttl-seconds
    GET /latest/meta-data/iam/security-credentials/      needs X-aws-ec2-metadata-token -> role
    GET /latest/meta-data/iam/security-credentials/ROLE  -> AccessKeyId, SecretAccessKey, Token,
        Expiration (--aws-expires-in seconds from now)

Anything else, or a request missing what the service requires, gets 400/401/404 as the real
service would. Every request is logged to --log as one JSON line {"method","path","status"}
(never a credential). Prints the port to --ready-file once listening.

  fake_metadata.py --ready-file F --log L [--tenant T] [--client-id C]
                   [--federated-token-file P] [--aws-key K --aws-secret S --aws-session-token X]
                   [--aws-expires-in N]
"""
import argparse
import base64
import json
import os
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--ready-file", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--tenant", default="72f988bf-86f1-41af-91ab-2d7cd011db47")
ap.add_argument("--client-id", default="")
ap.add_argument("--federated-token-file", default="")
ap.add_argument("--aws-key", default="")
ap.add_argument("--aws-secret", default="")
ap.add_argument("--aws-session-token", default="")
ap.add_argument("--aws-expires-in", type=int, default=6 * 3600)
args = ap.parse_args()

log_lock = threading.Lock()
imds_tokens = set()
ROLE = "dvsnap-role"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(audience):
    now = int(time.time())
    head = {"alg": "HS256", "typ": "JWT"}
    body = {"aud": audience, "iss": "https://sts.windows.net/%s/" % args.tenant, "iat": now - 60,
            "nbf": now - 60, "exp": now + 3600, "tid": args.tenant, "oid": "fake-object-id",
            "appid": args.client_id or "system-assigned"}
    return "%s.%s.%s" % (b64url(json.dumps(head).encode()), b64url(json.dumps(body).encode()),
                         b64url(secrets.token_bytes(32)))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):  # quiet: the JSON log says what happened
        pass

    def reply(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        with log_lock, open(args.log, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path.split("?")[0],
                                "status": status}) + "\n")

    def error(self, status, code, desc):
        self.reply(status, json.dumps({"error": code, "error_description": desc}))

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n).decode() if n else ""

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        if url.path == "/metadata/identity/oauth2/token":
            if self.headers.get("Metadata") != "true":
                return self.error(400, "invalid_request", "Required metadata header not specified")
            if q.get("api-version") != ["2018-02-01"] or "resource" not in q:
                return self.error(400, "invalid_request", "api-version and resource are required")
            if args.client_id and q.get("client_id", [args.client_id]) != [args.client_id]:
                return self.error(400, "invalid_request", "Identity not found")
            res = q["resource"][0]
            return self.reply(200, json.dumps({
                "access_token": jwt(res), "expires_in": "3599",
                "expires_on": str(int(time.time()) + 3599), "resource": res,
                "token_type": "Bearer"}))
        if url.path.startswith("/latest/meta-data/iam/security-credentials/"):
            if self.headers.get("X-aws-ec2-metadata-token") not in imds_tokens:
                return self.reply(401, "", "text/plain")
            role = url.path[len("/latest/meta-data/iam/security-credentials/"):]
            if role == "":
                return self.reply(200, ROLE + "\n", "text/plain")
            if role != ROLE:
                return self.reply(404, "", "text/plain")
            exp = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                time.gmtime(time.time() + args.aws_expires_in))
            return self.reply(200, json.dumps({
                "Code": "Success", "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime()),
                "Type": "AWS-HMAC", "AccessKeyId": args.aws_key,
                "SecretAccessKey": args.aws_secret, "Token": args.aws_session_token,
                "Expiration": exp}))
        return self.reply(404, "", "text/plain")

    def do_PUT(self):
        self.body()
        if self.path == "/latest/api/token":
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            if not ttl or not ttl.isdigit():
                return self.reply(400, "", "text/plain")
            tok = secrets.token_hex(16)
            imds_tokens.add(tok)
            return self.reply(200, tok, "text/plain")
        return self.reply(404, "", "text/plain")

    def do_POST(self):
        form = urllib.parse.parse_qs(self.body())
        if self.path != "/%s/oauth2/v2.0/token" % args.tenant:
            return self.reply(404, "", "text/plain")
        want = open(args.federated_token_file).read().strip() if args.federated_token_file else None
        if form.get("grant_type") != ["client_credentials"]:
            return self.error(400, "unsupported_grant_type", "client_credentials only")
        if form.get("client_id") != [args.client_id]:
            return self.error(400, "invalid_client", "unknown client_id")
        if form.get("client_assertion_type") != \
                ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"] or \
                want is None or form.get("client_assertion") != [want]:
            return self.error(401, "invalid_client", "AADSTS700024: client assertion is not valid")
        scope = form.get("scope", [""])[0]
        if not scope.endswith("/.default"):
            return self.error(400, "invalid_scope", "scope must end in /.default")
        return self.reply(200, json.dumps({"token_type": "Bearer", "expires_in": 3599,
                                           "access_token": jwt(scope[:-len("/.default")])}))


srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(args.ready_file + ".tmp", "w") as f:
    f.write("%d\n" % srv.server_address[1])
os.rename(args.ready_file + ".tmp", args.ready_file)
srv.serve_forever()
