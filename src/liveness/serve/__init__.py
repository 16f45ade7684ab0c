"""The REST service: ``liveness serve`` runs ``create_app`` under uvicorn (see ``app.py``)."""
