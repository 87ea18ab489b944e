"""Peak resident memory of this process, for the benchmark scripts' fresh child processes.

``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is the wrong measure there: on
Linux the high-water mark survives fork and exec, so a child started by a
benchmark that has already grown reports its parent's peak (seen here: a
child using 9 MB reported 1.9 GiB). ``VmHWM`` in /proc/self/status is the
child's own peak.
"""

from __future__ import annotations


def peak_rss_kib() -> int:
    """This process's own peak resident set size in KiB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
