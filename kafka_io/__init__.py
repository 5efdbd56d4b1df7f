"""Kafka I/O for every Vigil service (issue 36): a producer that confirms delivery (`producer`), consumers, lag and
whole-topic reads (`consumer`), the topics (`topics`), dead letters (`dead_letters`) and the at-least-once loop
(`loop`). Below the services (pipeline, incidents, review) and beside the domain packages: it knows Kafka and the
kernel, nothing else.
"""

from __future__ import annotations

from kafka_io.consumer import consumer_lag, make_consumer, read_all, rewind_to_committed
from kafka_io.dead_letters import dead_letter_out, dead_letter_record
from kafka_io.loop import RECORD_ATTEMPTS, Pending, consume, record_caused, serve
from kafka_io.producer import RecordProducer
from kafka_io.topics import all_topics, ensure_topics
from vigil_core.records import OutRecord

__all__ = ["OutRecord", "RecordProducer", "make_consumer", "consumer_lag", "ensure_topics", "all_topics", "read_all",
           "rewind_to_committed", "consume", "serve", "Pending", "record_caused", "RECORD_ATTEMPTS",
           "dead_letter_record", "dead_letter_out"]
