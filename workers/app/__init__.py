"""The service layer: use cases over ports."""
