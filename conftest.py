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
    _wrong_answers(nbval_plugin)
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


def _kernel_output(kernel, code: str, timeout: float) -> str:
    """Run `code` in an nbval kernel and return everything it printed (streams, results, errors) as text."""
    msg_id = kernel.execute_cell_input(code, allow_stdin=False)
    kernel.await_reply(msg_id, timeout=timeout)
    text = []
    while True:
        msg = kernel.get_message(stream="iopub", timeout=OUTPUT_TIMEOUT_S)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            return "".join(text)
        if kind == "stream":
            text.append(content["text"])
        elif kind in ("execute_result", "display_data"):
            text.append(content.get("data", {}).get("text/plain", "") + "\n")
        elif kind == "error":
            text.append(f"{content['ename']}: {content['evalue']}\n")


def _wrong_answers(nbval_plugin) -> None:
    cell_class = nbval_plugin.IPyNbCell
    if getattr(cell_class, "course_wrong_answers", False):
        return
    from course_lib import wrong_answers

    runtest = cell_class.runtest

    def check_wrong_answers(self):
        cell = self.cell
        if self.options.get("skip") or not wrong_answers.is_exercise_cell(cell):
            return
        source, kernel = cell.source, self.parent.kernel
        timeout = self.config.option.nbval_cell_timeout
        entries = wrong_answers.read(cell, f"{self.parent.name}, cell {self.cell_num}")
        solved = wrong_answers.passes("".join(o.get("text", "") for o in cell.get("outputs", [])
                                              if o.get("output_type") == "stream"))
        problems = [] if solved else ["the committed output shows no ✅: the solution must pass its own check"]
        _kernel_output(kernel, wrong_answers.SAVE_STATE, timeout)
        try:
            said = wrong_answers.judge_student(_kernel_output(kernel, wrong_answers.student_version(source), timeout))
            if said:
                problems.append(f"student version: {said}")
            for entry in entries:
                out = _kernel_output(kernel, wrong_answers.substitute(source, entry["code"], entry["block"]), timeout)
                said = wrong_answers.judge_wrong(out, solved)
                if said:
                    problems.append(f"wrong answer ({entry['why']}): {said}")
        finally:
            _kernel_output(kernel, wrong_answers.RESTORE_STATE, timeout)
        self.user_properties.append(("wrong_answers", len(entries)))
        if problems:
            self.raise_cell_error("exercise check:\n" + "\n".join(problems))

    def wrapped(self):
        check_wrong_answers(self)
        return runtest(self)

    cell_class.runtest, cell_class.course_wrong_answers = wrapped, True


def pytest_terminal_summary(terminalreporter):
    counts = [value for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
              if report.when == "call" for key, value in getattr(report, "user_properties", ()) if key == "wrong_answers"]
    if counts:
        failed = sum(1 for report in terminalreporter.stats.get("failed", []) if report.when == "call"
                     and any(key == "wrong_answers" for key, _ in getattr(report, "user_properties", ())))
        terminalreporter.write_line(f"exercise checks: {len(counts)} exercise cells x their known-wrong answers = "
                                    f"{sum(counts)} wrong answers fed through the checks; "
                                    f"{failed} cell(s) let one through or printed a hint too early")
