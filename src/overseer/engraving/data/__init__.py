"""Score loading, graph building, labels and corpus ingest for the engraving family."""
