"""Dash pages, imported by Dash itself (``use_pages=True``); never import them directly."""
