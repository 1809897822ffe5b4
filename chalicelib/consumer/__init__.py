"""The consumer stage: queued change messages -> search-engine documents -> per-message outcomes."""
