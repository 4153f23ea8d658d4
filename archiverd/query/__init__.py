"""Reading archived data without restoring it: semantic search over embeddings (vectors)."""
