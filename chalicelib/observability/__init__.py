"""Metrics, their way out of Lambda (Pushgateway pushes and the janitor that retires idle groups), and logs."""
