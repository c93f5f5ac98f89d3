"""Pictures: latent traversals (`traversal`), the plotly figures the app and the CLI share (`figures`), the app's
overview and comparison charts (`charts`, and `svg_charts` for the static first screen)."""
