"""A private registry in front of the lab's: TLS under a CA of its own, at the machine's own address (a
registry on a loopback address is reached over plain HTTP by convention), and token auth as Docker Hub,
Harbor or GitLab do it (a 401 with a Bearer challenge; the token endpoint takes Basic credentials).
Whatever passes is forwarded to the lab's in-memory registry."""

import base64
import http.client
import json
import secrets
from http.server import BaseHTTPRequestHandler

from klutch_lab import pki
from klutch_lab.cluster import host_address
from tls_server import TlsServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length",
              "authorization"}


class PrivateRegistry(TlsServer):
    def __init__(self, directory, upstream_port, username, password):
        host = host_address()
        if host is None:
            raise RuntimeError("This machine has no global IPv4 address to serve a private registry at.")
        self.upstream_port = upstream_port
        self.credentials = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.tokens = set()
        self.refused = 0  # requests answered 401
        authority = pki.CertificateAuthority.create("private registry CA")
        key, cert = authority.issue("private registry", hosts=[host])
        self.ca_path = str(directory / "ca.crt")
        (directory / "ca.crt").write_bytes(pki.cert_pem(authority.cert))
        (directory / "tls.crt").write_bytes(pki.cert_pem(cert))
        (directory / "tls.key").write_bytes(pki.key_pem(key))
        super().__init__(host, self._handler(), directory / "tls.crt", directory / "tls.key")

    def _handler(self):
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def _answer(self, status, body, headers=()):
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    pieces = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        pieces.append(self.rfile.read(size))
                        self.rfile.readline()
                        if not size:
                            return b"".join(pieces)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _serve(self):
                body = self._body()
                authorization = self.headers.get("Authorization") or ""
                if self.path.startswith("/token"):
                    if authorization != registry.credentials:
                        registry.refused += 1
                        return self._answer(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                    token = secrets.token_hex(16)
                    registry.tokens.add(token)
                    return self._answer(200, {"token": token, "access_token": token})
                if authorization.removeprefix("Bearer ") not in registry.tokens:
                    registry.refused += 1
                    challenge = 'Bearer realm="https://%s/token",service="private"' % registry.address
                    return self._answer(401, {"errors": [{"code": "UNAUTHORIZED"}]}, [("WWW-Authenticate", challenge)])
                upstream = http.client.HTTPConnection("127.0.0.1", registry.upstream_port, timeout=60)
                try:
                    headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() not in HOP_BY_HOP:
                            self.send_header(name, value)
                    # A HEAD answer says how long the object is, with no body.
                    self.send_header("Content-Length", response.getheader("Content-Length", "0")
                                     if self.command == "HEAD" else str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815 - names http.server calls

        return Handler
