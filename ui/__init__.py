"""Streamlit-only helpers of the app: every st.cache_* wrapper, shared widgets, the background trainer."""
