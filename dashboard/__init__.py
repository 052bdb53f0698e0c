"""Amulet dashboard: a Streamlit front end that talks only to the REST API (``dashboard/client.py``).

Run it with ``streamlit run dashboard/app.py`` (``amulet serve`` starts it together with the API and a
worker).
"""
