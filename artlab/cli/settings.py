"""`python -m artlab settings`: every ARTLAB_* setting with its value, and the folders in use."""

import os


def register(sub):
    s = sub.add_parser("settings", help="the ARTLAB_* settings and the folders ArtLab uses")
    s.set_defaults(run=run_settings)


def run_settings(args) -> int:
    from artlab import paths

    for name, meaning in paths.SETTINGS.items():
        value = "(hidden)" if name == "CURATOR_PASSWORD" and paths.setting(name) else os.environ.get(f"ARTLAB_{name}")
        print(f"ARTLAB_{name:<17} {value if value else '-':<24} {meaning}")
    print(f"\nweights folder   {paths.weights_dir()}\ngallery folder   {paths.gallery_dir()}\n"
          f"models directory {paths.models_dir()}")
    return 0
