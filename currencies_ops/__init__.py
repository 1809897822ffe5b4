"""Operator commands (verify, and later backfill, replay, redrive): they work on AWS and on the local runtime alike."""
