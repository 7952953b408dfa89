"""Write a benchmark report as Markdown plus JSON, each stamped with the command, data, machine and
date, so a number in the README can always be traced to how it was made."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from fewlabel.retrieval.analysis import markdown_table

# markdown_table: analysis's, re-exported
__all__ = ["command_line", "cpu_flags", "machine_info", "markdown_table", "write_report"]


def machine_info() -> dict:
    import torch

    info: dict[str, object] = {
        "platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), None)
        with open("/proc/meminfo") as fh:
            info["memory_gib"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def cpu_flags() -> str:
    """The SIMD flags that decide which kernels can run here (AVX2, AVX-512, VNNI, AMX), in words: a speed
    report needs them, since int8 and bf16 only pay with VNNI or AMX."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = set(next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), []))
    except OSError:
        return "unknown"
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")
    have = [f for f in wanted if f in flags]
    vnni = any(f in flags for f in ("avx512_vnni", "avx_vnni"))
    return (", ".join(f.upper() for f in have) or "none of AVX2/AVX-512") + ("" if vnni else "; no VNNI")


def command_line() -> str:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]]  # `fewlabel …`, not /path/to/.venv/bin/fewlabel
    module = getattr(sys.modules.get("__main__"), "__spec__", None)
    if module is not None and module.name:
        argv = ["python", "-m", module.name, *sys.argv[1:]]
    return " ".join(shlex.quote(a) for a in argv)


def write_report(out: Path, name: str, title: str, body: str, payload: dict, *, data_note: str,
                 command: str | None = None) -> Path:
    """``command`` defaults to this process's command line."""
    out.mkdir(parents=True, exist_ok=True)
    command = command or command_line()
    machine = machine_info()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"# {title}\n\n"
              f"- command: `{command}`\n"
              f"- data: {data_note}\n"
              f"- machine: {machine.get('cpu') or platform.processor()}, {machine['cpus']} cores, "
              f"{machine.get('memory_gib', '?')} GiB, {machine['cuda'] or 'no GPU'}; torch {machine['torch']}, "
              f"Python {machine['python']}\n"
              f"- date: {date}\n\n")
    (out / f"{name}.md").write_text(header + body + "\n", encoding="utf-8")
    record = {"title": title, "command": command, "data": data_note, "machine": machine, "date": date,
              **payload}
    (out / f"{name}.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out / f"{name}.md"
