"""Keep TensorFlow's native start-up lines off the terminal; ``ANOMALY_BENCH_VERBOSE=1`` shows them.

TensorFlow >= 2.18 writes C++ log lines to file descriptor 2 before ``TF_CPP_MIN_LOG_LEVEL``
is read (the absl pre-init warning, oneDNN and CUDA-driver notices, ``cuInit`` error 303 on
machines without a GPU), and no environment variable of TensorFlow 2.21 stops them. They
drown a one-line error and scare newcomers with "CUDA error" on a CPU machine. So the
command line points descriptor 2 at a pipe read by a thread that drops lines in the native
log format and passes everything else through; Python's own ``sys.stderr`` (tracebacks,
the CLI's error line, logging) writes straight to the terminal, untouched by the filter.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import os
import re
import sys
import threading

VERBOSE_ENV = "ANOMALY_BENCH_VERBOSE"
# absl / TensorFlow C++ log lines: "I0000 00:00:1795677010.310790    7971 port.cc:153] ..."
NATIVE_LINE = re.compile(rb"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s:]+:\d+\] ")
ABSL_PREINIT = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_installed = False


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_native_log_line(line: bytes) -> bool:
    return line.startswith(ABSL_PREINIT) or NATIVE_LINE.match(line) is not None


def _pump(read_fd: int, write_fd: int) -> None:
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not is_native_log_line(line))
        if kept:
            with contextlib.suppress(OSError):
                os.write(write_fd, kept)
    if pending and not is_native_log_line(pending):
        with contextlib.suppress(OSError):
            os.write(write_fd, pending)
    os.close(read_fd)


def filter_native_logs() -> None:
    """Filter file descriptor 2 for the rest of the process (once; no-op when verbose)."""
    global _installed
    if _installed or verbose():
        return
    try:
        sys.stderr.flush()
        terminal = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
    except (OSError, ValueError, AttributeError):
        return  # no usable descriptor 2 (embedded interpreter, closed stderr): leave it alone
    _installed = True
    sys.stderr = os.fdopen(
        os.dup(terminal), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="backslashreplace"
    )
    if faulthandler.is_enabled():  # a fatal crash's traceback must not wait for the pump thread
        faulthandler.enable(file=sys.stderr)
    pump = threading.Thread(target=_pump, args=(read_fd, terminal), name="native-stderr-filter", daemon=True)
    pump.start()

    def restore() -> None:
        """Give descriptor 2 back so the pump sees the end of the pipe and writes what is left."""
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(terminal, 2)
        pump.join(timeout=1.0)  # child processes may still hold the pipe; never hang on exit

    atexit.register(restore)
