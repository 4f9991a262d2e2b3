"""Start-up of the web app: options, security settings, theme and launch.

Security (issues 7 and 19): only the gallery's thumbnails and assets/ are served
(allowed_paths; the database, full copies, the repository, weights and home are not), uploads
are capped (max_file_size) and so is every other request body (guard.RequestGuard, from the
same --max-upload-mb), Gradio keeps its files in this process's private temp folder
(artlab.workdirs), analytics are off, raw exception texts are never shown (show_error=False:
bad input gets a gr.Error of one line), and in kiosk mode there is no API/settings footer,
no API description, deep-link route or MCP server, no run history, no download or share buttons,
no Train tab, no adding to the gallery, and curator actions need the password from
ARTLAB_CURATOR_PASSWORD (compared in constant time and throttled per client, see context.CuratorGate).

Outside kiosk mode Gradio's MCP server runs at /gradio_api/mcp (schema at /gradio_api/mcp/schema):
its tools are the public API's endpoints (artlab/ui/api.py), nothing else.
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402

from artlab import paths  # noqa: E402
from artlab.lab import Lab  # noqa: E402
from artlab.ui.context import AppContext  # noqa: E402
from artlab.ui.guard import app_kwargs  # noqa: E402
from artlab.ui.i18n import gradio_i18n  # noqa: E402
from artlab.ui.layout import build_app  # noqa: E402

ASSETS = paths.ASSETS_DIR


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py", description="ArtLab: the gallery web app")
    p.add_argument("--gallery", help="gallery folder (default: $ARTLAB_GALLERY or <user data>/gallery; "
                                     "`python -m artlab settings` shows it)")
    p.add_argument("--weights", help="image/text model folder (default: $ARTLAB_WEIGHTS or weights/)")
    p.add_argument("--models", help="fine-tuned models directory; its active model (`python -m artlab models "
                                    "activate NAME`) is the Artwork tab's default (default: $ARTLAB_MODELS or "
                                    "<user data>/models; `python -m artlab settings` shows it)")
    p.add_argument("--kiosk", action="store_true", default=paths.flag_setting("KIOSK"),
                   help="museum kiosk mode (also ARTLAB_KIOSK=1)")
    p.add_argument("--idle-minutes", type=float, default=paths.number_setting("IDLE_MINUTES", 3),
                   help="kiosk: forget a visitor's uploads after this many idle minutes")
    p.add_argument("--max-upload-mb", type=int, default=int(paths.number_setting("MAX_UPLOAD_MB", 20)))
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    return p.parse_args(argv)


def make_context(args) -> AppContext:
    lab = Lab(weights=args.weights, models_dir=args.models, gallery_dir=args.gallery, device=args.device)
    return AppContext(lab, kiosk=args.kiosk, idle_minutes=args.idle_minutes, max_upload_mb=args.max_upload_mb)


def theme() -> gr.themes.Base:
    """Quiet and legible, like a museum wall label: ivory, charcoal, one deep red accent, serif titles."""
    sans = ["Inter", "Helvetica Neue", "Noto Sans CJK SC", "Arial", "sans-serif"]
    return gr.themes.Base(primary_hue=gr.themes.colors.red, neutral_hue=gr.themes.colors.stone,
                          font=sans, font_mono=["ui-monospace", "monospace"], radius_size="sm").set(
        body_background_fill="#f5f1ea", block_background_fill="#fffdf9", block_border_color="#e2dbcf",
        block_label_text_color="#5b544a", body_text_color="#23201c",
        button_primary_background_fill="#7b2d26", button_primary_background_fill_hover="#5f211c",
        button_primary_text_color="#fffdf9", button_secondary_background_fill="#ece5d8",
        color_accent="#7b2d26", color_accent_soft="#f1e3df", input_background_fill="#fffdf9")


def launch_options(ctx: AppContext, host: str, port: int) -> dict:
    css_paths = [ASSETS / "artlab.css"] + ([ASSETS / "kiosk.css"] if ctx.kiosk else [])
    head = ""
    if ctx.kiosk:
        head = "<script>" + (ASSETS / "kiosk.js").read_text().replace(
            "__IDLE_MS__", str(int(ctx.idle_minutes * 60_000))) + "</script>"
    served = ctx.lab.public_folders()
    for folder in served:
        Path(folder).mkdir(parents=True, exist_ok=True)
    return dict(
        server_name=host, server_port=port,
        allowed_paths=served,
        blocked_paths=[str(Path(served[0]).parent / "gallery.sqlite")],
        max_file_size=f"{ctx.max_upload_mb}mb",
        footer_links=[] if ctx.kiosk else ["api", "settings"],
        theme=theme(), css_paths=css_paths, head=head or None, i18n=gradio_i18n(),
        favicon_path=str(ASSETS / "favicon.svg"), show_error=False, ssr_mode=False,
        pwa=False, mcp_server=not ctx.kiosk, app_kwargs=app_kwargs(ctx.max_upload_mb, ctx.kiosk),
        # A kiosk remembers nothing across visitors: no run history in the browser (kiosk.js also
        # empties the browser's storage when it resets the page for the next visitor).
        run_history=not ctx.kiosk,
    )


def create(ctx: AppContext) -> gr.Blocks:
    demo = build_app(ctx)
    # One inference at a time (the CPU has 2 cores; a GPU is shared the same way); visitors see their place.
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


def serve(ctx: AppContext, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> gr.Blocks:
    """Build and launch; with block=False return at once (tests, benchmarks) and `demo.close()` later."""
    demo = create(ctx)
    ctx.lab.preload()
    demo.launch(prevent_thread_lock=not block, quiet=not block, **launch_options(ctx, host, port))
    return demo


def main(argv=None) -> None:
    import logging
    import sys

    from artlab.checkpoints import WeightsError, check_folder
    from artlab.memory import limit_malloc_arenas
    from artlab.store.registry import Registry

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    limit_malloc_arenas()   # before the server's threads exist: keeps RSS flat over many requests
    args = parse_args(argv)
    try:
        check_folder(args.weights)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    active = Registry(args.models).active_path()
    if active:
        try:
            check_folder(active)
        except WeightsError as e:
            print(f"error: the active model is broken: {e} "
                  "(`python -m artlab models rollback` or `models shipped` goes back)", file=sys.stderr)
            raise SystemExit(2) from None
        logging.getLogger(__name__).info("the Artwork tab uses the active model %s", active)
    serve(make_context(args), args.host, args.port)
