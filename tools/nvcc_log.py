"""Run nvcc and keep ptxas's resource report (-Xptxas=-v) of the object it builds.

Usage (setup.py sets it as PYTORCH_NVCC): python tools/nvcc_log.py /path/to/nvcc ARGS...

The report lines go to OBJECT.ptxas (next to the object named by -o), where setup.py collects
them into the package's kernel report (cnnfast/_kernel_report.py); every other line nvcc prints
is passed through. The exit status is nvcc's.
"""
import re
import subprocess
import sys

REPORT_LINE = re.compile(r"^(ptxas info|\s+\d+ bytes stack frame)")


def main(argv):
    nvcc, args = argv[0], argv[1:]
    proc = subprocess.run([nvcc] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stdout.write(proc.stdout)
    lines = proc.stderr.splitlines(True)
    report = [line for line in lines if REPORT_LINE.match(line)]
    other = [line for line in lines if not REPORT_LINE.match(line)]
    sys.stderr.write("".join(other))
    if proc.returncode == 0 and "-o" in args:
        obj = args[args.index("-o") + 1]
        with open(obj + ".ptxas", "w") as f:
            f.write("".join(report))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
