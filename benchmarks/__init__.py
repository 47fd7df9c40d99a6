"""motionlib benchmarks: ``python -m benchmarks [--quick] [--no-write] [--only SECTION[,SECTION]]``.

Every timing is a ratio of two things measured side by side in one run (A B A B ..., median of
the per-pair ratios); absolute times are shown only as context. Peak memory on the CPU is measured
in fresh subprocesses (see ``benchmarks.memprobe``).
"""
