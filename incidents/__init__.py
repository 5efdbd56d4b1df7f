"""The incident engine: the incident store, the service that opens, acknowledges and escalates, notifiers,
the notification outbox, post-incident reports and their commands."""
