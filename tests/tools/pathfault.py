#!/usr/bin/env python3
"""pathfault: an HTTP proxy on loopback that fails chosen requests by path (integration tests of
issue 15: one table's read or relationship definitions failing while the rest of the pass goes on).

  pathfault.py --ready FILE --target-port-file FILE --rules FILE

Binds 127.0.0.1:0 and writes its port to --ready once listening. Every request is forwarded to
127.0.0.1:<port in --target-port-file> (read at each request, so the target may start after the
proxy), unless its path (query included, URL-decoded) matches a line of --rules (read at each
request; missing or empty: no rule):
  REGEX STATUS        answer STATUS with a JSON error body, the request is not forwarded
Lines starting with '#' are comments. Threaded; runs until killed."""
import http.client, http.server, json, re, socket, sys, urllib.parse

opts = dict(zip(sys.argv[1::2], sys.argv[2::2]))
ready, port_file, rules_file = opts["--ready"], opts["--target-port-file"], opts["--rules"]


def rules():
    try:
        with open(rules_file) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    regex, status = line.rsplit(None, 1)
                    yield re.compile(regex), int(status)
    except FileNotFoundError:
        return


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # small writes (headers, then the body) must not wait on delayed ACKs
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *a):
        pass

    def relay(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        path = urllib.parse.unquote(self.path)
        for regex, status in rules():
            if regex.search(path):
                err = json.dumps({"error": {"code": "0x80040216", "message": "pathfault: injected"}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(err)))
                self.end_headers()
                self.wfile.write(err)
                return
        with open(port_file) as f:
            port = int(f.readline())
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "host")}
        headers["Host"] = "127.0.0.1:%d" % port
        for attempt in (0, 1):  # one upstream connection per client connection, kept alive
            conn = getattr(self, "upstream", None)
            if conn is None or conn.port != port:
                conn = self.upstream = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self.upstream = None
                if attempt:
                    raise
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = relay


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
with open(ready + ".tmp", "w") as f:
    f.write("%d\n" % srv.server_address[1])
import os
os.rename(ready + ".tmp", ready)
srv.serve_forever()
