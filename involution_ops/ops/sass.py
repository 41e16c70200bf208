"""Reading compiled CUDA kernels without a GPU: ptxas' resource report (NVRTC log under
-Xptxas -v) and the SASS that nvdisasm prints, split into functions and loops.

Stdlib only; nvdisasm comes from the nvidia-cuda-nvdisasm wheel (the `test` extra)
or a CUDA toolkit.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Resources:
    registers: int
    spill_stores: int
    spill_loads: int
    stack_frame: int
    shared_memory: int


_RESOURCES = re.compile(
    r"Function properties for (\S+)\n"
    r"ptxas\s+\.\s+(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads\n"
    r"ptxas info\s+: Used (\d+) registers([^\n]*)"
)


def parse_resources(log: str) -> dict[str, Resources]:
    """Mangled kernel name -> its registers, spills and static shared memory, from ptxas -v."""
    found = {}
    for match in _RESOURCES.finditer(log):
        smem = re.search(r"(\d+) bytes smem", match.group(6))
        found[match.group(1)] = Resources(
            registers=int(match.group(5)),
            spill_stores=int(match.group(3)),
            spill_loads=int(match.group(4)),
            stack_frame=int(match.group(2)),
            shared_memory=int(smem.group(1)) if smem else 0,
        )
    return found


def find_nvdisasm() -> str | None:
    for root in sys.path:
        for pattern in ("nvidia/cu*/bin/nvdisasm", "nvidia/cuda_nvdisasm/bin/nvdisasm"):
            for path in sorted(glob.glob(os.path.join(root, pattern))):
                if os.access(path, os.X_OK):
                    return path
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env) and os.access(os.path.join(os.environ[env], "bin", "nvdisasm"), os.X_OK):
            return os.path.join(os.environ[env], "bin", "nvdisasm")
    return shutil.which("nvdisasm")


@dataclass
class Instruction:
    opcode: str  # e.g. FFMA, LDS.128, @P0 BRA -> BRA (the predicate is dropped)
    text: str
    target: str | None = None  # branch target label


@dataclass
class Function:
    name: str
    instructions: list[Instruction] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)  # label -> index of the next instruction

    def loops(self) -> list[tuple[int, int]]:
        """(first, last) instruction indices of each loop: a branch back to an earlier label."""
        found = []
        for index, instruction in enumerate(self.instructions):
            if instruction.opcode.startswith("BRA") and instruction.target in self.labels:
                start = self.labels[instruction.target]
                if start < index:  # BRA to itself is the trap after EXIT
                    found.append((start, index))
        return sorted(found)

    def calls(self) -> list[str]:
        return [i.target or i.text for i in self.instructions if i.opcode.startswith("CALL")]


_INSTRUCTION = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;")
_LABEL = re.compile(r"^(\.L_x_\d+|\$[\w.$]+):")
_TARGET = re.compile(r"`\(([^)]+)\)")


def disassemble(cubin: bytes, nvdisasm: str) -> dict[str, Function]:
    """Mangled kernel name -> its SASS (nvdisasm -c)."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as handle:
        handle.write(cubin)
        handle.flush()
        text = subprocess.run([nvdisasm, "-c", handle.name], capture_output=True, text=True, check=True).stdout
    functions: dict[str, Function] = {}
    current: Function | None = None
    for line in text.splitlines():
        section = re.match(r"\s*\.section\s+\.text\.(\w+),", line)
        if section:
            current = functions.setdefault(section.group(1), Function(section.group(1)))
            continue
        if current is None:
            continue
        label = _LABEL.match(line.strip())
        if label:
            current.labels[label.group(1)] = len(current.instructions)
            continue
        instruction = _INSTRUCTION.search(line)
        if instruction:
            body = instruction.group(1)
            words = body.split()
            opcode = words[1] if words[0].startswith("@") else words[0]
            target = _TARGET.search(body)
            current.instructions.append(Instruction(opcode, body, target.group(1) if target else None))
    return functions
