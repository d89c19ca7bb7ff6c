"""An SMTP server for the tests: aiosmtpd (PyPI), not the hub's code, takes every mail
and appends it to a file as one JSON line: {"from", "to", "headers", "body"}.

    python smtp_sink.py FILE

prints the port it listens on (127.0.0.1), then serves until killed."""

import asyncio
import email
import email.policy
import json
import socket
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        line = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in message.items()},
            "body": body.get_content() if body else "",
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
        return "250 OK"


def main():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Sink(sys.argv[1]), hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    try:
        asyncio.get_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
