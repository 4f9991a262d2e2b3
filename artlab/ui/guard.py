"""What stands between a request and Gradio: a body limit, closed routes, plain answers to bad requests.

- `RequestGuard` (ASGI middleware on the FastAPI app Gradio makes, in front of every route): a
  request body over the limit is answered 413 before it is read into memory, whether it declares
  its length or streams it; the kiosk's closed routes answer 404.
- `EXCEPTION_HANDLERS`: an endpoint that does not exist is a 404 (Gradio lets a KeyError become a
  500), and a body the route cannot parse gets one line instead of pydantic's echo of it.
- `CheckedBlocks`: a gr.Blocks whose text boxes take strings only, whose file inputs are never
  data: URIs, whose picture inputs reach their handlers undecoded (widgets.picture_input), and whose
  inputs Gradio cannot read get a one-line message instead of a pydantic dump.
"""

import logging
import math
import re

import gradio as gr
from fastapi.exceptions import RequestValidationError
from gradio.exceptions import ComponentProcessingError
from gradio.route_utils import FnIndexInferError
from pydantic import ValidationError
from starlette.middleware import Middleware
from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

# Gradio streams multipart uploads to disk and caps each file itself (launch's max_file_size).
UPLOAD_ROUTE = "/gradio_api/upload"
# Routes a kiosk has no use for: saved page states (deep links) and the API's description.
KIOSK_CLOSED_ROUTES = frozenset({"/gradio_api/deep_link", "/gradio_api/info", "/gradio_api/openapi.json"})
ENDPOINT_ROUTES = re.compile(r"^/gradio_api/(queue/join|run/|api/|call/)")
JSON_SLACK_BYTES = 64 * 1024


def body_limit_bytes(max_upload_mb: float) -> int:
    """The largest request body besides uploads: one upload's worth sent inline (base64 makes 3
    bytes 4), plus the JSON around it. So nothing inline outgrows the upload size limit, and what
    the limit lets through is refused anyway when it is a data: URI (CheckedBlocks)."""
    return math.ceil(max_upload_mb * 2**20 * 4 / 3) + JSON_SLACK_BYTES


class RequestGuard:
    """ASGI middleware: the body limit and the closed routes (see the module's docstring)."""

    def __init__(self, app, max_body_bytes: int, closed_routes: frozenset = frozenset()):
        self.app, self.max_body_bytes, self.closed_routes = app, max_body_bytes, closed_routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/") or "/"
        if path in self.closed_routes:
            return await _answer(scope, receive, send, 404, "Not found.")
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        length = headers.get(b"content-length")
        has_body = length not in (None, b"0") or b"transfer-encoding" in headers
        if path == UPLOAD_ROUTE or not has_body:
            return await self.app(scope, receive, send)
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return await _answer(scope, receive, send, 413, self._too_large(scope))
        body = await self._read_body(receive)
        if body is None:
            return await _answer(scope, receive, send, 413, self._too_large(scope))
        if body is False:
            return None            # the client went away
        return await self.app(scope, _replay(body, receive), send)

    def _too_large(self, scope) -> str:
        client = (scope.get("client") or ("?",))[0]
        log.warning("refused a request body over %d bytes from %s to %s", self.max_body_bytes, client, scope["path"])
        return f"The request is too large: at most {self.max_body_bytes / 2**20:.1f} MB (upload files instead)."

    async def _read_body(self, receive):
        """The whole body (at most the limit): None if it runs past the limit, False on a disconnect.

        Read here, not by the route, so that a body streamed without a length is counted as it comes."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive):
    """A receive() that hands the route the body read already, then the client's later messages
    (a streaming response waits on receive() to learn of a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed():
        return pending.pop() if pending else await receive()
    return replayed


async def _answer(scope, receive, send, status: int, detail: str) -> None:
    """A JSON answer like FastAPI's own errors; the connection is closed, so an unread body is dropped."""
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})
    await response(scope, receive, send)


async def _unknown_endpoint(request, exc):
    if isinstance(exc, FnIndexInferError) or ENDPOINT_ROUTES.match(request.url.path):
        return JSONResponse({"detail": "No such endpoint."}, status_code=404)
    log.error("error on %s", request.url.path, exc_info=exc)
    return JSONResponse({"detail": "Internal server error."}, status_code=500)


async def _unreadable_body(request, exc):
    return JSONResponse({"detail": "The request's body is not what this route takes."}, status_code=422)


# KeyError: Gradio looks up an unknown fn_index or api_name with [] in the routes above.
EXCEPTION_HANDLERS = {FnIndexInferError: _unknown_endpoint, KeyError: _unknown_endpoint,
                      RequestValidationError: _unreadable_body}


def app_kwargs(max_upload_mb: float, kiosk: bool) -> dict:
    """launch(app_kwargs=...): the guard goes in front of every route of the app Gradio makes."""
    closed = KIOSK_CLOSED_ROUTES if kiosk else frozenset()
    return {"middleware": [Middleware(RequestGuard, max_body_bytes=body_limit_bytes(max_upload_mb),
                                      closed_routes=closed)],
            "exception_handlers": dict(EXCEPTION_HANDLERS)}


class CheckedBlocks(gr.Blocks):
    """gr.Blocks that checks inputs before Gradio preprocesses them (see the module's docstring)."""

    async def preprocess_data(self, block_fn, inputs, *args, **kwargs):
        _check_text_inputs(block_fn, inputs)
        _refuse_inline_files(block_fn, inputs)
        _keep_pictures_undecoded(block_fn, args[0] if args else kwargs.get("state"))
        try:
            return await super().preprocess_data(block_fn, inputs, *args, **kwargs)
        except gr.Error:
            raise
        except (ValidationError, ComponentProcessingError, ValueError, TypeError, OSError) as e:
            # Gradio's message echoes the input and names server paths and Python objects: log it only.
            log.info("inputs refused for %s: %s", block_fn.api_name or block_fn.name, str(e).splitlines()[0])
            raise gr.Error(f"These inputs do not fit this endpoint; it takes: {_kinds(block_fn)}.",
                           print_exception=False) from None


def _keep_pictures_undecoded(block_fn, state) -> None:
    """A picture input (widgets.picture_input) hands its handler the upload's path, undecoded. After
    an update Gradio answers a session from a new instance of the component, made from its
    constructor's arguments: it gets the same preprocess here, before Gradio uses it."""
    if state is None:
        return
    for block in block_fn.inputs:
        undecoded = getattr(block, "undecoded_preprocess", None)
        if undecoded is not None and block._id in state and state[block._id] is not block:
            state[block._id].preprocess = undecoded


def _check_text_inputs(block_fn, inputs) -> None:
    props = set(getattr(block_fn, "component_prop_inputs", None) or ())
    for i, (block, value) in enumerate(zip(block_fn.inputs, inputs)):
        if isinstance(block, gr.Textbox) and i not in props and value is not None and not isinstance(value, str):
            raise gr.Error(f"Input {i + 1} ({block.label or 'text'}) takes text, not {type(value).__name__}.",
                           print_exception=False)


def _refuse_inline_files(block_fn, inputs) -> None:
    """A picture sent inline as a data: URI is refused: Gradio would decode it in full and re-encode
    it before our loader could check its pixels (an upload is only ever read by the loader), and
    the browser never sends one (webcam and clipboard pictures are uploaded as files)."""
    for i, value in enumerate(inputs):
        if _holds_data_uri(value):
            raise gr.Error(f"Input {i + 1}: send pictures and files as uploads, not inline as data: URIs.",
                           print_exception=False)


def _holds_data_uri(value, depth: int = 0) -> bool:
    if isinstance(value, dict):
        url = value.get("url")
        if isinstance(url, str) and url.lstrip()[:5].lower() == "data:":
            return True
        value = list(value.values())
    return isinstance(value, list) and depth < 8 and any(_holds_data_uri(v, depth + 1) for v in value)


def _kinds(block_fn) -> str:
    return ", ".join(type(block).__name__.lower() for block in block_fn.inputs if not block.stateful) or "nothing"
