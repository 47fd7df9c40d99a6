"""Train the shapes demo model on procedural clips (CPU-friendly, time-budgeted, resumable).

    python -m motionlib.demo.train --minutes 110 --threads 1 --out /work/demo_run
    python -m motionlib.demo.train --minutes 110 --threads 1 --out /work/demo_run --resume

Recipe: v-prediction on CogVideoX's zero-terminal-SNR DDIM schedule (the sampler's own
alphas_cumprod), adaLN-Zero initialisation, AdamW with linear warmup then a cosine decay driven by
the *time* budget (``--minutes`` is the total over all resumes), gradient clipping, an EMA of the
weights (what gets exported), 10% empty prompts for classifier-free guidance, timesteps drawn from a
uniform / logit-normal mixture (more weight on the mid-noise steps where shape and motion form).

Outputs under ``--out``: ``train.log``; ``checkpoints/step-NNNNNNN/{state.safetensors,state.json}``
(model, EMA, optimizer, step, RNG states; written atomically every ``--ckpt-minutes``; the newest two
are kept; ``checkpoints/latest`` names the newest); ``previews/step-NNNNNNN.png`` (EMA samples every
``--preview-minutes``); at the end ``shapes.safetensors`` (EMA weights, fp32) and ``card.json``.
``--i2v`` trains shapes-i2v instead (``motionlib.demo.shapes_i2v``; ``--init`` shapes weights are widened with zero
image channels): each clip's first frame conditions it, ``--image-drop-prob`` of the samples go without the image,
and the export is ``shapes-i2v.safetensors``.
``--resume`` goes on with the recipe stored in the checkpoint (flags given again override it, and the log says
so); one trainer at a time per ``--out`` (``.train.lock``; a second one is refused, naming the first's pid).

One file on purpose (over 400 lines): it is one script, run as ``python -m``, whose arguments, the
``Trainer``'s state (model, EMA, optimiser, RNG, CPU time) and the loop that checkpoints and resumes that
state are read together; the data and the model it trains live in ``data.py`` and ``model.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..fsutil import Busy, atomic_write, exclusive_lock, fsync_dir, fsync_file

CKPT_KEEP = 2
VAL_SEED = 424_242  # the validation clips and noise: fixed, whatever --seed and the data mix
VAL_TRAJECTORIES = ("linear", "arc", "zigzag", "speed_change", "static", "reversal", "l_turn")  # round robin
VAL_TEXTURED = 4  # every 4th validation clip has a textured background


def validation_clips(n: int) -> tuple[np.ndarray, list[str]]:
    """The trainer's fixed validation set: n clips cycling through VAL_TRAJECTORIES, seeded by VAL_SEED alone,
    so losses of runs with other seeds, data mixes or --textured-prob compare."""
    from .data import make_clip

    clips, prompts = [], []
    for i in range(n):
        frames, prompt, _ = make_clip(VAL_SEED + i, trajectory=VAL_TRAJECTORIES[i % len(VAL_TRAJECTORIES)],
                                      background="textured" if i % VAL_TEXTURED == VAL_TEXTURED - 1 else "black")
        clips.append(frames)
        prompts.append(prompt)
    return np.stack(clips), prompts


# --- helpers ---------------------------------------------------------------------------------------
class Logger:
    def __init__(self, path: Path):
        self.path = path

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def lr_at(step: int, frac: float, a) -> float:
    """Linear warmup over `a.warmup` steps, then cosine from `a.lr` to `a.lr * a.min_lr_ratio` over the
    time budget (frac = elapsed / budget)."""
    warm = min(1.0, (step + 1) / max(1, a.warmup))
    frac = min(max(frac, 0.0), 1.0)
    return a.lr * warm * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def step_seconds(wall: float, typical: float, paused: dict) -> float:
    """The seconds a step counts against the time budget: its wall time, or, when the process was
    stopped and continued meanwhile (``paused["flag"]``, set on SIGCONT), no more than a typical step."""
    if paused["flag"]:
        paused["flag"] = False
        return min(wall, typical) if typical > 0 else 0.0
    return wall


def sample_timesteps(n: int, gen: torch.Generator, mode: str, num_train: int = 1000) -> torch.Tensor:
    u = torch.rand(n, generator=gen)
    if mode in ("logitnormal", "mix"):
        ln = torch.sigmoid(torch.randn(n, generator=gen))
        u = ln if mode == "logitnormal" else torch.where(torch.rand(n, generator=gen) < 0.5, u, ln)
    return (u * num_train).long().clamp(0, num_train - 1)


def image_latents(z0: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """shapes-i2v's image condition for clips with latents `z0` [B, F, C, h, w]: each clip's first latent frame
    (its first frame through the per-frame codec, what ``image_condition`` encodes from the image) followed by
    zero frames, as CogVideoXImageToVideoPipeline pads it; all zeros where `keep` [B] is False (no image)."""
    out = torch.zeros_like(z0)
    out[:, :1] = z0[:, :1] * keep.to(z0.dtype).view(-1, 1, 1, 1, 1)
    return out


# --- checkpoints (safetensors for tensors, JSON for the rest: no pickles) --------------------------
def save_checkpoint(out: Path, state: dict, tensors: dict[str, torch.Tensor], log=None) -> Path:
    from safetensors.torch import save_file

    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state['step']:07d}"
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / "state.safetensors"),
              metadata={"step": str(state["step"])})
    with open(tmp / "state.json", "w") as f:
        json.dump(state, f, indent=1)
    for part in ("state.json", "state.safetensors"):
        fsync_file(tmp / part)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)
    atomic_write(root / "latest", name + "\n")
    old = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name != name)
    for p in old[:max(0, len(old) - (CKPT_KEEP - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    if log:
        log(f"checkpoint {final}")
    return final


def latest_checkpoint(out: Path) -> Path | None:
    root = out / "checkpoints"
    pointer = root / "latest"
    if pointer.is_file():
        cand = root / pointer.read_text().strip()
        if (cand / "state.json").is_file() and (cand / "state.safetensors").is_file():
            return cand
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").is_file() and (p / "state.safetensors").is_file())
    return done[-1] if done else None


def load_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    state = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    return state, tensors


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return tensors, sd["param_groups"]


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": groups})


def np_rng_state(rng: np.random.Generator) -> dict:
    return dict(rng.bit_generator.state)


def set_np_rng_state(rng: np.random.Generator, st: dict) -> None:
    rng.bit_generator.state = st


# --- training --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m motionlib.demo.train", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--minutes", type=float, default=110.0, help="total time budget (over all resumes)")
    ap.add_argument("--resume", action="store_true",
                    help="continue from <out>/checkpoints/latest if any, with that run's recipe (the flags it "
                         "started with; flags given again here override them, and the log names each one)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave as is)")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    ap.add_argument("--min-lr-ratio", type=float, default=0.05, help="final lr = lr * this")
    ap.add_argument("--warmup", type=int, default=150, help="warmup steps")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--ema-decay", type=float, default=0.999, help="max EMA decay (ramped: (1+s)/(10+s))")
    ap.add_argument("--uncond-prob", type=float, default=0.1, help="share of empty prompts (for CFG)")
    ap.add_argument("--timesteps", choices=("uniform", "logitnormal", "mix"), default="mix")
    ap.add_argument("--textured-prob", type=float, default=0.25)
    ap.add_argument("--log-every", type=int, default=25, help="steps between log lines")
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (tests)")
    ap.add_argument("--val-size", type=int, default=56,
                    help="validation clips (0: none); the same clips whatever --seed or the data mix")
    ap.add_argument("--preview-minutes", type=float, default=15.0,
                    help="minutes between EMA sample sheets (at checkpoints; 0: none until the end)")
    ap.add_argument("--no-preview", action="store_true", help="no EMA sample sheets at all")
    ap.add_argument("--init", type=Path, default=None, help="start from these shapes.safetensors weights")
    ap.add_argument("--i2v", action="store_true",
                    help="train shapes-i2v (motionlib.demo.shapes_i2v): each clip's first frame is the image "
                         "condition; --init may be shapes weights (widened, the image channels zero) or shapes-i2v ones")
    ap.add_argument("--image-drop-prob", type=float, default=0.15,
                    help="with --i2v: share of samples trained without the image (zero latents), as CogVideoX-I2V")
    ap.add_argument("--val-only", action="store_true",
                    help="print the validation loss of --init's weights on the fixed validation set and exit "
                         "(the training history's comparable number)")
    return ap


#: flags that describe where and how fast a run trains, not what it learns: a resume takes them as given now
OPERATIONAL = frozenset({"out", "resume", "threads", "device", "log_every", "ckpt_minutes", "max_steps",
                         "preview_minutes", "no_preview", "val_only"})


def parse_args(argv=None):
    return _parser().parse_args(argv)


def explicit_flags(argv=None) -> set[str]:
    """The destinations of the flags actually written on the command line (not argparse's defaults)."""
    ap = _parser()
    for action in ap._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    return set(vars(ap.parse_args(argv)))


def resumed_args(a: argparse.Namespace, stored: dict, explicit: set[str]) -> tuple[argparse.Namespace, list[str]]:
    """The run's recipe from its checkpoint, except operational flags and flags given again on this command line.

    Returns the merged arguments and one note per recipe flag whose value differs from the stored one.
    """
    merged = dict(vars(a))
    notes = []
    for k, v in stored.items():
        if k not in merged or k in OPERATIONAL:
            continue
        if k in explicit:
            if str(merged[k]) != str(v):
                notes.append(f"--{k.replace('_', '-')} {merged[k]} given: overrides the run's {v}")
            continue
        merged[k] = Path(v) if k == "init" and v is not None else v  # the one recipe flag that is a path
    return argparse.Namespace(**merged), notes


class Trainer:
    def __init__(self, a):
        from .model import SHAPES_SPEC, build_shapes, load_weights, rotary_embedding
        from .shapes_i2v import SHAPES_I2V_SPEC, load_i2v_weights, widen

        self.a = a
        self.i2v = bool(getattr(a, "i2v", False))
        self.spec = SHAPES_I2V_SPEC if self.i2v else SHAPES_SPEC
        self.device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        tok, enc, codec, tr, sched = build_shapes(seed=a.seed, pretrained=False)
        if self.i2v:  # the image channels start at zero: shapes-i2v starts as the model it is made from
            tr = widen(tr) if a.init is None else load_i2v_weights(enc, widen(tr), a.init)
        elif a.init is not None:
            load_weights(enc, tr, a.init)
        self.tok, self.codec, self.sched = tok, codec.to(self.device), sched
        self.net = torch.nn.ModuleDict({"transformer": tr, "text_encoder": enc}).to(self.device).train()
        self.ema = torch.nn.ModuleDict({
            "transformer": type(tr).from_config(tr.config),
            "text_encoder": type(enc)(enc.embed.num_embeddings, enc.embed.embedding_dim, enc.pos.shape[0]),
        }).to(self.device).eval().requires_grad_(False)
        self.ema.load_state_dict(self.net.state_dict())
        self.rope = rotary_embedding(tr, self.spec, device=self.device)
        ac = sched.alphas_cumprod.to(torch.float32)
        self.sqrt_ab = ac.sqrt().to(self.device)
        self.sqrt_1mab = (1 - ac).sqrt().to(self.device)
        self.sf = float(codec.config.scaling_factor)

        decay, no_decay = [], []
        for n, p in self.net.named_parameters():
            (decay if p.ndim >= 2 and "embed.weight" not in n and not n.endswith("pos") else no_decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}],
                                     lr=a.lr, betas=(0.9, 0.99), eps=1e-8)
        self.np_rng = np.random.default_rng(a.seed)
        self.gen = torch.Generator().manual_seed(a.seed + 1)
        self.step = 0
        self.samples = 0
        self.elapsed = 0.0
        self.cpu_s = 0.0  # process CPU seconds over all resumes (all threads): the campaign's CPU-minutes
        self.history: list[dict] = []
        self.val = self._make_val(a.val_size) if a.val_size > 0 else None

    # -- data -------------------------------------------------------------------------------------
    def latents(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [B, F, 3, H, W] -> scaled latents [B, F, C, h, w] (the transformer's layout)."""
        from .data import to_model_range

        x = to_model_range(frames).to(self.device).permute(0, 2, 1, 3, 4)
        with torch.no_grad():
            z = self.codec.encode(x).latent_dist.mode() * self.sf
        return z.permute(0, 2, 1, 3, 4).contiguous()

    def ids(self, prompts: list[str]) -> torch.Tensor:
        return self.tok(list(prompts), padding="max_length", max_length=self.spec.text_len, truncation=True,
                        add_special_tokens=True, return_tensors="pt").input_ids.to(self.device)

    def _make_val(self, n: int) -> dict:
        frames, prompts = validation_clips(n)
        g = torch.Generator().manual_seed(VAL_SEED + 1)
        z0 = self.latents(frames)
        t = ((torch.arange(n) + 0.5) / n * 1000).long().clamp(0, 999)  # stratified over all timesteps
        noise = torch.randn(z0.shape, generator=g).to(self.device)
        val = {"z0": z0, "ids": self.ids(prompts), "t": t.to(self.device), "noise": noise}
        if getattr(self.a, "i2v", False):  # always with the image
            val["image"] = image_latents(z0, torch.ones(n, dtype=torch.bool))
        return val

    # -- loss ---------------------------------------------------------------------------------------
    def loss(self, net, z0, ids, t, noise, image=None) -> torch.Tensor:
        a = self.sqrt_ab[t].view(-1, 1, 1, 1, 1)
        s = self.sqrt_1mab[t].view(-1, 1, 1, 1, 1)
        zt = a * z0 + s * noise
        target = a * noise - s * z0  # v-prediction
        emb = net["text_encoder"](ids)[0]
        x = zt if image is None else torch.cat([zt, image], dim=2)  # CogVideoX-I2V: the image on channels
        pred = net["transformer"](x, emb, t, image_rotary_emb=self.rope, return_dict=False)[0]
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    @torch.no_grad()
    def val_loss(self, net) -> float:
        v = self.val
        out = []
        for i in range(0, v["z0"].shape[0], 16):
            sl = slice(i, i + 16)
            image = v["image"][sl] if "image" in v else None
            out.append(self.loss(net, v["z0"][sl], v["ids"][sl], v["t"][sl], v["noise"][sl], image).item()
                       * v["z0"][sl].shape[0])
        return sum(out) / v["z0"].shape[0]

    def train_step(self) -> float:
        from .data import sample_batch

        a = self.a
        frames, prompts, _ = sample_batch(self.np_rng, a.batch_size, vary_words=True, textured_prob=a.textured_prob)
        drop = self.np_rng.random(len(prompts)) < a.uncond_prob
        prompts = ["" if d else p for d, p in zip(drop, prompts)]
        z0 = self.latents(frames)
        image = None
        if self.i2v:  # drawn only here, so text-to-video runs keep their random streams
            keep = torch.from_numpy(self.np_rng.random(len(prompts)) >= a.image_drop_prob)
            image = image_latents(z0, keep.to(self.device))
        t = sample_timesteps(a.batch_size, self.gen, a.timesteps).to(self.device)
        noise = torch.randn(z0.shape, generator=self.gen).to(self.device)
        lr = lr_at(self.step, self.elapsed / (a.minutes * 60), a)
        for g in self.opt.param_groups:
            g["lr"] = lr
        loss = self.loss(self.net, z0, self.ids(prompts), t, noise, image)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), a.grad_clip)
        self.opt.step()
        self.step += 1
        self.samples += a.batch_size
        self._ema_update()
        self.last_lr, self.last_gnorm = lr, float(gnorm)
        return float(loss.detach())

    @torch.no_grad()
    def _ema_update(self) -> None:
        d = min(self.a.ema_decay, (1 + self.step) / (10 + self.step))
        ema_p = list(self.ema.parameters())
        net_p = list(self.net.parameters())
        torch._foreach_lerp_(ema_p, net_p, 1.0 - d)

    # -- state --------------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        t = {f"model.{k}": v for k, v in self.net.state_dict().items()}
        t.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        opt_t, self._groups = optimizer_tensors(self.opt)
        t.update(opt_t)
        t["rng.torch"] = torch.get_rng_state()
        t["rng.gen"] = self.gen.get_state()
        if self.device.type == "cuda":
            t["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return t

    def state(self) -> dict:
        self.tensors_cache = self.tensors()
        return {"version": 1, "step": self.step, "samples_seen": self.samples, "elapsed_s": self.elapsed,
                "cpu_s": self.cpu_s,
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(self.a).items()},
                "param_groups": self._groups, "np_rng": np_rng_state(self.np_rng),
                "history": self.history[-400:]}

    def checkpoint(self, log) -> Path:
        st = self.state()
        return save_checkpoint(self.a.out, st, self.tensors_cache, log)

    def restore(self, path: Path) -> None:
        st, t = load_checkpoint(path)
        self.net.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
        self.ema.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("ema.")})
        restore_optimizer(self.opt, {k: v.to(self.device) if not k.endswith(".step") else v
                                     for k, v in t.items() if k.startswith("opt.")}, st["param_groups"])
        torch.set_rng_state(t["rng.torch"])
        self.gen.set_state(t["rng.gen"])
        if "rng.cuda" in t and self.device.type == "cuda":
            torch.cuda.set_rng_state(t["rng.cuda"], self.device)
        set_np_rng_state(self.np_rng, st["np_rng"])
        self.step, self.samples, self.elapsed = st["step"], st["samples_seen"], st["elapsed_s"]
        self.cpu_s = st.get("cpu_s", 0.0)
        self.history = st.get("history", [])

    # -- outputs ------------------------------------------------------------------------------------
    def ema_model(self):
        from ..models.base import Model

        return Model(self.spec, self.tok, self.ema["text_encoder"], self.codec, self.ema["transformer"],
                     type(self.sched).from_config(self.sched.config), self.device, torch.float32)

    def preview(self, log) -> None:
        from .preview import save_preview

        try:
            p = save_preview(self.ema_model(), self.a.out / "previews" / f"step-{self.step:07d}.png", seed=0)
            log(f"preview {p}")
        except Exception as e:  # a preview must never stop training
            log(f"preview failed: {e!r}")

    def export(self, log, final_loss: float | None, val: dict) -> None:
        from safetensors.torch import save_file

        from .data import TRAJECTORIES, TRAJECTORY_PROBS
        from .model import weights_metadata
        from .shapes_i2v import weights_conditioning

        out = self.a.out
        weights = {f"transformer.{k}": v.detach().float().contiguous().cpu()
                   for k, v in self.ema["transformer"].state_dict().items()}
        weights.update({f"text_encoder.{k}": v.detach().float().contiguous().cpu()
                        for k, v in self.ema["text_encoder"].state_dict().items()})
        meta = weights_metadata(self.spec, step=self.step, samples_seen=self.samples)
        name = f"{self.spec.name}.safetensors"  # shapes.safetensors, or shapes-i2v.safetensors with --i2v
        atomic_write(out / name, lambda tmp: save_file(weights, str(tmp), metadata=meta))
        size = (out / name).stat().st_size
        n_params = sum(v.numel() for v in weights.values())
        card = {
            "model": self.spec.name, "spec": self.spec.to_dict(),
            "conditioning": self.spec.conditioning,
            "data": {"generator": "motionlib.demo.data.sample_batch(vary_words=True)",
                     "clips": "8 frames x 32x32 RGB, one anti-aliased disc (radius 5 px)",
                     "colors": ["red", "green", "blue", "yellow"],
                     "backgrounds": {"black": 1 - self.a.textured_prob, "textured": self.a.textured_prob},
                     "trajectories": dict(zip(TRAJECTORIES, TRAJECTORY_PROBS)),
                     "uncond_prob": self.a.uncond_prob,
                     **({"image": "each clip's first frame (latents on channels, zero frames after it)",
                         "image_drop_prob": self.a.image_drop_prob} if self.i2v else {})},
            "recipe": {"objective": "v-prediction, CogVideoX DDIM zero-SNR schedule (snr_shift_scale=1)",
                       "timesteps": self.a.timesteps, "optimizer": "AdamW(0.9, 0.99)", "lr": self.a.lr,
                       "schedule": f"warmup {self.a.warmup} steps + cosine over the time budget to "
                                   f"{self.a.min_lr_ratio} x lr", "batch_size": self.a.batch_size,
                       "ema_decay": self.a.ema_decay,
                       "init": ("adaLN-Zero" if self.a.init is None else f"{Path(self.a.init).name} (--init)")
                               + (", widened: zero image channels" if self.i2v and self.a.init is not None
                                  and weights_conditioning(self.a.init) == "t2v" else ""),
                       "seed": self.a.seed},
            "weights": f"{name} (EMA, fp32)", "parameters": n_params, "size_bytes": size,
            "steps": self.step, "samples_seen": self.samples, "minutes": round(self.elapsed / 60, 2),
            "cpu_minutes": round(self.cpu_s / 60, 2),
            "device": str(self.device), "threads": torch.get_num_threads(),
            "final_train_loss": final_loss, **val,
        }
        previous = None if self.a.init is None else card_beside(Path(self.a.init))
        if previous is not None and previous.is_file():  # the run it continued, and that run's own history
            card["continued_from"] = {k: v for k, v in json.loads(previous.read_text()).items()
                                      if k not in ("spec", "data")}
        atomic_write(out / "card.json", json.dumps(card, indent=1) + "\n")
        log(f"wrote {out / name} ({size / 1e6:.1f} MB, {n_params} params) and card.json")


def card_beside(weights: Path) -> Path:
    """The card of a weights file: ``NAME.card.json`` beside it when there is one (the bundled
    ``shapes-i2v.card.json``), else the folder's ``card.json`` (a run's, or the bundled shapes card)."""
    named = weights.with_name(f"{weights.stem}.card.json")
    return named if named.is_file() else weights.with_name("card.json")


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
        try:
            torch.set_num_interop_threads(a.threads)
        except RuntimeError:
            pass
    if a.val_only:
        if a.init is None or a.val_size < 1:
            print("--val-only needs --init WEIGHTS and --val-size >= 1", file=sys.stderr)
            return 2
        tr = Trainer(a)
        print(json.dumps({"weights": str(a.init), "val_loss": round(tr.val_loss(tr.net), 5), "val_size": a.val_size}))
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    try:  # two trainers on one --out would interleave their checkpoints (seen: a resume beside a live run)
        with exclusive_lock(a.out / ".train.lock", f"--out {a.out}"):
            return _train(a, argv)
    except Busy as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2


def _train(a: argparse.Namespace, argv) -> int:
    log = Logger(a.out / "train.log")
    ck = latest_checkpoint(a.out) if a.resume else None
    if ck is not None:  # the run goes on with its own recipe (lr, schedule, budget, seed...), not the defaults
        a, notes = resumed_args(a, json.loads((ck / "state.json").read_text()).get("args", {}), explicit_flags(argv))
        for note in notes:
            log(note)
    tr = Trainer(a)
    if a.resume:
        if ck is not None:
            tr.restore(ck)
            log(f"resumed from {ck}: step {tr.step}, {tr.samples} samples, {tr.elapsed / 60:.1f} min used")
        else:
            log("--resume: no checkpoint yet, starting fresh")
    n_params = sum(p.numel() for p in tr.net.parameters())
    log(f"{tr.spec.name} training: {n_params} params, device {tr.device}, threads {torch.get_num_threads()}, "
        f"batch {a.batch_size}, lr {a.lr}, budget {a.minutes} min, out {a.out}")

    stop = {"flag": False}

    def _on_signal(signum, frame):
        stop["flag"] = True

    paused = {"flag": False}

    def _on_continue(signum, frame):  # resumed after `kill -STOP`: that pause is no training time
        paused["flag"] = True

    for s, handler in ((signal.SIGTERM, _on_signal), (signal.SIGINT, _on_signal), (signal.SIGCONT, _on_continue)):
        try:
            signal.signal(s, handler)
        except ValueError:  # not the main thread (e.g. called from a test runner thread)
            pass

    budget = a.minutes * 60
    t_last = time.monotonic()
    cpu_last = time.process_time()
    last_dt = 0.0
    t_ckpt = t_preview = time.monotonic()
    win_loss, win_n, win_t0, win_samples = 0.0, 0, time.monotonic(), tr.samples
    final_loss = None
    while not stop["flag"] and tr.elapsed < budget and (a.max_steps is None or tr.step < a.max_steps):
        loss = tr.train_step()
        if not math.isfinite(loss):
            log(f"non-finite loss at step {tr.step}: stopping (last checkpoint kept)")
            return 1
        now = time.monotonic()
        last_dt = step_seconds(now - t_last, last_dt, paused)
        tr.elapsed += last_dt
        t_last = now
        cpu_now = time.process_time()
        tr.cpu_s += cpu_now - cpu_last
        cpu_last = cpu_now
        win_loss += loss
        win_n += 1
        if tr.step % a.log_every == 0 or tr.step == 1:
            dt = max(1e-9, now - win_t0)
            rate = (tr.samples - win_samples) / dt
            final_loss = win_loss / win_n
            rec = {"step": tr.step, "loss": round(final_loss, 5), "lr": tr.last_lr, "samples_per_s": round(rate, 2),
                   "minutes": round(tr.elapsed / 60, 2)}
            tr.history.append(rec)
            log(f"step {tr.step} loss {final_loss:.4f} lr {tr.last_lr:.2e} gnorm {tr.last_gnorm:.2f} "
                f"{rate:.1f} samples/s samples {tr.samples} elapsed {tr.elapsed / 60:.1f}/{a.minutes:g} min")
            win_loss, win_n, win_t0, win_samples = 0.0, 0, now, tr.samples
        if now - t_ckpt >= a.ckpt_minutes * 60:
            if tr.val is not None:
                log(f"val loss: ema {tr.val_loss(tr.ema):.4f} model {tr.val_loss(tr.net):.4f} (step {tr.step})")
            tr.checkpoint(log)
            if not a.no_preview and a.preview_minutes > 0 and now - t_preview >= a.preview_minutes * 60:
                tr.preview(log)
                t_preview = now
            t_ckpt = time.monotonic()
            tr.elapsed += step_seconds(t_ckpt - t_last, 0.0, paused)  # they count against the budget
            t_last = t_ckpt
    if win_n:
        final_loss = win_loss / win_n
    tr.checkpoint(log)
    done = tr.elapsed >= budget or (a.max_steps is not None and tr.step >= a.max_steps)
    val = {}
    if tr.val is not None:
        val = {"val_loss_ema": round(tr.val_loss(tr.ema), 5), "val_loss_model": round(tr.val_loss(tr.net), 5)}
        log(f"val loss: ema {val['val_loss_ema']:.4f} model {val['val_loss_model']:.4f} (step {tr.step})")
    tr.export(log, final_loss, val)
    if not a.no_preview:
        tr.preview(log)
    log(f"{'finished' if done else 'stopped'}: step {tr.step}, {tr.samples} samples, {tr.elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
