"""The command line: `python -m mtc_core CMD` (`commands`) and the installed `mtc` (`launcher`, which adds `mtc app`)."""
