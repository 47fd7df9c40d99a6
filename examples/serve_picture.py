"""Draw docs/serve.png: the `motionlib serve` gallery as Chromium shows it.

    python examples/serve_picture.py HOME [-o docs/serve.png]

HOME is a motion library (e.g. the quick start's: learn a few example clips on the `shapes` model,
`motionlib learn examples/shapes_left.mp4 --name left --tag demo`, ...). The library is served on a
free loopback port, read-only, and Debian's `chromium --headless --screenshot` takes the picture.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("home", type=Path, help="library folder")
    ap.add_argument("-o", "--output", type=Path, default=HERE.parent / "docs" / "serve.png")
    ap.add_argument("--path", default="/", help="page to show (default: the gallery)")
    ap.add_argument("--size", default="1280,720", help="window width,height")
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        ap.error("no chromium on PATH (Debian: apt-get install chromium)")
    if not (args.home / "motionlib.db").is_file():
        ap.error(f"{args.home} holds no motion library")

    from motionlib.store import Library
    from motionlib.web import Settings, create_app, serve_in_thread

    url, stop = serve_in_thread(create_app(Library(args.home), Settings()))
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={args.size}", "--virtual-time-budget=5000",
                        f"--screenshot={args.output.resolve()}", url + args.path],
                       check=True, capture_output=True, timeout=120)
    finally:
        stop()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
