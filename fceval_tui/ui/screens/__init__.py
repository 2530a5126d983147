"""Console screens (views and modals)."""
