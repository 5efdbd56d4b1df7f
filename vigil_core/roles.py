"""The people who act on Vigil, by role; every package that checks a role reads the names here."""

from __future__ import annotations

__all__ = ["REVIEWER", "CLINICAL_LEAD", "ONCALL_ENGINEER", "ADMIN", "ROLES", "CLEAR_ROLES"]

REVIEWER = "reviewer"
CLINICAL_LEAD = "clinical_lead"
ONCALL_ENGINEER = "oncall_engineer"
ADMIN = "admin"
ROLES = (REVIEWER, CLINICAL_LEAD, ONCALL_ENGINEER, ADMIN)
# Lifting a halt takes one person in each of these roles (two people, never one in both).
CLEAR_ROLES = (CLINICAL_LEAD, ONCALL_ENGINEER)
