"""Recommendations out: batch scoring into serving.recommendations and the online scorer (FastAPI)."""
