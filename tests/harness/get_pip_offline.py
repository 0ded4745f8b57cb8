"""Stand-in for ansible-test's get-pip bootstrap script, whose download site is not reachable here.

ansible-test documents saving that script to ~/.ansible/test/cache/get_pip_<version>.py by hand.
This one bootstraps pip with ensurepip, then installs the requested pip from the configured index.
"""

from __future__ import annotations

import subprocess
import sys


def main() -> None:
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
    args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
    subprocess.check_call([sys.executable, "-m", "pip", "install", *args])


if __name__ == "__main__":
    main()
