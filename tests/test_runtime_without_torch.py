"""The runtime path (encode images and texts) imports numpy, PIL and onnxruntime, never torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_encoding_does_not_import_torch(tiny_export: Path, bundled_export: Path, photos: list) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from edgecl.encoder import Encoder
        for model in ({str(tiny_export)!r}, {str(bundled_export)!r}):
            enc = Encoder(model)
            img = enc.encode_images([{str(photos[0])!r}, {str(photos[1])!r}])
            txt = enc.encode_labels(["cat", "rocket"])
            assert img.shape == (2, enc.embed_dim) and txt.shape == (2, enc.embed_dim), (img.shape, txt.shape)
        heavy = sorted(m for m in ("torch", "open_clip", "transformers", "timm") if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
