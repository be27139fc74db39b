"""IPython kernel with resource limits, started by the classroom grader (never by learners).

``python -m diffcl_lite.course.kernel --memory-mb 2048 --cpu-s 600 -f CONNECTION_FILE``

* ``RLIMIT_DATA`` = memory: private writable memory (heap, anonymous mmap) of the kernel. Measured
  with torch 2.13 (CPU): ``import torch`` works down to 300 MB, and an allocation beyond the
  limit raises ``MemoryError`` (numpy, Python) or ``RuntimeError: ... can't allocate memory``
  (torch) inside the learner's cell, so the run goes on. ``RLIMIT_AS`` is not used: it counts
  address space that torch's shared libraries reserve and breaks ``import torch`` below ~1 GB.
* ``RLIMIT_CPU``: a backstop against a kernel that outlives its grader.
* ``RLIMIT_FSIZE`` (256 MB): a submission cannot fill the disk with one file.
* ``RLIMIT_CORE`` = 0: no core dumps.

It also skips the optional ``rfc3987_syntax`` module (see ``main``), a start-up cost of every kernel.

The limits are per process (children inherit them); the grader's watchdog
(:mod:`diffcl_lite.course.worker`) watches the summed RSS of the kernel's whole session.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _set_limit(name: str, value: int) -> None:
    import resource

    res = getattr(resource, name, None)
    if res is None:  # pragma: no cover - not on this platform
        return
    soft, hard = resource.getrlimit(res)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(res, (value, hard if hard != resource.RLIM_INFINITY else value))
    except (ValueError, OSError):  # pragma: no cover - keep the kernel usable
        pass


def main(argv: list[str] | None = None) -> None:
    """Apply the limits, then hand the remaining arguments to ipykernel."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--memory-mb", type=int, default=None)
    parser.add_argument("--cpu-s", type=int, default=None)
    parser.add_argument("--fsize-mb", type=int, default=256)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.memory_mb:
        _set_limit("RLIMIT_DATA", args.memory_mb * 2**20)
    if args.cpu_s:
        _set_limit("RLIMIT_CPU", args.cpu_s)
    if args.fsize_mb:
        _set_limit("RLIMIT_FSIZE", args.fsize_mb * 2**20)
    _set_limit("RLIMIT_CORE", 0)
    # setup_notebook -> plotly.io -> nbformat -> jsonschema -> rfc3987_syntax compiles a grammar at
    # import (~1-2.5 s per kernel); jsonschema treats the module as optional and grading never needs it
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    sys.argv = [sys.argv[0], *rest]
    from ipykernel.kernelapp import launch_new_instance

    launch_new_instance()


if __name__ == "__main__":
    main()
