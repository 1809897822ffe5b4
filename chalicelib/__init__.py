"""Everything deployed to Lambda with app.py: domain, store, changes, bus, consumer, sinks, metrics."""
