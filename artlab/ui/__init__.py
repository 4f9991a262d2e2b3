"""The Gradio app's UI: tabs that only call library functions (artlab.inference.image, artlab.store.gallery, ...).

Only app.py and this package import gradio.
"""
