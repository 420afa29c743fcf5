"""Set-up for every pytest run in this repository, the notebooks under nbval included.

nbval starts one Jupyter kernel per notebook, and with two pytest-xdist workers two kernels start at the same
moment. jupyter_client picks each kernel's five TCP ports by opening and closing sockets, so two kernels
starting together (or an outgoing connection in between) can be handed the same port; one kernel then fails to
bind, or a client talks to the other worker's kernel, and the run waits on a reply that never comes (CI once
sat for over an hour on it). On Linux and macOS the kernels here talk over Unix sockets instead: each kernel
gets its own fresh folder, so no two can collide. Windows has no such transport and keeps TCP.

nbval also gives a kernel 5 seconds, after a cell's reply, to deliver the cell's last output; on a loaded
machine a cell with a live progress bar can miss that and fail with "Timeout of 5 seconds exceeded waiting
for output". Here the kernel gets OUTPUT_TIMEOUT_S instead (a cell's own run time is pytest-timeout's).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


OUTPUT_TIMEOUT_S = 120


def pytest_configure(config):
    try:
        from nbval import kernel as nbval_kernel
        from nbval import plugin as nbval_plugin
    except ImportError:  # nbval not installed: nothing to set up
        return
    _patient_output(nbval_plugin)
    if os.name == "posix":
        _unix_sockets(nbval_kernel)


def _patient_output(nbval_plugin) -> None:
    cell = nbval_plugin.IPyNbCell
    if getattr(cell, "course_patient", False):
        return
    init = cell.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.output_timeout = OUTPUT_TIMEOUT_S

    cell.__init__, cell.course_patient = __init__, True


def _unix_sockets(nbval_kernel) -> None:
    if getattr(nbval_kernel.KernelManager, "course_ipc", False):
        return
    base = nbval_kernel.KernelManager

    class UnixSocketKernelManager(base):
        """A KernelManager whose kernel listens on Unix sockets in a folder of its own."""

        course_ipc = True

        def __init__(self, **kwargs):
            folder = tempfile.mkdtemp(prefix="nbval-kernel-")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            super().__init__(transport="ipc", ip=os.path.join(folder, "k"), **kwargs)

    nbval_kernel.KernelManager = UnixSocketKernelManager
