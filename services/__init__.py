"""The app's services, without Streamlit: background computations (`background`), the queue of trainings and how they
share the cores (`training_queue`), and where runs are found (`run_listing`)."""
