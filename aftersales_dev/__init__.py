"""Development tools: local broker and database, dev loop, demo (never in an image)."""
