import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PERFCAST = str(Path(sys.executable).parent / "perfcast")
# the public measurements: ../shared/data beside the repository, or PERFCAST_SHARED_DATA
SHARED_DATA = Path(os.environ.get("PERFCAST_SHARED_DATA", ROOT.parent / "shared" / "data"))



def load_script(name: str):
    """The module of ``scripts/<name>.py`` (the scripts are no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

@pytest.fixture
def run_cli():
    """Run the installed ``perfcast`` command in a subprocess: (exit code, stdout, stderr)."""
    import subprocess

    def run(*args: str, timeout: float = 120):
        env = dict(os.environ)
        env.pop("PERFCAST_DEBUG", None)
        p = subprocess.run([PERFCAST, *args], capture_output=True, text=True, timeout=timeout, env=env)
        return p.returncode, p.stdout, p.stderr

    return run
