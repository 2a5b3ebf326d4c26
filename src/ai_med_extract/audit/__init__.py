"""HIPAA audit trail: append-only rows chained by HMAC, written in the action's transaction."""
