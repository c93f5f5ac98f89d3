"""The app's pages, in navigation order: one list that app.py, the tests and the latency bench read."""

PAGES = {  # title -> (script, icon)
    "Models": ("app_pages/1_Models.py", ":material/inventory_2:"),
    "Dataset": ("app_pages/2_Dataset.py", ":material/image:"),
    "Traversals": ("app_pages/3_Traversals.py", ":material/view_module:"),
    "Mean vs sampled TC": ("app_pages/4_Mean_vs_sampled_TC.py", ":material/compare:"),
    "Theorem": ("app_pages/5_Theorem.py", ":material/functions:"),
    "Factor disintegration": ("app_pages/6_Factor_disintegration.py", ":material/call_split:"),
    "Compare": ("app_pages/7_Compare.py", ":material/leaderboard:"),
    "Train": ("app_pages/8_Train.py", ":material/model_training:"),
}
PAGE_FILES = {title: script for title, (script, _) in PAGES.items()}
