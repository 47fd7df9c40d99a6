"""`motionlib serve`: the library in a browser (needs the `serve` extra). Heavy imports stay inside the command."""

from __future__ import annotations

import ipaddress
from typing import Optional

import typer

from .core import UserError, app, err, printable, state, warn

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. Other than 127.0.0.1/localhost, anyone "
                                                         "who can reach this machine can browse the library."),
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    allow_render: bool = typer.Option(False, "--allow-render", help="Allow changes: render with stored motions "
                                      "(one at a time, queued) and edit names and tags. Without it the app is read-only."),
    max_upload_mb: float = typer.Option(50.0, "--max-upload-mb", help="Largest clip accepted by search uploads."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model that reads uploaded clips (default: as "
                                        "`motionlib search`: that of the stored motions, else the default model)."),
):
    """Browse, search and render the motion library in a web browser (offline; http://127.0.0.1:8765)."""
    try:
        import uvicorn

        from motionlib.web import Settings, create_app
    except ImportError as e:
        raise UserError(f"`motionlib serve` needs the serve extra ({e.name} is missing): "
                        "pip install 'motionlib[serve]'") from None
    if not 0 < port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {port}")
    if not max_upload_mb > 0:
        raise UserError(f"--max-upload-mb must be > 0, got {max_upload_mb}")
    local = is_loopback(host)
    if not local:
        warn(f"binding {host}: every machine that can reach it can browse this "
             f"library{' and render on this machine' if allow_render else ''}. Use --host 127.0.0.1 to keep it local.")
    settings = Settings(allow_render=allow_render, max_upload_bytes=int(max_upload_mb * 2**20), search_model=model,
                        device=state.device,
                        allowed_hosts=[*LOOPBACK_NAMES, "[::1]", host] if local else None)
    web = create_app(state.library(), settings)
    shown = f"[{host}]" if ":" in host else host
    err.print(printable(f"motionlib: serving {state.library().home} at http://{shown}:{port} "
                        f"({'renders and edits allowed' if allow_render else 'read-only'}; Ctrl+C stops)"), highlight=False)
    uvicorn.run(web, host=host, port=port, log_level="warning")
