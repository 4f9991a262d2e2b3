"""ArtLab's answers as JSON, written once: `predict --json`, `predict-text --json`, the app's
HTTP API (/predict, /predict_text, /similar_works, /browse) and its MCP tools all build them here.

    picture_json(analysis, path)   one line of `predict --json`
    look_json(look)                /predict: that line plus the similar works and the model
    text_json(record, pairs, ...)  /predict_text: the `predict-text --json` record plus the same
    work_json(work)                a gallery work, as /browse and /similar_works list it

Labels are class ids ("impressionism", "still_life"; a fine-tuned model's own head is "labels"),
never display names; every class of every head is listed as [id, probability], best first. No
server path ever appears: a work is named by its id and title, an upload by `path` only in the CLI.
"""

from artlab.checkpoints import CLASSIFIER_NAME, TEXT_CLASSIFIER_NAME

SCORE_DIGITS = 4


def picture_json(analysis, path=None) -> dict:
    """One line of `predict --json`: each head's [id, probability] pairs for every class, best
    first (calibrated), "unsure" (true when the picture does not look like a painting the model
    knows: its labels are then a guess), and "psnr" (dB) when the autoencoder ran; led by "path"
    when the CLI names a file."""
    record = {"path": str(path)} if path is not None else {}
    for head, ranked in analysis.labels.items():
        record[head] = [[name, round(p, SCORE_DIGITS)] for name, p in ranked]
    record["unsure"] = bool(analysis.unsure)
    if analysis.psnr is not None:
        record["psnr"] = round(analysis.psnr, 2)
    return record


def failure_json(path, error) -> dict:
    """The line `predict --json` prints for an input it could not read: the same one-line
    reason the app's error carries."""
    return {"path": str(path), "error": str(error)}


def scored_json(work, score: float) -> dict:
    """A similar work: its id (for /similar_works), title and how close it is (cosine, or the
    label agreement for texts), rounded."""
    return {"id": work.id, "title": work.name, "score": round(float(score), SCORE_DIGITS)}


def look_json(look) -> dict:
    """/predict's answer: `picture_json` plus the gallery's most similar works and the model that
    answered (its name: "art_classifier" or a fine-tuned "name/vN"; sha256: its weights' digest prefix)."""
    return {**picture_json(look.analysis),
            "similar": [scored_json(work, score) for work, score in look.similar],
            "model": {"name": look.model_key or CLASSIFIER_NAME, "sha256": look.analysis.model}}


def text_json(record: dict, pairs, text_models) -> dict:
    """/predict_text's answer: the `predict-text --json` record (text, subject, style, unsure,
    reconstruction, note) plus the works whose labels agree best and the text model that answered."""
    return {**record, "similar": [scored_json(work, score) for work, score in pairs],
            "model": {"name": TEXT_CLASSIFIER_NAME, "sha256": text_models.checkpoint.digest}}


def work_json(work) -> dict:
    """A gallery work without its files: id, title, artist, year, its top style and subject ids,
    the autoencoder's psnr and when it was added."""
    return {"id": work.id, "title": work.name, "artist": work.artist, "year": work.year,
            "style": work.style, "subject": work.subject,
            "psnr": round(work.psnr, 2) if work.psnr is not None else None, "added": work.added}


def browse_json(works, total: int, awaiting_refresh: int) -> dict:
    """/browse's answer: the matching works (newest first), the gallery's size, and how many works
    an earlier model analysed (left out of similar works until `index --refresh`)."""
    return {"works": [work_json(work) for work in works], "total": total, "awaiting_refresh": awaiting_refresh}


def neighbours_json(work, pairs) -> dict:
    """/similar_works' answer: the work itself and its most similar works, best first."""
    return {"work": work_json(work), "similar": [scored_json(other, score) for other, score in pairs]}


# ------------------------------------------------------------------ the answers' JSON schemas
# What the API page and gradio_client's view_api() show as each endpoint's return type, and what
# the tests validate answers against.

def _pairs(what: str) -> dict:
    pair = {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}], "minItems": 2, "maxItems": 2}
    # anyOf of one: gradio_client shows an array whose items hold prefixItems as one tuple, not a list of them.
    return {"type": "array", "description": f"[{what} id, probability] for every {what}, best first",
            "items": {"anyOf": [pair]}}


_SCORED = {"type": "array", "description": "the most similar works, best first",
           "items": {"type": "object", "required": ["id", "title", "score"],
                     "properties": {"id": {"type": "integer"}, "title": {"type": "string"},
                                    "score": {"type": "number"}}}}
_MODEL = {"type": "object", "description": "the model that answered", "required": ["name", "sha256"],
          "properties": {"name": {"type": "string"}, "sha256": {"type": "string"}}}
_OPTIONAL_TEXT = {"anyOf": [{"type": "string"}, {"type": "null"}]}
_WORK = {"type": "object", "required": ["id", "title", "style", "subject", "added"],
         "properties": {"id": {"type": "integer"}, "title": {"type": "string"}, "artist": _OPTIONAL_TEXT,
                        "year": _OPTIONAL_TEXT, "style": {"type": "string"}, "subject": {"type": "string"},
                        "psnr": {"anyOf": [{"type": "number"}, {"type": "null"}]}, "added": {"type": "string"}}}

_UNSURE = {"type": "boolean", "description": "true when the input does not look like what the model knows "
           "(not a painting, or a text of unknown words): its labels are then a guess"}
PICTURE_SCHEMA = {"type": "object", "required": ["unsure", "similar", "model"], "properties": {
    "unsure": _UNSURE,
    "style": _pairs("style"), "subject": _pairs("subject"),
    "labels": {**_pairs("class"), "description": "a fine-tuned model's own classes, best first (only then)"},
    "psnr": {"type": "number", "description": "the autoencoder's reconstruction PSNR in dB"},
    "similar": _SCORED, "model": _MODEL}}
TEXT_SCHEMA = {"type": "object", "required": ["text", "subject", "style", "unsure", "similar", "model"], "properties": {
    "text": {"type": "string"}, "subject": _pairs("subject"), "style": _pairs("style"), "unsure": _UNSURE,
    "reconstruction": {"type": "string", "description": "the text autoencoder's reconstruction"},
    "note": {"type": "string", "description": "present when the text was cut, mostly unknown, or unsure (why)"},
    "similar": _SCORED, "model": _MODEL}}
NEIGHBOURS_SCHEMA = {"type": "object", "required": ["work", "similar"],
                     "properties": {"work": _WORK, "similar": _SCORED}}
BROWSE_SCHEMA = {"type": "object", "required": ["works", "total", "awaiting_refresh"], "properties": {
    "works": {"type": "array", "items": _WORK, "description": "newest first"},
    "total": {"type": "integer", "description": "works in the gallery"},
    "awaiting_refresh": {"type": "integer", "description": "works an earlier model analysed"}}}
