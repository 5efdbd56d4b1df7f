"""Vigil's pipeline: Kafka I/O (consumer loop, producer, dead letters, topics), the scorer, review sampling."""
