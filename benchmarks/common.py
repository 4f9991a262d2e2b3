"""What every benchmark script shares: where it writes its figures, and which machine made them."""

import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The CPU features that decide ArtLab's speed: AVX2 (every x86 CPU of the last decade), AVX-512,
# native bf16 (AVX512-BF16, AMX), and the int8 dot products (VNNI).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx", "avx512_vnni")


def cpu_info() -> dict:
    """The CPU's model name, usable cores and the flags above, from /proc/cpuinfo (Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    present = {name: name in flags for name in CPU_FLAGS}
    present["amx"] = any(flag.startswith("amx") for flag in flags)
    return {"cpu": model, "cores": cores, "flags": present}


def engine_info(device: str = "cpu") -> dict:
    """The engine and precision ArtLab's image models run in on `device` under the current settings."""
    from artlab.inference.engine import engine_for

    engine = engine_for(device)
    if engine == "onnx":
        precision = "fp32"
    else:
        import torch

        from artlab.device import inference_dtype

        precision = {"float32": "fp32", "bfloat16": "bf16"}.get(
            str(inference_dtype(torch.device(device))).removeprefix("torch."), "?")
    return {"engine": engine, "precision": precision,
            "settings": {k: os.environ[k] for k in ("ARTLAB_ENGINE", "ARTLAB_PRECISION") if os.environ.get(k)}}


def machine(device: str = "cpu") -> dict:
    """cpu_info and engine_info together, printed as one line (and kept in the benchmark's JSON)."""
    info = {**cpu_info(), **engine_info(device)}
    flags = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in info["flags"].items())
    settings = " ".join(f"{k}={v}" for k, v in info["settings"].items()) or "no ARTLAB_ENGINE/PRECISION set"
    print(f"machine: {info['cpu']}, {info['cores']} cores; {flags}; "
          f"image models: {info['engine']} engine, {info['precision']} ({settings})", flush=True)
    return info


def write_json(result: dict, path: Path) -> None:
    """Write a benchmark's figures as JSON (creating the folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
