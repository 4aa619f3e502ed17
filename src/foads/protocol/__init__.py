"""The FOADS protocol, the same for every method: split, stream, test-then-train, sessions."""
