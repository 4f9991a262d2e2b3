"""The Gradio app's UI: tabs that only call library functions (artlab.inference, artlab.gallery, ...).

Only app.py and this package import gradio.
"""
