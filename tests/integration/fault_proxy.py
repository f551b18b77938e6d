"""A TLS proxy in front of one real kube-apiserver that answers chosen requests with a fault itself.

Clients reach it with the cluster's admin kubeconfig, its server changed to the proxy's address; the
proxy serves the API server's own certificate (the lab signs it for 127.0.0.1) and forwards every other
request upstream as the admin, streaming watch responses as they come. A fault is the wire form that a
real API server sends: a status with its Status body and headers, or a watch stream that carries one
ERROR event and ends."""

import http.client
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tls_server import TlsServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
              "proxy-authenticate", "host", "content-length"}


def status_body(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class Fault:
    """What the proxy answers instead of the API server, for the next `times` requests that `match`."""

    def __init__(self, match, code, reason, message, headers=None, times=1, as_watch_event=False):
        self.match, self.times = match, times
        self.code, self.headers, self.as_watch_event = code, dict(headers or {}), as_watch_event
        self.body = status_body(code, reason, message)

    def response(self):
        """(status, headers, body bytes)."""
        if self.as_watch_event:
            event = json.dumps({"type": "ERROR", "object": self.body}) + "\n"
            return 200, {"Content-Type": "application/json"}, event.encode()
        return self.code, dict(self.headers, **{"Content-Type": "application/json"}), json.dumps(self.body).encode()


class Request:
    def __init__(self, method, target):
        parts = urlsplit(target)
        self.method, self.path = method, parts.path
        self.query = {key: values[-1] for key, values in parse_qs(parts.query).items()}

    @property
    def is_watch(self):
        return self.query.get("watch") in ("true", "1")


class FaultProxy(TlsServer):
    def __init__(self, cluster):
        self.cluster = cluster
        self.upstream = urlsplit(cluster.server)
        self.faults, self.log = [], []  # log: (Request, the fault's code or None when forwarded, when)
        self.lock = threading.Lock()
        super().__init__("127.0.0.1", self._handler(), cluster.pki_dir / "apiserver.crt",
                         cluster.pki_dir / "apiserver.key")

    @property
    def url(self):
        return "https://" + self.address

    def kubeconfig(self):
        """The cluster's admin kubeconfig, pointing at the proxy."""
        import yaml
        config = yaml.safe_load(self.cluster.admin_kubeconfig.read_text())
        for entry in config["clusters"]:
            entry["cluster"]["server"] = self.url
        return config

    def inject(self, match, code, reason, message, **options):
        fault = Fault(match, code, reason, message, **options)
        with self.lock:
            self.faults.append(fault)
        return fault

    def requests(self, predicate=lambda request: True):
        """[(request, fault code or None, monotonic time)] of the requests that `predicate` picks."""
        with self.lock:
            return [entry for entry in self.log if predicate(entry[0])]

    def _take_fault(self, request):
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.match(request):
                    fault.times -= 1
                    self.log.append((request, fault.code, time.monotonic()))
                    return fault
            self.log.append((request, None, time.monotonic()))
            return None

    def _upstream_connection(self):
        context = ssl.create_default_context(cafile=str(self.cluster.ca_cert))
        context.load_cert_chain(str(self.cluster.pki_dir / "admin.crt"), str(self.cluster.pki_dir / "admin.key"))
        return http.client.HTTPSConnection(self.upstream.hostname, self.upstream.port, context=context, timeout=120)

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy._take_fault(Request(self.command, self.path))
                if fault:
                    status, headers, data = fault.response()
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                upstream = proxy._upstream_connection()
                try:
                    headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() not in HOP_BY_HOP:
                            self.send_header(name, value)
                    if response.getheader("Transfer-Encoding", "").lower() == "chunked":
                        self._stream(response)
                    else:
                        data = response.read()
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                finally:
                    upstream.close()

            def _stream(self, response):
                """Chunked upstream (a watch): pass each piece on as it arrives, until either side hangs up."""
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    while True:
                        piece = response.read1(65536)
                        if not piece:
                            break
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815 - names http.server calls

        return Handler
