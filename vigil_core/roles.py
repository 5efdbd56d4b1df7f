"""The people who act on Vigil, by role; every package that checks a role reads the names here."""

from __future__ import annotations

__all__ = ["REVIEWER", "CLINICAL_LEAD", "ONCALL_ENGINEER", "ADMIN", "ROLES", "CLEAR_ROLES", "MODEL_PROMOTE_ROLES",
           "MODEL_ROLLBACK_ROLES", "MODEL_SHADOW_ROLES"]

REVIEWER = "reviewer"
CLINICAL_LEAD = "clinical_lead"
ONCALL_ENGINEER = "oncall_engineer"
ADMIN = "admin"
ROLES = (REVIEWER, CLINICAL_LEAD, ONCALL_ENGINEER, ADMIN)
# Lifting a halt takes one person in each of these roles (two people, never one in both).
CLEAR_ROLES = (CLINICAL_LEAD, ONCALL_ENGINEER)
# The live crisis model (docs/design.md section 8): a clinical lead promotes; a lead or the on-call engineer rolls
# back (the first recovery step after a detection-failure halt) or starts and ends a shadow.
MODEL_PROMOTE_ROLES = (CLINICAL_LEAD,)
MODEL_ROLLBACK_ROLES = (CLINICAL_LEAD, ONCALL_ENGINEER)
MODEL_SHADOW_ROLES = (CLINICAL_LEAD, ONCALL_ENGINEER)
