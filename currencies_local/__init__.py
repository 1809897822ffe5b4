"""The one-machine runtime of currencies (not deployed): moto, a search engine, event sources, CLI."""
