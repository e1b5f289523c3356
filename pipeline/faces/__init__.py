"""Faces over time: tracking, events, per-source analytics, the summary and the interview report."""
