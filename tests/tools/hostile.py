#!/usr/bin/env python3
"""hostile: loopback servers for the reliability tests (TLS policy #17, oversized input #18).

  hostile.py --ready FILE [--cert PEM --key PEM] [--log FILE] MODE [ARGS]

Binds 127.0.0.1:0, writes the port to --ready once listening; with --cert it speaks TLS. --log gets
one line per request: "<method> <path> auth=<yes|no>" (never the header's value).
  relay PORTFILE     TCP relay of the (decrypted) stream to 127.0.0.1:<port in PORTFILE>
  listen             answer every request 404 (a second listener that must see nothing)
  admin MODEFILE     a hostile admin API + token endpoint. POST .../token -> a bearer; any GET
                     follows the first line of MODEFILE:
                       redirect URL      302 to URL
                       loop              302 to the same path with ?n=<n+1> (endless)
                       nextlink URL      200 {"value":[],"nextLink":URL}
                       big N             200 with an N-byte JSON body (Content-Length)
                       chunked           200, an endless chunked body
                       deep N            200, JSON nested N deep
                       string N          200, {"value":[{"s":"<N bytes>"}]}
Threaded; runs until killed."""
import http.server, os, socket, ssl, sys, threading, time

args = sys.argv[1:]
opts = {}
while args and args[0].startswith("--"):
    opts[args[0][2:]] = args[1]
    args = args[2:]
mode, rest = args[0], args[1:]
logf = opts.get("log")
lock = threading.Lock()

def log(line):
    if logf:
        with lock, open(logf, "a") as f:
            f.write(line + "\n")

ctx = None
if "cert" in opts:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(opts["cert"], opts["key"])

def ready(port):
    tmp = opts["ready"] + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, opts["ready"])

if mode == "relay":
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0)); ls.listen(64)
    ready(ls.getsockname()[1])
    def pump(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                if a is not b and d[:4] in (b"GET ", b"POST", b"PATC", b"DELE", b"PUT "):
                    pass
                b.sendall(d)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try: s.shutdown(socket.SHUT_RDWR)
                except OSError: pass
    def serve(c):
        try:
            if ctx:
                c = ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("handshake-failed %s" % type(e).__name__); c.close(); return
        log("connection")
        port = int(open(rest[0]).read().split()[0])
        u = socket.create_connection(("127.0.0.1", port))
        threading.Thread(target=pump, args=(u, c), daemon=True).start()
        pump(c, u)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def note(self):
        log("%s %s auth=%s" % (self.command, self.path, "yes" if self.headers.get("Authorization") else "no"))
    def send(self, code, body, ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        self.note()
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        if mode == "admin" and self.path.endswith("/token"):
            self.send(200, b'{"token_type":"Bearer","expires_in":3599,"access_token":"dvs1.686f7374696c65.9999999999.0123456789abcdef0123456789abcdef"}')
        else:
            self.send(404, b"{}")
    def do_GET(self):
        self.note()
        if mode != "admin":
            return self.send(404, b"{}")
        line = open(rest[0]).read().split()
        what = line[0]
        if what == "redirect":
            return self.send(302, b"", extra=[("Location", line[1])])
        if what == "loop":
            n = int(self.path.split("n=")[-1]) if "n=" in self.path else 0
            base = self.path.split("?")[0]
            return self.send(302, b"", extra=[("Location", "%s?api-version=1&n=%d" % (base, n + 1))])
        if what == "nextlink":
            return self.send(200, ('{"value":[],"nextLink":"%s"}' % line[1]).encode())
        if what == "big":
            n = int(line[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b'{"value":[' + b" " * 65526 + b"\n"
            sent = 0
            try:
                while sent < n:
                    k = min(len(chunk), n - sent)
                    self.wfile.write(chunk[:k]); sent += k
            except OSError:
                log("client closed after %d bytes" % sent)
            return
        if what == "chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            try:
                self.wfile.write(b'a\r\n{"value":[\r\n'); 
                block = b"{},"*21000
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block)); sent += len(block)
            except OSError:
                log("client closed after %d bytes" % sent)
            return
        if what == "deep":
            n = int(line[1])
            return self.send(200, b'{"value":' + b"[" * n + b"]" * n + b"}")
        if what == "string":
            n = int(line[1])
            return self.send(200, b'{"value":[{"s":"' + b"x" * n + b'"}]}')
        self.send(404, b"{}")

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
if ctx:
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=True)
ready(srv.server_address[1])
srv.serve_forever()
