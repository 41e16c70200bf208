"""The core must import and run with torch alone (issue: OpenMMLab/CuPy only where used)."""
import subprocess
import sys
import textwrap

BLOCKED = ("mmcv", "mmdet", "mmseg", "mmengine", "cupy", "cupyx")


def test_core_imports_and_runs_without_openmmlab_or_cupy():
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError(f"blocked for this test: {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        import torch
        import involution_ops
        from involution_ops import Involution, RedNet, involution

        x = torch.randn(1, 16, 9, 9)
        assert involution(x, torch.randn(1, 1, 3, 3, 9, 9), padding=1).shape == x.shape
        assert Involution(16, kernel_size=3, stride=2)(x).shape == (1, 16, 5, 5)
        outs = RedNet(26, out_indices=(0, 3)).eval()(torch.randn(1, 3, 64, 64))
        assert [o.shape[1] for o in outs] == [256, 2048]
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
        assert not loaded, loaded
        assert "involution_ops.bench" not in sys.modules  # the benchmark suite needs the mm extra
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
