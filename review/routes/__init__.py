"""The review app's routes, one router per area."""
