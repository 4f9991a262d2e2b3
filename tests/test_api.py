"""Issue 17: the public API (/predict, /predict_text, /similar_works, /browse) and its MCP tools.

One app on a free port with the tiny models of test_app.py; a gallery of three works made here.
"""

import ast
import json
import math

import httpx
import pytest
from bad_images import png_claiming_size
from conftest import make_image
from gradio_client import Client, handle_file
from PIL import Image
from test_app import free_port, weights  # noqa: F401 - `weights` is a fixture: the tiny image and text models

from artlab import answers
from artlab.labels import STYLES, SUBJECTS

jsonschema = pytest.importorskip("jsonschema")
PUBLIC = {"predict", "predict_text", "similar_works", "browse"}


@pytest.fixture(scope="module")
def api(weights, tmp_path_factory):  # noqa: F811
    from artlab.lab import Lab
    from artlab.ui.context import AppContext
    from artlab.ui.server import serve

    folder = tmp_path_factory.mktemp("api")
    ctx = AppContext(Lab(weights=str(weights), gallery_dir=str(folder / "gallery"), device="cpu",
                         models_dir=str(folder / "models")), max_upload_mb=1)
    for i, color in enumerate([(30, 90, 160), (200, 30, 30), (40, 160, 60)]):
        picture = make_image(folder / f"work{i}.png", color, size=(96, 64), pattern=i)
        ctx.lab.add(picture.read_bytes(), title=f"Work {i}")
    port = free_port()
    demo = serve(ctx, "127.0.0.1", port, block=False)
    url = f"http://127.0.0.1:{port}/"
    yield ctx, url, Client(url, verbose=False)
    demo.close()


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """Close to the gallery's first work, so it has similar works; not the same bytes."""
    path = make_image(tmp_path_factory.mktemp("pics") / "harbour.png", (30, 90, 160), size=(96, 64))
    image = Image.open(path).convert("RGB")
    image.paste((255, 255, 255), (5, 5, 8, 8))
    image.save(path)
    return path


def assert_ranked(pairs, ids):
    """Every class once, as [id, probability], best first, summing to 1 (up to the 4-digit rounding)."""
    assert sorted(name for name, _ in pairs) == sorted(ids)
    probabilities = [p for _, p in pairs]
    assert probabilities == sorted(probabilities, reverse=True)
    assert math.isclose(sum(probabilities), 1.0, abs_tol=5e-4 * len(ids))


def assert_in_gallery(ctx, similar):
    assert similar and all(ctx.lab.gallery().get(entry["id"]) is not None for entry in similar)


def test_predict_answers_every_class_best_first_psnr_similar_and_model(api, picture):
    ctx, _, client = api
    answer = client.predict(handle_file(str(picture)), api_name="/predict")
    jsonschema.validate(answer, answers.PICTURE_SCHEMA)
    assert_ranked(answer["style"], STYLES)
    assert_ranked(answer["subject"], SUBJECTS)
    assert isinstance(answer["psnr"], float) and math.isfinite(answer["psnr"])
    assert_in_gallery(ctx, answer["similar"])
    assert answer["similar"][0]["title"] == "Work 0"
    assert answer["model"] == {"name": "art_classifier", "sha256": ctx.lab.models().model_id}


def test_cli_predict_json_and_the_api_agree(api, picture, weights, capsys):  # noqa: F811
    from artlab.cli import main

    _, _, client = api
    main(["predict", "--json", "--weights", str(weights), "--device", "cpu", str(picture)])
    line = json.loads(capsys.readouterr().out.strip())
    answer = client.predict(handle_file(str(picture)), api_name="/predict")
    assert line.pop("path") == str(picture)
    assert line == {key: value for key, value in answer.items() if key not in ("similar", "model")}


def test_predict_text_answers_every_class_reconstruction_and_similar(api):
    ctx, _, client = api
    answer = client.predict("river mountain at dusk", api_name="/predict_text")
    jsonschema.validate(answer, answers.TEXT_SCHEMA)
    assert_ranked(answer["subject"], SUBJECTS)
    assert_ranked(answer["style"], STYLES)
    assert answer["text"] == "river mountain at dusk" and isinstance(answer["reconstruction"], str)
    assert_in_gallery(ctx, answer["similar"])
    assert answer["model"]["name"] == "text_classifier"


def test_browse_and_similar_works_name_gallery_works_by_id(api):
    ctx, _, client = api
    listing = client.predict(query="work", limit=2, api_name="/browse")
    jsonschema.validate(listing, answers.BROWSE_SCHEMA)
    assert listing["total"] == 3 and len(listing["works"]) == 2 and listing["awaiting_refresh"] == 0
    first = listing["works"][0]
    style_only = client.predict(style=first["style"], api_name="/browse")["works"]
    assert style_only and all(work["style"] == first["style"] for work in style_only)
    neighbours = client.predict(first["id"], 2, api_name="/similar_works")
    jsonschema.validate(neighbours, answers.NEIGHBOURS_SCHEMA)
    assert neighbours["work"] == first and len(neighbours["similar"]) == 2
    assert first["id"] not in {entry["id"] for entry in neighbours["similar"]}
    assert_in_gallery(ctx, neighbours["similar"])


def test_errors_carry_the_clis_reason_and_no_server_path(api, tmp_path):
    _, _, client = api
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("these are not pixels")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming_size(10_000, 10_000))
    cases = [((handle_file(str(not_an_image)),), "/predict", "upload: not an image, or a format we cannot read"),
             ((handle_file(str(bomb)),), "/predict", "upload: 10000x10000 is 100 megapixels"),
             (("   ",), "/predict_text", "empty text: type a title or a description"),
             ((999,), "/similar_works", "There is no work #999 in the gallery."),
             (("cubism",), "/browse", "style 'cubism' is not one of ArtLab's ids")]
    for inputs, endpoint, reason in cases:
        with pytest.raises(Exception) as refused:
            client.predict(*inputs, api_name=endpoint)
        message = str(refused.value)
        assert reason in message, (endpoint, message)
        assert str(tmp_path) not in message and "/tmp" not in message and "gradio" not in message.lower()


def test_a_named_server_path_is_not_read(api):
    _, url, _ = api
    with httpx.Client(timeout=30) as http:
        queued = http.post(f"{url}gradio_api/call/predict",
                           json={"data": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}]})
        events = http.get(f"{url}gradio_api/call/predict/{queued.json()['event_id']}").text
    assert "event: error" in events and "root:" not in events and "/etc/passwd" not in events


def test_the_api_page_lists_the_contract_only_each_described_with_an_example(api):
    _, url, _ = api
    info = httpx.get(f"{url}gradio_api/info", timeout=10).json()
    assert set(info["named_endpoints"]) == {f"/{name}" for name in PUBLIC}
    for name, endpoint in info["named_endpoints"].items():
        assert "e.g." in endpoint["description"] and "partial(" not in endpoint["description"], name
        assert endpoint["returns"][0]["type"]["type"] == "object", name     # the answer's schema
    assert info["unnamed_endpoints"] == {}


def test_mcp_schema_lists_four_tools_an_assistant_can_act_on(api):
    _, url, _ = api
    tools = {tool["name"]: tool for tool in httpx.get(f"{url}gradio_api/mcp/schema", timeout=10).json()}
    assert set(tools) == PUBLIC
    for name, tool in tools.items():
        assert len(tool["description"]) > 150 and "partial(" not in tool["description"], name
        properties = tool["inputSchema"]["properties"]
        assert properties and all(len(p.get("description", "")) > 10 for p in properties.values()), name
    assert tools["predict"]["inputSchema"]["required"] == ["image"]
    assert "impressionism" in tools["browse"]["inputSchema"]["properties"]["style"]["description"]


def test_mcp_is_on_outside_the_kiosk_only(tiny_weights, tmp_path):
    from artlab.lab import Lab
    from artlab.ui.context import AppContext
    from artlab.ui.server import launch_options

    for kiosk in (False, True):
        ctx = AppContext(Lab(weights=str(tiny_weights), gallery_dir=str(tmp_path / "g")), kiosk=kiosk)
        assert launch_options(ctx, "127.0.0.1", 7860)["mcp_server"] is not kiosk


def call_tool(url: str, name: str, arguments: dict) -> dict:
    """One MCP tools/call over the streamable HTTP transport (stateless: no session to open)."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    reply = httpx.post(f"{url}gradio_api/mcp/", headers=headers, json=body, timeout=60)
    data = next(line for line in reply.text.splitlines() if line.startswith("data: "))
    return json.loads(data[len("data: "):])["result"]


def test_mcp_tools_answer_and_refuse_as_the_api_does(api):
    _, url, client = api
    result = call_tool(url, "browse", {"query": "work", "limit": 1})
    assert not result["isError"]
    assert ast.literal_eval(result["content"][0]["text"]) == client.predict(query="work", limit=1, api_name="/browse")
    refused = call_tool(url, "predict_text", {"text": "  "})
    assert refused["isError"] and refused["content"][0]["text"] == "empty text: type a title or a description"


def test_an_active_fine_tuned_model_answers_with_its_labels_head_as_the_cli_does(api, picture, capsys):
    """A curator's model with only its own classes (the shape a deeper fine-tune has), made by hand."""
    import torch

    from artlab.checkpoints import save_checkpoint
    from artlab.cli import main
    from artlab.labels import CUSTOM_HEAD
    from artlab.models.classifier import ArtClassifier
    from artlab.store.registry import Registry

    ctx, _, client = api
    registry = Registry(ctx.lab.models_dir)
    folder = registry.next_path("colours")
    torch.manual_seed(1)
    save_checkpoint(ArtClassifier({CUSTOM_HEAD: 2}).eval(), folder / "art_classifier", {
        "name": "art_classifier", "config": {"texture": True, "embed_dim": 512}, "input_size": 64,
        "labels": {CUSTOM_HEAD: ["red", "blue"]}, "training": {"depth": "1"}}, dtype=torch.float32)
    registry.activate("colours/v1")
    try:
        answer = client.predict(handle_file(str(picture)), api_name="/predict")
    finally:
        registry.deactivate()
    jsonschema.validate(answer, answers.PICTURE_SCHEMA)
    assert_ranked(answer["labels"], ["red", "blue"])
    assert "style" not in answer and "subject" not in answer
    assert answer["model"]["name"] == "colours/v1"
    assert_in_gallery(ctx, answer["similar"])          # found with the app's model's embeddings
    main(["predict", "--json", "--weights", str(folder), "--device", "cpu", str(picture)])
    line = json.loads(capsys.readouterr().out.strip())
    assert line["labels"] == answer["labels"]
