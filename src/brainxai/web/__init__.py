"""The brainxai web application: FastAPI API, SQL storage, browser page.

Start it with ``brainxai serve``; build it in code with :func:`brainxai.web.app.create_app`.
"""
