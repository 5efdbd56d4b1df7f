"""Vigil's kernel: what every package stands on.

Errors (`errors`), the clock (`clock`), role names (`roles`), the Redis client factory and error conversion
(`redis_client`), interval statistics (`stats`), the record to publish (`records`), and, in their own modules,
the settings (`settings`, pydantic-settings), the event contracts (`contracts`, pydantic) and the conversation
state keys (`conversations`). Importing this package imports nothing: each module is imported by name, so the
gate can take the errors and the Redis factory without pydantic.
"""
