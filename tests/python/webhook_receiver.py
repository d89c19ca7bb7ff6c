"""A webhook receiver as a city's other system would run one: every message is checked
with the Standard Webhooks reference library (PyPI `standardwebhooks`), not with the hub's
code.

    python webhook_receiver.py

prints the port it listens on (127.0.0.1), then serves:

- POST /hook/{name}: a webhook for subscription `name`. Verified with that name's secret
  (set by /control); answered as the name's mode says: `up` 204, `down` 503, `gone` 410,
  `slow` holds the answer for `delay` seconds and then answers 204 (the hub may be
  killed meanwhile). A message that does not verify is answered 400 and recorded with
  `verified: false`.
- POST /control: {"secrets": {name: secret}, "modes": {name: mode}, "delay": seconds},
  any of them (merged into what was set before).
- GET /received/{name}: every message received for `name`, in arrival order, verified
  or not, each {"id", "timestamp", "verified", "error", "body", "answered"}.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

state = {"secrets": {}, "modes": {}, "delay": 0.0, "received": {}}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if not self.path.startswith("/received/"):
            return self.answer(404)
        with lock:
            body = json.dumps(state["received"].get(self.path[len("/received/"):], [])).encode()
        self.answer(200, body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/control":
            with lock:
                for key, value in json.loads(body).items():
                    if isinstance(value, dict):
                        state[key].update(value)
                    else:
                        state[key] = value
            return self.answer(204)
        if not self.path.startswith("/hook/"):
            return self.answer(404)
        name = self.path[len("/hook/"):]
        with lock:
            secret = state["secrets"].get(name)
            mode = state["modes"].get(name, "up")
            delay = state["delay"]
        entry = {
            "id": self.headers.get("webhook-id"),
            "timestamp": self.headers.get("webhook-timestamp"),
            "verified": False,
            "error": None,
            "body": None,
            "answered": None,
        }
        try:
            if secret is None:
                raise ValueError(f"no secret for {name}")
            entry["body"] = Webhook(secret).verify(body, dict(self.headers.items()))
            entry["verified"] = True
        except (WebhookVerificationError, ValueError, TypeError) as e:
            entry["error"] = f"{type(e).__name__}: {e}"
            entry["body"] = body.decode("utf-8", "replace")
        status = 400
        if entry["verified"]:
            status = {"up": 204, "slow": 204, "down": 503, "gone": 410}[mode]
        entry["answered"] = status
        with lock:
            state["received"].setdefault(name, []).append(entry)
        if entry["verified"] and mode == "slow":
            time.sleep(delay)
        try:
            self.answer(status, b"" if status == 204 else b"not now")
        except (BrokenPipeError, ConnectionResetError):
            entry["answered"] = "connection closed"


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
