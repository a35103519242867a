#!/usr/bin/env python
"""The tutorial's new_task.py, with the URL and queue as arguments.

usage: new_task.py AMQP_URL QUEUE MESSAGE...   (one persistent task per MESSAGE)
"""
import sys

import pika

url, queue, messages = sys.argv[1], sys.argv[2], sys.argv[3:]
connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
channel.queue_declare(queue=queue, durable=True)
for message in messages:
    channel.basic_publish(
        exchange="",
        routing_key=queue,
        body=message,
        properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
    )
    print(f" [x] Sent {message}")
connection.close()
