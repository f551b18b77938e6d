"""An HTTPS server on a thread of its own, for the proxies the tests put in front of the lab's servers."""

import ssl
import threading
from http.server import ThreadingHTTPServer


class TlsServer:
    """Serves `handler` over TLS with `cert` and `key` at `host` (a free port) while the `with` block runs."""

    def __init__(self, host, handler, cert, key):
        self.server = ThreadingHTTPServer((host, 0), handler)
        self.server.daemon_threads = True
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(str(cert), str(key))
        self.server.socket = serving.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self):
        return "%s:%d" % self.server.server_address[:2]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self.server.shutdown()
        self.server.server_close()
