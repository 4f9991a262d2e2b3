"""Issue 17: the repository deploys as a Hugging Face Space as it is.

The README's front matter is checked against the Spaces configuration reference
(https://huggingface.co/docs/hub/spaces-config-reference, as of December 2026): only keys it
lists, each of its type, colours and hardware flavours from its lists. Reads files only.
"""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parents[1]

# key -> its type in the reference ("string", "int", "boolean", "List[string]", "Dict[string, string]").
REFERENCE = {
    "title": str, "emoji": str, "colorFrom": str, "colorTo": str, "sdk": str, "python_version": str,
    "sdk_version": str, "suggested_hardware": str, "suggested_storage": str, "app_file": str, "app_port": int,
    "app_build_command": str, "base_path": str, "fullWidth": bool, "header": str, "short_description": str,
    "models": list, "datasets": list, "tags": list, "thumbnail": str, "pinned": bool, "hf_oauth": bool,
    "hf_oauth_scopes": list, "hf_oauth_expiration_minutes": int, "hf_oauth_authorized_org": (str, list),
    "disable_embedding": bool, "startup_duration_timeout": str, "custom_headers": dict,
    "preload_from_hub": list,
    "license": str,     # not in the reference's list: the metadata field every Hub repository card takes
}
COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
SDKS = {"gradio", "docker", "static"}
HARDWARE = {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4", "l40sx8",
            "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large", "a100x4", "a100x8"}
SHORT_DESCRIPTION_MAX = 60      # the Hub refuses a longer one


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with a --- front matter block ---"
    return yaml.safe_load(match.group(1))


def test_front_matter_uses_only_the_references_keys_and_types():
    config = front_matter()
    assert set(config) <= set(REFERENCE), set(config) - set(REFERENCE)
    for key, value in config.items():
        assert isinstance(value, REFERENCE[key]) and not (REFERENCE[key] is int and isinstance(value, bool)), key
    for key in ("models", "datasets", "tags", "hf_oauth_scopes", "preload_from_hub"):
        assert all(isinstance(item, str) for item in config.get(key, [])), key


def test_front_matter_values_are_ones_the_hub_accepts():
    config = front_matter()
    assert config["sdk"] in SDKS and config["colorFrom"] in COLOURS and config["colorTo"] in COLOURS
    assert config["suggested_hardware"] in HARDWARE
    assert re.fullmatch(r"3\.\d+(\.\d+)?", config["python_version"])     # a string: unquoted 3.10 reads as 3.1
    assert (ROOT / config["app_file"]).is_file()
    assert 0 < len(config["short_description"]) <= SHORT_DESCRIPTION_MAX
    assert config["tags"] and all(re.fullmatch(r"[a-z0-9][a-z0-9-]*", tag) for tag in config["tags"])


def test_sdk_version_is_the_gradio_floor_of_requirements():
    line = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("gradio"))
    gradio = Requirement(line)
    assert "mcp" in gradio.extras
    floor = next(Version(spec.version) for spec in gradio.specifier if spec.operator == ">=")
    assert floor >= Version("6.31")                                    # run history, State storage
    sdk_version = Version(front_matter()["sdk_version"])
    assert sdk_version == floor and gradio.specifier.contains(sdk_version)


def test_checkpoints_are_stored_with_lfs():
    rules = (ROOT / ".gitattributes").read_text().splitlines()
    assert "*.safetensors filter=lfs diff=lfs merge=lfs -text" in rules
    assert list((ROOT / "weights").rglob("*.safetensors"))


def test_readme_says_how_to_keep_data_across_restarts_and_why_not_zerogpu():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "ARTLAB_GALLERY=/data/gallery" in text and "ARTLAB_MODELS=/data/models" in text
    assert "ZeroGPU is not supported" in text
