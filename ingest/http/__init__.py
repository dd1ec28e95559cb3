from ingest.http.app import Collector, create_app

__all__ = ["create_app", "Collector"]
