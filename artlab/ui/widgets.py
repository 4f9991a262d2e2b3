"""Components made the way every tab wants them: pictures in, pictures out, notes for the visitor.

- `picture_input`: a gr.Image whose upload reaches the handler as its path, undecoded. Gradio
  would open it with Pillow first (and convert it to RGB), so a text file named .jpg failed inside
  Gradio with its own error naming the server's temp path, and a CMYK or 16-bit picture was
  converted by Gradio instead of our loader. Now every picture meets artlab.images alone, whose
  ImageError the tab words for the visitor. The webcam takes the environment-facing camera
  (a phone's back camera) and is not mirrored: the artwork is photographed as it hangs.
- `buttons(ctx, ...)`: the corner buttons of pictures and galleries. In a kiosk only fullscreen
  (no download, no share: one visitor's picture is never handed to the next); elsewhere download
  and fullscreen (share needs a Hugging Face Space).
- `notice`: a message beside the controls, hidden while empty, instead of an error toast: the
  outputs stay calm (no red badges) and the message is in the visitor's language.
"""

from pathlib import Path

import gradio as gr

from artlab.ui.context import AppContext
from artlab.ui.i18n import L
from artlab.workdirs import gradio_temp_dir

WEBCAM = gr.WebcamOptions(mirror=False, constraints={"video": {"facingMode": {"ideal": "environment"},
                                                                 "width": {"ideal": 1920},
                                                                 "height": {"ideal": 1440}}})


def buttons(ctx: AppContext, download: bool = True) -> list[str]:
    return ["fullscreen"] if ctx.kiosk or not download else ["download", "fullscreen"]


def _uploaded_path(allowed_roots: list[Path]):
    """An Image input's value as the uploaded file's path, never decoded here (see the module's doc).

    Only a file Gradio stored (this process's temp folder) or one the app serves anyway (gallery
    thumbnails, assets) is handed on: a request naming any other server path, say
    {"path": "/etc/passwd"}, is refused as an input that does not fit (guard.CheckedBlocks)."""
    def preprocess(payload):
        if payload is None or not payload.path:
            return None
        path = Path(payload.path).resolve()
        if not any(path.is_relative_to(root) for root in allowed_roots):
            raise ValueError("not a file Gradio stored for this app")
        return str(path)
    return preprocess


def picture_input(ctx: AppContext, label: str, placeholder: str, webcam: bool = True, **kwargs) -> gr.Image:
    """A picture to analyse: upload, paste or (optionally) the camera; handlers get its path."""
    sources = ["upload", "clipboard", "webcam"] if webcam else ["upload", "clipboard"]
    image = gr.Image(label=L(label), placeholder=L(placeholder), type="filepath", image_mode=None, sources=sources,
                     webcam_options=WEBCAM, buttons=["fullscreen"], **kwargs)
    # The instance's, not a subclass's (Gradio writes a .pyi stub beside the source of every Component
    # subclass); guard.CheckedBlocks gives it to the copies Gradio makes of the component too.
    roots = [gradio_temp_dir().resolve()] + [Path(folder).resolve() for folder in ctx.lab.public_folders()]
    image.preprocess = image.undecoded_preprocess = _uploaded_path(roots)
    return image


def notice(text: str = "") -> dict:
    """An update for a notice Markdown: shown with `text`, hidden without."""
    return gr.update(value=text, visible=bool(text))


def notice_box(**kwargs) -> gr.Markdown:
    return gr.Markdown(visible=False, elem_classes="notice", **kwargs)
