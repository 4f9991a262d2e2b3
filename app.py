"""ArtLab's web app: `python app.py [--gallery PATH] [--kiosk]` (also the Hugging Face Spaces entry point).

Serves on http://127.0.0.1:7860 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say otherwise.
The UI lives in artlab/ui/; this file only starts it.
"""

import os

# NumPy's OpenBLAS threads spin for a while after each product and take the cores from ONNX Runtime's
# next run; ArtLab's NumPy products (similar works, the unsure rule) are small. Set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from artlab.ui.server import main  # noqa: E402

if __name__ == "__main__":
    main()
