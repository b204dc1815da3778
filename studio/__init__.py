"""NPNet Studio app package: launch config, app-level service and the Gradio tabs."""
