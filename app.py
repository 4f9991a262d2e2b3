"""ArtLab's web app: `python app.py [--gallery PATH] [--kiosk]` (also the Hugging Face Spaces entry point).

Serves on http://127.0.0.1:7860 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say otherwise.
The UI lives in artlab/ui/; this file only starts it.
"""

from artlab.ui.server import main

if __name__ == "__main__":
    main()
