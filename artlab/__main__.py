import os

# As in app.py: NumPy's OpenBLAS threads would spin between pictures and slow ONNX Runtime's runs.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from artlab.cli import main  # noqa: E402

raise SystemExit(main())
