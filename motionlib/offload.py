"""Where a model's components live: on the device, or on the CPU until used (see ``motionlib.memory``).

``place`` puts a freshly loaded model (everything on the CPU) where its offload level wants it;
``Model.on_device`` then moves components as they are used. Sequential offload streams the
transformer's blocks: each call of a block runs on device copies of its weights made for that call
(``torch.func.functional_call``), so autograd keeps the copies it needs for backward and frees
them with the graph; the CPU weights never move.
"""

from __future__ import annotations

import itertools

import torch

from .memory import blocks_of


def is_on(module: torch.nn.Module, device: torch.device) -> bool:
    """Whether `module`'s first parameter is on `device` (True for a module without parameters)."""
    first = next(module.parameters(), None)
    if first is None:
        return True
    return first.device.type == device.type and (device.index is None or first.device.index in (None, device.index))


def _streamed(block: torch.nn.Module, device: torch.device):
    forward = block.forward
    inside = [False]

    def run(*args, **kwargs):
        if inside[0]:  # functional_call calls the module again: run the real forward
            return forward(*args, **kwargs)
        tensors = {n: t.to(device, non_blocking=True)
                   for n, t in itertools.chain(block.named_parameters(), block.named_buffers())}
        inside[0] = True
        try:
            return torch.func.functional_call(block, tensors, args, kwargs)
        finally:
            inside[0] = False

    return run


def stream_blocks(transformer: torch.nn.Module, device: torch.device) -> None:
    """Sequential offload: the transformer's blocks stay on the CPU and run on the device; the rest of
    it (embeddings, final norm and projection: a few percent) lives on the device."""
    blocks = blocks_of(transformer)
    if blocks is None:
        raise ValueError(f"{type(transformer).__name__} has no list of blocks to stream")
    for child in transformer.children():
        if child is not blocks:
            child.to(device)
    for t in itertools.chain(transformer.parameters(recurse=False), transformer.buffers(recurse=False)):
        t.data = t.data.to(device)
    for block in blocks:
        if device.type == "cuda":
            for t in itertools.chain(block.parameters(), block.buffers()):
                t.data = t.data.pin_memory()  # faster, asynchronous copies to the GPU
        block.forward = _streamed(block, device)


def align_tiles(vae, compression: int) -> None:
    """Make a tiled VAE step its tiles by a whole number of latent pixels.

    diffusers' CogVideoX VAE steps tiles by ``tile * (1 - overlap)`` pixels and keeps
    ``tile_latent - int(tile_latent * overlap)`` latent pixels of each; unless that stride is a multiple of
    the compression, the tiles' latents misalign and the latent comes out a row or column too large (the
    tiny presets' 32-px tiles: issue 25). Each misaligned stride is rounded down to a multiple of the
    compression; aligned ones (the real models') are left as they are."""
    for axis in ("height", "width"):
        overlap = getattr(vae, f"tile_overlap_factor_{axis}", None)
        tile = getattr(vae, f"tile_sample_min_{axis}", None)
        if overlap is None or not tile or tile % compression:
            continue
        if _tiles_aligned(tile, overlap, compression):
            continue
        latent = tile // compression
        keep = max(1, int(tile * (1 - overlap)) // compression)  # latent pixels kept per tile
        f = (latent - keep) / latent
        if _tiles_aligned(tile, f, compression):
            setattr(vae, f"tile_overlap_factor_{axis}", f)


def _tiles_aligned(tile: int, overlap: float, compression: int) -> bool:
    """Whether CogVideoX's tiled VAE, with tiles of `tile` pixels overlapping by `overlap`, steps by a whole
    number of latent pixels and keeps exactly that many of each tile's latent."""
    stride = int(tile * (1 - overlap))
    latent = tile // compression
    return stride % compression == 0 and int(latent * overlap) == latent - stride // compression


def place(model, vae_tiling: bool | None = None) -> None:
    """Move a CPU-loaded model's components to where its offload level keeps them between uses, and
    switch VAE tiling and slicing on or off (None: leave them)."""
    if vae_tiling is not None and hasattr(model.vae, "enable_tiling"):
        model.vae.enable_tiling() if vae_tiling else model.vae.disable_tiling()
        model.vae.enable_slicing() if vae_tiling else model.vae.disable_slicing()
        if vae_tiling:
            align_tiles(model.vae, model.spec.spatial_compression)
    level, device = model.offload, model.device
    if level == "none":
        for m in (model.text_encoder, model.vae, model.transformer):
            m.to(device)
        if getattr(model, "image_encoder", None) is not None:  # else the adapter brings it for its one pass
            model.image_encoder.to(device)
    elif level == "text":
        model.vae.to(device)
        model.transformer.to(device)
    elif level == "sequential":
        stream_blocks(model.transformer, device)
    elif level != "model":
        raise ValueError(f"unknown offload level {level!r}")


def unplace(model) -> None:
    """Undo ``place``: every component back on the CPU, the transformer's blocks no longer streamed."""
    for block in blocks_of(model.transformer) or ():
        block.__dict__.pop("forward", None)  # the instance attribute stream_blocks set
    for name in model.COMPONENTS:
        getattr(model, name).to("cpu")
        model.placement[name] = "cpu"
    if getattr(model, "image_encoder", None) is not None:
        model.image_encoder.to("cpu")
    if model.device.type == "cuda":
        torch.cuda.empty_cache()
