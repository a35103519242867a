#!/usr/bin/env python3
"""The RabbitMQ tutorial's worker.py, as a program for Warren's exec handler.

The tutorial's version connects to RabbitMQ, consumes, and acks. With Warren,
all of that is Warren's job; this program only does the work of one task:

    warren work --handler exec -- python3 examples/worker.py

The task body arrives on stdin (bytes, exactly as published), metadata in the
environment (WARREN_MESSAGE_ID, WARREN_ATTEMPT, WARREN_HEADERS as JSON, ...).
The exit code is the answer: 0 = done (ack), 65 = this task can never
succeed (dead-letter now), anything else = try again later (retry).
"""

import os
import sys
import time

EX_DATAERR = 65  # Warren's default handler.exec.reject_exit_codes


def main() -> int:
    body = sys.stdin.buffer.read()
    try:
        text = body.decode()
    except UnicodeDecodeError:
        print("not UTF-8: cannot be processed", file=sys.stderr)
        return EX_DATAERR
    attempt = os.environ.get("WARREN_ATTEMPT", "1")
    print(f" [x] Received {text} (attempt {attempt})", flush=True)
    time.sleep(body.count(b"."))
    print(" [x] Done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
