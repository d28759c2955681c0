"""Data: readers for published dataset layouts, the simulator, ROI masking and prepared files."""
