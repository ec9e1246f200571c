"""Streamlit pages: they read widgets and call the library, nothing more."""
