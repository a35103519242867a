#!/usr/bin/env python
"""A pika consumer like the tutorial's worker.py that takes N messages and
prints one JSON line per message: body (latin-1), delivery_mode, message_id.

usage: consume.py AMQP_URL QUEUE N
"""
import json
import sys

import pika

url, queue, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
channel.queue_declare(queue=queue, durable=True, passive=True)
channel.basic_qos(prefetch_count=1)
seen = 0
for method, properties, body in channel.consume(queue, inactivity_timeout=30):
    if method is None:
        break
    print(json.dumps({
        "body": body.decode("latin-1"),
        "delivery_mode": properties.delivery_mode,
        "message_id": properties.message_id,
    }), flush=True)
    channel.basic_ack(delivery_tag=method.delivery_tag)
    seen += 1
    if seen == n:
        break
channel.cancel()
connection.close()
