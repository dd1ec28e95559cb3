"""Built-in saved queries (*.sql, shipped as package data). The loader is tooltrail/saved.py;
`list_saved` is re-exported here for callers that look for it on this package."""

from tooltrail.saved import list_saved, load_saved

__all__ = ["list_saved", "load_saved"]
