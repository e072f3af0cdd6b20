"""What auditors use: the gap-free feed, exports and their loading, verify, balance checksums."""
