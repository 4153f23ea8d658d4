"""The running archiver: the MongoDB source, one cycle, the daemon loop, its state, restore."""
