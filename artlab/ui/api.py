"""The app's public API, for programs and assistants: /predict, /predict_text, /similar_works, /browse.

Each endpoint is an event with no trigger on the page (`gr.on([])`) whose inputs are hidden
components, so Gradio checks and types them as it does the page's (a gr.File is an upload
Gradio accepted, never a path a caller names; a gr.Textbox takes strings only, see
guard.CheckedBlocks). Each method's docstring is its description on the API page and in the MCP
server's tool list, with an example answer; its answer is artlab.answers's JSON, the same
objects `predict --json` and `predict-text --json` print, and its output declares that JSON's
schema, so gradio_client's `view_api()` shows named, typed fields.

Errors are part of the contract: a bad picture or text raises gr.Error with the CLI's one-line
reason; nothing names a server path.
"""

import contextlib
import logging

import gradio as gr

from artlab import answers
from artlab.checkpoints import WeightsError
from artlab.images import ImageError
from artlab.labels import STYLES, SUBJECTS
from artlab.ui.context import AppContext
from artlab.ui.handlers import read_upload

log = logging.getLogger(__name__)

PUBLIC_ENDPOINTS = ("predict", "predict_text", "similar_works", "browse")
SIMILAR, MAX_SIMILAR = 6, 24
BROWSE_PAGE, MAX_BROWSE_PAGE = 20, 100
# A program reads these: the contract speaks English (the page's strings live in i18n.py).
MODELS_MISSING = "The models could not be loaded; the server's log says why."
NO_SUCH_WORK = "There is no work #{work_id} in the gallery."
UNKNOWN_LABEL = "{field} {value!r} is not one of ArtLab's ids: {ids} (or empty for any)."


def _answer(schema: dict) -> gr.JSON:
    """A gr.JSON output whose API description is the answer's JSON schema (artlab.answers), not
    "any valid json", and whose value is a plain dict: Gradio's MCP server hands an unqueued tool's
    answer to the assistant as str(value), which for gr.JSON's JsonData reads "root={...}".

    The instance's methods are replaced rather than subclassed: Gradio writes a .pyi stub beside
    the source file of every Component subclass when the class is defined."""
    output = gr.JSON(label="answer")
    json_data = output.postprocess
    output.api_info = lambda: schema
    output.postprocess = lambda value: None if (data := json_data(value)) is None else data.model_dump()
    return output


@contextlib.contextmanager
def contract_errors():
    """The library's errors as the contract's: a picture's one-line reason as the CLI prints it
    (the upload is read as bytes, so it is called "upload", not a temp path); missing models
    without their server paths, which go to the log."""
    try:
        yield
    except ImageError as e:
        raise gr.Error(str(e), print_exception=False) from None
    except WeightsError as e:
        log.error("the API could not load models: %s", e)
        raise gr.Error(MODELS_MISSING, print_exception=False) from None


def _known(field: str, value: str, ids: tuple[str, ...]) -> str | None:
    value = (value or "").strip()
    if value and value not in ids:
        raise gr.Error(UNKNOWN_LABEL.format(field=field, value=value[:40], ids=", ".join(ids)),
                       print_exception=False)
    return value or None


class PublicApi:
    """The endpoints, bound to the app's Lab. A method's name is its MCP tool's name."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def predict(self, image: str) -> dict:
        """Style and subject of a picture of an artwork, how well ArtLab's autoencoder rebuilds it, and the
        most similar works in the gallery. Use it when someone shares a painting and asks what style or
        subject it is, or which gallery works look like it. Answers, e.g.: {"style": [["impressionism",
        0.71], ["post_impressionism", 0.12], ...every style, best first], "subject": [["landscape", 0.93],
        ...every subject], "psnr": 27.3, "similar": [{"id": 12, "title": "Water Lilies", "score": 0.91}],
        "model": {"name": "art_classifier", "sha256": "9c1f0a2b7d3e4f55"}}. When a curator's fine-tuned
        model is active, "labels" lists its own classes the same way (and style/subject only if it kept
        those heads). Probabilities of each head sum to 1; psnr is in dB (higher: closer rebuild); "similar"
        ids work with similar_works.

        Args:
            image: the picture: JPEG, PNG, WebP, GIF, BMP, TIFF or AVIF, at most 40 megapixels. Anything else is refused with the reason, e.g. "upload: not an image, or a format we cannot read".
        """
        data = read_upload(image)
        with contract_errors():
            return self.ctx.lab.look(data, explain=False).to_json()

    def predict_text(self, text: str) -> dict:
        """Subject and style that a title or a description of an artwork suggests, the text autoencoder's
        reconstruction of it, and gallery works whose labels agree. Use it for a title or description
        without a picture ("stormy sea at night", "portrait of a lady with a fan"). Answers, e.g.: {"text":
        "stormy sea at night", "subject": [["landscape", 0.88], ...every subject, best first], "style":
        [["romanticism", 0.41], ...every style], "reconstruction": "stormy sea at night", "similar": [{"id":
        3, "title": "The Ninth Wave", "score": 0.52}], "model": {"name": "text_classifier", "sha256":
        "5e0d6c1a9b2f3e47"}}, plus "note" when the text was cut or mostly unknown. An empty text is refused:
        "empty text: type a title or a description".

        Args:
            text: a title or description in English; of a longer one, the first 20,000 characters and 512 tokens are read.
        """
        lab = self.ctx.lab
        with contract_errors():
            record, pairs = lab.read(text)
            models, _ = lab.text_models()
        if "error" in record:
            raise gr.Error(record["error"], print_exception=False)
        return answers.text_json(record, pairs, models)

    def similar_works(self, work_id: int, count: int = SIMILAR) -> dict:
        """The gallery works most similar to one gallery work, by the image model's embedding, best first.
        Use it after predict, predict_text or browse to explore around a work. Answers, e.g.: {"work":
        {"id": 12, "title": "Water Lilies", "artist": "Claude Monet", "year": "1906", "style":
        "impressionism", "subject": "landscape", "psnr": 27.9, "added": "2026-11-30T10:00:00"}, "similar":
        [{"id": 40, "title": "The Japanese Footbridge", "score": 0.93}, ...]}. Scores are cosine
        similarities (1: the same picture).

        Args:
            work_id: a work's id, from the "id" of another answer.
            count: how many similar works to return, 1 to 24.
        """
        with contract_errors():
            found = self.ctx.lab.similar_to(int(work_id), int(count))
        if found is None:
            raise gr.Error(NO_SUCH_WORK.format(work_id=int(work_id)), print_exception=False)
        return answers.neighbours_json(*found)

    def browse(self, style: str = "", subject: str = "", query: str = "", limit: int = BROWSE_PAGE,
               offset: int = 0) -> dict:
        """The gallery's works, newest first, filtered by top style, top subject and words of the title,
        artist or file name. Use it to find works to show or to pass to similar_works. Answers, e.g.:
        {"works": [{"id": 12, "title": "Water Lilies", "artist": "Claude Monet", "year": "1906", "style":
        "impressionism", "subject": "landscape", "psnr": 27.9, "added": "2026-11-30T10:00:00"}], "total":
        2100, "awaiting_refresh": 0} (total: the gallery's size; awaiting_refresh: works an earlier model
        analysed, left out of similar works until the operator runs `python -m artlab index --refresh`).

        Args:
            style: a style id (<styles>), or empty for any.
            subject: a subject id (<subjects>), or empty for any.
            query: words to look for in titles, artists and file names, or empty for all.
            limit: how many works to return, 1 to 100.
            offset: how many matching works to skip (for the next page).
        """
        style, subject = _known("style", style, STYLES), _known("subject", subject, SUBJECTS)
        with contract_errors():
            works, total, awaiting = self.ctx.lab.browse(style, subject, (query or "").strip() or None,
                                                         limit=int(limit), offset=int(offset))
        return answers.browse_json(works, total, awaiting)


# The ids an assistant may filter by, from the one vocabulary (labels.py).
PublicApi.browse.__doc__ = PublicApi.browse.__doc__.replace("<styles>", ", ".join(STYLES)).replace(
    "<subjects>", ", ".join(SUBJECTS))
SCHEMAS = {"predict": answers.PICTURE_SCHEMA, "predict_text": answers.TEXT_SCHEMA,
           "similar_works": answers.NEIGHBOURS_SCHEMA, "browse": answers.BROWSE_SCHEMA}


def build_api(ctx: AppContext, inference: dict, text: dict | None = None) -> None:
    """Wire the four endpoints inside the page's Blocks; `inference`: the image-model calls' queue
    group; `text`: the text models' (default: the same)."""
    api = PublicApi(ctx)
    with gr.Column(visible=False):
        image = gr.File(label="image", type="filepath", file_count="single")
        text_box = gr.Textbox(label="text", max_lines=1)
        work_id = gr.Number(label="work_id", precision=0)
        count = gr.Number(SIMILAR, label="count", precision=0, minimum=1, maximum=MAX_SIMILAR)
        style, subject, query = (gr.Textbox("", label=name, max_lines=1) for name in ("style", "subject", "query"))
        limit = gr.Number(BROWSE_PAGE, label="limit", precision=0, minimum=1, maximum=MAX_BROWSE_PAGE)
        offset = gr.Number(0, label="offset", precision=0, minimum=0)
        outputs = {name: _answer(schema) for name, schema in SCHEMAS.items()}
    gr.on([], api.predict, image, outputs["predict"], api_name="predict", **inference)
    gr.on([], api.predict_text, text_box, outputs["predict_text"], api_name="predict_text", **(text or inference))
    # Gallery look-ups read SQLite and a matrix product: no model call to queue behind.
    gr.on([], api.similar_works, [work_id, count], outputs["similar_works"], api_name="similar_works", queue=False)
    gr.on([], api.browse, [style, subject, query, limit, offset], outputs["browse"], api_name="browse", queue=False)


def only_the_api_is_public(demo: gr.Blocks) -> None:
    """Every other endpoint is the page's own (it answers component updates that change with the
    page): left callable, for the page and its tests, but undocumented, so the API page and the
    MCP server's tools list the contract only. Done here, after every tab is built, so that an
    endpoint a tab adds later cannot become public by default."""
    for fn in demo.fns.values():
        if fn.api_visibility == "public" and fn.api_name not in PUBLIC_ENDPOINTS:
            fn.api_visibility = "undocumented"
