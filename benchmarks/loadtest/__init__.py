"""Load test: the FastAPI example served by uvicorn, with signals or direct calls.

``python -m benchmarks.loadtest`` runs it; see ``__main__.py``.
"""
