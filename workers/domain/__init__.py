"""The pure core: policies, deadlines, matching and state changes. No I/O is imported here."""
