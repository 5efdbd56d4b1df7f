"""The harness itself: the broker and Redis are real servers reached over TCP."""

import time

import redis
from kafka import TopicPartition

from kafka_io import OutRecord, RecordProducer, consumer_lag, ensure_topics, make_consumer


def test_produce_and_consume_through_the_real_broker(settings):
    ensure_topics(settings, [settings.topic_events], partitions=2)
    producer = RecordProducer(settings)
    sent = [OutRecord(settings.topic_events, f"c{i % 3}", f"m{i}".encode()) for i in range(30)]
    producer.send_all(sent)
    consumer = make_consumer(settings, settings.scorer_group, [settings.topic_events])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 30 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
    assert sorted(r.value for r in got) == sorted(r.value for r in sent)
    # same key, same partition, order kept
    for key in ("c0", "c1", "c2"):
        values = [r.value for r in got if r.key == key.encode()]
        assert values == [r.value for r in sent if r.key == key]
        assert len({r.partition for r in got if r.key == key.encode()}) == 1
    consumer.commit()
    assert all(v == 0 for v in consumer_lag(consumer).values())
    consumer.close()
    producer.close()


def test_lag_is_computed_from_highwater_after_batched_produce(settings):
    ensure_topics(settings, [settings.topic_scores], partitions=1)
    producer = RecordProducer(settings, linger_ms=50)
    producer.send_all([OutRecord(settings.topic_scores, "k", b"x") for _ in range(20)])
    consumer = make_consumer(settings, settings.scorer_group, [settings.topic_scores], max_poll_records=5)
    deadline = time.monotonic() + 30
    got = 0
    while got == 0 and time.monotonic() < deadline:
        got = sum(len(v) for v in consumer.poll(timeout_ms=500).values())
    assert got == 5
    assert consumer_lag(consumer) == {TopicPartition(settings.topic_scores, 0): 15}
    consumer.close()
    producer.close()


def test_write_and_read_the_real_redis_server(redis_server, uid):
    client = redis.Redis.from_url(redis_server.url)
    client.hset(f"t{uid}:h", mapping={"state": "RUNNING", "version": 1})
    assert client.hgetall(f"t{uid}:h") == {b"state": b"RUNNING", b"version": b"1"}
    assert client.execute_command("INFO", "server")["tcp_port"] == redis_server.port
    client.close()
