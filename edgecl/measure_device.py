"""`edgecl profile`: latency, throughput and memory measured on this machine against a device profile's targets."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgecl.errors import BackboneUnavailableError
from edgecl.profiles import DeviceProfile

LATENCY_RUNS = 20
BATCH_RUNS = 5
TRAIN_SECONDS = 2.0


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000.0
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up: first runs allocate and pick kernels
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _model(profile: DeviceProfile, backbone: str | None, progress: Callable[[str], None]) -> tuple[Any, str]:
    """The profile's backbone, or the bundled one (with a note) when that cannot be obtained here."""
    from edgecl.model_dir import ensure_model

    wanted = backbone or profile.default_backbone
    try:
        return ensure_model(wanted, None, progress), ""
    except BackboneUnavailableError as exc:
        if backbone:
            raise
        return ensure_model("bundled", None, progress), f"{wanted} unavailable here ({exc}); measured bundled"


def gpu_memory() -> dict[str, Any]:
    """GPU memory through pynvml when an NVIDIA GPU and pynvml are present; Jetson tools when present."""
    out: dict[str, Any] = {"gpu": None, "jetson": None}
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        out["gpu"] = {"name": str(pynvml.nvmlDeviceGetName(handle)), "used_bytes": int(info.used),
                      "total_bytes": int(info.total)}  # fmt: skip
    except Exception:  # no pynvml, no driver or no GPU: reported as None
        pass
    if shutil.which("tegrastats"):
        line = subprocess.run(
            ["tegrastats", "--interval", "100"], capture_output=True, text=True, timeout=2, check=False
        )
        out["jetson"] = {"tegrastats": line.stdout.splitlines()[0] if line.stdout else ""}
    return out


def _train_steps_per_s(dim: int, profile: DeviceProfile) -> float:
    from edgecl.learn.adapters import AdapterConfig, lora_head
    from edgecl.learn.methods import DEFAULT_METHOD
    from edgecl.learn.trainer import TrainConfig, TrainSchedule, synthetic_data, train
    from edgecl.runtime import Runtime

    data = synthetic_data(profile.train_batch * 4, dim, 10)
    cfg = TrainConfig(method=DEFAULT_METHOD, schedule=TrainSchedule(epochs=1),
                      runtime=Runtime.from_profile(profile.to_dict()))  # the method a learn trains by default
    head = lora_head(dim, AdapterConfig(rank=profile.adapter_rank))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < TRAIN_SECONDS:
        steps += train(head, None, data, cfg).steps
    return steps / (time.perf_counter() - start)


def _memory_entries(dim: int, profile: DeviceProfile) -> dict[str, Any]:
    from edgecl.memory import MemoryConfig, ReplayMemory

    memory = ReplayMemory(MemoryConfig(profile.default_budget_bytes, "auto"), dim)
    rng = np.random.default_rng(0)
    memory.add(rng.standard_normal((10, dim)).astype(np.float32), [f"c{i}" for i in range(10)])
    stats = memory.stats()
    per = int(stats.bytes_per_sample)
    fits = (profile.default_budget_bytes - (stats.bytes - per * stats.samples)) // per
    return {"codec": stats.codec, "bytes_per_entry": per, "entries_in_default_budget": int(fits)}


def measured_on(gpu: Any) -> dict[str, Any]:
    """This machine, in the words a reader compares with the profile's device."""
    import platform

    from edgecl.model_dir import cpu_int8_isa

    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")),
                 platform.processor() or platform.machine())  # fmt: skip
    return {"machine": platform.machine(), "cpu": model, "int8_isa": cpu_int8_isa(), "cores": os.cpu_count(),
            "gpu": gpu.get("name") if isinstance(gpu, dict) else gpu}  # fmt: skip


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def verdicts_note(profile: DeviceProfile, host: dict[str, Any], provider: str, backbone: str) -> str:
    """What the PASS/FAIL lines mean: this machine, this backbone and provider, against the profile's targets."""
    default = profile.default_backbone
    return (f"measured on this machine ({host['machine']}, {host['cpu']}, int8_isa {host['int8_isa']}, "
            f"{host['cores']} cores, GPU {host['gpu'] or 'none'}) with {backbone} on {provider}, against the "
            f"{profile.name} profile's targets" + ("" if backbone == default else f" (set for {default})")
            + ": the verdicts are this machine's, not the device's unless you run this on it")  # fmt: skip


LEARN_TASK_IMAGES = 100  # the task a "learn images/s" figure is for: 100 photos, encoded and then trained on


def learn_rate(encode_per_s: float, train_steps_per_s: float, images: int = LEARN_TASK_IMAGES) -> float:
    """Images per second of a whole learn of `images` photos with the default schedule: encoding them, then the
    training steps such a task takes (TrainSchedule.steps_for), not the encoder's throughput alone."""
    from edgecl.learn.configs import TrainSchedule

    seconds = images / encode_per_s + TrainSchedule().steps_for(images) / train_steps_per_s
    return images / seconds


def run_profile(profile: DeviceProfile, backbone: str | None = None,
                progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:  # fmt: skip
    """Measure everything the profile has targets for; returns the report `edgecl profile --json` prints."""
    from edgecl.encoder import Encoder
    from edgecl.learn.merged import MergedHead

    manifest, note = _model(profile, backbone, progress)
    encoder = Encoder(manifest.root, providers=profile.providers, threads=profile.threads)
    size = encoder.preprocess_spec.size
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    batch = rng.standard_normal((profile.encode_batch, 3, size, size)).astype(np.float32)
    progress("measuring encoder latency")
    lat1 = _timed(lambda: encoder.encode_pixels(one), LATENCY_RUNS)
    latb = _timed(lambda: encoder.encode_pixels(batch, profile.encode_batch), BATCH_RUNS)
    progress("measuring classify end to end")
    prototypes = encoder.encode_labels([f"class {i}" for i in range(10)])
    head = MergedHead.identity(encoder.embed_dim)
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "one.jpg"
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(image)
        classify = _timed(lambda: np.argsort(-(head(encoder.encode_images([image])) @ prototypes.T)), LATENCY_RUNS)
    progress("measuring training")
    steps = _train_steps_per_s(encoder.embed_dim, profile)
    encode_per_s = profile.encode_batch / statistics.median(latb)
    images_per_s = learn_rate(encode_per_s, steps)
    rates = (encode_per_s, steps, images_per_s)
    report = _report(profile, manifest.backbone, note, encoder, (lat1, latb, classify), rates)
    report["measured_on"] = measured_on(report["gpu"])
    report["verdicts_note"] = verdicts_note(profile, report["measured_on"], report["provider_used"], manifest.backbone)
    report["checks"] = _checks(profile, report, images_per_s)
    return report


def _report(profile: DeviceProfile, backbone: str, note: str | None, encoder: Any,
            timings: tuple[list[float], list[float], list[float]],
            rates: tuple[float, float, float]) -> dict[str, Any]:  # fmt: skip
    """The measured figures of `edgecl profile --json`, before its verdicts. timings: the encoder's batch-1 and
    batch latencies and classify's end-to-end ones (seconds); rates: images encoded, training steps and images
    learned a second."""
    from edgecl.ram import peak_rss_bytes

    lat1, latb, classify = timings
    encode_per_s, steps, images_per_s = rates
    return {
        "device": profile.name, "backbone": backbone, "backbone_note": note,
        "providers_requested": list(profile.providers), "provider_used": encoder.providers_in_use[0],
        "threads": profile.threads,
        "encoder_batch1": _percentiles(lat1),
        "encoder_batch": {"batch": profile.encode_batch, **_percentiles(latb)},
        "classify": _percentiles(classify),
        "learn": {"images_per_s": round(images_per_s, 1),
                  "encode_images_per_s": round(encode_per_s, 1),
                  "train_steps_per_s": round(steps, 1), "train_batch": profile.train_batch,
                  "task_images": LEARN_TASK_IMAGES},
        "memory": _memory_entries(encoder.embed_dim, profile),
        **gpu_memory(),
        "peak_rss_bytes": peak_rss_bytes(),
        "ram_cap_bytes": profile.ram_cap_bytes,
        "cpu_count": os.cpu_count(),
    }  # fmt: skip


def _checks(profile: DeviceProfile, report: dict[str, Any], images_per_s: float) -> list[dict[str, Any]]:
    """The profile's targets against the measured report: classify p95, learn images/s (unrounded), peak RSS."""
    cls = report["classify"]
    return [
        {"name": "classify p95", "value": cls["p95_ms"], "target": f"<= {profile.classify_p95_ms} ms",
         "pass": cls["p95_ms"] <= profile.classify_p95_ms},
        {"name": "learn images/s", "value": report["learn"]["images_per_s"],
         "target": f">= {profile.learn_images_per_s}", "pass": images_per_s >= profile.learn_images_per_s},
        {"name": "peak RSS", "value": report["peak_rss_bytes"], "target": f"<= {profile.ram_cap}",
         "pass": report["peak_rss_bytes"] <= profile.ram_cap_bytes},
    ]  # fmt: skip
