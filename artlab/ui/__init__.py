"""The Gradio app's UI: tabs that only call library functions (artlab.inference.image, artlab.store.gallery, ...).

Only app.py and this package import gradio.

Importing the UI gives this process a private Gradio temp folder (artlab.workdirs): Gradio reads
GRADIO_TEMP_DIR each time it stores or serves a file, and captures it when a Blocks is made, so it
is set here, before any Blocks exists, and never changed. Files other processes left in the shared
default folder are then neither served nor taken as uploads.
"""

import os

from artlab.workdirs import gradio_temp_dir

os.environ["GRADIO_TEMP_DIR"] = str(gradio_temp_dir())
