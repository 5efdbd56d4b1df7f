"""The clinicians' review app: queue, conversation view, labelling, accounts and roles, audit."""

from review.queue import ReviewQueue
from review.redaction import redact
from review.users import ROLES, User, UserStore

__all__ = ["ROLES", "ReviewQueue", "User", "UserStore", "redact"]
