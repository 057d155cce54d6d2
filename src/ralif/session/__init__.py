"""Labeling sessions: a durable store, the next-batch workflow and a local web page."""

from ralif.session.store import SessionStore, create_session, open_session

__all__ = ["SessionStore", "create_session", "open_session"]
