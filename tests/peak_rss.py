"""Run `archiverd ARGS...` in this process and write its peak RSS (KiB) to the file named by
$PEAK_RSS_FILE: the memory figure of exactly this command. (VmHWM, not getrusage: ru_maxrss keeps
the high-water mark of the process image before exec -- the test runner's -- across the exec.)"""
import os
import sys

from archiverd.cli import main


def vm_hwm_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


try:
    main(sys.argv[1:])
finally:
    with open(os.environ["PEAK_RSS_FILE"], "w") as out:
        out.write(str(vm_hwm_kib()))
