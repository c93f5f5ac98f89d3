"""Streamlit-only code of the app: every st.cache_* wrapper, shared widgets, the page layout and the Train page's views."""
