"""probsft.figures: pure functions from saved result files (CSV/JSON) to pictures (PNG + SVG)."""
