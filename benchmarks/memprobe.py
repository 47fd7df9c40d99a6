"""Peak-memory probe, run in a fresh process: ``python -m benchmarks.memprobe '{"case": ..., ...}'``.

Method: build the inputs (setup), collect garbage and ``malloc_trim``, reset the kernel's
peak-RSS counter (``echo 5 > /proc/self/clear_refs`` resets VmHWM to the current RSS, Linux >= 4.0),
run the case, and report VmHWM minus the RSS at the reset: the peak of what the case itself added,
with the setup's own transients excluded. The parent sets a fixed ``MALLOC_MMAP_THRESHOLD_`` so that
large buffers are mmapped and given back on free (RSS follows live memory).

Fallback where clear_refs is not writable: ``ru_maxrss`` of this process minus that of a baseline
process that only runs the setup (``"baseline": true``), as the caller then does.
Prints one JSON line: {"peak_bytes", "method", "rss_before"}.
"""

from __future__ import annotations

import ctypes
import gc
import json
import re
import resource
import sys


def _status(key: str) -> int:
    try:
        with open("/proc/self/status") as f:
            return int(re.search(rf"{key}:\s+(\d+)", f.read()).group(1)) * 1024
    except (OSError, AttributeError):
        return 0


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


# --- cases: setup(args) -> state; run(state) ------------------------------------------------------
def _amf_setup(a):
    import torch

    g = torch.Generator().manual_seed(0)
    n = a["frames"] * a["rows"] * a["cols"]
    q = torch.randn(a["heads"], n, a["dim"], generator=g).requires_grad_(True)
    k = torch.randn(a["heads"], n, a["dim"], generator=g).requires_grad_(True)
    s = a["rows"] * a["cols"]
    ref = torch.randint(-3, 4, (a["frames"], a["frames"], s, 2), generator=g).float()
    warm = dict(a, frames=2, rows=2, cols=3, heads=2, dim=8)  # one-time lazy inits (autograd, kernels)
    _amf_run((torch.randn(2, 12, 8, requires_grad=True), torch.randn(2, 12, 8, requires_grad=True),
              torch.zeros(2, 2, 6, 2), warm))
    return q, k, ref, a


def _amf_run(state):
    from motionlib.amf import amf_loss, motion_flow

    from .official import per_head_flow

    q, k, ref, a = state
    fn = motion_flow if a["impl"] == "motion_flow" else per_head_flow
    flow = fn(q, k, num_frames=a["frames"], height=a["rows"], width=a["cols"], temperature=2.0)
    amf_loss(flow, ref).backward()


def _learn_setup(a):
    from .common import disc_video
    from motionlib.models import load_model

    model = load_model(a["model"], device="cpu")
    state = (model, disc_video(model.spec), a)
    _learn_run((*state[:2], dict(a, steps=2, opt_steps=1)))  # one-time lazy inits
    return state


def _learn_run(state):
    model, video, a = state
    kw = dict(prompt="a red disc", seed=0, steps=a["steps"], guided_fraction=a["guided_fraction"],
              opt_steps=a["opt_steps"])
    if a.get("samples"):
        kw["samples"] = a["samples"]
    if a["impl"] == "learn":
        from motionlib.learn import learn

        learn(model, video, **kw, **a.get("options", {}))  # options: GuidanceParams overrides of learn only
    else:
        from .official import official_learn

        official_learn(model, video, **kw)


CASES = {"amf": (_amf_setup, _amf_run), "learn": (_learn_setup, _learn_run)}


def main() -> None:
    args = json.loads(sys.argv[1])
    from .common import setup_threads

    setup_threads()
    setup, run = CASES[args["case"]]
    state = setup(args)
    _trim()
    rss = _status("VmRSS")
    if args.get("baseline"):
        print(json.dumps({"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                          "method": "ru_maxrss", "rss_before": rss}))
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method = "vmhwm" if rss else "ru_maxrss"
    except OSError:
        method = "ru_maxrss"
    run(state)
    if method == "vmhwm":
        peak = _status("VmHWM") - rss
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # caller subtracts a baseline
    print(json.dumps({"peak_bytes": peak, "method": method, "rss_before": rss}))


if __name__ == "__main__":
    main()
