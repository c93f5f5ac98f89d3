"""The app's pages, in navigation order: one list that app.py, the tests and the latency bench read."""

PAGES = {  # title -> (script, icon)
    "Models": ("pages/1_Models.py", ":material/inventory_2:"),
    "Dataset": ("pages/2_Dataset.py", ":material/image:"),
    "Traversals": ("pages/3_Traversals.py", ":material/view_module:"),
    "Mean vs sampled TC": ("pages/4_Mean_vs_sampled_TC.py", ":material/compare:"),
    "Theorem": ("pages/5_Theorem.py", ":material/functions:"),
    "Factor disintegration": ("pages/6_Factor_disintegration.py", ":material/call_split:"),
    "Compare": ("pages/7_Compare.py", ":material/leaderboard:"),
    "Train": ("pages/8_Train.py", ":material/model_training:"),
}
PAGE_FILES = {title: script for title, (script, _) in PAGES.items()}
