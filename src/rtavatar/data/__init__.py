"""Data: the synthetic talking-face generator and the one dataset format (docs/DATA.md)."""
